"""Typed config changes: validate_only never encrypts, a resend of identical
values writes nothing, every violation is reported, and the field tables, the
path grammar and the protos agree.

The server tests run through a real grpc.aio server on SQLite and on the real
PostgreSQL; the grammar tests use the domain modules alone.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from helpers import auth, details_of, master_key_line
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.config import paths
from liya_engine.config.changes import (
    MAP_RULES,
    MODEL_FIELD_RULES,
    PROVIDER_FIELD_CHECKS,
    ClearModelConfig,
    ClearProvider,
    ReplaceMap,
    SetApiKey,
    SetMapEntry,
    SetMode,
    SetModelField,
    SetProviderField,
)
from liya_engine.config.model import (
    CLEAR,
    KEY_FIELD,
    MODEL_FIELDS,
    MODEL_MAPS,
    PROVIDER_FIELDS,
    ModelSettings,
    StoredProvider,
)
from liya_engine.config.patch import PatchBody, changes_at, changes_for
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.errors import InvalidConfig
from liya_engine.secret import Secret

OPENAI_KEY = "sk-proj-Ab3De6Gh9Jk2Mn5Pq8St4Vw7"
# Same prefix and last four, so the same preview: told apart only by the key.
OPENAI_LOOKALIKE = "sk-proj-Xb3De6Gh9Jk2Mn5Pq8St4Vw7"
ANTHROPIC_KEY = "sk-ant-api03-Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2"
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def full_request(**kw) -> cpb.UpdateConfigRequest:
    """A config that sets every kind of field."""
    return cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(
            mode="byok",
            openai=cpb.OpenAIConfig(api_key=OPENAI_KEY, default_model="gpt-4o"),
            anthropic=cpb.AnthropicConfig(api_key=ANTHROPIC_KEY),
            azure=cpb.AzureOpenAIConfig(
                api_key=AZURE_KEY,
                endpoint="https://contoso.openai.azure.com",
                deployment_name="prod-gpt4o",
                api_version="2024-10-21",
            ),
        ),
        model_config=cpb.ModelConfig(
            strategy="cost-optimised",
            overrides={"general_chat": "gpt-4o-mini", "mock_interview": "claude-sonnet-4-6"},
            cost_limit_usd_per_request=0.25,
        ),
        **kw,
    )


def masked(request: cpb.UpdateConfigRequest, *mask: str) -> cpb.UpdateConfigRequest:
    out = cpb.UpdateConfigRequest()
    out.CopyFrom(request)
    out.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(mask)))
    return out


async def audit(stubs, tenant: str) -> list[cpb.AuditEntry]:
    reply = await stubs.config.ListAuditEntries(
        cpb.ListAuditEntriesRequest(page_size=100), metadata=auth(tenant)
    )
    return list(reply.audit_entries)


async def ciphertexts(running, tenant: str) -> dict[str, bytes | None]:
    cfg = await running.services.configs.get(tenant)
    return {p: cfg.provider(p).api_key_ciphertext for p in PROVIDER_FIELDS}


@pytest.fixture
def encryptions(monkeypatch) -> list[tuple[str, str]]:
    """(tenant, provider) of every key this process encrypts, in order: the
    real cipher's ``encrypt``, counted."""
    seen: list[tuple[str, str]] = []
    real = KeyCipher.encrypt

    def counted(self, plaintext, *, tenant_id, provider, field):
        seen.append((tenant_id, provider))
        return real(self, plaintext, tenant_id=tenant_id, provider=provider, field=field)

    monkeypatch.setattr(KeyCipher, "encrypt", counted)
    return seen


# -- validate_only ---------------------------------------------------------------------


