"""Completion calls through the real server, the official SDKs and the fakes."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from helpers import auth, canary_key, details_of
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.errors import StorageUnavailable
from liya_engine.inference.estimate import estimate_prompt_tokens
from liya_engine.inference.ports import Message
from liya_engine.routing.catalog import Catalog

CATALOG = Catalog.load()
OPENAI_KEY = "sk-" + "o" * 44 + "OPEN"
ANTHROPIC_KEY = "sk-ant-" + "a" * 40 + "ANTH"
AZURE_KEY = "0123456789abcdef" * 2


def msgs(text: str = "Tell me about interviews") -> list[ipb.ChatMessage]:
    return [
        ipb.ChatMessage(role="system", content="You are helpful."),
        ipb.ChatMessage(role="user", content=text),
    ]


async def configure(
    stubs, tenant: str, fake, *, openai=True, anthropic=True, azure=True, **model_config
) -> None:
    pc = cpb.ProviderConfig(mode="byok")
    if openai:
        pc.openai.CopyFrom(cpb.OpenAIConfig(api_key=OPENAI_KEY, default_model="gpt-4o"))
    if anthropic:
        pc.anthropic.CopyFrom(
            cpb.AnthropicConfig(api_key=ANTHROPIC_KEY, default_model="claude-sonnet-4-6")
        )
    if azure:
        pc.azure.CopyFrom(
            cpb.AzureOpenAIConfig(
                api_key=AZURE_KEY,
                endpoint=fake.azure_endpoint,
                deployment_name="gpt-4o",
                api_version="2024-02-15-preview",
            )
        )
    req = cpb.UpdateConfigRequest(provider_config=pc)
    if model_config:
        json_format.ParseDict({"model_config": model_config}, req)
    await stubs.config.UpdateConfig(req, metadata=auth(tenant))


async def complete(
    stubs, tenant: str, intent: str = "general_chat", *, timeout: float = 20, **kw
) -> ipb.CompleteResponse:
    kw.setdefault("messages", msgs())
    return await stubs.inference.Complete(
        ipb.CompleteRequest(intent=intent, **kw), metadata=auth(tenant), timeout=timeout
    )


async def failure(coro) -> object:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    return details_of(err.value)


async def test_precedence_azure_then_anthropic_then_openai(stubs, fake):
    await configure(stubs, "t", fake)
    r = await complete(stubs, "t")
    assert (r.usage.provider, r.usage.model, r.usage.mode) == ("azure", "gpt-4o", "byok")
    assert fake.last_request.provider == "azure"
    assert fake.last_request.deployment == "gpt-4o"
    assert fake.last_request.api_key == AZURE_KEY

    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            update_mask=field_mask_pb2.FieldMask(paths=["provider_config.azure"])
        ),
        metadata=auth("t"),
    )
    r = await complete(stubs, "t")
    assert (r.usage.provider, r.usage.model) == ("anthropic", "claude-sonnet-4-6")
    assert fake.last_request.api_key == ANTHROPIC_KEY

    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            update_mask=field_mask_pb2.FieldMask(paths=["provider_config.anthropic"])
        ),
        metadata=auth("t"),
    )
    r = await complete(stubs, "t")
    assert (r.usage.provider, r.usage.model) == ("openai", "gpt-4o")
    assert fake.last_request.api_key == OPENAI_KEY
    assert fake.last_request.model == "gpt-4o"


async def test_guide_overrides_route_mock_interview_to_anthropic(stubs, fake):
    await configure(
        stubs,
        "t",
        fake,
        strategy="cost-optimised",
        overrides={
            "resume_analysis": "gpt-4o",
            "general_chat": "gpt-4o-mini",
            "mock_interview": "claude-sonnet-4-6",
        },
        cost_limit_usd_per_request=0.05,
    )
    r = await complete(stubs, "t", "mock_interview")
    assert (r.usage.provider, r.usage.model) == ("anthropic", "claude-sonnet-4-6")
    assert fake.last_request.api_key == ANTHROPIC_KEY
    r = await complete(stubs, "t", "resume_analysis")
    assert (r.usage.provider, r.usage.model) == ("azure", "gpt-4o")
    r = await complete(stubs, "t", "general_chat")
    assert (r.usage.provider, r.usage.model) == ("azure", "gpt-4o-mini")
    assert fake.last_request.deployment == "gpt-4o-mini"


async def test_override_without_a_serving_provider_is_model_not_found(stubs, fake):
    await configure(
        stubs, "t", fake, anthropic=False, overrides={"mock_interview": "claude-sonnet-4-6"}
    )
    d = await failure(complete(stubs, "t", "mock_interview"))
    assert d.code == grpc.StatusCode.FAILED_PRECONDITION
    assert d.reason == "BYOK_MODEL_NOT_FOUND"
    assert "claude-sonnet-4-6" in d.message
    assert not fake.requests  # no silent fallback to another provider


async def test_strategies_pick_by_catalog(stubs, fake):
    await configure(stubs, "t", fake, azure=False, anthropic=False, strategy="cost-optimised")
    r = await complete(stubs, "t", "general_chat")  # tier 1: the cheapest OpenAI model
    assert r.usage.model == "gpt-4o-mini"
    r = await complete(stubs, "t", "mock_interview")  # tier 3: cheapest of the best
    assert r.usage.model == "gpt-4o"
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(strategy="quality-optimised")),
        metadata=auth("t"),
    )
    r = await complete(stubs, "t", "general_chat")
    assert CATALOG.model(r.usage.model).tier == 3


async def test_managed_mode_uses_the_platform_key_never_the_tenants(servers, fake):
    platform = "sk-" + "p" * 44 + "PLAT"
    _, s = await servers.start(LIYA_MANAGED_OPENAI_API_KEY=platform)
    await configure(s, "t", fake, azure=False, anthropic=False)
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="managed")),
        metadata=auth("t"),
    )
    r = await complete(s, "t")
    assert (r.usage.provider, r.usage.mode) == ("openai", "managed")
    assert {q.api_key for q in fake.requests} == {platform}


async def test_managed_mode_without_platform_credentials_is_not_configured(stubs, fake):
    d = await failure(complete(stubs, "fresh-tenant"))
    assert d.code == grpc.StatusCode.FAILED_PRECONDITION
    assert d.reason == "BYOK_NOT_CONFIGURED"


async def test_byok_without_keys_is_not_configured(stubs, fake):
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok")), metadata=auth("t")
    )
    d = await failure(complete(stubs, "t"))
    assert d.reason == "BYOK_NOT_CONFIGURED"
    assert not fake.requests


async def test_usage_cost_is_tokens_times_catalog_price(stubs, fake):
    await configure(stubs, "t", fake, azure=False, anthropic=False)
    r = await complete(stubs, "t")
    u = r.usage
    assert u.input_tokens > 0 and u.output_tokens > 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    price = CATALOG.model("gpt-4o")
    expected = (u.input_tokens * 2.50 + u.output_tokens * 10.00) / 1e6
    assert price.input_per_million == 2.50
    assert u.cost_usd == pytest.approx(expected, rel=1e-9)
    assert len(u.request_id) >= 8
    assert r.finish_reason == "stop" and r.message.role == "assistant" and r.message.content


async def test_cost_limit_lowers_unset_max_tokens(stubs, fake):
    # gpt-4o output costs $10/M: $0.001 buys at most 100 output tokens minus the prompt.
    await configure(
        stubs, "t", fake, azure=False, anthropic=False, cost_limit_usd_per_request=0.001
    )
    await complete(stubs, "t")
    prompt = estimate_prompt_tokens([Message(m.role, m.content) for m in msgs()])
    assert prompt == 25  # (6 + 4) + (8 + 4) + 3
    # (0.001 - 25 x $2.50/M) / ($10/M) = 93.75: the most whole tokens that fit.
    assert fake.last_request.body["max_completion_tokens"] == 93
    assert "max_tokens" not in fake.last_request.body


async def test_cost_limit_refuses_explicit_max_tokens_that_does_not_fit(stubs, fake):
    await configure(
        stubs, "t", fake, azure=False, anthropic=False, cost_limit_usd_per_request=0.001
    )
    d = await failure(complete(stubs, "t", max_tokens=4000))
    assert d.code == grpc.StatusCode.FAILED_PRECONDITION
    assert d.reason == "COST_LIMIT_EXCEEDED"
    assert float(d.metadata["estimate_usd"]) > float(d.metadata["limit_usd"]) == 0.001
    assert int(d.metadata["max_tokens_that_fit"]) < 100
    assert not fake.requests
    ok = await complete(stubs, "t", max_tokens=int(d.metadata["max_tokens_that_fit"]))
    assert ok.usage.cost_usd <= 0.001


@pytest.mark.parametrize("provider", ["openai", "anthropic", "azure"])
@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        ("auth", grpc.StatusCode.FAILED_PRECONDITION, "BYOK_AUTH_FAILED"),
        ("forbidden", grpc.StatusCode.FAILED_PRECONDITION, "BYOK_AUTH_FAILED"),
        ("not_found", grpc.StatusCode.FAILED_PRECONDITION, "BYOK_MODEL_NOT_FOUND"),
        ("rate_limit", grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED"),
        ("quota", grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED"),
        ("billing", grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED"),
        ("bad_request", grpc.StatusCode.INVALID_ARGUMENT, "PROVIDER_REJECTED_REQUEST"),
        ("server_error", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        ("overloaded", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        # Closed without an answer: the endpoint never answered.
        ("disconnect", grpc.StatusCode.UNAVAILABLE, "BYOK_ENDPOINT_UNREACHABLE"),
    ],
)
async def test_provider_failures_map_to_documented_reasons(
    stubs, fake, provider, kind, code, reason, caplog
):
    await configure(
        stubs,
        "t",
        fake,
        azure=provider == "azure",
        anthropic=provider == "anthropic",
        openai=provider == "openai",
    )
    fake.fail(provider, kind, times=None, retry_after=7)
    with caplog.at_level(logging.DEBUG):
        d = await failure(complete(stubs, "t"))
    assert (d.code, d.reason) == (code, reason), d
    assert d.error_infos == 1
    assert d.metadata["provider"] == provider
    assert d.metadata["model"]
    if kind == "rate_limit":
        assert d.retry_delay == pytest.approx(7)
    everything = d.message + repr(d.metadata) + caplog.text
    for key in (OPENAI_KEY, ANTHROPIC_KEY, AZURE_KEY):
        assert key not in everything
        assert key[-8:] not in everything


async def test_canary_key_never_in_error_text(stubs, fake, caplog):
    key = canary_key()
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(mode="byok", openai=cpb.OpenAIConfig(api_key=key))
        ),
        metadata=auth("t"),
    )
    fake.fail("openai", "auth", times=None)
    with caplog.at_level(logging.DEBUG):
        d = await failure(complete(stubs, "t"))
    assert d.reason == "BYOK_AUTH_FAILED"
    assert fake.last_request.api_key == key  # the fake echoed part of it back
    for text in (d.message, repr(d.metadata), caplog.text):
        assert "CANARY" not in text and key[-4:] not in text


async def test_unreachable_azure_endpoint(servers, fake):
    from liya_engine.fakes import bind_refused_port

    _, s = await servers.start()
    port = bind_refused_port()
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok",
                azure=cpb.AzureOpenAIConfig(
                    api_key=AZURE_KEY,
                    endpoint=f"http://127.0.0.1:{port}",
                    deployment_name="gpt-4o",
                    api_version="2024-02-15-preview",
                ),
            )
        ),
        metadata=auth("t"),
    )
    d = await failure(complete(s, "t"))
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "BYOK_ENDPOINT_UNREACHABLE")


async def test_our_own_upstream_timeout_is_endpoint_unreachable(servers, fake):
    _, s = await servers.start(LIYA_UPSTREAM_TIMEOUT_SECONDS="0.5")
    await configure(s, "t", fake, azure=False, anthropic=False)
    fake.fail("openai", "slow", delay=5)
    d = await failure(complete(s, "t", timeout=10))
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "BYOK_ENDPOINT_UNREACHABLE")


async def test_caller_deadline_cuts_the_provider_call_promptly(stubs, fake):
    await configure(stubs, "t", fake, azure=False, anthropic=False)
    fake.fail("openai", "slow", delay=5)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete(stubs, "t", timeout=0.7)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2
    await fake.wait_for(lambda f: f.last_request.client_disconnected, 3)


async def test_cancelling_the_call_cancels_the_provider_request(stubs, fake):
    await configure(stubs, "t", fake, azure=False, anthropic=False)
    fake.fail("openai", "slow", delay=5)
    call = stubs.inference.Complete(
        ipb.CompleteRequest(intent="general_chat", messages=msgs()), metadata=auth("t")
    )
    await fake.wait_for(lambda f: len(f.requests) == 1)
    call.cancel()
    await fake.wait_for(lambda f: f.last_request.client_disconnected, 3)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "azure"])
async def test_stream_yields_deltas_then_usage(stubs, fake, provider):
    await configure(
        stubs,
        "t",
        fake,
        azure=provider == "azure",
        anthropic=provider == "anthropic",
        openai=provider == "openai",
    )
    pieces = [
        p
        async for p in stubs.inference.CompleteStream(
            ipb.CompleteStreamRequest(intent="general_chat", messages=msgs()), metadata=auth("t")
        )
    ]
    assert len(pieces) >= 3
    assert all(not p.HasField("usage") for p in pieces[:-1])
    last = pieces[-1]
    assert last.usage.provider == provider and last.usage.output_tokens > 0
    assert last.finish_reason == "stop"
    text = "".join(p.delta for p in pieces)
    plain = await complete(stubs, "t")
    assert text == plain.message.content


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_stream_cut_mid_way_ends_with_non_ok_status(stubs, fake, provider):
    await configure(
        stubs,
        "t",
        fake,
        azure=False,
        anthropic=provider == "anthropic",
        openai=provider == "openai",
    )
    fake.fail(provider, "stream_cut", after=3)
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for p in stubs.inference.CompleteStream(
            ipb.CompleteStreamRequest(intent="general_chat", messages=msgs()), metadata=auth("t")
        ):
            got.append(p)
    d = details_of(err.value)
    # The provider was reached and failed mid-answer: a retry is the fix.
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
    assert "dropped in the middle of the answer" in d.message
    assert not any(p.HasField("usage") for p in got)


async def test_stream_cancel_stops_upstream(stubs, fake):
    await configure(stubs, "t", fake, azure=False, anthropic=False)
    fake.fail("openai", "slow_stream", chunk_delay=0.5)
    call = stubs.inference.CompleteStream(
        ipb.CompleteStreamRequest(intent="general_chat", messages=msgs("a b c d e f g h")),
        metadata=auth("t"),
    )
    first = await call.read()
    assert first.delta
    call.cancel()
    await fake.wait_for(lambda f: f.last_request.client_disconnected, 5)


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        ({"intent": "astrology"}, "intent"),
        ({"messages": []}, "messages"),
        ({"messages": [ipb.ChatMessage(role="wizard", content="hi")]}, "messages[0].role"),
        ({"messages": [ipb.ChatMessage(role="user", content="  ")]}, "messages[0].content"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10_000_000}, "max_tokens"),
        ({"temperature": 3.5}, "temperature"),
        ({"messages": [ipb.ChatMessage(role="user", content="x" * 1_100_000)]}, "messages"),
    ],
)
async def test_bad_requests_are_invalid_argument(servers, fake, request_kw, field):
    _, s = await servers.start(LIYA_MAX_RECEIVE_MESSAGE_BYTES=str(8 * 1024 * 1024))
    await configure(s, "t", fake, azure=False, anthropic=False)
    kw = {"intent": "general_chat", "messages": msgs(), **request_kw}
    d = await failure(s.inference.Complete(ipb.CompleteRequest(**kw), metadata=auth("t")))
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert field in [v[0] for v in d.violations]
    assert not fake.requests


async def test_verify_config_answers_ok_or_the_same_reasons(stubs, fake):
    await configure(stubs, "t", fake)
    ok = await stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth("t"))
    assert (ok.provider, ok.model, ok.mode) == ("azure", "gpt-4o", "byok")
    # Azure before API version 2024-09-01 takes max_tokens, not max_completion_tokens.
    assert fake.last_request.body["max_tokens"] == 1
    assert "max_completion_tokens" not in fake.last_request.body
    fake.fail("azure", "auth")
    d = await failure(stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth("t")))
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BYOK_AUTH_FAILED")
    ok = await stubs.config.VerifyConfig(
        cpb.VerifyConfigRequest(intent="mock_interview"), metadata=auth("t")
    )
    assert ok.provider == "azure"


async def test_warm_calls_need_no_database(stubs, fake, servers):
    """A cached tenant keeps serving even while a config read would fail."""
    await configure(stubs, "t", fake, azure=False, anthropic=False)
    await complete(stubs, "t")
    running = servers.running[0][0]
    reads = 0

    async def failing(tenant_id):
        nonlocal reads
        reads += 1
        raise StorageUnavailable("the configuration database is unavailable; retry shortly")

    running.services.configs.get = failing
    for _ in range(5):
        r = await complete(stubs, "t")
        assert (r.usage.provider, r.finish_reason) == ("openai", "stop")
    assert reads == 0
    # A tenant that is not cached needs the read, and it does fail.
    d = await failure(complete(stubs, "uncached"))
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")
    assert reads == 1


async def test_verify_without_intent_uses_the_default_model(stubs, fake):
    await configure(
        stubs,
        "t",
        fake,
        azure=False,
        anthropic=False,
        strategy="cost-optimised",
        overrides={"general_chat": "gpt-4o-mini"},
    )
    ok = await stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth("t"))
    assert (ok.provider, ok.model) == ("openai", "gpt-4o")
    ok = await stubs.config.VerifyConfig(
        cpb.VerifyConfigRequest(intent="general_chat"), metadata=auth("t")
    )
    assert ok.model == "gpt-4o-mini"


async def test_a_stored_endpoint_no_longer_allowed_gets_no_key(servers, fake):
    """Saved while loopback http was allowed; the operator turned that off since."""
    _, dev = await servers.start()
    await configure(dev, "t", fake, openai=False, anthropic=False)
    _, prod = await servers.start(LIYA_ALLOW_INSECURE_ENDPOINTS="false")
    d = await failure(complete(prod, "t"))
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "BYOK_ENDPOINT_UNREACHABLE")
    assert "provider_config.azure.endpoint" in d.message
    assert not fake.requests


async def test_an_update_during_a_cache_fill_is_not_lost(servers, fake):
    """A cache miss that read the old config must not put it back after an update."""
    running, s = await servers.start(LIYA_CONFIG_CACHE_TTL_SECONDS="60")
    await configure(s, "t", fake, azure=False, anthropic=False)
    configs = running.services.configs
    original = configs.get
    gate = asyncio.Event()

    async def slow_get(tenant_id):
        found = await original(tenant_id)
        await gate.wait()  # the update lands while this stale read is in flight
        return found

    running.services.tenants.clear()
    configs.get = slow_get
    stale_read = asyncio.ensure_future(running.services.tenants.get("t"))
    await asyncio.sleep(0.05)
    configs.get = original
    new_key = "sk-" + "n" * 44 + "NEW1"
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(api_key=new_key))
        ),
        metadata=auth("t"),
    )
    gate.set()
    await stale_read
    await complete(s, "t")
    assert fake.last_request.api_key == new_key
