"""The public BYOK guide's JSON bodies work verbatim through UpdateConfig and
give the configuration the guide promises."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format

from guide_bodies import (
    ANTHROPIC_BODY,
    AZURE_BODY,
    BODIES,
    MANAGED_BODY,
    MODEL_CONFIG_BODY,
    OPENAI_BODY,
)
from helpers import auth
from liya.engine.v1 import config_service_pb2 as cpb


def parse(body: str) -> cpb.UpdateConfigRequest:
    return json_format.Parse(body, cpb.UpdateConfigRequest())


@pytest.mark.parametrize("name", list(BODIES))
def test_each_guide_body_parses_unchanged(name):
    """Every field of the body lands in the request: nothing ignored, nothing renamed."""
    request = parse(BODIES[name])
    back = json_format.MessageToDict(request, preserving_proto_field_name=True)
    expected = json.loads(BODIES[name])
    if "modelConfig" in expected:
        expected = {"model_config": expected.pop("modelConfig")}
    assert back == expected


async def test_guide_bodies_in_order_give_the_config_the_guide_describes(stubs):
    md = auth("guide-tenant", "alice@guide")
    cfg = stubs.config

    reply = await cfg.UpdateConfig(parse(OPENAI_BODY), metadata=md)
    c = reply.config
    assert c.mode == "byok"
    assert c.serving_provider == "openai"
    assert c.openai.configured and c.openai.default_model == "gpt-4o"
    # A short key shows only its known prefix, no tail.
    assert c.openai.api_key_preview == "sk-..."
    assert not c.anthropic.configured and not c.azure.configured
    # The guide's key is a placeholder: accepted, with a warning that says so.
    assert any("placeholder" in w for w in reply.warnings)

    reply = await cfg.UpdateConfig(parse(ANTHROPIC_BODY), metadata=md)
    c = reply.config
    assert c.serving_provider == "anthropic"  # Anthropic takes precedence over OpenAI
    assert c.anthropic.configured and c.anthropic.default_model == "claude-sonnet-4-6"
    assert c.anthropic.api_key_preview == "sk-ant-..."
    assert c.openai.configured and c.openai.default_model == "gpt-4o"  # left as it was

    reply = await cfg.UpdateConfig(parse(AZURE_BODY), metadata=md)
    c = reply.config
    assert c.serving_provider == "azure"  # Azure takes precedence over both
    assert c.azure.configured
    assert c.azure.endpoint == "https://your-resource.openai.azure.com"
    assert c.azure.deployment_name == "gpt-4o"
    assert c.azure.api_version == "2024-02-15-preview"
    assert c.azure.api_key_preview == "..."
    assert c.openai.configured and c.anthropic.configured

    reply = await cfg.UpdateConfig(parse(MODEL_CONFIG_BODY), metadata=md)
    m = reply.config.model_config
    assert m.strategy == "cost-optimised"
    assert dict(m.overrides) == {
        "resume_analysis": "gpt-4o",
        "general_chat": "gpt-4o-mini",
        "mock_interview": "claude-sonnet-4-6",
    }
    assert m.cost_limit_usd_per_request == pytest.approx(0.05)
    assert reply.config.serving_provider == "azure"  # model config leaves providers alone
    assert reply.config.azure.configured and reply.config.openai.configured

    byok_etag = reply.config.etag
    reply = await cfg.UpdateConfig(parse(MANAGED_BODY), metadata=md)
    c = reply.config
    assert c.mode == "managed"
    assert c.etag != byok_etag
    # The stored keys stay stored (still configured, same previews).
    assert c.openai.configured and c.anthropic.configured and c.azure.configured
    assert c.model_config.strategy == "cost-optimised"
    # This test server has no platform credentials, so managed routes nowhere.
    assert c.serving_provider == ""

    # Switching back needs no re-entry of any key.
    reply = await cfg.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok")), metadata=md
    )
    assert reply.config.mode == "byok"
    assert reply.config.serving_provider == "azure"
    assert reply.config.openai.configured and reply.config.anthropic.configured

    shown = await cfg.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)
    assert shown.config == reply.config
    assert "your-azure-key" not in json_format.MessageToJson(shown)


async def test_guide_previews_show_prefix_and_at_most_the_last_four(stubs):
    """With real-length keys, the preview is the known prefix and the last four."""
    md = auth("preview-tenant")
    openai_key = "sk-proj-" + "Ab3De6Gh9Jk2Mn5Pq8St" + "w1x2"
    anthropic_key = "sk-ant-api03-" + "Zy9Xw8Vu7Ts6Rq5Po4Nm" + "a1b2"
    azure_key = "0f1e2d3c4b5a69788796a5b4c3d2" + "e1f0"
    reply = await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok",
                openai=cpb.OpenAIConfig(api_key=openai_key),
                anthropic=cpb.AnthropicConfig(api_key=anthropic_key),
                azure=cpb.AzureOpenAIConfig(
                    api_key=azure_key,
                    endpoint="https://contoso.openai.azure.com",
                    deployment_name="prod-gpt4o",
                    api_version="2024-10-21",
                ),
            )
        ),
        metadata=md,
    )
    c = reply.config
    assert c.openai.api_key_preview == "sk-proj-...w1x2"
    assert c.anthropic.api_key_preview == "sk-ant-api03-...a1b2"
    assert c.azure.api_key_preview == "...e1f0"
    assert not [w for w in reply.warnings if "placeholder" in w]
    text = json_format.MessageToJson(reply)
    for key in (openai_key, anthropic_key, azure_key):
        assert key not in text
        assert key[-8:] not in text  # at most the last four characters


async def test_managed_mode_routes_to_the_platform_with_the_same_precedence(servers):
    """Managed mode serves from the platform's credentials; the tenant's keys stay."""
    _, s = await servers.start(
        LIYA_MANAGED_OPENAI_API_KEY="sk-platform-openai-key-0000000000",
        LIYA_MANAGED_ANTHROPIC_API_KEY="sk-ant-platform-anthropic-key-000000",
    )
    md = auth("managed-tenant")
    assert (
        await s.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)
    ).config.serving_provider == "anthropic"
    await s.config.UpdateConfig(parse(OPENAI_BODY), metadata=md)
    reply = await s.config.UpdateConfig(parse(MANAGED_BODY), metadata=md)
    assert reply.config.mode == "managed"
    assert reply.config.serving_provider == "anthropic"  # the platform's, not the tenant's
    assert reply.config.openai.configured and not reply.config.anthropic.configured
    text = json_format.MessageToJson(reply)
    assert "platform" not in text  # platform keys are never shown either

    _, s2 = await servers.start(
        LIYA_MANAGED_AZURE_API_KEY="0123456789abcdef0123456789abcdef",
        LIYA_MANAGED_AZURE_ENDPOINT="https://platform.openai.azure.com",
        LIYA_MANAGED_AZURE_DEPLOYMENT="gpt-4o",
        LIYA_MANAGED_OPENAI_API_KEY="sk-platform-openai-key-0000000000",
    )
    shown = await s2.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=md)
    assert shown.config.serving_provider == "azure"
    assert "platform.openai.azure.com" not in json_format.MessageToJson(shown)
