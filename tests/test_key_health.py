"""Key health (DESIGN.md, "Key health and verify before save") through the real
server, the real stubs and the fake providers: each outcome of the contract's
list moves ``health`` on the masked provider as specified, and replicas
sharing a database see it within the promised bounds."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from test_metrics_conventions import read_metrics, series

from helpers import auth, byok_openai, details_of, free_port, hello
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.fakes import bind_refused_port

KEY = "sk-" + "H" * 36 + "ab12"
NEW_KEY = "sk-" + "N" * 36 + "cd34"
AZURE_KEY = "a" * 28 + "ef56"
TENANT = "acme"


async def health_of(stubs, provider: str = "openai", tenant: str = TENANT) -> cpb.ProviderHealth:
    reply = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth(tenant))
    return getattr(reply.config, provider).health


async def fails_with(coro, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    assert details_of(err.value).reason == reason


def seconds_ago(ts) -> float:
    return (datetime.now(UTC) - ts.ToDatetime(tzinfo=UTC)).total_seconds()


async def wait_until(check, within: float) -> float:
    """Poll the async ``check`` until it holds; how long it took."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


# -- one replica ---------------------------------------------------------------------


async def test_a_new_key_is_unknown_then_ok_after_a_call(stubs):
    before = datetime.now(UTC)
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    health = await health_of(stubs)
    assert health.state == "unknown"
    assert not health.HasField("last_success_time") and not health.HasField("last_failure_time")
    assert health.key_set_time.ToDatetime(tzinfo=UTC) >= before - timedelta(seconds=1)
    # A provider with no key has no health.
    masked = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth(TENANT))
    assert not masked.config.anthropic.HasField("health")

    await stubs.inference.Complete(hello(), metadata=auth(TENANT))
    health = await health_of(stubs)
    assert health.state == "ok"
    assert 0 <= seconds_ago(health.last_success_time) < 5
    assert health.last_failure_reason == ""


FAILURES = [
    ("auth", "BYOK_AUTH_FAILED"),
    ("quota", "BYOK_QUOTA_EXCEEDED"),
    ("rate_limit", "BYOK_QUOTA_EXCEEDED"),
    ("not_found", "BYOK_MODEL_NOT_FOUND"),
    ("server_error", "PROVIDER_UNAVAILABLE"),
    ("overloaded", "PROVIDER_UNAVAILABLE"),
]


@pytest.mark.parametrize(("kind", "reason"), FAILURES)
async def test_failures_about_the_key_or_provider_make_it_failing(stubs, fake, kind, reason):
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    await stubs.inference.Complete(hello(), metadata=auth(TENANT))
    fake.fail("openai", kind)
    await fails_with(stubs.inference.Complete(hello(), metadata=auth(TENANT)), reason)

    health = await health_of(stubs)
    assert (health.state, health.last_failure_reason) == ("failing", reason)
    assert 0 <= seconds_ago(health.last_failure_time) < 5
    assert health.last_failure_message  # the error's own text, scrubbed
    assert health.HasField("last_success_time")

    # The next good call is a recovery.
    await stubs.inference.Complete(hello(), metadata=auth(TENANT))
    health = await health_of(stubs)
    assert health.state == "ok"
    assert health.last_success_time.ToDatetime() >= health.last_failure_time.ToDatetime()
    assert health.last_failure_reason == reason  # the last failure stays on record


async def test_an_unreachable_endpoint_and_a_provider_timeout_make_it_failing(servers, fake):
    _, s = await servers.start(LIYA_UPSTREAM_TIMEOUT_SECONDS="0.5")
    azure = cpb.AzureOpenAIConfig(
        api_key=AZURE_KEY,
        endpoint=f"http://127.0.0.1:{bind_refused_port()}",
        deployment_name="gpt-4o",
        api_version="2024-02-15-preview",
    )
    request = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    await s.config.UpdateConfig(request, metadata=auth(TENANT))
    await fails_with(
        s.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_ENDPOINT_UNREACHABLE"
    )
    health = await health_of(s, "azure")
    assert (health.state, health.last_failure_reason) == ("failing", "BYOK_ENDPOINT_UNREACHABLE")

    # Our own upstream budget running out (not the caller's deadline) counts too.
    await s.config.UpdateConfig(byok_openai(KEY), metadata=auth("other"))
    fake.fail("openai", "slow", delay=3)
    await fails_with(
        s.inference.Complete(hello(), metadata=auth("other"), timeout=10),
        "BYOK_ENDPOINT_UNREACHABLE",
    )
    health = await health_of(s, tenant="other")
    assert (health.state, health.last_failure_reason) == ("failing", "BYOK_ENDPOINT_UNREACHABLE")


