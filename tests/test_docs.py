"""The docs match the code: the settings tables list exactly the variables the
server reads, the README's Python example runs as written against a real
server, and its fake-provider curls provoke the errors they name."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest

from helpers import BIN, auth, byok_openai, details_of, hello, served_process
from liya_engine.settings import markdown_table, variables

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"


def _section(path: Path, title: str) -> str:
    """The text of the ``## title`` section of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"{path.name} has no section {title!r}"
    return match.group(1)


def _table_variables(section: str) -> list[str]:
    """The ``LIYA_*`` names in the first column of the section's settings table."""
    names = []
    for line in section.splitlines():
        if line.startswith("| `LIYA_"):
            names += re.findall(r"`(LIYA_[A-Z0-9_]+)`", line.split(" | ")[0])
    return names


def _code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize(("path", "title"), [(README, "Settings"), (OPERATIONS, "Settings")])
def test_the_settings_table_lists_every_variable_the_code_reads_and_no_other(path, title):
    section = _section(path, title)
    listed = _table_variables(section)
    assert len(listed) == len(set(listed)), "a variable listed twice"
    read = variables()
    assert sorted(set(read) - set(listed)) == [], f"read by the code, missing in {path.name}"
    assert sorted(set(listed) - set(read)) == [], f"in {path.name}, not read by the code"
    # And the table is the generated one (meanings and defaults included).
    assert markdown_table() in section, (
        f"{path.name}'s settings table differs from liya_engine.settings.markdown_table()"
    )


def _python_example() -> str:
    (code,) = _code_blocks(_section(README, "Calling it from Python"), "python")
    return code


def test_the_python_example_has_no_top_level_await_and_defines_every_name():
    code = _python_example()
    compile(code, "README.md", "exec")  # a top-level await would not compile
    lint = subprocess.run(
        [
            BIN / "ruff",
            "check",
            "--isolated",
            "--select",
            "F",
            "--stdin-filename",
            "example.py",
            "-",
        ],
        input=code,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (lint.returncode, lint.stdout) == (0, "All checks passed!\n")
    assert code.count("127.0.0.1:50051") == 1  # make run's address, as the test replaces it


async def _run_example(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIYA_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_python_example_runs_as_written(tmp_path, fake, monkeypatch):
    """Against ``serve --dev`` in the same directory (its .dev/ secrets), with
    the fake providers as OpenAI: the success branch, then the quota branch."""
    monkeypatch.chdir(tmp_path)
    async with served_process(
        tmp_path,
        "--dev",
        LIYA_MASTER_KEYS="",  # --dev's secrets, as make run uses them
        LIYA_JWT_HS256_SECRET="",
        LIYA_OPENAI_BASE_URL=fake.openai_base_url,
    ) as (_, port, _log):
        code = _python_example().replace("127.0.0.1:50051", f"127.0.0.1:{port}")
        done = await _run_example(code, tmp_path)
        assert (done.returncode, done.stderr) == (0, "")
        content, cost = done.stdout.rstrip("\n").rsplit(" ", 1)
        assert content == "Fake answer to: Hi"
        assert float(cost) > 0
        assert fake.last_request.api_key == "sk-test-0123456789abcdef"
        fake.fail("openai", "rate_limit", retry_after=3)
        done = await _run_example(code, tmp_path)
        assert (done.returncode, done.stderr, done.stdout) == (0, "", "retry in 3.0 s\n")


_CURL = re.compile(
    r"^# (?P<reason>[A-Z_]+) \(Code: (?P<code>\w+)\)[^\n]*\n"
    r"curl -s http://127\.0\.0\.1:8090(?P<path>/_control/\w+) -d '(?P<body>[^']+)'$",
    re.MULTILINE,
)
_BYOK_ERRORS = {
    "BYOK_AUTH_FAILED",
    "BYOK_QUOTA_EXCEEDED",
    "BYOK_MODEL_NOT_FOUND",
    "BYOK_ENDPOINT_UNREACHABLE",
    "PROVIDER_UNAVAILABLE",
    "PROVIDER_REJECTED_REQUEST",
}


def _curl_examples() -> list[dict[str, str]]:
    section = _section(README, "Provoking provider errors with the fake providers")
    (shell, *_) = _code_blocks(section, "sh")
    examples = [m.groupdict() for m in _CURL.finditer(shell)]
    assert len(examples) == shell.count("curl "), "a curl line in another shape"
    return examples


def test_there_is_a_curl_for_every_provider_error():
    assert {e["reason"] for e in _curl_examples()} == _BYOK_ERRORS


def _status_code(grpcurl_name: str) -> grpc.StatusCode:
    """grpcurl's ``FailedPrecondition`` as ``grpc.StatusCode.FAILED_PRECONDITION``."""
    return grpc.StatusCode[re.sub(r"(?<!^)(?=[A-Z])", "_", grpcurl_name).upper()]


async def test_each_curl_provokes_the_error_it_names(servers, fake):
    _, s = await servers.start()
    await s.config.UpdateConfig(
        byok_openai("sk-" + "d" * 40, model="gpt-4o"), metadata=auth("acme")
    )
    async with aiohttp.ClientSession(fake.base_url) as http:
        for example in _curl_examples():
            # curl -d sends a form content type; the fake reads the body as JSON anyway.
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            async with http.post(example["path"], data=example["body"], headers=headers) as reply:
                assert (reply.status, await reply.json()) == (200, {"ok": True}), example
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await s.inference.Complete(hello(text="Hello"), metadata=auth("acme"))
            d = details_of(err.value)
            assert (d.code, d.reason) == (_status_code(example["code"]), example["reason"]), example
            options = json.loads(example["body"])
            assert d.retry_delay == options.get("retry_after"), example
            reply = await s.inference.Complete(hello(text="Hello"), metadata=auth("acme"))
            assert reply.message.content == "Fake answer to: Hello"  # used up: once only
