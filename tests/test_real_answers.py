"""Provider error answers as the real APIs send them, through the real server.

Each shape (status, headers, body) comes from the fake providers' ``real_*``
kinds, asked for through their ``/_control/fail`` API; the server calls them
with the official SDKs. Each test checks what a caller relies on: the code and
reason, the RetryInfo wait (from whichever hint the provider sent), the
provider's request id kept verbatim, and a message that says what to do.
"""

from __future__ import annotations

import re

import aiohttp
import grpc
import pytest

from helpers import auth, details_of
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb

KEYS = {
    "openai": "sk-proj-Rw4Tq8Ln2Xc6Vb1Mz9Kd3Hf7",
    "anthropic": "sk-ant-api03-Jp5Ws2Ge8Ny4Qa7Lt1Ub6Zo3",
    "azure": "f3a9c1e7b5d20486f3a9c1e7b5d20486",
}
TENANT = "real-answers"
PROVIDERS = ("openai", "anthropic", "azure")


def provider_config(provider: str, fake) -> cpb.ProviderConfig:
    pc = cpb.ProviderConfig(mode="byok")
    if provider == "openai":
        pc.openai.CopyFrom(cpb.OpenAIConfig(api_key=KEYS["openai"], default_model="gpt-4o"))
    elif provider == "anthropic":
        pc.anthropic.CopyFrom(
            cpb.AnthropicConfig(api_key=KEYS["anthropic"], default_model="claude-sonnet-4-6")
        )
    else:
        pc.azure.CopyFrom(
            cpb.AzureOpenAIConfig(
                api_key=KEYS["azure"],
                endpoint=fake.azure_endpoint,
                deployment_name="gpt-4o",
                api_version="2024-10-21",
            )
        )
    return pc


@pytest.fixture
async def serving(servers, fake):
    """A server whose tenant uses one provider at a time: ``await use(provider)``."""
    _, stubs = await servers.start()

    async def use(provider: str):
        await stubs.config.UpdateConfig(
            cpb.UpdateConfigRequest(provider_config=provider_config(provider, fake)),
            metadata=auth(f"{TENANT}-{provider}"),
        )
        return stubs

    return use


async def control_fail(fake, provider: str, kind: str, **options) -> None:
    """Queue a failure through the fake's HTTP control API, as a person would."""
    async with aiohttp.ClientSession() as http:
        body = {"provider": provider, "kind": kind, "times": 1, **options}
        async with http.post(f"{fake.base_url}/_control/fail", json=body) as reply:
            assert (reply.status, await reply.json()) == (200, {"ok": True})


async def complete_failure(stubs, provider: str, rpc: str = "Complete"):
    md = auth(f"{TENANT}-{provider}")
    messages = [ipb.ChatMessage(role="user", content="Hello")]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        if rpc == "Complete":
            await stubs.inference.Complete(
                ipb.CompleteRequest(intent="general_chat", messages=messages), metadata=md
            )
        elif rpc == "CompleteStream":
            request = ipb.CompleteStreamRequest(intent="general_chat", messages=messages)
            async for _ in stubs.inference.CompleteStream(request, metadata=md):
                pass
        else:
            await stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=md)
    return details_of(err.value)


# ------------------------------------------------------------------ 429 waits


@pytest.mark.parametrize("rpc", ["Complete", "CompleteStream", "VerifyConfig"])
async def test_openai_429_waits_for_the_exhausted_limit_reset(serving, fake, rpc):
    stubs = await serving("openai")
    rid = "req_5f0c2a4b9e8d4c7fa1b2c3d4e5f60718"
    # Tokens are exhausted and reset in 6ms, as the message also says.
    await control_fail(fake, "openai", "real_rate_limit", headers={"x-request-id": rid})
    d = await complete_failure(stubs, "openai", rpc)
    assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED")
    assert d.retry_delay == pytest.approx(0.006)
    assert d.metadata["upstream_request_id"] == rid
    assert d.metadata["upstream_error_code"] == "rate_limit_exceeded"
    assert d.metadata["quota_kind"] == "rate_limit"
    assert d.message.startswith("OpenAI rate limit reached (429): retry after 0.006 s, or raise")
    assert "Please try again in 6ms." in d.message


async def test_openai_429_reset_header_comes_before_the_message(serving, fake):
    stubs = await serving("openai")
    await control_fail(
        fake, "openai", "real_rate_limit", headers={"x-ratelimit-reset-tokens": "6m0s"}
    )
    d = await complete_failure(stubs, "openai")
    assert d.retry_delay == pytest.approx(360)
    assert re.fullmatch(r"req_[0-9a-f]{32}", d.metadata["upstream_request_id"])


async def test_openai_429_without_an_exhausted_limit_uses_the_wait_in_the_message(serving, fake):
    stubs = await serving("openai")
    # The reset of a limit that is not exhausted says nothing about this call.
    await control_fail(
        fake,
        "openai",
        "real_rate_limit",
        headers={"x-ratelimit-remaining-tokens": "12", "x-ratelimit-reset-tokens": "6m0s"},
        message="Rate limit reached for gpt-4o on requests per min (RPM). Try again in 20s.",
    )
    d = await complete_failure(stubs, "openai")
    assert d.retry_delay == pytest.approx(20)


