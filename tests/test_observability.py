"""Metrics on their own HTTP port and logs with a request context, never a key."""

from __future__ import annotations

import io
import json
import logging

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import auth, free_port
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.fakes import answer_words, count_prompt_tokens
from liya_engine.logs import ContextAndRedactionFilter, JsonFormatter

KEY = "sk-" + "M" * 40 + "tail"


def hello() -> ipb.CompleteRequest:
    return ipb.CompleteRequest(
        intent="general_chat", messages=[ipb.ChatMessage(role="user", content="hi")]
    )


CONFIG_SERVICE = "liya.engine.v1.ConfigService"
INFERENCE_SERVICE = "liya.engine.v1.InferenceService"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_count_rpcs_provider_calls_tokens_and_cost(servers, fake):
    port = free_port()
    _, s = await servers.start(LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}")
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(mode="byok", openai=cpb.OpenAIConfig(api_key=KEY))
        ),
        metadata=auth("tenant-secret-name"),
    )
    reply = await s.inference.Complete(hello(), metadata=auth("tenant-secret-name"))
    fake.fail("openai", "rate_limit")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.inference.Complete(hello(), metadata=auth("tenant-secret-name"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = _samples(text)

    # One RPC of each outcome, counted once with its exact labels.
    rpcs = {k: v for k, v in samples.items() if k[0] == "grpc_server_handled_total"}
    update = (("grpc_method", "UpdateConfig"), ("grpc_service", CONFIG_SERVICE))
    complete = (("grpc_method", "Complete"), ("grpc_service", INFERENCE_SERVICE))
    assert rpcs == {
        (
            "grpc_server_handled_total",
            (("grpc_code", "OK"), *update, ("grpc_type", "unary"), ("reason", "OK")),
        ): 1.0,
        (
            "grpc_server_handled_total",
            (("grpc_code", "OK"), *complete, ("grpc_type", "unary"), ("reason", "OK")),
        ): 1.0,
        (
            "grpc_server_handled_total",
            (
                ("grpc_code", "RESOURCE_EXHAUSTED"),
                *complete,
                ("grpc_type", "unary"),
                ("reason", "BYOK_QUOTA_EXCEEDED"),
            ),
        ): 1.0,
    }
    latency = "grpc_server_handling_seconds_count"
    assert _value(samples, latency, **dict(complete), grpc_type="unary", grpc_code="OK") == 1.0
    assert (
        _value(
            samples, latency, **dict(complete), grpc_type="unary", grpc_code="RESOURCE_EXHAUSTED"
        )
        == 1.0
    )
    assert _value(samples, latency, **dict(update), grpc_type="unary", grpc_code="OK") == 1.0

    calls = {k: v for k, v in samples.items() if k[0] == "liya_provider_calls_total"}
    byok_openai = (("mode", "byok"), ("model", "gpt-4o"), ("provider", "openai"))
    assert calls == {
        ("liya_provider_calls_total", (*byok_openai, ("reason", "OK"))): 1.0,
        ("liya_provider_calls_total", (*byok_openai, ("reason", "BYOK_QUOTA_EXCEEDED"))): 1.0,
    }
    provider_latency = "liya_provider_duration_seconds_count"
    assert _value(samples, provider_latency, provider="openai", reason="OK") == 1.0
    assert _value(samples, provider_latency, provider="openai", reason="BYOK_QUOTA_EXCEEDED") == 1.0

    # Usage of the one successful call: the fake's counts, at gpt-4o's catalog prices.
    expected_input = count_prompt_tokens([{"role": "user", "content": "hi"}])
    expected_output = len(answer_words([{"role": "user", "content": "hi"}]))
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (
        expected_input,
        expected_output,
    )
    tokens = {"provider": "openai", "model": "gpt-4o"}
    assert _value(samples, "liya_tokens_total", direction="input", **tokens) == expected_input
    assert _value(samples, "liya_tokens_total", direction="output", **tokens) == expected_output
    expected_cost = (expected_input * 2.50 + expected_output * 10.00) / 1_000_000
    assert reply.usage.cost_usd == pytest.approx(expected_cost, rel=1e-9)
    assert _value(samples, "liya_cost_usd_total", **tokens) == pytest.approx(
        expected_cost, rel=1e-9
    )
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
    # Exactly the two records of this request, both with its tenant.
    assert [(e["level"], e["tenant"]) for e in ours] == [("INFO", "acme"), ("INFO", "acme")]
    updated, failed = (e["msg"] for e in ours)
    assert updated == "config updated: provider_config.mode, provider_config.openai.api_key"
    assert failed.startswith("/liya.engine.v1.InferenceService/Complete failed: BYOK_AUTH_FAILED ")
    # OpenAI's message echoes the masked key; the log shows the marker instead.
    assert "Incorrect API key provided: [REDACTED]. You can find" in failed
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
    assert stream.getvalue().splitlines() == [
        "caller sent [REDACTED] in the wrong field",
        "Incorrect API key provided: [REDACTED].",  # the sentence keeps its full stop
        "header Authorization: [REDACTED]",
    ]
