"""``OPENAI_LOG`` / ``ANTHROPIC_LOG`` in the environment never make the SDKs
log keys or the headers carrying them: ``liya-engine serve`` in its own
process, real SDK calls to the fakes, and the whole output searched."""

from __future__ import annotations

from helpers import auth, hello, served_process, stubs_for
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.logs import ignore_library_switches

KEYS = {
    "openai": "sk-proj-LOGCANARY" + "o1" * 20,
    "anthropic": "sk-ant-api03-LOGCANARY" + "a2" * 20,
    "azure": "LOGCANARY" + "0123456789abcdef" * 2,
}


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


def key_pieces() -> list[str]:
    # The keys, and the parts of them a header dump or a masked preview would show.
    return [piece for key in KEYS.values() for piece in (key, key[-12:], "LOGCANARY")]


async def test_sdk_log_switches_never_log_keys_or_credential_headers(tmp_path, fake):
    env = {
        "OPENAI_LOG": "debug",
        "ANTHROPIC_LOG": "debug",
        "LIYA_OPENAI_BASE_URL": fake.openai_base_url,
        "LIYA_ANTHROPIC_BASE_URL": fake.anthropic_base_url,
    }
    async with served_process(tmp_path, **env) as (_proc, port, log):
        s = stubs_for(port)
        try:
            for provider in KEYS:
                tenant = f"logs-{provider}"
                await s.config.UpdateConfig(
                    cpb.UpdateConfigRequest(provider_config=provider_config(provider, fake)),
                    metadata=auth(tenant),
                )
                reply = await s.inference.Complete(hello(), metadata=auth(tenant), timeout=20)
                assert reply.usage.provider == provider
                async for _ in s.inference.CompleteStream(
                    hello(), metadata=auth(tenant), timeout=20
                ):
                    pass
        finally:
            await s.channel.close()
    assert {r.api_key for r in fake.requests} == set(KEYS.values())  # the keys did travel
    output = log.read_text()
    assert "serving liya.engine.v1" in output
    # The operator who set a switch learns it did nothing, and what to use instead.
    assert "ignored OPENAI_LOG, ANTHROPIC_LOG: library logging follows LIYA_LOG_LEVEL" in output
    for piece in key_pieces():
        assert piece not in output
    lowered = output.lower()
    assert "bearer " not in lowered
    for header in ("'authorization': '", "'api-key': '", "'x-api-key': '"):
        for line in lowered.splitlines():
            if header in line:
                assert f"{header}<masked>'" in line, line
    # The switches did not raise the SDKs' or HTTP clients' levels at all.
    sdk_lines = [
        line
        for line in output.splitlines()
        if " DEBUG " in line or "HTTP Request:" in line or "HTTP Response:" in line
    ]
    assert sdk_lines == []


def test_the_switches_are_removed_before_an_sdk_could_read_them():
    environ = {"OPENAI_LOG": "debug", "ANTHROPIC_LOG": "info", "PATH": "/bin"}
    assert ignore_library_switches(environ) == ["OPENAI_LOG", "ANTHROPIC_LOG"]
    assert environ == {"PATH": "/bin"}
    assert ignore_library_switches(environ) == []
