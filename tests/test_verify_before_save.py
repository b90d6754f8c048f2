"""``UpdateConfigRequest.verify`` through the real server and the fake
providers: new credentials are tested with a minimal real call before
anything is written; a failure writes nothing and answers as Complete would;
with ``validate_only`` it is a test that writes nothing."""

from __future__ import annotations

import asyncio

import grpc
import pytest

import liya_engine_client as lc
from helpers import auth, byok_openai, details_of, hello
from liya.engine.v1 import config_service_pb2 as cpb

GOOD = "sk-" + "G" * 36 + "go0d"
OTHER_GOOD = "sk-" + "O" * 36 + "oth3"
BAD = "sk-" + "B" * 36 + "bad1"
AZURE_KEY = "z" * 28 + "az12"
TENANT = "acme"


def verified(request: cpb.UpdateConfigRequest, *, validate_only: bool = False):
    request.verify = True
    request.validate_only = validate_only
    return request


async def written_state(s, tenant: str = TENANT) -> tuple:
    """What a write would change: etag, previews, audit entries."""
    masked = (
        await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth(tenant))
    ).config
    audit = await s.config.ListAuditEntries(cpb.ListAuditEntriesRequest(), metadata=auth(tenant))
    previews = (masked.openai.api_key_preview, masked.azure.api_key_preview, masked.azure.endpoint)
    return masked.etag, previews, [e.id for e in audit.audit_entries]


async def health(s, provider: str = "openai") -> cpb.ProviderHealth:
    reply = await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth(TENANT))
    return getattr(reply.config, provider).health


async def error_of(coro):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    return details_of(err.value)


@pytest.fixture
async def stored(stubs, fake):
    """A tenant with a good OpenAI key that has served a call; the fake knows
    only the good keys."""
    fake.set_keys("openai", [GOOD, OTHER_GOOD])
    await stubs.config.UpdateConfig(byok_openai(GOOD), metadata=auth(TENANT))
    await stubs.inference.Complete(hello(), metadata=auth(TENANT))
    return stubs


async def test_a_bad_key_writes_nothing_and_answers_as_complete_would(stored, fake):
    s = stored
    before, health_before = await written_state(s), await health(s)
    calls = len(fake.requests)

    d = await error_of(s.config.UpdateConfig(verified(byok_openai(BAD)), metadata=auth(TENANT)))
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BYOK_AUTH_FAILED")
    assert d.metadata["provider"] == "openai"
    # One minimal call, with the key the update would have stored.
    assert len(fake.requests) == calls + 1
    assert fake.last_request.api_key == BAD
    assert fake.last_request.body["max_completion_tokens"] == 1
    assert await written_state(s) == before
    assert await health(s) == health_before  # the stored key is not the one that failed

    # Complete with that key stored gets the same code, reason and metadata.
    await s.config.UpdateConfig(byok_openai(BAD), metadata=auth("other"))
    c = await error_of(s.inference.Complete(hello(), metadata=auth("other")))
    per_call = {"request_id", "upstream_request_id"}  # ids of each call

    def same_for_every_call(meta: dict) -> dict:
        assert per_call <= set(meta)
        return {k: v for k, v in meta.items() if k not in per_call}

    assert (c.code, c.reason) == (d.code, d.reason)
    assert same_for_every_call(c.metadata) == same_for_every_call(d.metadata)
    assert d.metadata["mode"] == "byok" and d.metadata["model"] == "gpt-4o"
    assert BAD[3:] not in d.message


async def test_a_good_key_is_written_and_its_health_is_ok(stored, fake):
    s = stored
    etag, _, audit = await written_state(s)
    reply = await s.config.UpdateConfig(verified(byok_openai(OTHER_GOOD)), metadata=auth(TENANT))
    assert fake.last_request.api_key == OTHER_GOOD
    assert reply.config.etag != etag
    assert reply.config.openai.api_key_preview == "sk-...oth3"
    shown = reply.config.openai.health
    assert shown.state == "ok"
    # The verify call succeeded just before the key was stored.
    tested_for = shown.key_set_time.ToDatetime() - shown.last_success_time.ToDatetime()
    assert 0 <= tested_for.total_seconds() < 5
    assert not shown.HasField("last_failure_time")
    assert await health(s) == shown
    _, _, audit_after = await written_state(s)
    assert len(audit_after) == len(audit) + 1


async def test_validate_only_with_verify_tests_and_writes_nothing(stored, fake):
    s = stored
    before, health_before = await written_state(s), await health(s)
    calls = len(fake.requests)

    reply = await s.config.UpdateConfig(
        verified(byok_openai(OTHER_GOOD), validate_only=True), metadata=auth(TENANT)
    )
    assert reply.config.openai.api_key_preview == "sk-...oth3"  # as it would be
    assert fake.last_request.api_key == OTHER_GOOD
    d = await error_of(
        s.config.UpdateConfig(verified(byok_openai(BAD), validate_only=True), metadata=auth(TENANT))
    )
    assert d.reason == "BYOK_AUTH_FAILED"
    # The stored key itself can be tested: it is sent, so it is tested.
    await s.config.UpdateConfig(
        verified(byok_openai(GOOD), validate_only=True), metadata=auth(TENANT)
    )
    assert len(fake.requests) == calls + 3
    await asyncio.sleep(1.2)  # a background write would have happened by now
    assert await written_state(s) == before
    assert await health(s) == health_before


