"""Provider answers that are not what the API promises: a 200 with wrong types,
out-of-range numbers, lone surrogates, absurd nesting, no JSON at all, or more
bytes than the service can send on. Each is PROVIDER_UNAVAILABLE, for plain and
streamed calls on every provider: never INTERNAL, never a traceback."""

from __future__ import annotations

import logging

import aiohttp
import grpc
import pytest

from helpers import auth, details_of, hello
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.fakes.malformed import SHAPES

KEYS = {
    "openai": "sk-proj-" + "h" * 40,
    "anthropic": "sk-ant-api03-" + "h" * 40,
    "azure": "0123456789abcdef" * 2,
}


async def configure_one(s, tenant: str, provider: str, fake) -> None:
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
                api_version="2024-10-21",  # streams carry usage from 2024-08-01
            )
        )
    await s.config.UpdateConfig(cpb.UpdateConfigRequest(provider_config=pc), metadata=auth(tenant))


async def outcome(s, tenant: str, streamed: bool) -> tuple[grpc.StatusCode, str, str]:
    """(code, reason, message) of one call; OK with empty strings when it succeeded."""
    try:
        if streamed:
            async for _ in s.inference.CompleteStream(hello(), metadata=auth(tenant), timeout=20):
                pass
        else:
            await s.inference.Complete(hello(), metadata=auth(tenant), timeout=20)
    except grpc.aio.AioRpcError as err:
        d = details_of(err)
        return d.code, d.reason, d.message
    return grpc.StatusCode.OK, "", ""


def no_errors_logged(caplog) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "azure"])
async def test_every_malformed_answer_is_provider_unavailable(
    servers, fake, caplog, provider, streamed
):
    _, s = await servers.start()
    tenant = f"hostile-{provider}"
    await configure_one(s, tenant, provider, fake)
    assert (await outcome(s, tenant, streamed))[0] == grpc.StatusCode.OK  # the fake is sane
    caplog.clear()
    wrong = []
    for shape in SHAPES:
        fake.fail(provider, "malformed", shape=shape)
        code, reason, message = await outcome(s, tenant, streamed)
        # A stream with no event at all ended before it was complete; every
        # other shape is an answer that is not a completion.
        said = (
            "ended before it was complete"
            if streamed and shape == "empty"
            else ("answered with something that is not a completion")
        )
        if (code, reason) != (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE") or (
            said not in message
        ):
            wrong.append((shape, code.name, reason, message[:120]))
    assert wrong == []
    assert no_errors_logged(caplog) == []
    # The service still serves normal answers afterwards.
    assert (await outcome(s, tenant, streamed))[0] == grpc.StatusCode.OK


def test_the_fake_refuses_a_malformed_failure_without_a_known_shape(fake):
    with pytest.raises(ValueError, match="malformed needs a shape"):
        fake.fail("openai", "malformed")
    with pytest.raises(ValueError, match="malformed needs a shape"):
        fake.fail("openai", "malformed", shape="sideways")


async def test_the_control_api_asks_for_a_malformed_answer(fake):
    # What a person steering the fake with curl does; the next answer has the defect.
    async with aiohttp.ClientSession(fake.base_url) as http:
        async with http.post(
            "/_control/fail",
            json={"provider": "openai", "kind": "malformed", "shape": "usage_list"},
        ) as r:
            assert r.status == 200
        async with http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer sk-test"},
        ) as r:
            assert r.status == 200
            assert (await r.json())["usage"] == [1, 2]


@pytest.mark.parametrize("streamed", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "azure"])
async def test_an_answer_larger_than_a_caller_can_receive_is_a_documented_reason(
    servers, fake, caplog, provider, streamed
):
    # The stubs use gRPC's default limits (4 MiB a message), as most callers do.
    _, s = await servers.start()
    tenant = f"large-{provider}"
    await configure_one(s, tenant, provider, fake)
    caplog.clear()
    fake.fail(provider, "large", bytes=5_000_000)
    code, reason, message = await outcome(s, tenant, streamed)
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
    assert "answered with 5,000,000 bytes of text, more than the 4,128,768" in message
    assert "max_tokens" in message
    assert no_errors_logged(caplog) == []


async def test_an_answer_within_the_bound_is_relayed_whole(servers, fake):
    _, s = await servers.start()
    await configure_one(s, "large-ok", "openai", fake)
    fake.fail("openai", "large", bytes=3_000_000)
    reply = await s.inference.Complete(hello(), metadata=auth("large-ok"), timeout=20)
    assert reply.message.content == "x" * 3_000_000
