"""A provider that echoes the key in any disguise leaks none of it.

Each form of DESIGN.md's list (split by whitespace or line breaks, JSON
``\\u`` escapes, HTML entities, URL and base64 encodings, other letter case,
reversed, a run of the key as the error ``code``) is echoed by the fake
provider in its error, for each provider and each RPC that calls one
(Complete, CompleteStream, VerifyConfig), with a tenant's key and with the
platform's managed key. What the caller gets (message, every metadata value)
and what the server logs hold no 6-character run of the key's secret part in
any form, and the message says why the provider's text is not shown.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable

import grpc
import pytest

from helpers import auth, details_of
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.logs import ContextAndRedactionFilter

# The secret parts follow the public prefixes; each has a letters-only middle.
TENANT_KEYS = {
    "openai": "sk-proj-4Tq8Ln2X" + "cVbMzKdHfRw" + "7Wp3Ys9Ge5",
    "anthropic": "sk-ant-api03-8Ny4Qa7L" + "tUbZoJpWsGe" + "2Xc6Vb1Mz9",
    "azure": "7d1e4b9c0a3f" + "bcafedbadfeed" + "1234567",
}
MANAGED_KEYS = {
    "openai": "sk-proj-5Hd9Kw3Q" + "mNbVcXzLkJh" + "8Rt2Yp6Ue4",
    "anthropic": "sk-ant-api03-3Gf7Jk1P" + "xZcVbNmQwEr" + "9Lt4Hs8Dw2",
    "azure": "3c8a1f6e2b9d" + "deadbeefcafe" + "7654321",
}
MIDDLES = ("cVbMzKdHfRw", "tUbZoJpWsGe", "bcafedbadfeed", "mNbVcXzLkJh", "xZcVbNmQwEr")
MIDDLES += ("deadbeefcafe",)
PREFIXES = ("sk-ant-api03-", "sk-proj-")
RPCS = ("Complete", "CompleteStream", "VerifyConfig")
PROVIDERS = ("openai", "anthropic", "azure")


def secret_part(key: str) -> str:
    return next((key[len(p) :] for p in PREFIXES if key.startswith(p)), key)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# name -> how the provider echoes the key in its message
FORMS: dict[str, Callable[[str], str]] = {
    "split by spaces": lambda k: " ".join(_chunks(k, 5)),
    "split by line breaks": lambda k: "\n".join(_chunks(k, 3)),
    "json escapes": lambda k: "".join(f"\\u{ord(c):04x}" for c in k),
    "html entities": lambda k: "".join(f"&#{ord(c)};" for c in k),
    "html hex entities": lambda k: "".join(f"&#x{ord(c):x};" for c in k),
    "url encoded": lambda k: "".join(f"%{ord(c):02X}" for c in k),
    "base64": lambda k: base64.b64encode(k.encode()).decode(),
    "upper case": lambda k: k.upper(),
    "lower case": lambda k: k.lower(),
    "reversed": lambda k: k[::-1],
    "reversed upper, split": lambda k: " ".join(_chunks(k[::-1].upper(), 4)),
    "six characters": lambda k: secret_part(k)[6:12],
}


def disclosed(text: str, key: str) -> list[str]:
    """The 6-character runs of the key's secret part that ``text`` shows, in
    plain view or with whitespace dropped, in any case, forward or reversed."""
    part = secret_part(key).lower()
    runs = {part[i : i + 6] for i in range(len(part) - 5)}
    runs |= {r[::-1] for r in runs}
    flat = "".join(text.split()).lower()
    return sorted(r for r in runs if r in flat)


@pytest.fixture
def server_log():
    """What the server's log handler writes (with its redaction filter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextAndRedactionFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def byok_config(provider: str, fake) -> cpb.UpdateConfigRequest:
    key = TENANT_KEYS[provider]
    pc = cpb.ProviderConfig(mode="byok")
    if provider == "openai":
        pc.openai.CopyFrom(cpb.OpenAIConfig(api_key=key, default_model="gpt-4o"))
    elif provider == "anthropic":
        pc.anthropic.CopyFrom(cpb.AnthropicConfig(api_key=key, default_model="claude-sonnet-4-6"))
    else:
        pc.azure.CopyFrom(
            cpb.AzureOpenAIConfig(
                api_key=key,
                endpoint=fake.azure_endpoint,
                deployment_name="gpt-4o",
                api_version="2024-10-21",
            )
        )
    return cpb.UpdateConfigRequest(provider_config=pc)


def managed_env(provider: str, fake) -> dict[str, str]:
    key = MANAGED_KEYS[provider]
    if provider == "openai":
        return {"LIYA_MANAGED_OPENAI_API_KEY": key}
    if provider == "anthropic":
        return {"LIYA_MANAGED_ANTHROPIC_API_KEY": key}
    return {
        "LIYA_MANAGED_AZURE_API_KEY": key,
        "LIYA_MANAGED_AZURE_ENDPOINT": fake.azure_endpoint,
        "LIYA_MANAGED_AZURE_DEPLOYMENT": "gpt-4o",
        "LIYA_MANAGED_AZURE_API_VERSION": "2024-10-21",
    }