async def test_the_callers_mistakes_and_deadlines_do_not_change_it(stubs, fake):
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    await stubs.inference.Complete(hello(), metadata=auth(TENANT))
    before = await health_of(stubs)
    assert before.state == "ok"

    fake.fail("openai", "bad_request")
    await fails_with(
        stubs.inference.Complete(hello(), metadata=auth(TENANT)), "PROVIDER_REJECTED_REQUEST"
    )
    fake.fail("openai", "slow", delay=3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.inference.Complete(hello(), metadata=auth(TENANT), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    bad = ipb.CompleteRequest(intent="general_chat")  # no messages: never sent
    await fails_with(stubs.inference.Complete(bad, metadata=auth(TENANT)), "INVALID_REQUEST")

    assert await health_of(stubs) == before


async def test_the_failure_message_is_scrubbed_and_short(stubs, fake):
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    fake.fail("openai", "auth", message="Incorrect API key provided: {key}. " + "More text. " * 40)
    await fails_with(stubs.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")
    message = (await health_of(stubs)).last_failure_message
    assert 0 < len(message) <= 200
    secret = KEY[3:]
    assert not any(secret[i : i + 6] in message for i in range(len(secret) - 5))


async def test_verify_config_records_health(stubs, fake):
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    await stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth(TENANT))
    assert (await health_of(stubs)).state == "ok"
    fake.fail("openai", "auth")
    await fails_with(
        stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth(TENANT)),
        "BYOK_AUTH_FAILED",
    )
    assert (await health_of(stubs)).state == "failing"


async def test_model_changes_and_mode_switches_keep_it_new_credentials_reset_it(stubs, fake):
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    fake.fail("openai", "auth")
    await fails_with(stubs.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")
    failing = await health_of(stubs)
    assert failing.state == "failing"

    model = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(default_model="gpt-4o-mini")),
        model_config=cpb.ModelConfig(strategy="cost-optimised", overrides={"general_chat": "o1"}),
    )
    await stubs.config.UpdateConfig(model, metadata=auth(TENANT))
    assert await health_of(stubs) == failing
    for mode in ("managed", "byok"):
        switch = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode=mode))
        await stubs.config.UpdateConfig(switch, metadata=auth(TENANT))
        assert await health_of(stubs) == failing
    # The same key sent again is not a new key.
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    assert await health_of(stubs) == failing

    reply = await stubs.config.UpdateConfig(byok_openai(NEW_KEY), metadata=auth(TENANT))
    shown = reply.config.openai.health
    assert shown.state == "unknown" and shown.last_failure_reason == ""
    assert shown.key_set_time.ToDatetime() > failing.key_set_time.ToDatetime()
    assert await health_of(stubs) == shown


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", None),  # the fake's endpoint under another spelling
        ("deployment_name", "gpt-4o-mini"),
        ("api_version", "2024-06-01"),
    ],
)
async def test_azure_endpoint_deployment_or_api_version_reset_it(stubs, fake, field, value):
    azure = cpb.AzureOpenAIConfig(
        api_key=AZURE_KEY,
        endpoint=fake.azure_endpoint,
        deployment_name="gpt-4o",
        api_version="2024-02-15-preview",
    )
    request = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    await stubs.config.UpdateConfig(request, metadata=auth(TENANT))
    await stubs.inference.Complete(hello(), metadata=auth(TENANT))
    assert (await health_of(stubs, "azure")).state == "ok"

    if value is None:
        value = fake.azure_endpoint.replace("127.0.0.1", "localhost")
    change = cpb.AzureOpenAIConfig(**{field: value})
    update = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(azure=change))
    await stubs.config.UpdateConfig(update, metadata=auth(TENANT))
    assert (await health_of(stubs, "azure")).state == "unknown"


