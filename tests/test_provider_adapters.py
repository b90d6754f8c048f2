"""Provider adapters through the real OpenAI/Anthropic SDKs against the fake providers.

Covers answers and usage, every failure kind mapped to the error tree, keys
never reaching messages, timeouts and cancellation reaching the upstream
connection, stream cuts, early close, and SDK client reuse.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from liya_engine.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRejectedRequest,
    ProviderTimedOut,
    ProviderUnavailable,
    ProviderUnreachable,
    UpstreamPoolBusy,
)
from liya_engine.fakes import (
    FakeProviders,
    answer_words,
    bind_refused_port,
    count_prompt_tokens,
)
from liya_engine.inference.estimate import estimate_prompt_tokens, estimate_text_tokens
from liya_engine.providers.anthropic_adapter import AnthropicAdapter
from liya_engine.providers.azure_adapter import AzureOpenAIAdapter
from liya_engine.providers.base import (
    Credentials,
    Message,
    ProviderRequest,
    StreamDelta,
    StreamEnd,
)
from liya_engine.providers.classify import classify_error
from liya_engine.providers.openai_adapter import OpenAIAdapter
from liya_engine.providers.sdk_clients import NO_TENANT_KEY, PooledAdapter
from liya_engine.providers.upstream import wait_hint as parse_retry_after
from liya_engine.secret import Secret

# Distinctive canary keys: no 6-character run of them may ever show up in an error.
KEYS = {
    "openai": "sk-proj-Qz7Xw9Lk2Vb8Nm4Rt6Yp1Cs3Df5Gh0JkWu2Ea",
    "anthropic": "sk-ant-api03-Hb5Tn8Pq1Zr4Lc7Vx2Md9Ks6Wf3Jg0Ye",
    "azure": "0ddba11cafe5eed0ddba11cafe5eed42",
}
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-6", "azure": "prod-gpt4o"}
# What each provider's answer says served the call: OpenAI and Anthropic name
# the dated snapshot, Azure the model behind the deployment.
SERVED = {
    "openai": "gpt-4o-2024-08-06",
    "anthropic": "claude-sonnet-4-6-20260101",
    "azure": "gpt-4o-2024-08-06",
}
PROVIDERS = ("openai", "anthropic", "azure")
AZURE_VERSION = "2024-10-21"
USER_TEXT = "Please review my resume for a senior backend engineering role"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with FakeProviders.start() as running:
        yield running


@pytest.fixture
async def adapters() -> AsyncIterator[dict[str, PooledAdapter]]:
    made: dict[str, PooledAdapter] = {
        "openai": OpenAIAdapter(),
        "anthropic": AnthropicAdapter(),
        "azure": AzureOpenAIAdapter(),
    }
    yield made
    for adapter in made.values():
        await adapter.aclose()


def creds_for(
    fake: FakeProviders,
    provider: str,
    *,
    key: str | None = None,
    api_version: str = AZURE_VERSION,
    base_url: str | None = None,
) -> Credentials:
    default_base = {
        "openai": fake.openai_base_url,
        "anthropic": fake.anthropic_base_url,
        "azure": fake.azure_endpoint,
    }[provider]
    return Credentials(
        provider=provider,  # type: ignore[arg-type]
        api_key=Secret(key or KEYS[provider]),
        base_url=base_url or default_base,
        api_version=api_version if provider == "azure" else None,
    )


def make_request(
    provider: str,
    *,
    text: str = USER_TEXT,
    system: str | None = "You are a careful career coach.",
    max_tokens: int = 64,
    timeout: float = 5.0,
    temperature: float | None = None,
    model: str | None = None,
) -> ProviderRequest:
    messages = [Message("user", text)]
    if system:
        messages.insert(0, Message("system", system))
    return ProviderRequest(
        model=model or MODELS[provider],
        messages=tuple(messages),
        max_tokens=max_tokens,
        timeout=timeout,
        temperature=temperature,
    )


def expected_usage(request: ProviderRequest) -> tuple[str, int, int]:
    wire = [{"role": m.role, "content": m.content} for m in request.messages]
    words = answer_words(wire)[: request.max_tokens]
    return " ".join(words), count_prompt_tokens(wire), len(words)


async def collect(adapter: PooledAdapter, creds: Credentials, request: ProviderRequest) -> list:
    return [event async for event in adapter.stream(creds, request)]


def assert_key_absent(exc: ProviderError, key: str) -> None:
    texts = [str(exc), repr(exc), exc.message, *exc.metadata.keys(), *exc.metadata.values()]
    for text in texts:
        for start in range(len(key) - 5):
            fragment = key[start : start + 6]
            assert fragment not in text, f"key fragment {fragment!r} leaked into {text!r}"
    # Nothing chained either: the SDK exception holds the request and its headers.
    assert exc.__cause__ is None
    assert exc.__context__ is None


# ------------------------------------------------------------------ answers


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_complete_answers_with_usage(fake, adapters, provider):
    request = make_request(provider)
    result = await adapters[provider].complete(creds_for(fake, provider), request)

    text, prompt_tokens, output_tokens = expected_usage(request)
    assert result.text == text
    assert result.finish_reason == "stop"
    assert (result.input_tokens, result.output_tokens) == (prompt_tokens, output_tokens)
    assert result.model == SERVED[provider]
    seen = fake.last_request
    assert seen.provider == provider
    assert seen.api_key == KEYS[provider]
    assert seen.model == MODELS[provider]
    assert not seen.stream


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_yields_deltas_then_usage(fake, adapters, provider):
    request = make_request(provider)
    events = await collect(adapters[provider], creds_for(fake, provider), request)

    text, prompt_tokens, output_tokens = expected_usage(request)
    assert all(isinstance(e, StreamDelta) for e in events[:-1])
    assert len(events) > 3
    assert "".join(e.text for e in events[:-1]) == text
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end == StreamEnd("stop", prompt_tokens, output_tokens, SERVED[provider])
    assert fake.last_request.stream
    assert fake.last_request.completed


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_max_tokens_truncation_is_length(fake, adapters, provider):
    request = make_request(provider, max_tokens=3)
    result = await adapters[provider].complete(creds_for(fake, provider), request)
    assert result.finish_reason == "length"
    assert result.output_tokens == 3

    events = await collect(adapters[provider], creds_for(fake, provider), request)
    assert events[-1].finish_reason == "length"
    assert events[-1].output_tokens == 3


async def test_openai_wire_request(fake, adapters):
    request = make_request("openai", temperature=0.2)
    await adapters["openai"].complete(creds_for(fake, "openai"), request)
    seen = fake.last_request
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {KEYS['openai']}"
    assert seen.body["max_completion_tokens"] == 64
    assert "max_tokens" not in seen.body
    assert seen.body["temperature"] == 0.2
    assert seen.body["messages"][0] == {"role": "system", "content": request.messages[0].content}

    await collect(adapters["openai"], creds_for(fake, "openai"), request)
    assert fake.last_request.body["stream_options"] == {"include_usage": True}


async def test_anthropic_system_goes_to_system_parameter(fake, adapters):
    request = ProviderRequest(
        model="claude-haiku-4-5",
        messages=(
            Message("system", "Be brief."),
            Message("user", "First question"),
            Message("assistant", "First answer"),
            Message("system", "Use British spelling."),
            Message("user", "Second question"),
        ),
        max_tokens=50,
        timeout=5.0,
        temperature=0.5,
    )
    await adapters["anthropic"].complete(creds_for(fake, "anthropic"), request)
    body = fake.last_request.body
    assert body["system"] == "Be brief.\n\nUse British spelling."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.5
    assert fake.last_request.headers.get("anthropic-version")


async def test_azure_wire_request(fake, adapters):
    fake.set_deployments({"my-deployment": "gpt-4o-mini-2024-07-18"})
    request = make_request("azure", model="my-deployment")
    result = await adapters["azure"].complete(creds_for(fake, "azure"), request)
    seen = fake.last_request
    assert seen.path == "/openai/deployments/my-deployment/chat/completions"
    assert seen.query["api-version"] == AZURE_VERSION
    assert seen.headers["api-key"] == KEYS["azure"]
    assert "Authorization" not in seen.headers
    assert seen.deployment == "my-deployment"
    # The answer names the model behind the deployment, as Azure's do.
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert seen.body["max_completion_tokens"] == 64


async def test_each_azure_call_goes_to_its_own_deployment_and_version(fake, adapters):
    # The clients and the shared pool keep the URLs they parsed: calls to
    # other deployments and API versions on the same endpoint, in turns, must
    # each still reach their own path and carry their own version.
    fake.set_deployments({"dep-a": "gpt-4o-mini-2024-07-18", "dep-b": "gpt-4o-2024-08-06"})
    turns = [("dep-a", AZURE_VERSION), ("dep-b", AZURE_VERSION), ("dep-a", "2025-01-01")] * 2
    for deployment, version in turns:
        request = make_request("azure", model=deployment)
        creds = creds_for(fake, "azure", api_version=version)
        if deployment == "dep-b":
            async for _event in adapters["azure"].stream(creds, request):
                pass
        else:
            await adapters["azure"].complete(creds, request)
        seen = fake.last_request
        assert seen.path == f"/openai/deployments/{deployment}/chat/completions"
        assert seen.query["api-version"] == version
        assert seen.deployment == deployment


async def test_azure_old_api_version_streams_with_estimated_usage(fake, adapters):
    creds = creds_for(fake, "azure", api_version="2024-02-15-preview")
    request = make_request("azure")
    events = await collect(adapters["azure"], creds, request)
    body = fake.last_request.body
    assert "stream_options" not in body
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body
    end = events[-1]
    assert isinstance(end, StreamEnd)
    # No usage in the stream: the service's one estimate stands in for it.
    text = "".join(e.text for e in events[:-1])
    assert text
    assert end.input_tokens == estimate_prompt_tokens(request.messages)
    assert end.output_tokens == estimate_text_tokens(len(text))


# ------------------------------------------------------------------ failures

STATUS = {  # kind -> (error class, upstream status per provider)
    "auth": (ProviderAuthFailed, {"openai": 401, "anthropic": 401, "azure": 401}),
    "forbidden": (ProviderAuthFailed, {"openai": 403, "anthropic": 403, "azure": 403}),
    "not_found": (ProviderModelNotFound, {"openai": 404, "anthropic": 404, "azure": 404}),
    "quota": (ProviderQuotaExceeded, {"openai": 429, "anthropic": 400, "azure": 429}),
    "billing": (ProviderQuotaExceeded, {"openai": 400, "anthropic": 400, "azure": 400}),
    "quota_403": (ProviderQuotaExceeded, {"openai": 403, "anthropic": 403, "azure": 403}),
    "bad_request": (ProviderRejectedRequest, {"openai": 400, "anthropic": 400, "azure": 400}),
    "server_error": (ProviderUnavailable, {"openai": 500, "anthropic": 500, "azure": 500}),
    "unavailable": (ProviderUnavailable, {"openai": 503, "anthropic": 503, "azure": 503}),
    "overloaded": (ProviderUnavailable, {"openai": 503, "anthropic": 529, "azure": 503}),
    "redirect": (ProviderUnreachable, {"openai": 307, "anthropic": 307, "azure": 307}),
    "disconnect": (ProviderUnreachable, {"openai": None, "anthropic": None, "azure": None}),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", sorted(STATUS))
async def test_failure_kinds_map_to_error_tree(fake, adapters, provider, kind):
    error_class, statuses = STATUS[kind]
    fake.fail(provider, kind)
    with pytest.raises(error_class) as caught:
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))

    exc = caught.value
    assert type(exc) is error_class
    assert exc.upstream_status == statuses[provider]
    assert exc.provider == provider
    assert exc.metadata["provider"] == provider
    assert exc.metadata["model"] == MODELS[provider]
    if statuses[provider] is not None:
        assert exc.metadata["upstream_status"] == str(statuses[provider])
    if kind in ("quota", "billing", "quota_403"):
        assert exc.retry_after is None
        assert exc.metadata["quota_kind"] == "billing"
        assert "billing" in exc.message
    assert_key_absent(exc, KEYS[provider])
    assert len(fake.requests) == 1  # no SDK retries, no redirect followed


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ["auth", "rate_limit", "not_found", "overloaded"])
async def test_failure_before_stream_starts_raises_from_iterator(fake, adapters, provider, kind):
    fake.fail(provider, kind)
    stream = adapters[provider].stream(creds_for(fake, provider), make_request(provider))
    with pytest.raises(ProviderError) as caught:
        await stream.__anext__()
    assert_key_absent(caught.value, KEYS[provider])
    assert (
        type(caught.value)
        is {
            "auth": ProviderAuthFailed,
            "rate_limit": ProviderQuotaExceeded,
            "not_found": ProviderModelNotFound,
            "overloaded": ProviderUnavailable,
        }[kind]
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rate_limit_carries_retry_after(fake, adapters, provider):
    fake.fail(provider, "rate_limit", retry_after=7)
    with pytest.raises(ProviderQuotaExceeded) as caught:
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    assert caught.value.upstream_status == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.metadata["quota_kind"] == "rate_limit"
    assert "retry after 7 s" in caught.value.message

    # retry-after-ms is more precise and wins.
    fake.fail(provider, "rate_limit", retry_after=7, retry_after_ms=1500)
    with pytest.raises(ProviderQuotaExceeded) as caught:
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    assert caught.value.retry_after == 1.5


async def test_rate_limit_advice_mentioning_billing_stays_a_rate_limit(fake, adapters):
    advice = (
        "Rate limit reached for gpt-4o on requests per day (RPD): Limit 200, Used 200. "
        "You can increase your rate limit by adding a payment method to your account at "
        "https://platform.openai.com/account/billing."
    )
    fake.fail("openai", "rate_limit", retry_after=20, message=advice)
    with pytest.raises(ProviderQuotaExceeded) as caught:
        await adapters["openai"].complete(creds_for(fake, "openai"), make_request("openai"))
    assert caught.value.metadata["quota_kind"] == "rate_limit"
    assert caught.value.retry_after == 20.0


async def test_auth_messages_say_what_to_fix_and_scrub_echoed_keys(fake, adapters):
    fake.fail("openai", "auth")
    with pytest.raises(ProviderAuthFailed) as caught:
        await adapters["openai"].complete(creds_for(fake, "openai"), make_request("openai"))
    message = caught.value.message
    assert message.startswith("OpenAI rejected the stored API key (401): check the key in")
    assert "update it" in message
    # The real OpenAI body echoes a masked key; it is kept only as [REDACTED].
    assert "Incorrect API key provided: [REDACTED]" in message
    assert "*" not in message

    fake.fail("azure", "auth")
    with pytest.raises(ProviderAuthFailed) as caught:
        await adapters["azure"].complete(creds_for(fake, "azure"), make_request("azure"))
    assert "Azure portal" in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "echo",
    [
        "Invalid key {key}",
        "Key {masked_key} was revoked",
        "key prefix mismatch near '{key}'; please rotate",
    ],
)
async def test_provider_text_echoing_the_key_is_scrubbed(fake, adapters, provider, echo):
    fake.fail(provider, "bad_request", message=echo)
    with pytest.raises(ProviderRejectedRequest) as caught:
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    assert_key_absent(caught.value, KEYS[provider])
    # OpenAI's masking shows the first 8 characters: for a key with no public
    # prefix (Azure's), those are 8 characters of the secret.
    if "{key}" in echo or provider == "azure":
        # A text that shows a run of the key is withheld as a whole.
        assert "answer is not shown: it contained key material." in caught.value.message
        assert "rotate" not in caught.value.message
    else:
        # A masked key shows no run of the secret: only its shape is replaced.
        assert "Key [REDACTED] was revoked" in caught.value.message


async def test_wrong_key_and_unknown_deployment(fake, adapters):
    fake.set_keys("openai", ["sk-proj-the-right-one-000000000000"])
    with pytest.raises(ProviderAuthFailed):
        await adapters["openai"].complete(creds_for(fake, "openai"), make_request("openai"))

    fake.set_models("azure", ["prod-gpt4o"])
    request = make_request("azure", model="prod-gpt4o-typo")
    with pytest.raises(ProviderModelNotFound) as caught:
        await adapters["azure"].complete(creds_for(fake, "azure"), request)
    assert "deployment 'prod-gpt4o-typo'" in caught.value.message
    assert "deployment_name" in caught.value.message
    assert "DeploymentNotFound" == caught.value.metadata["upstream_error_code"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_redirect_is_not_followed(fake, adapters, provider):
    fake.fail(provider, "redirect", location=f"{fake.base_url}/v1/chat/completions")
    with pytest.raises(ProviderUnreachable) as caught:
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    assert caught.type is ProviderUnreachable
    assert caught.value.upstream_status == 307
    assert "redirect" in caught.value.message
    assert len(fake.requests) == 1


# ------------------------------------------------- timeouts and transport


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_timeout_is_prompt_and_drops_the_upstream_request(fake, adapters, provider):
    fake.fail(provider, "slow", delay=10)
    started = time.monotonic()
    with pytest.raises(ProviderTimedOut) as caught:
        await adapters[provider].complete(
            creds_for(fake, provider), make_request(provider, timeout=0.4)
        )
    assert time.monotonic() - started < 2.0
    assert "0.4 s" in caught.value.message
    assert caught.value.upstream_status is None
    assert_key_absent(caught.value, KEYS[provider])
    await fake.wait_for(lambda f: f.last_request.client_disconnected, within=3)
    assert not fake.last_request.completed


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_timeout_covers_the_whole_stream(fake, adapters, provider):
    fake.fail(provider, "slow_stream", chunk_delay=0.3)
    received: list = []
    started = time.monotonic()
    with pytest.raises(ProviderTimedOut):
        async for event in adapters[provider].stream(
            creds_for(fake, provider), make_request(provider, timeout=1.5)
        ):
            received.append(event)
    assert time.monotonic() - started < 3.0
    assert received  # some deltas arrived before the budget ran out
    await fake.wait_for(lambda f: f.last_request.client_disconnected, within=3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_stream_budget_never_interrupts_the_consumer(fake, adapters, provider):
    # The budget runs out while the consumer holds a delta (at the stream's
    # yield): the consumer's own await is not cancelled; the stream's next
    # read ends it with ProviderTimedOut.
    fake.fail(provider, "slow_stream", chunk_delay=0.05)
    stream = adapters[provider].stream(
        creds_for(fake, provider), make_request(provider, timeout=0.5)
    )
    first = await anext(stream)
    assert isinstance(first, StreamDelta)
    await asyncio.sleep(0.8)  # past the budget, in the consumer's hands
    with pytest.raises(ProviderTimedOut):
        async for _ in stream:
            pass
    await fake.wait_for(lambda f: f.last_request.client_disconnected, within=3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancelled_call_cancels_the_provider_request(fake, adapters, provider):
    fake.fail(provider, "slow", delay=10)
    task = asyncio.create_task(
        adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    )
    await fake.wait_for(lambda f: len(f.requests) == 1, within=3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake.wait_for(lambda f: f.last_request.client_disconnected, within=3)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_connection_refused_is_unreachable(fake, adapters, provider):
    port = bind_refused_port()
    base = f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
    creds = creds_for(fake, provider, base_url=base)
    with pytest.raises(ProviderUnreachable) as caught:
        await adapters[provider].complete(creds, make_request(provider))
    assert type(caught.value) is ProviderUnreachable
    assert "refused" in caught.value.message
    assert f"127.0.0.1:{port}" in caught.value.message
    assert_key_absent(caught.value, KEYS[provider])

    with pytest.raises(ProviderUnreachable) as streamed:
        await collect(adapters[provider], creds, make_request(provider))
    assert streamed.type is ProviderUnreachable
    assert "refused" in streamed.value.message


async def test_unresolvable_host_is_unreachable(fake, adapters):
    creds = creds_for(fake, "azure", base_url="http://no-such-resource.invalid")
    with pytest.raises(ProviderUnreachable) as caught:
        await adapters["azure"].complete(creds, make_request("azure", timeout=3.0))
    assert caught.type is ProviderUnreachable
    assert "the host name does not resolve" in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_cut_raises_unavailable_from_the_iterator(fake, adapters, provider):
    fake.fail(provider, "stream_cut", after=4)
    received: list = []
    with pytest.raises(ProviderUnavailable) as caught:
        async for event in adapters[provider].stream(
            creds_for(fake, provider), make_request(provider)
        ):
            received.append(event)
    assert received and all(isinstance(e, StreamDelta) for e in received)
    assert "dropped in the middle of the answer" in caught.value.message
    assert_key_absent(caught.value, KEYS[provider])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_plain_answer_cut_short_is_unavailable(fake, adapters, provider):
    fake.fail(provider, "stream_cut")
    with pytest.raises(ProviderUnavailable):
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_error_event_inside_stream_is_unavailable(fake, adapters, provider):
    fake.fail(provider, "stream_error", after=4)
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(adapters[provider], creds_for(fake, provider), make_request(provider))
    assert caught.value.upstream_status is None
    assert_key_absent(caught.value, KEYS[provider])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_ending_without_final_event_is_unavailable(fake, adapters, provider):
    fake.fail(provider, "stream_end_early", after=4)
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(adapters[provider], creds_for(fake, provider), make_request(provider))
    assert "ended before it was complete" in caught.value.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_non_completion_answer_is_unavailable(fake, adapters, provider):
    fake.fail(provider, "garbage")
    with pytest.raises(ProviderUnavailable):
        await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    fake.fail(provider, "garbage")
    with pytest.raises(ProviderUnavailable):
        await collect(adapters[provider], creds_for(fake, provider), make_request(provider))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_closing_the_stream_early_closes_upstream(fake, adapters, provider):
    fake.fail(provider, "slow_stream", chunk_delay=0.2)
    stream = adapters[provider].stream(creds_for(fake, provider), make_request(provider))
    first = await stream.__anext__()
    assert isinstance(first, StreamDelta)
    await stream.aclose()
    await fake.wait_for(lambda f: f.last_request.client_disconnected, within=3)
    assert not fake.last_request.completed


# ------------------------------------------------------------- client reuse


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sdk_clients_are_shared_per_endpoint_and_hold_no_key(fake, adapters, provider):
    adapter = adapters[provider]
    first = adapter.client_for(creds_for(fake, provider))
    other_key = adapter.client_for(creds_for(fake, provider, key=KEYS[provider][::-1]))
    other_url = adapter.client_for(creds_for(fake, provider, base_url="http://127.0.0.2:1"))
    assert other_key is first
    assert other_url is not first
    if provider == "azure":
        assert adapter.client_for(creds_for(fake, provider, api_version="2025-01-01")) is not first
    for client in (first, other_url):
        assert client._client is adapter.http_client
        assert client.max_retries == 0
        assert client.api_key == NO_TENANT_KEY
    assert adapter.http_client.follow_redirects is False

    # After calls with a key, plain and streamed, nothing reachable from the
    # shared client (its pool included) holds any part of it.
    await adapter.complete(creds_for(fake, provider), make_request(provider))
    async for _event in adapter.stream(creds_for(fake, provider), make_request(provider)):
        pass
    assert fake.last_request.api_key == KEYS[provider]
    found = _strings_reachable_from(first, containing=KEYS[provider][-12:])
    assert found == []


def _strings_reachable_from(root: object, *, containing: str, depth: int = 6) -> list[str]:
    """Strings and bytes within ``depth`` references of ``root`` that contain
    ``containing``; modules, classes and functions are not followed."""
    needle = containing.encode()
    seen: set[int] = set()
    found: list[str] = []
    layer = [root]
    for _ in range(depth):
        following = []
        for item in layer:
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, str):
                if containing in item:
                    found.append(item[:40])
                continue
            if isinstance(item, (bytes, bytearray)):
                if needle in item:
                    found.append(repr(item[:40]))
                continue
            if isinstance(item, (type, types.ModuleType, types.FunctionType)):
                continue
            following.extend(gc.get_referents(item))
        layer = following
    return found


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_call_carries_its_own_tenants_key(fake, adapters, provider):
    # Many tenants at once through one shared SDK client, plain and streamed:
    # every request reaches the provider with its own key and nothing else.
    keys = [f"{KEYS[provider][:-8]}{i:08d}" for i in range(12)]

    async def one(key: str, streamed: bool) -> None:
        creds = creds_for(fake, provider, key=key)
        request = make_request(provider, text=f"{USER_TEXT} [{key[-8:]}]")
        if streamed:
            async for _event in adapters[provider].stream(creds, request):
                pass
        else:
            await adapters[provider].complete(creds, request)

    await asyncio.gather(*(one(key, i % 2 == 1) for i, key in enumerate(keys)))

    seen = fake.requests_for(provider)
    assert len(seen) == len(keys)
    for record in seen:
        text = json.dumps(record.body)
        key = next(k for k in keys if f"[{k[-8:]}]" in text)
        assert record.api_key == key
        values = " ".join(record.headers.values())
        assert NO_TENANT_KEY not in values
        assert [k for k in keys if k in values] == [key]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_read_timeout_is_announced_as_the_sdk_announces_it(fake, adapters, provider):
    # The SDKs tell the provider how long they wait for an answer
    # (X-Stainless-Read-Timeout, from the read timeout). The service sets no
    # read timeout of its own (the call's budget bounds every read), so it
    # sends the header itself, with the budget, on plain calls and streams.
    request = make_request(provider, timeout=7.5)
    await adapters[provider].complete(creds_for(fake, provider), request)
    plain = {k.lower(): v for k, v in fake.last_request.headers.items()}
    async for _event in adapters[provider].stream(creds_for(fake, provider), request):
        pass
    streamed = {k.lower(): v for k, v in fake.last_request.headers.items()}
    assert plain["x-stainless-read-timeout"] == "7.5"
    assert streamed["x-stainless-read-timeout"] == "7.5"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_key_travels_in_the_header_the_sdk_itself_uses(fake, adapters, provider):
    key = KEYS[provider]
    http = adapters[provider].http_client
    if provider == "anthropic":
        plain: Any = anthropic.AsyncAnthropic(
            api_key=key, base_url=fake.anthropic_base_url, http_client=http
        )
        await plain.messages.create(
            model=MODELS[provider], max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    else:
        if provider == "azure":
            plain = openai.AsyncAzureOpenAI(
                api_key=key,
                azure_endpoint=fake.azure_endpoint,
                api_version=AZURE_VERSION,
                http_client=http,
            )
        else:
            plain = openai.AsyncOpenAI(api_key=key, base_url=fake.openai_base_url, http_client=http)
        await plain.chat.completions.create(
            model=MODELS[provider], max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    sdk_headers = {n.lower() for n, v in fake.last_request.headers.items() if key in v}

    await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
    ours = {n.lower() for n, v in fake.last_request.headers.items() if key in v}
    assert ours == sdk_headers
    assert len(ours) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_headers_from_the_sdks_environment_never_reach_a_provider(
    fake, adapters, provider, monkeypatch
):
    # Both SDKs add *_CUSTOM_HEADERS from the environment to every request; in
    # this process that would send the platform's headers with tenants' calls.
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-Platform-Secret: from-openai-env")
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Platform-Secret: from-anthropic-env")
    # (The adapters build their SDK clients on first use, so after this point.)
    adapter = adapters[provider]
    await adapter.complete(creds_for(fake, provider), make_request(provider))
    async for _event in adapter.stream(creds_for(fake, provider), make_request(provider)):
        pass
    for record in fake.requests_for(provider):
        assert record.api_key == KEYS[provider]
        assert "x-platform-secret" not in {name.lower() for name in record.headers}


async def test_client_cache_is_bounded(fake):
    adapter = AzureOpenAIAdapter(max_clients=2)
    try:
        hosts = [f"http://127.0.0.{i}:1" for i in (2, 3, 4)]
        first = adapter.client_for(creds_for(fake, "azure", base_url=hosts[0]))
        adapter.client_for(creds_for(fake, "azure", base_url=hosts[1]))
        adapter.client_for(creds_for(fake, "azure", base_url=hosts[2]))
        assert len(adapter._clients) == 2
        assert adapter.client_for(creds_for(fake, "azure", base_url=hosts[0])) is not first
    finally:
        await adapter.aclose()
    assert adapter.http_client.is_closed


async def test_wrong_provider_credentials_are_refused(fake, adapters):
    with pytest.raises(ValueError, match="anthropic credentials"):
        await adapters["openai"].complete(creds_for(fake, "anthropic"), make_request("openai"))


# ------------------------------------------------------------ fake control


async def test_fake_is_steerable_over_http(fake, adapters):
    async with httpx2.AsyncClient(base_url=fake.base_url) as http:
        answer = await http.post(
            "/_control/fail",
            json={"provider": "anthropic", "kind": "rate_limit", "times": 2, "retry_after": 3},
        )
        assert answer.status_code == 200
        for _ in range(2):
            with pytest.raises(ProviderQuotaExceeded):
                await adapters["anthropic"].complete(
                    creds_for(fake, "anthropic"), make_request("anthropic")
                )
        await adapters["anthropic"].complete(
            creds_for(fake, "anthropic"), make_request("anthropic")
        )

        recorded = (await http.get("/_control/requests", params={"provider": "anthropic"})).json()
        assert [r["status"] for r in recorded] == [429, 429, 200]
        assert recorded[0]["failure"] == "rate_limit"
        assert recorded[-1]["api_key"] == KEYS["anthropic"]

        assert (await http.post("/_control/fail", json={"kind": "nope"})).status_code == 400
        await http.post("/_control/fail", json={"provider": "all", "kind": "auth", "times": None})
        for provider in PROVIDERS:
            with pytest.raises(ProviderAuthFailed):
                await adapters[provider].complete(creds_for(fake, provider), make_request(provider))
        await http.post("/_control/reset")
        assert (await http.get("/_control/requests")).json() == []
        await adapters["openai"].complete(creds_for(fake, "openai"), make_request("openai"))


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"Retry-After-Ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": future}) <= 31


def _connection_error(sdk_error: type, cause: BaseException) -> BaseException:
    request = httpx2.Request("POST", "https://tenant.openai.azure.com/openai/deployments/d")
    exc = sdk_error(request=request)
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize("sdk_error", [openai.APIConnectionError, anthropic.APIConnectionError])
@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        (httpx2.ConnectError("[Errno -2] Name or service not known"), "does not resolve"),
        (
            httpx2.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            "TLS handshake failed",
        ),
        (httpx2.ConnectError("[Errno 111] Connection refused"), "refused"),
        (httpx2.ConnectTimeout("timed out"), "Could not connect"),
    ],
)
def test_transport_failures_say_what_failed(sdk_error, cause, reason):
    error = classify_error(
        _connection_error(sdk_error, cause),
        provider="azure",
        model="prod",
        secrets=[Secret(KEYS["azure"])],
        timeout=2.0,
        endpoint="https://user:pw@tenant.openai.azure.com/openai?x=1",
    )
    assert type(error) is ProviderUnreachable
    assert reason in error.message
    assert "user" not in error.message and "pw@" not in error.message


def test_connect_timeout_is_not_a_provider_answer_timeout():
    """The connect timeout is our own budget: never reported as the caller's deadline."""
    error = classify_error(
        openai.APITimeoutError(request=httpx2.Request("POST", "https://x.openai.azure.com")),
        provider="azure",
        model="prod",
        timeout=2.0,
    )
    # No answer within the call's own budget: the provider timed out.
    assert type(error) is ProviderTimedOut
    assert error.message.startswith("Azure OpenAI did not answer within 2 s: check that")
    connect = openai.APITimeoutError(request=httpx2.Request("POST", "https://x.openai.azure.com"))
    connect.__cause__ = httpx2.ConnectTimeout("timed out")
    assert type(classify_error(connect, provider="azure", model="prod")) is ProviderUnreachable
    pool = openai.APITimeoutError(request=httpx2.Request("POST", "https://api.openai.com"))
    pool.__cause__ = httpx2.PoolTimeout("no connection")
    error = classify_error(pool, provider="openai", model="gpt-4o")
    assert type(error) is UpstreamPoolBusy
    assert error.reason == "SERVER_OVERLOADED" and "busy" in error.message


def test_classify_leaves_bugs_alone():
    assert classify_error(KeyError("x"), provider="openai") is None


def test_fake_providers_command_serves_until_terminated(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"from liya_engine.fakes import main_forever; main_forever('127.0.0.1', {port})"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                answer = httpx2.get(f"http://127.0.0.1:{port}/_control/health", timeout=1)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "fake providers did not start"
                time.sleep(0.1)
        assert answer.json() == {"ok": True}
        httpx2.post(
            f"http://127.0.0.1:{port}/_control/fail",
            json={"provider": "openai", "kind": "auth"},
            timeout=2,
        ).raise_for_status()
        refused = httpx2.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer sk-test-key-000000"},
            timeout=2,
        )
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert f"http://127.0.0.1:{port}" in output