#: Ids the call's error carries that are not derived from the key: fixed, so
#: that a random hex id cannot match a run of a hex key (Azure keys are hex).
CALL_ID = ("x-request-id", "scrub-forms-call")
UPSTREAM_ID = {"x-request-id": "req_0f1e2d3c4b5a69788796a5b4c3d2e1f0"}


async def call(stubs, rpc: str, md) -> grpc.aio.AioRpcError:
    md = (*md, CALL_ID)
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
    return err.value


async def check_every_form(stubs, fake, provider: str, rpc: str, key: str, md, log) -> None:
    title = {"openai": "OpenAI", "anthropic": "Anthropic", "azure": "Azure OpenAI"}[provider]
    for name, form in FORMS.items():
        echoed = form(key)
        fake.fail(
            provider,
            "bad_request",
            message=f"Invalid request for key {echoed}.",
            headers=UPSTREAM_ID,
        )
        err = await call(stubs, rpc, md)
        d = details_of(err)
        assert (d.code, d.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "PROVIDER_REJECTED_REQUEST",
        ), name
        assert f"The message of {title}'s 400 answer is not shown: it contained key" in (
            d.message
        ), name
        shown = d.message + " " + " ".join(d.metadata.values())
        assert echoed not in shown, name
        assert disclosed(shown, key) == [], name
        assert d.metadata["upstream_status"] == "400", name

    # A run of the key's letters-only middle echoed as the error code.
    middle = next(run for run in MIDDLES if run in key)
    fake.fail(provider, "bad_request", code=middle, headers=UPSTREAM_ID)
    d = details_of(await call(stubs, rpc, md))
    assert d.metadata["upstream_error_code"] == "[REDACTED]"
    assert disclosed(" ".join(d.metadata.values()) + d.message, key) == []
    # A request id that carries a run of the key is withheld; a clean one is kept.
    tainted = "req_" + secret_part(key)[2:14]
    fake.fail(provider, "bad_request", headers={"x-request-id": tainted})
    d = details_of(await call(stubs, rpc, md))
    assert d.metadata["upstream_request_id"] == "[REDACTED]"
    clean = "req_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    fake.fail(provider, "bad_request", headers={"x-request-id": clean})
    d = details_of(await call(stubs, rpc, md))
    assert d.metadata["upstream_request_id"] == clean
    logged = log.getvalue()
    assert "failed: PROVIDER_REJECTED_REQUEST" in logged  # the failures were logged
    assert disclosed(logged, key) == []


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_tenants_key_in_any_form_is_withheld(servers, fake, server_log, provider, rpc):
    _, stubs = await servers.start(LIYA_ACCESS_LOG="true")
    md = auth(f"forms-{provider}")
    await stubs.config.UpdateConfig(byok_config(provider, fake), metadata=md)
    await check_every_form(stubs, fake, provider, rpc, TENANT_KEYS[provider], md, server_log)
    assert fake.last_request.api_key == TENANT_KEYS[provider]


@pytest.mark.parametrize("rpc", RPCS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_platforms_managed_key_in_any_form_is_withheld(
    servers, fake, server_log, provider, rpc
):
    _, stubs = await servers.start(LIYA_ACCESS_LOG="true", **managed_env(provider, fake))
    md = auth(f"forms-managed-{provider}")
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="managed")), metadata=md
    )
    await check_every_form(stubs, fake, provider, rpc, MANAGED_KEYS[provider], md, server_log)
    assert fake.last_request.api_key == MANAGED_KEYS[provider]


def test_each_form_really_disguises_the_key():
    # The forms are disguises: none shows the key plainly (the search above
    # would then prove nothing beyond the plain case).
    key = TENANT_KEYS["openai"]
    for name, form in FORMS.items():
        if name in ("six characters", "lower case", "upper case", "reversed"):
            continue
        assert secret_part(key)[:6] not in form(key), name


async def test_tracebacks_keep_python_names_and_request_ids(debug_stderr):
    """A real driver error's traceback, logged through the server's own set-up,
    keeps the exception's dotted name (what on-call searches for)."""
    import asyncpg
    from conftest import POSTGRES_URL

    url = POSTGRES_URL.replace("postgresql+asyncpg://postgres@", "postgresql://no_such_role_q7@")
    with pytest.raises(asyncpg.exceptions.InvalidAuthorizationSpecificationError) as caught:
        await asyncpg.connect(url, timeout=5)
    rid = "req_5f0c2a4b9e8d4c7fa1b2c3d4e5f60718"
    logging.getLogger("liya_engine.rpc").error("call %s failed", rid, exc_info=caught.value)
    logged = debug_stderr.getvalue()
    assert "asyncpg.exceptions.InvalidAuthorizationSpecificationError" in logged
    assert f"call {rid} failed" in logged
    assert "[REDACTED]" not in logged


@pytest.fixture
def debug_stderr(monkeypatch):
    """The server's logging set-up, writing to a string."""
    import sys

    from liya_engine.logs import HEADER_LOGGERS, LIBRARY_LOGGERS, configure_logging

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in LIBRARY_LOGGERS + HEADER_LOGGERS}
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("INFO", "text")
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