async def test_managed_mode_calls_never_touch_it(servers, fake):
    _, s = await servers.start(LIYA_MANAGED_OPENAI_API_KEY="sk-platform-" + "m" * 30)
    await s.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    await s.inference.Complete(hello(), metadata=auth(TENANT))
    ok = await health_of(s)
    assert ok.state == "ok"

    managed = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="managed"))
    await s.config.UpdateConfig(managed, metadata=auth(TENANT))
    fake.fail("openai", "auth")
    await fails_with(s.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")
    assert fake.last_request.api_key.startswith("sk-platform-")
    await s.inference.Complete(hello(), metadata=auth(TENANT))
    assert await health_of(s) == ok


async def test_health_is_stored_for_a_restarted_server(servers, fake):
    running, s = await servers.start()
    await s.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    fake.fail("openai", "quota")
    await fails_with(s.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_QUOTA_EXCEEDED")
    shown = await health_of(s)
    await running.stop(0)  # a graceful stop writes what is still in memory

    _, again = await servers.start()
    assert await health_of(again) == shown


async def test_transitions_are_counted_by_provider_and_states(servers, fake):
    port = free_port()
    _, s = await servers.start(LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}")
    await s.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    for _ in range(2):
        await s.inference.Complete(hello(), metadata=auth(TENANT))
    fake.fail("openai", "auth", times=2)
    for _ in range(2):
        await fails_with(s.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")
    fake.fail("openai", "bad_request")  # not about the key: no transition
    await fails_with(
        s.inference.Complete(hello(), metadata=auth(TENANT)), "PROVIDER_REJECTED_REQUEST"
    )
    await s.inference.Complete(hello(), metadata=auth(TENANT))

    def labels(a: str, b: str):
        return (("from_state", a), ("provider", "openai"), ("to_state", b))

    assert series(await read_metrics(port), "liya_key_health_transitions_total") == {
        labels("unknown", "ok"): 1.0,
        labels("ok", "failing"): 1.0,
        labels("failing", "ok"): 1.0,
    }


# -- replicas ------------------------------------------------------------------------


async def shared(servers, url: str):
    servers.base_env["LIYA_DATABASE_URL"] = url
    return (await servers.start())[1], (await servers.start())[1]


async def check_bounds(a, b, fake) -> None:
    await a.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    assert (await health_of(b)).state == "unknown"

    # A first success through A shows on B within 60 s.
    await a.inference.Complete(hello(), metadata=auth(TENANT))

    async def ok_on(stubs):
        return (await health_of(stubs)).state == "ok"

    await wait_until(lambda: ok_on(b), within=60)

    # A failure through A shows on B within 5 s.
    fake.fail("openai", "auth")
    await fails_with(a.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")

    async def failing_on_b():
        health = await health_of(b)
        return (health.state, health.last_failure_reason) == ("failing", "BYOK_AUTH_FAILED")

    await wait_until(failing_on_b, within=5)

    # A recovery through B shows on A within 60 s.
    await b.inference.Complete(hello(), metadata=auth(TENANT))
    await wait_until(lambda: ok_on(a), within=60)


async def test_replicas_on_one_sqlite_file_share_it_within_the_bounds(servers, fake, sqlite_url):
    a, b = await shared(servers, sqlite_url)
    await check_bounds(a, b, fake)


@pytest.mark.postgres
async def test_replicas_on_postgres_share_it_within_the_bounds(servers, fake, postgres_url):
    a, b = await shared(servers, postgres_url)
    await check_bounds(a, b, fake)


@pytest.mark.postgres
async def test_a_new_key_never_shows_the_old_keys_health_on_another_replica(
    servers, fake, postgres_url
):
    a, b = await shared(servers, postgres_url)
    await a.config.UpdateConfig(byok_openai(KEY), metadata=auth(TENANT))
    fake.fail("openai", "auth", times=None)
    await fails_with(b.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")
    await fails_with(a.inference.Complete(hello(), metadata=auth(TENANT)), "BYOK_AUTH_FAILED")
    assert (await health_of(b)).state == "failing"

    await a.config.UpdateConfig(byok_openai(NEW_KEY), metadata=auth(TENANT))

    async def new_preview_on_b():
        reply = await b.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth(TENANT))
        if not reply.config.openai.api_key_preview.endswith("cd34"):
            return False
        # The very first answer with the new key's preview has its health.
        assert reply.config.openai.health.state == "unknown"
        return True

    await wait_until(new_preview_on_b, within=5)
    # B's failure of the old key, written after the change, does not land either.
    await asyncio.sleep(1.5)
    assert (await health_of(b)).state == "unknown"
    assert (await health_of(a)).state == "unknown"
