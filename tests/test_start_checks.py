"""Base URL settings are checked at start: a bad one stops ``liya-engine serve``
with one line naming the variable, and never a piece of the secret in it."""

from __future__ import annotations

import subprocess

import pytest

from helpers import BIN, free_port, process_env
from liya_engine.errors import SettingsError
from liya_engine.settings import Settings

PASSWORD = "Pw9s3cretZq"

BAD = [
    ("LIYA_OPENAI_BASE_URL", f"https://user:{PASSWORD}@api.openai.com/v1", "user information"),
    ("LIYA_OPENAI_BASE_URL", f"https://api.openai.com:{PASSWORD}/v1", "cannot be parsed"),
    ("LIYA_ANTHROPIC_BASE_URL", f"https://[{PASSWORD}@api.anthropic.com", "cannot be parsed"),
    ("LIYA_ANTHROPIC_BASE_URL", f"https://api.anthropic.com/?key={PASSWORD}", "a query"),
    ("LIYA_OPENAI_BASE_URL", f"https://api.openai.com/v1#{PASSWORD}", "a fragment"),
    ("LIYA_OPENAI_BASE_URL", f"ftp://{PASSWORD}.example/v1", "http:// or https://"),
    ("LIYA_ANTHROPIC_BASE_URL", f"api.anthropic.com/{PASSWORD}", "http:// or https://"),
    ("LIYA_OPENAI_BASE_URL", "https:///v1", "no host"),
    ("LIYA_MANAGED_AZURE_ENDPOINT", f"https://u:{PASSWORD}@r.openai.azure.com", "user information"),
]


def _serve(tmp_path, **env: str) -> subprocess.CompletedProcess:
    full = process_env(
        f"sqlite+aiosqlite:///{tmp_path / 'start.db'}",
        LIYA_LISTEN_ADDRESS=f"127.0.0.1:{free_port()}",
        **env,
    )
    return subprocess.run(
        [BIN / "liya-engine", "serve"], env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(("variable", "value", "problem"), BAD)
def test_a_bad_base_url_is_refused_naming_the_variable(variable, value, problem):
    env = {"LIYA_JWT_HS256_SECRET": "s" * 32, variable: value}
    if variable == "LIYA_MANAGED_AZURE_ENDPOINT":
        env |= {"LIYA_MANAGED_AZURE_API_KEY": "k" * 32, "LIYA_MANAGED_AZURE_DEPLOYMENT": "d"}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert message.startswith(f"{variable} must be an http(s) URL")
    assert problem in message
    assert PASSWORD not in message and PASSWORD[:6] not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LIYA_OPENAI_BASE_URL", f"https://user:{PASSWORD}@api.openai.com/v1"),
        ("LIYA_OPENAI_BASE_URL", f"https://api.openai.com:{PASSWORD}/v1"),
        ("LIYA_ANTHROPIC_BASE_URL", f"https://[{PASSWORD}@api.anthropic.com"),
        ("LIYA_MANAGED_AZURE_ENDPOINT", f"https://u:{PASSWORD}@r.openai.azure.com"),
    ],
)
def test_serve_stops_with_one_line_and_no_secret(tmp_path, variable, value):
    extra = {variable: value}
    if variable == "LIYA_MANAGED_AZURE_ENDPOINT":
        extra |= {"LIYA_MANAGED_AZURE_API_KEY": "k" * 32, "LIYA_MANAGED_AZURE_DEPLOYMENT": "d"}
    done = _serve(tmp_path, **extra)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"liya-engine: error: {variable} must be an http(s) URL")
    assert "Traceback" not in done.stderr
    for piece in (PASSWORD, PASSWORD[:5], PASSWORD[-5:]):
        assert piece not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "value",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8090/v1",
        "https://gateway.corp.example:8443/openai/v1/",
        "http://[::1]:8090",
    ],
)
def test_good_base_urls_pass(value):
    settings = Settings.from_env({"LIYA_OPENAI_BASE_URL": value, "LIYA_ANTHROPIC_BASE_URL": value})
    assert (settings.openai_base_url, settings.anthropic_base_url) == (value, value)