async def test_other_provider_failures_answer_their_own_reasons(stored, fake):
    s = stored
    before = await written_state(s)
    for kind, code, reason in [
        ("quota", grpc.StatusCode.RESOURCE_EXHAUSTED, "BYOK_QUOTA_EXCEEDED"),
        ("server_error", grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
        ("not_found", grpc.StatusCode.FAILED_PRECONDITION, "BYOK_MODEL_NOT_FOUND"),
    ]:
        fake.fail("openai", kind)
        d = await error_of(
            s.config.UpdateConfig(verified(byok_openai(OTHER_GOOD)), metadata=auth(TENANT))
        )
        assert (d.code, d.reason, d.metadata["provider"]) == (code, reason, "openai")
    assert await written_state(s) == before


async def test_azure_credentials_are_tested_at_the_new_deployment(stubs, fake):
    fake.set_models("azure", ["prod-chat"])
    azure = cpb.AzureOpenAIConfig(
        api_key=AZURE_KEY,
        endpoint=fake.azure_endpoint,
        deployment_name="no-such-deployment",
        api_version="2024-02-15-preview",
    )
    request = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    before = await written_state(stubs)
    d = await error_of(stubs.config.UpdateConfig(verified(request), metadata=auth(TENANT)))
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BYOK_MODEL_NOT_FOUND")
    assert d.metadata["provider"] == "azure"
    assert await written_state(stubs) == before

    request.provider_config.azure.deployment_name = "prod-chat"
    reply = await stubs.config.UpdateConfig(verified(request), metadata=auth(TENANT))
    assert fake.last_request.model == "prod-chat"
    assert fake.last_request.api_key == AZURE_KEY
    assert reply.config.azure.health.state == "ok"


async def test_a_request_setting_no_credentials_makes_no_call(stored, fake):
    s = stored
    calls = len(fake.requests)
    request = cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(strategy="cost-optimised"))
    reply = await s.config.UpdateConfig(verified(request), metadata=auth(TENANT))
    assert reply.config.model_config.strategy == "cost-optimised"
    assert len(fake.requests) == calls


async def test_an_invalid_config_is_refused_before_any_call(stubs, fake):
    azure = cpb.AzureOpenAIConfig(api_key=AZURE_KEY)  # no endpoint or deployment
    request = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    d = await error_of(stubs.config.UpdateConfig(verified(request), metadata=auth(TENANT)))
    assert d.reason == "INVALID_CONFIG"
    assert fake.requests == []


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_the_python_client_sends_verify(stored, servers, fake, kind):
    target = f"127.0.0.1:{servers.running[-1][0].port}"
    from helpers import token

    body = {"provider_config": {"mode": "byok", "openai": {"api_key": BAD}}}
    if kind == "async":
        async with lc.AsyncLiyaClient(target, token=token(TENANT)) as client:
            with pytest.raises(lc.ByokAuthFailed) as err:
                await client.update_config(body, verify=True)
            reply = await client.update_config(
                {"provider_config": {"openai": {"api_key": OTHER_GOOD}}},
                verify=True,
                validate_only=True,
            )
    else:

        def run():
            with lc.LiyaClient(target, token=token(TENANT)) as client:
                with pytest.raises(lc.ByokAuthFailed) as err:
                    client.update_config(body, verify=True)
                return err, client.update_config(
                    {"provider_config": {"openai": {"api_key": OTHER_GOOD}}},
                    verify=True,
                    validate_only=True,
                )

        err, reply = await asyncio.to_thread(run)
    assert err.value.provider == "openai"
    assert fake.last_request.api_key == OTHER_GOOD
    assert reply.config.openai.api_key_preview == "sk-...oth3"
    masked = await stored.config.GetMaskedConfig(
        cpb.GetMaskedConfigRequest(), metadata=auth(TENANT)
    )
    assert masked.config.openai.api_key_preview == "sk-...go0d"


async def test_credentials_changed_during_the_test_are_tested_again(stubs, fake):
    azure = cpb.AzureOpenAIConfig(
        api_key=AZURE_KEY,
        endpoint=fake.azure_endpoint,
        deployment_name="gpt-4o",
        api_version="2024-02-15-preview",
    )
    first = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    await stubs.config.UpdateConfig(first, metadata=auth(TENANT))
    new_key = "y" * 28 + "nw34"
    fake.fail("azure", "slow", delay=1)  # holds the first test call

    key_only = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(azure=cpb.AzureOpenAIConfig(api_key=new_key))
    )
    update = asyncio.ensure_future(
        stubs.config.UpdateConfig(verified(key_only), metadata=auth(TENANT))
    )
    await fake.wait_for(lambda f: any(r.failure == "slow" for r in f.requests))
    # Meanwhile another writer moves the API version the key was being tested with.
    version = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(azure=cpb.AzureOpenAIConfig(api_version="2024-06-01"))
    )
    await stubs.config.UpdateConfig(version, metadata=auth(TENANT))
    reply = await update

    tests = [r for r in fake.requests_for("azure") if r.api_key == new_key]
    assert [r.query["api-version"] for r in tests] == ["2024-02-15-preview", "2024-06-01"]
    assert reply.config.azure.api_version == "2024-06-01"
    assert reply.config.azure.api_key_preview.endswith("nw34")
    assert reply.config.azure.health.state == "ok"


async def test_the_callers_deadline_bounds_the_test_and_nothing_is_written(stored, fake):
    s = stored
    before = await written_state(s)
    fake.fail("openai", "slow", delay=3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.config.UpdateConfig(
            verified(byok_openai(OTHER_GOOD)), metadata=auth(TENANT), timeout=0.5
        )
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The test call ended (cut short, or answered late): still nothing written.
    await fake.wait_for(lambda f: f.last_request.finished_at is not None, within=10)
    assert fake.last_request.api_key == OTHER_GOOD
    await asyncio.sleep(0.2)
    assert await written_state(s) == before
