"""A key set through UpdateConfig exists nowhere but encrypted: not in
responses, errors, logs at DEBUG, audit entries, exception texts, nor in the
raw bytes of the database."""

from __future__ import annotations

import io
import logging
import sys
import traceback
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import json_format

from helpers import auth, canary_key, details_of
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.config.model import Change
from liya_engine.errors import InvalidConfig
from liya_engine.identity import Identity
from liya_engine.logs import HEADER_LOGGERS, LIBRARY_LOGGERS, configure_logging
from liya_engine.secret import Secret


def fragments(key: str) -> list[str]:
    """The key and pieces of its unique part long enough to matter (a preview
    shows at most the last 4 characters)."""
    unique = key[key.index("CANARY") :]
    middle = len(unique) // 2
    return [key, unique[:12], unique[-10:], unique[middle - 6 : middle + 6]]


class Leaks:
    """Collects every place a key could surface, then searches them."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.texts: dict[str, str] = {}
        self.blobs: dict[str, bytes] = {}

    def add_text(self, where: str, value: str) -> None:
        self.texts[where] = self.texts.get(where, "") + value + "\n"

    def add_bytes(self, where: str, value: bytes) -> None:
        self.blobs[where] = self.blobs.get(where, b"") + value

    def add_response(self, where: str, message) -> None:
        self.add_bytes(where, message.SerializeToString())
        self.add_text(where, json_format.MessageToJson(message))

    def add_error(self, where: str, err: grpc.aio.AioRpcError) -> None:
        d = details_of(err)
        self.add_text(where, f"{d.message} {d.violations} {d.metadata} {err.debug_error_string()}")
        for name, value in err.trailing_metadata() or ():
            self.add_bytes(where, value if isinstance(value, bytes) else value.encode())
            self.add_text(where, name)

    def assert_clean(self) -> None:
        for key in self.keys:
            for piece in fragments(key):
                for where, text in self.texts.items():
                    assert piece not in text, f"key fragment in {where}"
                for where, raw in self.blobs.items():
                    assert piece.encode() not in raw, f"key fragment in {where}"


class RawRecords(logging.Handler):
    """Sees each record before any redaction filter rewrites it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
        self.lines.append(line + " " + repr(record.args))


