"""ConfigService through the real server: PATCH rules, validation, etags,
concurrency, tenant isolation, audit, restart."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format

from helpers import ErrorDetails, auth, canary_key, details_of
from liya.engine.v1 import config_service_pb2 as cpb

OPENAI_KEY = "sk-proj-Ab3De6Gh9Jk2Mn5Pq8St4Vw7"
ANTHROPIC_KEY = "sk-ant-api03-Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2"
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
AZURE_ENDPOINT = "https://contoso.openai.azure.com"


def md(tenant: str, sub: str | None = None, request_id: str | None = None):
    out = auth(tenant, sub)
    if request_id is not None:
        out += (("x-request-id", request_id),)
    return out


def req(
    *,
    mode: str | None = None,
    openai: dict | None = None,
    anthropic: dict | None = None,
    azure: dict | None = None,
    model: dict | None = None,
    mask: list[str] | None = None,
    etag: str = "",
    validate_only: bool = False,
) -> cpb.UpdateConfigRequest:
    r = cpb.UpdateConfigRequest(etag=etag, validate_only=validate_only)
    if mode is not None:
        r.provider_config.mode = mode
    if openai is not None:
        r.provider_config.openai.CopyFrom(cpb.OpenAIConfig(**openai))
    if anthropic is not None:
        r.provider_config.anthropic.CopyFrom(cpb.AnthropicConfig(**anthropic))
    if azure is not None:
        r.provider_config.azure.CopyFrom(cpb.AzureOpenAIConfig(**azure))
    if model is not None:
        r.model_config.CopyFrom(cpb.ModelConfig(**model))
    if mask is not None:
        r.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
    return r


def azure_full(key: str = AZURE_KEY, **extra) -> dict:
    return {
        "api_key": key,
        "endpoint": AZURE_ENDPOINT,
        "deployment_name": "prod-gpt4o",
        "api_version": "2024-10-21",
        **extra,
    }


async def update(stubs, tenant: str, request: cpb.UpdateConfigRequest, **kw):
    return await stubs.config.UpdateConfig(request, metadata=md(tenant, **kw))


async def get(stubs, tenant: str) -> cpb.MaskedConfig:
    reply = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md(tenant))
    return reply.config


async def fails(call) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return details_of(err.value)


async def stored_key(running, tenant: str, provider: str) -> str:
    """The key as the server decrypts it for calls."""
    cfg = await running.services.configs.get(tenant)
    blob = cfg.provider(provider).api_key_ciphertext
    assert blob is not None
    return running.services.cipher.decrypt(
        blob, tenant_id=tenant, provider=provider, field="api_key"
    ).reveal()


async def all_audit(stubs, tenant: str, page_size: int = 0) -> list[cpb.AuditEntry]:
    out, token = [], ""
    while True:
        reply = await stubs.config.ListAuditEntries(
            cpb.ListAuditEntriesRequest(page_size=page_size, page_token=token), metadata=md(tenant)
        )
        out += list(reply.audit_entries)
        token = reply.next_page_token
        if not token:
            return out


# -- empty state -------------------------------------------------------------


async def test_never_configured_tenant_gets_the_empty_default(stubs):
    c = await get(stubs, "fresh")
    assert c.mode == "managed"
    assert c.etag == "v0"
    assert c.serving_provider == ""
    assert not c.HasField("update_time")
    for p in (c.openai, c.anthropic, c.azure):
        assert not p.configured and p.api_key_preview == ""
    assert not c.model_config.overrides and not c.model_config.HasField("strategy")
    assert not c.model_config.HasField("cost_limit_usd_per_request")
    assert await all_audit(stubs, "fresh") == []


# -- PATCH semantics -----------------------------------------------------------


async def test_setting_one_provider_leaves_the_others(stubs):
    t = "patch-one"
    await update(stubs, t, req(mode="byok", openai={"api_key": OPENAI_KEY, "default_model": "o1"}))
    await update(stubs, t, req(anthropic={"api_key": ANTHROPIC_KEY}))
    c = await get(stubs, t)
    assert c.mode == "byok"
    assert c.openai.configured and c.openai.default_model == "o1"
    assert c.openai.api_key_preview == "sk-proj-..." + OPENAI_KEY[-4:]
    assert c.anthropic.configured and c.anthropic.default_model == ""
    assert c.serving_provider == "anthropic"


async def test_implicit_mask_updates_only_populated_fields(stubs):
    t = "implicit"
    first = await update(
        stubs,
        t,
        req(
            mode="byok",
            openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"},
            model={"strategy": "quality-optimised", "cost_limit_usd_per_request": 0.5},
        ),
    )
    # Only default_model is populated: the key, the mode and model config stay.
    reply = await update(stubs, t, req(openai={"default_model": "gpt-4o-mini"}))
    c = reply.config
    assert c.openai.default_model == "gpt-4o-mini"
    assert c.openai.configured
    assert c.openai.api_key_preview == first.config.openai.api_key_preview
    assert c.mode == "byok"
    assert c.model_config.strategy == "quality-optimised"
    assert c.model_config.cost_limit_usd_per_request == pytest.approx(0.5)
    # An empty request changes nothing and writes nothing.
    same = await update(stubs, t, cpb.UpdateConfigRequest())
    assert same.config == c
    assert len(await all_audit(stubs, t)) == 2


async def test_mask_path_clears_a_provider(stubs):
    t = "clear-provider"
    await update(
        stubs,
        t,
        req(
            mode="byok",
            openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"},
            anthropic={"api_key": ANTHROPIC_KEY},
        ),
    )
    reply = await update(stubs, t, req(mask=["provider_config.openai"]))
    c = reply.config
    assert not c.openai.configured
    assert c.openai.api_key_preview == "" and c.openai.default_model == ""
    assert c.anthropic.configured  # not named by the mask
    assert c.serving_provider == "anthropic"
    latest = (await all_audit(stubs, t))[0]
    assert set(latest.changed_paths) == {
        "provider_config.openai.api_key",
        "provider_config.openai.default_model",
    }


async def test_mask_path_on_a_provider_replaces_it_whole(stubs):
    t = "replace-provider"
    await update(stubs, t, req(openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"}))
    reply = await update(
        stubs, t, req(openai={"default_model": "o1"}, mask=["provider_config.openai"])
    )
    assert reply.config.openai.default_model == "o1"
    assert not reply.config.openai.configured  # the key was not in the replacement


async def test_mask_path_clears_one_field(stubs):
    t = "clear-field"
    await update(stubs, t, req(openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"}))
    reply = await update(stubs, t, req(mask=["provider_config.openai.default_model"]))
    assert reply.config.openai.default_model == ""
    assert reply.config.openai.configured
    reply = await update(stubs, t, req(mask=["provider_config.openai.api_key"]))
    assert not reply.config.openai.configured
    assert reply.config.openai.api_key_preview == ""


async def test_mask_names_only_the_fields_to_take_from_the_request(stubs):
    t = "mask-subset"
    reply = await update(
        stubs,
        t,
        req(
            mode="byok",
            openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"},
            mask=["provider_config.openai.default_model"],
        ),
    )
    c = reply.config
    assert c.openai.default_model == "gpt-4o"
    assert not c.openai.configured  # api_key was sent but not named
    assert c.mode == "managed"


async def test_whole_config_rules_apply_after_the_patch(stubs):
    t = "azure-complete"
    await update(stubs, t, req(mode="byok", azure=azure_full()))
    d = await fails(update(stubs, t, req(mask=["provider_config.azure.api_version"])))
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG")
    assert [f for f, _ in d.violations] == ["provider_config.azure.api_version"]
    assert (await get(stubs, t)).azure.api_version == "2024-10-21"  # nothing written
    # An Azure key alone is not enough.
    d = await fails(update(stubs, "azure-key-only", req(azure={"api_key": AZURE_KEY})))
    assert {f for f, _ in d.violations} == {
        "provider_config.azure.endpoint",
        "provider_config.azure.deployment_name",
        "provider_config.azure.api_version",
    }
    # Clearing the whole provider is fine.
    reply = await update(stubs, t, req(mask=["provider_config.azure"]))
    assert not reply.config.azure.configured and reply.config.azure.endpoint == ""


async def test_override_paths_set_and_delete_one_intent(stubs):
    t = "overrides"
    await update(
        stubs,
        t,
        req(model={"overrides": {"general_chat": "gpt-4o-mini", "resume_analysis": "gpt-4o"}}),
    )
    reply = await update(
        stubs,
        t,
        req(
            model={"overrides": {"mock_interview": "claude-sonnet-4-6"}},
            mask=["model_config.overrides.mock_interview"],
        ),
    )
    assert dict(reply.config.model_config.overrides) == {
        "general_chat": "gpt-4o-mini",
        "resume_analysis": "gpt-4o",
        "mock_interview": "claude-sonnet-4-6",
    }
    reply = await update(stubs, t, req(mask=["model_config.overrides.general_chat"]))
    assert dict(reply.config.model_config.overrides) == {
        "resume_analysis": "gpt-4o",
        "mock_interview": "claude-sonnet-4-6",
    }
    # Without a mask each sent entry is set and the others stay, as for providers.
    reply = await update(
        stubs,
        t,
        req(model={"overrides": {"summarization": "gpt-4o-mini", "resume_analysis": "o1"}}),
    )
    assert dict(reply.config.model_config.overrides) == {
        "resume_analysis": "o1",
        "mock_interview": "claude-sonnet-4-6",
        "summarization": "gpt-4o-mini",
    }
    latest = (await all_audit(stubs, t))[0]
    assert set(latest.changed_paths) == {
        "model_config.overrides.summarization",
        "model_config.overrides.resume_analysis",
    }
    # The map path replaces the whole map with what the request holds.
    reply = await update(
        stubs,
        t,
        req(model={"overrides": {"general_chat": "o1"}}, mask=["model_config.overrides"]),
    )
    assert dict(reply.config.model_config.overrides) == {"general_chat": "o1"}
    reply = await update(stubs, t, req(mask=["model_config.overrides"]))
    assert dict(reply.config.model_config.overrides) == {}


async def test_model_config_fields_clear_by_mask(stubs):
    t = "model-clear"
    await update(
        stubs, t, req(model={"strategy": "cost-optimised", "cost_limit_usd_per_request": 0.05})
    )
    reply = await update(stubs, t, req(mask=["model_config.cost_limit_usd_per_request"]))
    m = reply.config.model_config
    assert not m.HasField("cost_limit_usd_per_request")
    assert m.strategy == "cost-optimised"
    # A limit of zero is a real limit, not "unset".
    reply = await update(stubs, t, req(model={"cost_limit_usd_per_request": 0.0}))
    assert reply.config.model_config.HasField("cost_limit_usd_per_request")
    assert reply.config.model_config.cost_limit_usd_per_request == 0.0
    reply = await update(stubs, t, req(mask=["model_config"]))
    assert reply.config.model_config == cpb.ModelConfig()


async def test_mask_on_provider_config_replaces_all_of_it(stubs):
    t = "replace-all"
    await update(
        stubs,
        t,
        req(mode="byok", openai={"api_key": OPENAI_KEY}, anthropic={"api_key": ANTHROPIC_KEY}),
    )
    reply = await update(
        stubs, t, req(anthropic={"default_model": "claude-haiku-4-5"}, mask=["provider_config"])
    )
    c = reply.config
    assert c.mode == "managed"
    assert not c.openai.configured and not c.anthropic.configured
    assert c.anthropic.default_model == "claude-haiku-4-5"


async def test_json_mask_paths_from_grpcurl_work(stubs):
    """Protobuf JSON writes mask paths in lowerCamelCase; they reach the server
    as the snake_case paths the server knows."""
    t = "json-mask"
    await update(
        stubs,
        t,
        req(
            openai={"api_key": OPENAI_KEY},
            model={"overrides": {"mock_interview": "claude-sonnet-4-6", "general_chat": "o1"}},
        ),
    )
    request = json_format.Parse(
        '{"updateMask": "providerConfig.openai,modelConfig.overrides.mockInterview"}',
        cpb.UpdateConfigRequest(),
    )
    reply = await update(stubs, t, request)
    assert not reply.config.openai.configured
    assert dict(reply.config.model_config.overrides) == {"general_chat": "o1"}


async def test_mode_clears_to_managed_and_keeps_keys(stubs):
    t = "mode-clear"
    await update(stubs, t, req(mode="byok", openai={"api_key": OPENAI_KEY}))
    reply = await update(stubs, t, req(mask=["provider_config.mode"]))
    assert reply.config.mode == "managed"
    assert reply.config.openai.configured


@pytest.mark.parametrize(
    "path",
    [
        "provider_config.foo",
        "provider_config.openai.endpoint",
        "provider_config.openai.api_key.x",
        "model_config.overrides.",
        "model_config.nope",
        "tenant_id",
        "etag",
        "",
    ],
)
async def test_unknown_mask_path_is_invalid(stubs, path):
    t = "bad-mask"
    d = await fails(update(stubs, t, req(openai={"api_key": OPENAI_KEY}, mask=[path])))
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG")
    assert d.error_infos == 1
    assert [f for f, _ in d.violations] == ["update_mask"]
    assert (await get(stubs, t)).etag == "v0"


# -- validate_only -------------------------------------------------------------


async def test_validate_only_writes_nothing(stubs):
    t = "dry-run"
    await update(stubs, t, req(model={"strategy": "default"}))
    before = await get(stubs, t)
    reply = await update(
        stubs,
        t,
        req(
            mode="byok",
            openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"},
            validate_only=True,
        ),
    )
    assert reply.config.mode == "byok" and reply.config.openai.configured
    assert reply.config.etag == before.etag
    assert await get(stubs, t) == before
    assert len(await all_audit(stubs, t)) == 1
    # Invalid input still fails under validate_only.
    d = await fails(update(stubs, t, req(mode="auto", validate_only=True)))
    assert d.reason == "INVALID_CONFIG"
    # A stale etag fails too.
    d = await fails(update(stubs, t, req(mode="byok", etag="v0", validate_only=True)))
    assert d.reason == "ETAG_MISMATCH"


# -- etags and concurrency -----------------------------------------------------


async def test_stale_etag_is_aborted_and_writes_nothing(stubs):
    t = "etag"
    first = await update(stubs, t, req(openai={"default_model": "gpt-4o"}))
    assert first.config.etag != "v0"
    second = await update(stubs, t, req(openai={"default_model": "o1"}, etag=first.config.etag))
    assert second.config.etag not in (first.config.etag, "v0")
    d = await fails(
        update(stubs, t, req(openai={"default_model": "gpt-4-turbo"}, etag=first.config.etag))
    )
    assert (d.code, d.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert d.error_infos == 1
    assert await get(stubs, t) == second.config
    assert len(await all_audit(stubs, t)) == 2
    for bogus in ("nonsense", "v999"):
        d = await fails(update(stubs, t, req(mode="byok", etag=bogus)))
        assert d.code == grpc.StatusCode.ABORTED


async def concurrent_same_etag(stubs, tenant: str, n: int = 8) -> None:
    base = await update(stubs, tenant, req(openai={"default_model": "gpt-4o"}))
    models = [f"model-{i}" for i in range(n)]
    results = await asyncio.gather(
        *(
            update(stubs, tenant, req(openai={"default_model": m}, etag=base.config.etag))
            for m in models
        ),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    errs = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 1, results
    for e in errs:
        assert isinstance(e, grpc.aio.AioRpcError), e
        d = details_of(e)
        assert (d.code, d.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    final = await get(stubs, tenant)
    assert final == ok[0].config
    assert final.openai.default_model in models
    assert len(await all_audit(stubs, tenant)) == 2


async def concurrent_first_writes_with_etag_v0(stubs, tenant: str, n: int = 6) -> None:
    """Racing to create a tenant's first config: one insert wins."""
    results = await asyncio.gather(
        *(
            update(stubs, tenant, req(openai={"default_model": f"m{i}"}, etag="v0"))
            for i in range(n)
        ),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 1, results
    for e in results:
        if isinstance(e, BaseException):
            assert details_of(e).reason == "ETAG_MISMATCH"
    assert (await get(stubs, tenant)).etag == "v1"


async def concurrent_without_etag(stubs, tenant: str) -> None:
    intents = [
        "general_chat",
        "resume_analysis",
        "mock_interview",
        "cover_letter",
        "job_matching",
        "interview_feedback",
        "summarization",
    ]
    requests = [
        req(model={"overrides": {i: "gpt-4o"}}, mask=[f"model_config.overrides.{i}"])
        for i in intents
    ] + [
        req(mode="byok"),
        req(model={"strategy": "cost-optimised"}),
        req(model={"cost_limit_usd_per_request": 1.5}),
        req(openai={"api_key": OPENAI_KEY, "default_model": "gpt-4o"}),
        req(anthropic={"api_key": ANTHROPIC_KEY, "default_model": "claude-haiku-4-5"}),
        req(azure=azure_full()),
    ]
    await asyncio.gather(*(update(stubs, tenant, r) for r in requests))
    c = await get(stubs, tenant)
    assert dict(c.model_config.overrides) == dict.fromkeys(intents, "gpt-4o")
    assert c.mode == "byok"
    assert c.model_config.strategy == "cost-optimised"
    assert c.model_config.cost_limit_usd_per_request == 1.5
    assert c.openai.configured and c.anthropic.configured and c.azure.configured
    assert c.anthropic.default_model == "claude-haiku-4-5"
    assert c.etag == f"v{len(requests)}"
    assert len(await all_audit(stubs, tenant)) == len(requests)


async def test_concurrent_updates_with_the_same_etag_one_wins(stubs):
    await concurrent_same_etag(stubs, "race")


async def test_concurrent_updates_without_etag_lose_nothing(stubs):
    await concurrent_without_etag(stubs, "no-etag-race")


async def test_concurrent_first_writes_with_etag_v0(stubs):
    await concurrent_first_writes_with_etag_v0(stubs, "first-race")


async def test_concurrency_on_postgres(servers, postgres_url):
    _, s = await servers.start(LIYA_DATABASE_URL=postgres_url)
    await concurrent_same_etag(s, "pg-race")
    await concurrent_without_etag(s, "pg-no-etag")
    await concurrent_first_writes_with_etag_v0(s, "pg-first-race")


async def test_two_servers_on_one_database_share_etags(servers, db_url):
    """Replicas share one database: optimistic concurrency holds across them."""
    _, a = await servers.start(LIYA_DATABASE_URL=db_url)
    _, b = await servers.start(LIYA_DATABASE_URL=db_url)
    base = await update(a, "replicas", req(mode="byok"))
    results = await asyncio.gather(
        update(a, "replicas", req(openai={"default_model": "a"}, etag=base.config.etag)),
        update(b, "replicas", req(openai={"default_model": "b"}, etag=base.config.etag)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    assert (await get(a, "replicas")) == (await get(b, "replicas"))
    intents = [
        "general_chat",
        "resume_analysis",
        "mock_interview",
        "cover_letter",
        "job_matching",
        "interview_feedback",
        "summarization",
    ]
    await asyncio.gather(
        *(
            update((a, b)[i % 2], "replicas", req(model={"overrides": {intent: f"m-{i}"}}))
            for i, intent in enumerate(intents)
        )
    )
    final = await get(b, "replicas")
    assert dict(final.model_config.overrides) == {x: f"m-{i}" for i, x in enumerate(intents)}
    assert final.etag == f"v{2 + len(intents)}"


# -- validation ----------------------------------------------------------------

K = canary_key()  # an OpenAI-shaped key sent along with each bad request

INVALID = {
    "mode unknown": (req(mode="auto", openai={"api_key": K}), "provider_config.mode"),
    "mode wrong case": (req(mode="BYOK", openai={"api_key": K}), "provider_config.mode"),
    "strategy unknown": (
        req(openai={"api_key": K}, model={"strategy": "cheapest"}),
        "model_config.strategy",
    ),
    "key too short": (req(openai={"api_key": "sk-1"}), "provider_config.openai.api_key"),
    "key with a space": (
        req(openai={"api_key": K[:12] + " " + K[12:]}),
        "provider_config.openai.api_key",
    ),
    "key with a newline": (req(openai={"api_key": K + "\n"}), "provider_config.openai.api_key"),
    "key too long": (req(openai={"api_key": "sk-" + "a" * 600}), "provider_config.openai.api_key"),
    "anthropic key under openai": (
        req(openai={"api_key": "sk-ant-" + K[3:]}),
        "provider_config.openai.api_key",
    ),
    "openai key under anthropic": (
        req(anthropic={"api_key": K}),
        "provider_config.anthropic.api_key",
    ),
    "openai key under azure": (req(azure=azure_full(key=K)), "provider_config.azure.api_key"),
    "model with a space": (
        req(openai={"api_key": K, "default_model": "gpt 4o"}),
        "provider_config.openai.default_model",
    ),
    "model empty": (
        req(openai={"api_key": K, "default_model": ""}),
        "provider_config.openai.default_model",
    ),
    "key pasted as model": (
        req(anthropic={"default_model": K}),
        "provider_config.anthropic.default_model",
    ),
    "key pasted as deployment": (
        req(azure=azure_full(deployment_name=AZURE_KEY)),
        "provider_config.azure.deployment_name",
    ),
    "key pasted as override model": (
        req(model={"overrides": {"general_chat": K}}),
        "model_config.overrides.general_chat",
    ),
    "key pasted as override intent": (
        req(model={"overrides": {K: "gpt-4o"}}),
        "model_config.overrides",
    ),
    "key pasted as override intent by mask": (
        req(model={"overrides": {K: "gpt-4o"}}, mask=[f"model_config.overrides.{K}"]),
        "model_config.overrides",
    ),
    "key pasted as mask path": (req(openai={"api_key": K}, mask=[K]), "update_mask"),
    "override model bad": (
        req(openai={"api_key": K}, model={"overrides": {"general_chat": "gpt-4o; rm"}}),
        "model_config.overrides.general_chat",
    ),
    "override intent unknown": (
        req(openai={"api_key": K}, model={"overrides": {"weather_report": "gpt-4o"}}),
        "model_config.overrides.weather_report",
    ),
    "override intent unknown by mask": (
        req(
            openai={"api_key": K},
            model={"overrides": {"weather_report": "gpt-4o"}},
            mask=["provider_config.openai", "model_config.overrides.weather_report"],
        ),
        "model_config.overrides.weather_report",
    ),
    "cost limit negative": (
        req(openai={"api_key": K}, model={"cost_limit_usd_per_request": -0.01}),
        "model_config.cost_limit_usd_per_request",
    ),
    "cost limit NaN": (
        req(openai={"api_key": K}, model={"cost_limit_usd_per_request": math.nan}),
        "model_config.cost_limit_usd_per_request",
    ),
    "cost limit inf": (
        req(openai={"api_key": K}, model={"cost_limit_usd_per_request": math.inf}),
        "model_config.cost_limit_usd_per_request",
    ),
    "api_version free text": (
        req(azure=azure_full(api_version="latest")),
        "provider_config.azure.api_version",
    ),
    "api_version bad date": (
        req(azure=azure_full(api_version="2024/02/15")),
        "provider_config.azure.api_version",
    ),
    "deployment with a space": (
        req(azure=azure_full(deployment_name="my deployment")),
        "provider_config.azure.deployment_name",
    ),
    "deployment path": (
        req(azure=azure_full(deployment_name="../admin")),
        "provider_config.azure.deployment_name",
    ),
    "deployment too long": (
        req(azure=azure_full(deployment_name="d" * 65)),
        "provider_config.azure.deployment_name",
    ),
}

BAD_ENDPOINTS = {
    "http": "http://contoso.openai.azure.com",
    "ip literal": "https://20.42.1.7",
    "ipv6 literal": "https://[2001:db8::1]",
    "private ip": "https://10.0.0.5",
    "link-local metadata ip": "https://169.254.169.254",
    "userinfo": "https://user:pw@contoso.openai.azure.com",
    "userinfo trick": "https://contoso.openai.azure.com@evil.example",
    "query": "https://contoso.openai.azure.com?x=1",
    "empty query": "https://contoso.openai.azure.com?",
    "fragment": "https://contoso.openai.azure.com#frag",
    "path": "https://contoso.openai.azure.com/openai/deployments",
    "non-azure host": "https://evil.example.com",
    "azure suffix as subdomain": "https://contoso.openai.azure.com.evil.example",
    "lookalike suffix": "https://contosoopenai.azure.com",
    "other port": "https://contoso.openai.azure.com:8443",
    "empty host label": "https://.openai.azure.com",
    "empty inner label": "https://a..openai.azure.com",
    "label starting with a dash": "https://-x.openai.azure.com",
    "underscore in host": "https://my_res.openai.azure.com",
    "newline inside": "https://contoso.openai\n.azure.com",
    "tab inside": "https://contoso.openai.azure.com\t",
    "space": "https://contoso.openai.azure.com ",
    "no scheme": "contoso.openai.azure.com",
    "ftp": "ftp://contoso.openai.azure.com",
    "empty": "",
}
for _name, _url in BAD_ENDPOINTS.items():
    INVALID[f"endpoint {_name}"] = (
        req(azure=azure_full(key=AZURE_KEY[:8] + K[3:27], endpoint=_url)),
        "provider_config.azure.endpoint",
    )


def keys_in(request: cpb.UpdateConfigRequest) -> list[str]:
    pc = request.provider_config
    return [k for k in (pc.openai.api_key, pc.anthropic.api_key, pc.azure.api_key) if k]


@pytest.mark.parametrize("name", list(INVALID))
async def test_invalid_input_names_the_field_and_never_echoes_the_key(stubs, name):
    request, field = INVALID[name]
    t = "validation"
    d = await fails(update(stubs, t, request))
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG"), d
    assert d.error_infos == 1
    assert field in [f for f, _ in d.violations], d.violations
    everything = d.message + repr(d.violations) + repr(d.metadata)
    for key in keys_in(request) + ([K] if K in str(request) else []):
        if len(key) >= 6:
            assert key.strip() not in everything
            assert key.strip()[-12:] not in everything
    assert (await get(stubs, t)).etag == "v0"


async def test_valid_endpoints_are_accepted(stubs):
    for endpoint in (
        "https://contoso.openai.azure.com",
        "https://contoso.openai.azure.com/",
        "https://contoso.cognitiveservices.azure.com",
        "https://CONTOSO.openai.azure.com:443",
        # The default test server allows loopback for the fake providers.
        "http://127.0.0.1:8080",
        "http://localhost:9000",
    ):
        reply = await update(stubs, "endpoints", req(azure=azure_full(endpoint=endpoint)))
        assert reply.config.azure.endpoint == endpoint


async def test_loopback_http_needs_the_insecure_setting(servers):
    _, s = await servers.start(LIYA_ALLOW_INSECURE_ENDPOINTS="false")
    for endpoint in ("http://127.0.0.1:8080", "http://localhost:9000", "https://127.0.0.1"):
        d = await fails(update(s, "secure", req(azure=azure_full(endpoint=endpoint))))
        assert d.reason == "INVALID_CONFIG"
        assert [f for f, _ in d.violations] == ["provider_config.azure.endpoint"]


async def test_operator_allowlist_admits_other_hosts(servers):
    _, s = await servers.start(
        LIYA_ALLOW_INSECURE_ENDPOINTS="false",
        LIYA_AZURE_ENDPOINT_ALLOWLIST="gateway.corp.example,.apim.example",
    )
    for endpoint in ("https://gateway.corp.example", "https://eu.apim.example"):
        reply = await update(s, "allow", req(azure=azure_full(endpoint=endpoint)))
        assert reply.config.azure.endpoint == endpoint
    for endpoint in ("https://evil.gateway.corp.example", "https://apim.example.evil"):
        d = await fails(update(s, "allow", req(azure=azure_full(endpoint=endpoint))))
        assert d.reason == "INVALID_CONFIG"


async def test_several_violations_are_all_reported(stubs):
    d = await fails(
        update(
            stubs,
            "many",
            req(mode="auto", model={"strategy": "x", "cost_limit_usd_per_request": -1}),
        )
    )
    assert {f for f, _ in d.violations} == {
        "provider_config.mode",
        "model_config.strategy",
        "model_config.cost_limit_usd_per_request",
    }


async def test_strategy_american_spelling_is_stored_in_the_guide_spelling(stubs):
    reply = await update(stubs, "spelling", req(model={"strategy": "cost-optimized"}))
    assert reply.config.model_config.strategy == "cost-optimised"


# -- warnings ------------------------------------------------------------------


async def test_warnings(stubs):
    t = "warn"
    reply = await update(stubs, t, req(mode="byok"))
    assert any("no provider key" in w for w in reply.warnings)
    reply = await update(stubs, t, req(openai={"api_key": "sk-your-key-here"}))
    assert any("placeholder" in w and "provider_config.openai.api_key" in w for w in reply.warnings)
    reply = await update(
        stubs,
        t,
        req(
            openai={"api_key": OPENAI_KEY},
            model={"overrides": {"mock_interview": "claude-sonnet-4-6", "general_chat": "o1"}},
        ),
    )
    assert not any("placeholder" in w for w in reply.warnings)
    unserved = [w for w in reply.warnings if "mock_interview" in w]
    assert unserved and "claude-sonnet-4-6" in unserved[0]
    assert not any("general_chat" in w for w in reply.warnings)
    # Once Anthropic is configured the override is servable.
    reply = await update(stubs, t, req(anthropic={"api_key": ANTHROPIC_KEY}))
    assert reply.warnings == []


# -- tenant isolation ----------------------------------------------------------


async def test_tenants_are_isolated(stubs):
    a = await update(
        stubs, "tenant-a", req(mode="byok", openai={"api_key": OPENAI_KEY}), sub="alice"
    )
    b_before = await get(stubs, "tenant-b")
    assert b_before.etag == "v0" and not b_before.openai.configured
    b = await update(stubs, "tenant-b", req(anthropic={"api_key": ANTHROPIC_KEY}), sub="bob")
    # A's further changes leave B exactly as it was.
    await update(stubs, "tenant-a", req(model={"strategy": "cost-optimised"}), sub="alice")
    await update(stubs, "tenant-a", req(mask=["provider_config.anthropic"]), sub="alice")
    assert await get(stubs, "tenant-b") == b.config
    seen_by_a = await get(stubs, "tenant-a")
    assert seen_by_a.openai.configured and not seen_by_a.anthropic.configured
    assert seen_by_a.openai.api_key_preview == a.config.openai.api_key_preview
    # Request metadata cannot name another tenant.
    spoof = (*md("tenant-a"), ("x-tenant-id", "tenant-b"), ("tenant_id", "tenant-b"))
    got = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=spoof)
    assert got.config == seen_by_a
    assert [e.actor for e in await all_audit(stubs, "tenant-a")] == ["alice", "alice"]
    assert [e.actor for e in await all_audit(stubs, "tenant-b")] == ["bob"]


# -- audit ---------------------------------------------------------------------


async def test_each_change_writes_an_audit_entry_without_keys(stubs):
    t = "audited"
    key = canary_key()
    await update(
        stubs,
        t,
        req(mode="byok", openai={"api_key": key, "default_model": "gpt-4o"}),
        sub="alice@acme",
        request_id="req-audit-0001",
    )
    await update(
        stubs,
        t,
        req(model={"strategy": "quality-optimised"}),
        sub="bob@acme",
        request_id="req-audit-0002",
    )
    await update(stubs, t, req(mode="managed"), sub="carol@acme", request_id="req-audit-0003")
    entries = await all_audit(stubs, t)
    assert [e.request_id for e in entries] == ["req-audit-0003", "req-audit-0002", "req-audit-0001"]
    assert [e.actor for e in entries] == ["carol@acme", "bob@acme", "alice@acme"]
    third, second, first = entries
    assert set(first.changed_paths) == {
        "provider_config.mode",
        "provider_config.openai.api_key",
        "provider_config.openai.default_model",
    }
    assert (first.mode_before, first.mode_after) == ("managed", "byok")
    assert list(second.changed_paths) == ["model_config.strategy"]
    assert (second.mode_before, second.mode_after) == ("byok", "byok")
    assert list(third.changed_paths) == ["provider_config.mode"]
    assert (third.mode_before, third.mode_after) == ("byok", "managed")
    assert all(e.id and e.HasField("create_time") for e in entries)
    assert len({e.id for e in entries}) == 3
    preview = (await get(stubs, t)).openai.api_key_preview
    for e in entries:
        text = json_format.MessageToJson(e)
        assert key not in text and key[-4:] not in text and preview not in text


async def test_audit_paging_covers_every_entry_once_newest_first(stubs):
    t = "paged"
    n = 23
    for i in range(n):
        await update(
            stubs, t, req(openai={"default_model": f"m-{i}"}), request_id=f"req-page-{i:04d}"
        )
    await update(stubs, "other-tenant", req(mode="byok"))
    for size in (1, 5, 7, 23, 100):
        entries = await all_audit(stubs, t, page_size=size)
        assert [e.request_id for e in entries] == [f"req-page-{i:04d}" for i in reversed(range(n))]
    reply = await stubs.config.ListAuditEntries(cpb.ListAuditEntriesRequest(), metadata=md(t))
    assert len(reply.audit_entries) == 20 and reply.next_page_token
    reply = await stubs.config.ListAuditEntries(
        cpb.ListAuditEntriesRequest(page_size=1000), metadata=md(t)
    )
    assert len(reply.audit_entries) == n and not reply.next_page_token
    created = [e.create_time.ToDatetime() for e in reply.audit_entries]
    assert created == sorted(created, reverse=True)


BAD_TOKENS = {
    "garbage": "garbage",
    "no number": "YTE6",  # "a1:"
    "not base64": "!!!",
    "negative": "YTE6LTE",  # "a1:-1"
    "other tag": "eDE6MTA",  # "x1:10"
    "beyond the id range": "YTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk",  # "a1:9999...9"
    "non-ASCII digits": "YTE677yR77yS",  # "a1:" + fullwidth "12"
}


@pytest.mark.parametrize("token", list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
async def test_bad_page_token_is_invalid_argument(stubs, token):
    d = await fails(
        stubs.config.ListAuditEntries(
            cpb.ListAuditEntriesRequest(page_token=token), metadata=md("tok")
        )
    )
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in d.violations] == ["page_token"]


async def test_negative_page_size_is_invalid_argument(stubs):
    d = await fails(
        stubs.config.ListAuditEntries(cpb.ListAuditEntriesRequest(page_size=-1), metadata=md("tok"))
    )
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in d.violations] == ["page_size"]


async def test_page_token_cannot_reach_another_tenant(stubs):
    for i in range(3):
        await update(stubs, "owner", req(openai={"default_model": f"m-{i}"}))
    first = await stubs.config.ListAuditEntries(
        cpb.ListAuditEntriesRequest(page_size=1), metadata=md("owner")
    )
    assert first.next_page_token
    other = await stubs.config.ListAuditEntries(
        cpb.ListAuditEntriesRequest(page_token=first.next_page_token), metadata=md("snoop")
    )
    assert list(other.audit_entries) == []


# -- restart -------------------------------------------------------------------


async def test_restarted_server_serves_the_same_config(servers):
    first, s1 = await servers.start()
    key = canary_key()
    reply = await update(
        s1,
        "durable",
        req(
            mode="byok",
            openai={"api_key": key, "default_model": "gpt-4o"},
            azure=azure_full(),
            model={
                "strategy": "cost-optimised",
                "overrides": {"general_chat": "gpt-4o-mini"},
                "cost_limit_usd_per_request": 0.05,
            },
        ),
    )
    await s1.channel.close()
    await first.stop(0)
    second, s2 = await servers.start()
    assert second.port != 0
    assert await get(s2, "durable") == reply.config
    assert await stored_key(second, "durable", "openai") == key
    assert await stored_key(second, "durable", "azure") == AZURE_KEY
    entries = await all_audit(s2, "durable")
    assert len(entries) == 1


async def test_star_mask_replaces_the_whole_config(stubs):
    from google.protobuf import field_mask_pb2

    md = auth("star")
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok", openai=cpb.OpenAIConfig(api_key="sk-" + "s" * 40)
            ),
            model_config=cpb.ModelConfig(strategy="cost-optimised"),
        ),
        metadata=md,
    )
    reply = await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok", anthropic=cpb.AnthropicConfig(api_key="sk-ant-" + "s" * 40)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
        ),
        metadata=md,
    )
    cfg = reply.config
    assert cfg.anthropic.configured and not cfg.openai.configured
    assert not cfg.model_config.HasField("strategy")