async def test_validate_only_never_encrypts(servers, db_url, encryptions):
    running, s = await servers.start(LIYA_DATABASE_URL=db_url)
    md = auth("dry")
    reply = await s.config.UpdateConfig(full_request(validate_only=True), metadata=md)
    assert encryptions == []
    # The answer shows what would be stored, previews included.
    c = reply.config
    assert c.openai.configured and c.openai.api_key_preview == "sk-proj-...4Vw7"
    assert c.anthropic.configured and c.azure.configured and c.azure.api_key_preview == "...e1f0"
    assert c.serving_provider == "azure" and c.etag == "v0"
    assert await ciphertexts(running, "dry") == dict.fromkeys(PROVIDER_FIELDS)
    assert await audit(s, "dry") == []
    # A stored config tested with new keys: still nothing encrypted or written.
    await s.config.UpdateConfig(full_request(), metadata=md)
    assert sorted(encryptions) == [("dry", "anthropic"), ("dry", "azure"), ("dry", "openai")]
    stored = await ciphertexts(running, "dry")
    encryptions.clear()
    other = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(api_key=OPENAI_LOOKALIKE)),
        validate_only=True,
    )
    reply = await s.config.UpdateConfig(other, metadata=md)
    assert encryptions == []
    assert reply.config.etag == "v1"
    assert await ciphertexts(running, "dry") == stored
    assert len(await audit(s, "dry")) == 1


# -- resending identical values --------------------------------------------------------


async def test_resending_identical_values_writes_nothing(servers, db_url, encryptions):
    running, s = await servers.start(LIYA_DATABASE_URL=db_url)
    md = auth("resend")
    first = await s.config.UpdateConfig(full_request(), metadata=md)
    stored = await ciphertexts(running, "resend")
    encryptions.clear()
    resends = {
        "no mask": full_request(),
        "star mask": masked(full_request(), "*"),
        "each provider replaced": masked(
            full_request(), "provider_config.openai", "provider_config.azure"
        ),
        "provider_config replaced": masked(full_request(), "provider_config"),
        "model_config replaced": masked(full_request(), "model_config"),
        "one key by its path": masked(full_request(), "provider_config.anthropic.api_key"),
        "the override map": masked(full_request(), "model_config.overrides"),
        "the strategy in the other spelling": cpb.UpdateConfigRequest(
            model_config=cpb.ModelConfig(strategy="cost-optimized")
        ),
    }
    for name, request in resends.items():
        reply = await s.config.UpdateConfig(request, metadata=md)
        assert reply.config == first.config, name
        assert encryptions == [], name
        assert await ciphertexts(running, "resend") == stored, name
    shown = await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)
    assert shown.config.etag == "v1"
    assert len(await audit(s, "resend")) == 1


async def test_a_resent_key_beside_a_change_keeps_its_ciphertext(servers, db_url, encryptions):
    running, s = await servers.start(LIYA_DATABASE_URL=db_url)
    md = auth("beside")
    await s.config.UpdateConfig(full_request(), metadata=md)
    stored = await ciphertexts(running, "beside")
    encryptions.clear()
    request = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(
            openai=cpb.OpenAIConfig(api_key=OPENAI_KEY, default_model="o1")
        )
    )
    # Replacing the provider whole with the same key and a new model, too.
    replace = masked(request, "provider_config.openai")
    replace.provider_config.openai.default_model = "gpt-4o-mini"
    for req, model in ((request, "o1"), (replace, "gpt-4o-mini")):
        reply = await s.config.UpdateConfig(req, metadata=md)
        assert reply.config.openai.default_model == model
        assert encryptions == []
        assert await ciphertexts(running, "beside") == stored
        assert list((await audit(s, "beside"))[0].changed_paths) == [
            "provider_config.openai.default_model"
        ]
    assert reply.config.etag == "v3"


async def test_a_different_key_with_the_same_preview_is_a_new_key(servers, db_url, encryptions):
    running, s = await servers.start(LIYA_DATABASE_URL=db_url)
    md = auth("lookalike")
    await s.config.UpdateConfig(full_request(), metadata=md)
    before = await ciphertexts(running, "lookalike")
    encryptions.clear()
    reply = await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(api_key=OPENAI_LOOKALIKE))
        ),
        metadata=md,
    )
    assert reply.config.etag == "v2"
    assert encryptions == [("lookalike", "openai")]
    after = await ciphertexts(running, "lookalike")
    assert after["openai"] != before["openai"]
    assert {p: after[p] for p in ("anthropic", "azure")} == {
        p: before[p] for p in ("anthropic", "azure")
    }
    cfg = await running.services.configs.get("lookalike")
    key = running.services.cipher.decrypt(
        cfg.provider("openai").api_key_ciphertext,
        tenant_id="lookalike",
        provider="openai",
        field="api_key",
    )
    assert key.reveal() == OPENAI_LOOKALIKE
    assert list((await audit(s, "lookalike"))[0].changed_paths) == [
        "provider_config.openai.api_key"
    ]