@pytest.fixture
def debug_logs(monkeypatch):
    """The server's own logging set-up at DEBUG, plus a raw record collector."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    # configure_logging sets every library logger's level: restore them all.
    noisy = {n: logging.getLogger(n).level for n in LIBRARY_LOGGERS + HEADER_LOGGERS}
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("DEBUG", "text")
    raw = RawRecords()
    root.handlers.insert(0, raw)
    yield stream, raw
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)


async def exercise(servers, db_url: str, leaks: Leaks, keys: dict[str, str]):
    running, s = await servers.start(LIYA_DATABASE_URL=db_url, LIYA_LOG_LEVEL="DEBUG")
    assert running.services.settings.log_level == "DEBUG"
    md = (*auth("leak-tenant", "alice"), ("x-request-id", "req-leak-0001"))
    full = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(
            mode="byok",
            openai=cpb.OpenAIConfig(api_key=keys["openai"], default_model="gpt-4o"),
            anthropic=cpb.AnthropicConfig(api_key=keys["anthropic"]),
            azure=cpb.AzureOpenAIConfig(
                api_key=keys["azure"],
                endpoint="https://contoso.openai.azure.com",
                deployment_name="prod",
                api_version="2024-10-21",
            ),
        )
    )
    check = cpb.UpdateConfigRequest()
    check.CopyFrom(full)
    check.validate_only = True
    leaks.add_response("validate_only", await s.config.UpdateConfig(check, metadata=md))
    call = s.config.UpdateConfig(full, metadata=md)
    leaks.add_response("UpdateConfig", await call)
    for name, value in await call.trailing_metadata() or ():
        leaks.add_text("UpdateConfig trailers", f"{name}={value!r}")
    leaks.add_response(
        "GetMaskedConfig",
        await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md),
    )
    leaks.add_response(
        "UpdateConfig rotate",
        await s.config.UpdateConfig(
            cpb.UpdateConfigRequest(
                provider_config=cpb.ProviderConfig(
                    openai=cpb.OpenAIConfig(api_key=keys["openai_rotated"])
                )
            ),
            metadata=md,
        ),
    )

    # Rejected requests carrying a key: wrong endpoint, key in the wrong place.
    bad = [
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                azure=cpb.AzureOpenAIConfig(
                    api_key=keys["azure"],
                    endpoint=f"https://{keys['azure']}@evil.example/?k={keys['azure']}",
                    deployment_name="prod",
                    api_version="2024-10-21",
                )
            )
        ),
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(api_key=keys["anthropic"]))
        ),
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                openai=cpb.OpenAIConfig(api_key=keys["openai"] + " trailing")
            )
        ),
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                openai=cpb.OpenAIConfig(default_model=keys["openai"])
            )
        ),
        cpb.UpdateConfigRequest(
            model_config=cpb.ModelConfig(overrides={keys["openai"]: keys["anthropic"]})
        ),
    ]
    stale = cpb.UpdateConfigRequest()
    stale.CopyFrom(full)
    stale.etag = "v999"
    bad.append(stale)
    for i, request in enumerate(bad):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.config.UpdateConfig(request, metadata=md)
        leaks.add_error(f"error {i}", err.value)

    # Exception objects raised inside the service, as a traceback would show them.
    with pytest.raises(InvalidConfig) as exc:
        await running.services.configs.update(
            Identity("leak-tenant", "alice"),
            "req-leak-0002",
            [
                Change("provider_config.azure.api_key", Secret(keys["azure"])),
                Change("provider_config.azure.endpoint", f"http://{keys['azure']}.example"),
            ],
        )
    leaks.add_text("exception", repr(exc.value) + str(exc.value) + repr(exc.value.violations))
    leaks.add_text("exception", "".join(traceback.format_exception(exc.value)))

    audit = await s.config.ListAuditEntries(cpb.ListAuditEntriesRequest(), metadata=md)
    assert len(audit.audit_entries) == 2
    leaks.add_response("ListAuditEntries", audit)
    return running, s


async def test_canary_keys_appear_nowhere_but_encrypted(servers, db_url, debug_logs):
    stream, raw = debug_logs
    keys = {
        "openai": canary_key(),
        "openai_rotated": canary_key("sk-proj-"),
        "anthropic": canary_key("sk-ant-api03-"),
        "azure": canary_key("az"),
    }
    leaks = Leaks(list(keys.values()))
    running, s = await exercise(servers, db_url, leaks, keys)

    # The keys are stored and usable: this test watches real traffic.
    cfg = await running.services.configs.get("leak-tenant")
    blob = cfg.provider("openai").api_key_ciphertext
    assert (
        running.services.cipher.decrypt(
            blob, tenant_id="leak-tenant", provider="openai", field="api_key"
        ).reveal()
        == keys["openai_rotated"]
    )

    if db_url.startswith("sqlite"):
        path = Path(db_url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            f = path.with_name(path.name + suffix)
            if f.exists():
                leaks.add_bytes(f"sqlite file{suffix} (serving)", f.read_bytes())
        await s.channel.close()
        await running.stop(0)
        for suffix in ("", "-wal"):
            f = path.with_name(path.name + suffix)
            if f.exists():
                leaks.add_bytes(f"sqlite file{suffix} (stopped)", f.read_bytes())
        assert path.stat().st_size > 0
    else:
        dump = await postgres_dump(db_url)
        assert "provider_credentials" in dump and "audit_entries" in dump
        for table, rows in dump.items():
            leaks.add_text(f"postgres {table}", repr(rows))
            for row in rows:
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        leaks.add_bytes(f"postgres {table} bytes", bytes(value))
        assert any(r for r in dump["provider_credentials"])

    logged = stream.getvalue()
    assert "DEBUG" in logged and "config updated" in logged  # logging really was on
    leaks.add_text("formatted log output", logged)
    leaks.add_text("raw log records", "\n".join(raw.lines))
    assert len(raw.lines) > 10
    leaks.assert_clean()


async def postgres_dump(db_url: str) -> dict[str, list[tuple]]:
    """Every column of every row of every table in the database."""
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        out = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT * FROM "{table}"')  # noqa: S608 - catalog names
            out[table] = [tuple(r.values()) for r in rows]
        return out
    finally:
        await conn.close()


async def test_audit_rows_hold_no_key_or_preview(servers, db_url):
    running, s = await servers.start(LIYA_DATABASE_URL=db_url)
    key = canary_key()
    reply = await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(api_key=key))
        ),
        metadata=auth("audit-leak"),
    )
    preview = reply.config.openai.api_key_preview
    assert preview.endswith(key[-4:])
    async with running.services.db.unit_of_work() as uow:
        entries = await uow.audit.list("audit-leak", limit=10, before_id=None)
    assert len(entries) == 1
    text = repr(entries)
    assert "provider_config.openai.api_key" in text
    assert key not in text and preview not in text


def test_scrubbing_keeps_setting_names_but_not_tokens_that_start_like_one():
    from liya_engine.redact import REDACTED, scrub

    line = "setting on: LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES=true (for Private Link only)"
    assert scrub(line) == line
    # Only a whole upper-case name is one: a long run that merely starts with
    # the prefix may be a key and is scrubbed.
    assert scrub("LIYA_AZURE_ALLOW_PRIVATE_ADDRESSESabcdefgh1234") == REDACTED
