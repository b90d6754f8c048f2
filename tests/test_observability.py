"""Metrics on their own HTTP port and logs with a request context, never a key."""

from __future__ import annotations

import io
import json
import logging

import grpc
import httpx
import pytest

from helpers import auth, free_port
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.logs import ContextAndRedactionFilter, JsonFormatter

KEY = "sk-" + "M" * 40 + "tail"


def hello() -> ipb.CompleteRequest:
    return ipb.CompleteRequest(
        intent="general_chat", messages=[ipb.ChatMessage(role="user", content="hi")]
    )


async def test_metrics_count_rpcs_provider_calls_tokens_and_cost(servers, fake):
    port = free_port()
    _, s = await servers.start(LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}")
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(mode="byok", openai=cpb.OpenAIConfig(api_key=KEY))
        ),
        metadata=auth("tenant-secret-name"),
    )
    await s.inference.Complete(hello(), metadata=auth("tenant-secret-name"))
    fake.fail("openai", "rate_limit")
    with pytest.raises(grpc.aio.AioRpcError):
        await s.inference.Complete(hello(), metadata=auth("tenant-secret-name"))
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert (
        'liya_rpc_total{code="OK",method="/liya.engine.v1.InferenceService/Complete",reason=""} 1.0'
    ) in text
    assert (
        'liya_rpc_total{code="RESOURCE_EXHAUSTED",method="/liya.engine.v1.InferenceService/'
        'Complete",reason="BYOK_QUOTA_EXCEEDED"} 1.0'
    ) in text
    assert (
        'liya_provider_calls_total{mode="byok",model="gpt-4o",provider="openai",'
        'reason="BYOK_QUOTA_EXCEEDED"} 1.0'
    ) in text
    assert 'liya_tokens_total{direction="output",model="gpt-4o",provider="openai"}' in text
    assert 'liya_cost_usd_total{model="gpt-4o",provider="openai"}' in text
    assert "liya_rpc_duration_seconds_bucket" in text
    assert "tenant-secret-name" not in text and "MMMM" not in text


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextAndRedactionFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_json_logs_carry_request_id_and_tenant_and_no_key(stubs, fake, json_log):
    md = (*auth("acme"), ("x-request-id", "req-observe-0001"))
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(mode="byok", openai=cpb.OpenAIConfig(api_key=KEY))
        ),
        metadata=md,
    )
    fake.fail("openai", "auth")
    with pytest.raises(grpc.aio.AioRpcError):
        await stubs.inference.Complete(hello(), metadata=md)
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    ours = [
        e
        for e in lines
        if e["logger"].startswith("liya_engine") and e["request_id"] == "req-observe-0001"
    ]
    assert any("config updated" in e["msg"] for e in ours)
    assert any("BYOK_AUTH_FAILED" in e["msg"] for e in ours)
    assert all(e["tenant"] == "acme" for e in ours)
    raw = json_log.getvalue()
    assert KEY not in raw and "MMMMMMMM" not in raw and KEY[-4:] + '"' not in raw


def test_redaction_filter_scrubs_key_shaped_text():
    stream = io.StringIO()
    logger = logging.getLogger("liya_engine.test_redaction")
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextAndRedactionFilter())
    logger.addHandler(handler)
    try:
        logger.warning("caller sent %s in the wrong field", KEY)
        logger.warning("Incorrect API key provided: sk-proj-****************abcd.")
        logger.warning("header Authorization: Bearer %s", "eyJhbGciOi.eyJzdWIiOiIx.sig")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "MMMM" not in out and "abcd" not in out and "eyJzdWIiOiIx" not in out
    assert out.count("[REDACTED]") >= 3
