"""LIYA_ACCESS_LOG: one INFO line per call on ``liya_engine.access``, off by default."""

from __future__ import annotations

import io
import json
import logging
import re

import grpc
import pytest

from helpers import auth, byok_openai, details_of, hello
from liya_engine.logs import TEXT_FORMAT, ContextAndRedactionFilter, JsonFormatter

COMPLETE = "/liya.engine.v1.InferenceService/Complete"
UPDATE = "/liya.engine.v1.ConfigService/UpdateConfig"
KEY = "sk-proj-" + "Lw8" * 14 + "RTPX"
LINE = re.compile(r"^(?P<method>\S+) (?P<code>[A-Z_]+) (?P<reason>[A-Z_-]+) (?P<ms>\d+\.\d)ms$")


def access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "liya_engine.access"]


def rid(n: int) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", f"access-test-{n:04d}"),)


async def test_one_line_per_call_with_method_code_reason_duration_tenant_request_id(
    servers, fake, caplog
):
    _, stubs = await servers.start(LIYA_ACCESS_LOG="true")
    caplog.set_level(logging.INFO, logger="liya_engine.access")
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme") + rid(1))
    await stubs.inference.Complete(hello(), metadata=auth("acme") + rid(2), timeout=20)
    fake.fail("openai", "auth")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.inference.Complete(hello(), metadata=auth("acme") + rid(3), timeout=20)
    assert details_of(err.value).reason == "BYOK_AUTH_FAILED"
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.inference.Complete(hello(), metadata=rid(4), timeout=20)  # no token

    records = access_records(caplog)
    fields = [(r.levelname, r.method, r.code, r.reason, r.tenant, r.request_id) for r in records]
    assert fields == [
        ("INFO", UPDATE, "OK", "-", "acme", "access-test-0001"),
        ("INFO", COMPLETE, "OK", "-", "acme", "access-test-0002"),
        ("INFO", COMPLETE, "FAILED_PRECONDITION", "BYOK_AUTH_FAILED", "acme", "access-test-0003"),
        ("INFO", COMPLETE, "UNAUTHENTICATED", "INVALID_TOKEN", "-", "access-test-0004"),
    ]
    for record in records:
        match = LINE.match(record.getMessage())
        assert match, record.getMessage()
        assert (match["method"], match["code"], match["reason"]) == (
            record.method,
            record.code,
            record.reason,
        )
        assert float(match["ms"]) == record.duration_ms
        assert 0 < record.duration_ms < 20_000


async def test_the_line_in_both_log_formats(servers, fake):
    # Handlers as configure_logging installs them, on the access logger.
    streams = {"json": io.StringIO(), "text": io.StringIO()}
    access = logging.getLogger("liya_engine.access")
    handlers = []
    for fmt, stream in streams.items():
        handler = logging.StreamHandler(stream)
        handler.addFilter(ContextAndRedactionFilter())
        handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
        access.addHandler(handler)
        handlers.append(handler)
    access.setLevel(logging.INFO)
    try:
        _, stubs = await servers.start(LIYA_ACCESS_LOG="true")
        await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme") + rid(5))
        fake.fail("openai", "quota")
        with pytest.raises(grpc.aio.AioRpcError):
            await stubs.inference.Complete(hello(), metadata=auth("acme") + rid(6), timeout=20)
    finally:
        for handler in handlers:
            access.removeHandler(handler)
        access.setLevel(logging.NOTSET)

    entries = [json.loads(line) for line in streams["json"].getvalue().splitlines()]
    assert len(entries) == 2
    entry = entries[-1]
    ms = entry["duration_ms"]
    assert isinstance(ms, float) and ms > 0
    assert {k: v for k, v in entry.items() if k != "ts"} == {
        "level": "INFO",
        "logger": "liya_engine.access",
        "msg": f"{COMPLETE} RESOURCE_EXHAUSTED BYOK_QUOTA_EXCEEDED {ms:.1f}ms",
        "request_id": "access-test-0006",
        "tenant": "acme",
        "method": COMPLETE,
        "code": "RESOURCE_EXHAUSTED",
        "reason": "BYOK_QUOTA_EXCEEDED",
        "duration_ms": ms,
    }
    text = streams["text"].getvalue().splitlines()
    assert len(text) == 2
    assert text[-1].endswith(
        "INFO  liya_engine.access [req=access-test-0006 tenant=acme] "
        f"{COMPLETE} RESOURCE_EXHAUSTED BYOK_QUOTA_EXCEEDED {ms:.1f}ms"
    )
    first_ms = entries[0]["duration_ms"]
    assert text[0].endswith(f"[req=access-test-0005 tenant=acme] {UPDATE} OK - {first_ms:.1f}ms")


async def test_off_by_default(servers, fake, caplog):
    _, stubs = await servers.start()
    caplog.set_level(logging.DEBUG)
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"))
    await stubs.inference.Complete(hello(), metadata=auth("acme"), timeout=20)
    assert access_records(caplog) == []
    # The call itself was served (and would have been logged).
    assert fake.last_request.provider == "openai"
