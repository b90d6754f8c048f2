"""The settings table: each variable parsed once, strictly, with its default written once."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import BIN, master_key_line, process_env
from liya_engine import cli
from liya_engine.crypto.master_keys import generate_master_key_line, is_valid_key_id
from liya_engine.errors import SettingsError
from liya_engine.settings import Settings, all_settings, markdown_table, variables

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
KEY_MATERIAL = master_key_line("x").partition(":")[2]


def test_the_defaults_are_the_fields_defaults():
    assert Settings.from_env({}) == Settings()
    defaults = Settings()
    assert defaults.listen_address == "127.0.0.1:50051"
    assert defaults.database_url == "sqlite+aiosqlite:///liya-engine.db"
    assert defaults.workers == 1 and defaults.config_cache_size == 50_000
    assert defaults.jwt_algorithms == ("HS256",)
    assert defaults.managed.azure is None


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("LIYA_WORKERS", "2.9", "LIYA_WORKERS must be a whole number, not '2.9'"),
        ("LIYA_WORKERS", "0", "LIYA_WORKERS must be at least 1"),
        (
            "LIYA_CONFIG_CACHE_SIZE",
            "1e3",
            "LIYA_CONFIG_CACHE_SIZE must be a whole number, not '1e3'",
        ),
        (
            "LIYA_MAX_RECEIVE_MESSAGE_BYTES",
            "4194304.0",
            "LIYA_MAX_RECEIVE_MESSAGE_BYTES must be a whole number, not '4194304.0'",
        ),
        (
            "LIYA_MAX_RECEIVE_MESSAGE_BYTES",
            "1023",
            "LIYA_MAX_RECEIVE_MESSAGE_BYTES must be at least 1024",
        ),
        (
            "LIYA_SHUTDOWN_GRACE_SECONDS",
            "soon",
            "LIYA_SHUTDOWN_GRACE_SECONDS must be a number, not 'soon'",
        ),
        ("LIYA_HEALTH_CHECK_SECONDS", "0.01", "LIYA_HEALTH_CHECK_SECONDS must be at least 0.05"),
        (
            "LIYA_UPSTREAM_TIMEOUT_SECONDS",
            "nan",
            "LIYA_UPSTREAM_TIMEOUT_SECONDS must be at least 0.1",
        ),
        (
            "LIYA_ALLOW_INSECURE_ENDPOINTS",
            "maybe",
            "LIYA_ALLOW_INSECURE_ENDPOINTS must be true or false, not 'maybe'",
        ),
        ("LIYA_LOG_FORMAT", "xml", "LIYA_LOG_FORMAT must be text or json"),
        (
            "LIYA_LOG_LEVEL",
            "loud",
            "LIYA_LOG_LEVEL must be CRITICAL, FATAL, ERROR, WARN, WARNING, INFO, DEBUG or NOTSET",
        ),
        ("LIYA_EVENT_LOOP", "trio", "LIYA_EVENT_LOOP must be uvloop or asyncio"),
        ("LIYA_JWT_HS256_SECRET", "short", "LIYA_JWT_HS256_SECRET must be at least 32 characters"),
    ],
)
def test_a_malformed_value_is_refused_naming_its_variable(variable, raw, message):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({variable: raw})
    assert str(err.value) == message


def test_whole_numbers_are_ints_and_decimals_stay_floats():
    settings = Settings.from_env(
        {"LIYA_WORKERS": " 3 ", "LIYA_CONFIG_CACHE_SIZE": "0", "LIYA_SHUTDOWN_GRACE_SECONDS": "2.5"}
    )
    assert (settings.workers, settings.config_cache_size) == (3, 0)
    assert type(settings.workers) is int and type(settings.config_cache_size) is int
    assert settings.shutdown_grace_seconds == 2.5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("OFF", False),
        ("", False),
        ("  ", False),
    ],
)
def test_booleans_accept_the_usual_spellings(raw, expected):
    assert (
        Settings.from_env({"LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES": raw}).azure_allow_private_addresses
        is expected
    )


def test_levels_and_loops_are_normalised():
    settings = Settings.from_env({"LIYA_LOG_LEVEL": "debug", "LIYA_EVENT_LOOP": "AsyncIO"})
    assert (settings.log_level, settings.event_loop) == ("DEBUG", "asyncio")


@pytest.mark.parametrize("key_id", ["clé", "\u0661", "with space", "a" * 65, "a.b", "a/b"])
def test_one_key_id_rule_for_settings_and_keys_generate(key_id):
    assert not is_valid_key_id(key_id)
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"LIYA_MASTER_KEYS": f"{key_id}:{KEY_MATERIAL}"})
    assert str(err.value) == f"LIYA_MASTER_KEYS: key id {key_id!r} must be 1-64 of [A-Za-z0-9_-]"
    with pytest.raises(ValueError, match=re.escape("key id must be 1-64 of [A-Za-z0-9_-]")):
        generate_master_key_line(key_id)


@pytest.mark.parametrize("key_id", ["a", "prod-2026_01", "A" * 64])
def test_a_good_key_id_works_in_both(key_id):
    line = generate_master_key_line(key_id)
    assert Settings.from_env({"LIYA_MASTER_KEYS": line}).primary_master_key.key_id == key_id


def test_values_from_files_name_the_file_variable(tmp_path):
    secret_file = tmp_path / "jwt"
    secret_file.write_text("too-short\n")
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"LIYA_JWT_HS256_SECRET_FILE": str(secret_file)})
    assert str(err.value) == "LIYA_JWT_HS256_SECRET_FILE must be at least 32 characters"
    url_file = tmp_path / "url"
    url_file.write_text("postgresql+asyncpg://db/liya\n")
    settings = Settings.from_env({"LIYA_DATABASE_URL_FILE": str(url_file)})
    assert settings.database_url == "postgresql+asyncpg://db/liya"
    both = Settings.from_env(
        {"LIYA_DATABASE_URL": "sqlite+aiosqlite:///x.db", "LIYA_DATABASE_URL_FILE": str(url_file)}
    )
    assert both.database_url == "sqlite+aiosqlite:///x.db"  # the variable wins over its file


def test_managed_azure_needs_its_three_settings_together():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"LIYA_MANAGED_AZURE_ENDPOINT": "https://x.openai.azure.com"})
    assert str(err.value) == (
        "managed Azure needs LIYA_MANAGED_AZURE_API_KEY, LIYA_MANAGED_AZURE_ENDPOINT "
        "and LIYA_MANAGED_AZURE_DEPLOYMENT together"
    )
    azure = Settings.from_env(
        {
            "LIYA_MANAGED_AZURE_API_KEY": "az-key",
            "LIYA_MANAGED_AZURE_ENDPOINT": "https://x.openai.azure.com",
            "LIYA_MANAGED_AZURE_DEPLOYMENT": "chat",
        }
    ).managed.azure
    assert azure is not None
    assert (azure.endpoint, azure.deployment, azure.api_version) == (
        "https://x.openai.azure.com",
        "chat",
        "2024-02-15-preview",
    )
    assert azure.api_key.reveal() == "az-key"


def _settings_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return text[text.index("\n## Settings\n") : text.index("\n## PostgreSQL\n")]


def test_every_variable_is_documented_and_every_documented_one_exists():
    section = _settings_section()
    documented = set(re.findall(r"\bLIYA_[A-Z0-9_]*[A-Z0-9]", section))
    assert documented == set(variables())
    # The table there is the one the server reads, help text and defaults included.
    assert markdown_table() in section, (
        "docs/operations.md's settings table differs from liya_engine.settings.markdown_table()"
    )


def test_serve_help_lists_every_variable():
    out = subprocess.run(
        [BIN / "liya-engine", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for _, row in all_settings():
        assert row.help in out
        for name in row.variables:
            assert re.search(rf"\b{name}\b", out), name


def _args(**flags) -> argparse.Namespace:
    base = {"listen": None, "database_url": None, "metrics_address": None, "workers": None}
    return argparse.Namespace(**{**base, **flags})


def test_flags_override_without_touching_the_environment(monkeypatch):
    monkeypatch.setenv("LIYA_WORKERS", "2.9")  # not read: the flag overrides it
    monkeypatch.setenv("LIYA_LISTEN_ADDRESS", "127.0.0.1:1")
    before = dict(os.environ)
    settings = cli._settings(_args(workers=3, listen="0.0.0.0:7000"))
    assert (settings.workers, settings.listen_address) == (3, "0.0.0.0:7000")
    assert dict(os.environ) == before


def test_a_flag_passes_the_same_checks_as_its_variable(monkeypatch):
    for name in [n for n in os.environ if n.startswith("LIYA_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SettingsError) as err:
        cli._settings(_args(workers=0))
    assert str(err.value) == "--workers must be at least 1"


def test_dev_fills_only_missing_secrets_and_leaves_the_environment_alone(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("LIYA_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    before = dict(os.environ)
    settings = cli._settings(_args(dev=True))
    assert dict(os.environ) == before
    assert [k.key_id for k in settings.master_keys] == ["dev-1"]
    dev_secret = (tmp_path / ".dev" / "jwt-secret").read_text().strip()
    assert settings.jwt_hs256_secret is not None
    assert settings.jwt_hs256_secret.reveal() == dev_secret
    mine = master_key_line("mine")
    monkeypatch.setenv("LIYA_MASTER_KEYS", mine)
    again = cli._settings(_args(dev=True))
    assert [k.key_id for k in again.master_keys] == ["mine"]
    assert dataclasses.replace(again, master_keys=settings.master_keys) == settings


@pytest.mark.parametrize(
    ("variable", "raw", "line"),
    [
        (
            "LIYA_MASTER_KEYS",
            f"clé:{KEY_MATERIAL}",
            "liya-engine: error: LIYA_MASTER_KEYS: key id 'clé' must be 1-64 of [A-Za-z0-9_-]",
        ),
        (
            "LIYA_WORKERS",
            "2.9",
            "liya-engine: error: LIYA_WORKERS must be a whole number, not '2.9'",
        ),
    ],
)
def test_serve_stops_with_one_line_naming_the_variable(tmp_path, variable, raw, line):
    env = process_env(f"sqlite+aiosqlite:///{tmp_path / 'srv.db'}", **{variable: raw})
    proc = subprocess.run(
        [BIN / "liya-engine", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line]
    assert "Traceback" not in proc.stderr


def test_reading_settings_loads_no_crypto_storage_or_transport_library():
    code = (
        "import sys, liya_engine.settings; "
        "print(sorted(m for m in ('cryptography', 'sqlalchemy', 'grpc', 'aiohttp') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [BIN / "python", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_key_material_written_where_the_id_goes_is_never_echoed():
    import base64
    import os

    material = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"LIYA_MASTER_KEYS": f"{material}:primary"})
    assert str(err.value) == (
        "LIYA_MASTER_KEYS: an entry starts with key material; entries are key_id:base64(32 bytes)"
    )
    assert material not in str(err.value)


def test_the_settings_repr_shows_no_database_url():
    url = "postgresql+asyncpg://liya:Secr3t-pw@db.internal/liya"
    settings = Settings.from_env({"LIYA_DATABASE_URL": url})
    assert settings.database_url == url
    assert "Secr3t" not in repr(settings)