@pytest.mark.parametrize(
    ("omit", "wait"),
    [
        ([], 5.4),  # retry-after-ms first
        (["retry-after-ms"], 5.4),  # then x-ms-retry-after-ms
        (["retry-after-ms", "x-ms-retry-after-ms"], 6.0),  # then retry-after
        # then "Please retry after 6 seconds." in the message
        (["retry-after-ms", "x-ms-retry-after-ms", "retry-after"], 6.0),
    ],
)
async def test_azure_429_waits_in_the_documented_order(serving, fake, omit, wait):
    stubs = await serving("azure")
    rid = "9a2c1b3e-7f4d-4e8a-b5c6-0d1e2f3a4b5c"
    await control_fail(
        fake,
        "azure",
        "real_rate_limit",
        omit_headers=omit,
        headers={"apim-request-id": rid},
    )
    d = await complete_failure(stubs, "azure")
    assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED")
    assert d.retry_delay == pytest.approx(wait)
    assert d.metadata["upstream_request_id"] == rid
    assert rid in d.metadata.values()
    assert "Please retry after 6 seconds." in d.message


async def test_azure_request_id_from_x_ms_request_id_when_alone(serving, fake):
    stubs = await serving("azure")
    rid = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
    await control_fail(
        fake,
        "azure",
        "real_rate_limit",
        omit_headers=["apim-request-id"],
        headers={"x-ms-request-id": rid},
    )
    d = await complete_failure(stubs, "azure")
    assert d.metadata["upstream_request_id"] == rid


@pytest.mark.parametrize("rpc", ["Complete", "CompleteStream", "VerifyConfig"])
async def test_anthropic_429_retry_after_then_the_exhausted_limit_reset(serving, fake, rpc):
    stubs = await serving("anthropic")
    await control_fail(fake, "anthropic", "real_rate_limit", reset_in=30)
    d = await complete_failure(stubs, "anthropic", rpc)
    assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED")
    assert d.retry_delay == pytest.approx(30)  # retry-after
    assert re.fullmatch(r"req_011C[0-9A-Za-z]{20}", d.metadata["upstream_request_id"])
    assert d.metadata["upstream_error_code"] == "rate_limit_error"

    # Without retry-after: the reset time of the exhausted limit (input tokens).
    await control_fail(
        fake, "anthropic", "real_rate_limit", reset_in=30, omit_headers=["retry-after"]
    )
    d = await complete_failure(stubs, "anthropic", rpc)
    assert 28 <= d.retry_delay <= 30  # an RFC 3339 time, to the second


# ------------------------------------------------------ no wait can help


@pytest.mark.parametrize("provider", ["openai", "azure"])
async def test_a_request_larger_than_the_tpm_limit_says_what_to_do_not_to_wait(
    serving, fake, provider
):
    stubs = await serving(provider)
    await control_fail(fake, provider, "tpm_too_large")
    d = await complete_failure(stubs, provider)
    assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED")
    assert d.retry_delay is None
    assert "waiting does not help; shorten the messages or lower max_tokens" in d.message
    assert "retry" not in d.message.lower()
    assert d.metadata["upstream_error_code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_quota_and_billing_get_no_wait_and_point_at_billing(serving, fake, provider):
    stubs = await serving(provider)
    await control_fail(fake, provider, "real_quota")
    d = await complete_failure(stubs, provider)
    assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED")
    assert d.retry_delay is None
    assert d.metadata["quota_kind"] == "billing"
    assert "is out of quota or credit" in d.message and "check plan and billing" in d.message
    assert "retry" not in d.message.lower()
    assert d.metadata["upstream_request_id"]  # each provider's own id, kept
    assert "[REDACTED]" not in repr(d.metadata)


# ------------------------------------------------------------- region 403


@pytest.mark.parametrize(
    ("provider", "code", "said"),
    [
        (
            "openai",
            "unsupported_country_region_territory",
            "Country, region, or territory not supported",
        ),
        ("anthropic", "forbidden", "Request not allowed"),
    ],
)
async def test_a_region_403_says_the_key_may_be_fine(serving, fake, provider, code, said):
    stubs = await serving(provider)
    await control_fail(fake, provider, "region")
    d = await complete_failure(stubs, provider)
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BYOK_AUTH_FAILED")
    assert d.metadata["upstream_error_code"] == code
    assert d.metadata["upstream_status"] == "403"
    title = {"openai": "OpenAI", "anthropic": "Anthropic"}[provider]
    assert d.message == (
        f"{title} refuses requests from the region this service runs in (403): the key "
        f"itself may be fine; the service's operator must call {title} from a region it "
        f'supports. {title} said: "{said}"'
    )


# --------------------------------------------------------------- HTML pages


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_html_502_page_becomes_its_title(serving, fake, provider):
    stubs = await serving(provider)
    await control_fail(fake, provider, "html_502")
    d = await complete_failure(stubs, provider)
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
    assert d.metadata["upstream_status"] == "502"
    assert d.message.endswith('said: "502 Bad Gateway"')
    assert "<" not in d.message and ">" not in d.message


# ------------------------------------------------------------ the control API


async def test_the_control_api_refuses_a_shape_a_provider_never_sends(fake):
    async with aiohttp.ClientSession() as http:
        body = {"provider": "anthropic", "kind": "tpm_too_large"}
        async with http.post(f"{fake.base_url}/_control/fail", json=body) as reply:
            assert reply.status == 400
            assert "openai and azure only" in (await reply.json())["error"]


async def test_a_request_id_the_provider_put_in_its_message_stays_there(serving, fake):
    stubs = await serving("openai")
    rid = "req_8c1d2e3f4a5b46c7d8e9f0a1b2c3d4e5"
    said = (
        "The server had an error while processing your request. Sorry about that! You can "
        "retry your request, or contact us through our help center at help.openai.com if "
        f"the error persists. (Please include the request ID {rid} in your message.)"
    )
    await control_fail(fake, "openai", "server_error", message=said, headers={"x-request-id": rid})
    d = await complete_failure(stubs, "openai")
    assert (d.code, d.reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
    assert f"(Please include the request ID {rid} in your message.)" in d.message
    assert d.metadata["upstream_request_id"] == rid