async def test_resending_a_key_that_no_longer_decrypts_stores_it_again(
    servers, db_url, encryptions
):
    """A stored key whose master key is gone is not "the same": sending it
    again repairs the config."""
    _, old = await servers.start(LIYA_DATABASE_URL=db_url)
    md = auth("lost-master")
    request = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(openai=cpb.OpenAIConfig(api_key=OPENAI_KEY))
    )
    await old.config.UpdateConfig(request, metadata=md)
    encryptions.clear()
    running, new = await servers.start(
        LIYA_DATABASE_URL=db_url, LIYA_MASTER_KEYS=master_key_line("other-1")
    )
    reply = await new.config.UpdateConfig(request, metadata=md)
    assert reply.config.etag == "v2"
    assert encryptions == [("lost-master", "openai")]
    cfg = await running.services.configs.get("lost-master")
    blob = cfg.provider("openai").api_key_ciphertext
    assert KeyCipher.key_id_of(blob) == "other-1"
    assert list((await audit(new, "lost-master"))[0].changed_paths) == [
        "provider_config.openai.api_key"
    ]


# -- violations ------------------------------------------------------------------------


async def test_every_violation_is_reported_in_request_order(stubs):
    request = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(
            mode="auto",
            openai=cpb.OpenAIConfig(api_key="sk-1", default_model="gpt 4o"),
            azure=cpb.AzureOpenAIConfig(
                endpoint="http://evil.example", deployment_name="a b", api_version="latest"
            ),
        ),
        model_config=cpb.ModelConfig(
            strategy="cheapest",
            overrides={"weather_report": "gpt-4o", "general_chat": "bad model"},
            cost_limit_usd_per_request=-1,
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.config.UpdateConfig(request, metadata=auth("many"))
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG")
    assert [f for f, _ in d.violations] == [
        "provider_config.mode",
        "provider_config.openai.api_key",
        "provider_config.openai.default_model",
        "provider_config.azure.endpoint",
        "provider_config.azure.deployment_name",
        "provider_config.azure.api_version",
        "model_config.strategy",
        "model_config.overrides.general_chat",
        "model_config.overrides.weather_report",
        "model_config.cost_limit_usd_per_request",
    ]
    assert d.message == (
        "invalid configuration: provider_config.mode must be 'byok' or 'managed' (and 9 more)"
    )


# -- the grammar and the tables --------------------------------------------------------


def test_every_field_has_exactly_one_rule():
    non_key = {f for fields in PROVIDER_FIELDS.values() for f in fields} - {KEY_FIELD}
    assert set(PROVIDER_FIELD_CHECKS) == non_key
    assert non_key <= set(StoredProvider.__dataclass_fields__)
    assert set(MODEL_FIELDS) == set(ModelSettings.__dataclass_fields__)
    assert set(MODEL_FIELD_RULES) == set(MODEL_FIELDS) - set(MODEL_MAPS)
    assert set(MAP_RULES) == set(MODEL_MAPS)


def test_the_field_tables_match_the_protos():
    messages = {"openai": cpb.OpenAIConfig, "anthropic": cpb.AnthropicConfig}
    messages["azure"] = cpb.AzureOpenAIConfig
    shown = {"openai": cpb.MaskedOpenAIConfig, "anthropic": cpb.MaskedAnthropicConfig}
    shown["azure"] = cpb.MaskedAzureOpenAIConfig
    assert [f.name for f in cpb.ProviderConfig.DESCRIPTOR.fields] == ["mode", *PROVIDER_FIELDS]
    for provider, fields in PROVIDER_FIELDS.items():
        assert tuple(f.name for f in messages[provider].DESCRIPTOR.fields) == fields
        assert [f.name for f in shown[provider].DESCRIPTOR.fields] == [
            "configured",
            "api_key_preview",
            *(f for f in fields if f != KEY_FIELD),
            "health",  # what calls with the stored credentials found, not a setting
        ]
    assert tuple(f.name for f in cpb.ModelConfig.DESCRIPTOR.fields) == MODEL_FIELDS
    maps = {f.name for f in cpb.ModelConfig.DESCRIPTOR.fields if f.message_type is not None}
    assert maps == set(MODEL_MAPS)


def test_each_path_reads_back_as_what_it_names():
    cases = {
        "provider_config": paths.FieldPath(paths.Kind.PROVIDER_CONFIG),
        paths.MODE: paths.FieldPath(paths.Kind.MODE),
        paths.provider_path("azure"): paths.FieldPath(paths.Kind.PROVIDER, "azure"),
        paths.provider_field_path("azure", "endpoint"): paths.FieldPath(
            paths.Kind.PROVIDER_FIELD, "azure", "endpoint"
        ),
        "model_config": paths.FieldPath(paths.Kind.MODEL_CONFIG),
        paths.model_field_path("strategy"): paths.FieldPath(paths.Kind.MODEL_FIELD, "strategy"),
        paths.model_field_path("overrides"): paths.FieldPath(paths.Kind.MAP, "overrides"),
        paths.map_entry_path("overrides", "general_chat"): paths.FieldPath(
            paths.Kind.MAP_ENTRY, "overrides", "general_chat"
        ),
    }
    for path, expected in cases.items():
        assert paths.parse(path) == expected, path
    for path in (
        "",
        "*",
        "provider_config.openai.endpoint",
        "provider_config.mode.x",
        "model_config.overrides.",
        "model_config.overrides.a.b",
        "model_config.strategy.x",
        "etag",
    ):
        assert paths.parse(path) is None, path


def test_the_unknown_path_message_lists_the_paths():
    violation = paths.unknown_path("provider_config.foo")
    assert violation.field == "update_mask"
    assert violation.description == (
        "unknown path 'provider_config.foo'; paths are "
        "provider_config[.mode|.openai|.anthropic|.azure[.field]] "
        "or model_config[.strategy|.overrides[.intent]|.cost_limit_usd_per_request"
        "|.prices[.model]|.monthly_budget_usd]"
    )


def test_a_request_becomes_typed_changes_once():
    key = Secret(OPENAI_KEY)
    body = PatchBody(
        mode="byok",
        providers={"openai": {"default_model": "o1", "api_key": key}, "anthropic": {}},
        model={"cost_limit_usd_per_request": 0.5, "overrides": {"b": "m2", "a": "m1"}},
    )
    assert changes_for(body) == [
        SetMode("byok"),
        SetApiKey("openai", key),
        SetProviderField("openai", "default_model", "o1"),
        SetMapEntry("overrides", "a", "m1"),
        SetMapEntry("overrides", "b", "m2"),
        SetModelField("cost_limit_usd_per_request", 0.5),
    ]
    assert changes_for(body, ["provider_config.anthropic", "model_config.overrides"]) == [
        ClearProvider("anthropic"),
        ReplaceMap("overrides", {"b": "m2", "a": "m1"}),
    ]
    assert changes_for(body, ["model_config.strategy", "provider_config.mode"]) == [
        SetModelField("strategy", None),
        SetMode("byok"),
    ]
    assert changes_for(body, ["*", "nonsense"])[0] == SetMode("byok")
    with pytest.raises(InvalidConfig) as err:
        changes_for(body, ["nonsense", "model_config.nope"])
    assert [v.field for v in err.value.violations] == ["update_mask", "update_mask"]


def test_a_path_and_value_become_the_same_typed_change():
    assert changes_at("provider_config.openai.api_key", Secret(OPENAI_KEY)) == [
        SetApiKey("openai", Secret(OPENAI_KEY))
    ]
    assert changes_at("model_config.overrides.general_chat", CLEAR) == [
        SetMapEntry("overrides", "general_chat", None)
    ]
    assert changes_at("provider_config.azure", CLEAR) == [ClearProvider("azure")]
    assert changes_at("model_config", CLEAR) == [ClearModelConfig()]
    with pytest.raises(ValueError, match="can only be cleared"):
        changes_at("provider_config.azure", {"endpoint": "https://x.openai.azure.com"})
    with pytest.raises(InvalidConfig):
        changes_at("provider_config.openai.endpoint", "https://x.openai.azure.com")
