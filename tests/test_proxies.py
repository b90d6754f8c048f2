"""Egress proxies from the environment: the platform's base URLs may use them,
tenants' Azure endpoints never do, so a proxy cannot carry a tenant's key past
the private-address rule (docs/operations.md, "Proxies")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from helpers import auth, details_of, hello
from liya.engine.v1 import config_service_pb2 as cpb

AZURE_KEY = "azure-tenant-key-" + "z" * 24
OPENAI_KEY = "sk-proj-" + "o" * 40

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass
class Proxy:
    """A forward proxy on loopback: CONNECT tunnels and absolute-form requests,
    each recorded by its first line before anything is forwarded."""

    port: int = 0
    seen: list[str] = field(default_factory=list)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        first = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.seen.append(first)
        method, target, _ = first.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:
            # http://host:port/path: forwarded as it came (servers accept absolute form).
            authority = target.split("//", 1)[1].split("/", 1)[0]
            host, _, port = authority.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[Proxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        sink.close()


@pytest.fixture
async def proxy(monkeypatch) -> AsyncIterator[Proxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    async with Proxy().serve() as running:
        yield running


def _use_proxy(monkeypatch, url: str) -> None:
    # Read when the server builds its pools, as a deployment's environment is.
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("HTTPS_PROXY", url)


async def _configure(s, tenant: str, endpoint: str, fake) -> None:
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(
                mode="byok",
                openai=cpb.OpenAIConfig(api_key=OPENAI_KEY, default_model="gpt-4o"),
                azure=cpb.AzureOpenAIConfig(
                    api_key=AZURE_KEY,
                    endpoint=endpoint,
                    deployment_name="gpt-4o",
                    api_version="2024-10-21",
                ),
            )
        ),
        metadata=auth(tenant),
    )


async def test_a_proxy_never_carries_a_tenant_endpoint_to_a_private_address(
    servers, fake, proxy, monkeypatch
):
    # The tenant's endpoint passes the URL rules (an allowlisted name) but
    # resolves to 127.0.0.1. Through the proxy only the proxy's own address
    # would be checked; the call must be refused and the proxy see nothing.
    _use_proxy(monkeypatch, f"http://127.0.0.1:{proxy.port}")
    _, s = await servers.start(
        LIYA_ALLOW_INSECURE_ENDPOINTS="false",
        LIYA_AZURE_ENDPOINT_ALLOWLIST="localhost",
        LIYA_UPSTREAM_TIMEOUT_SECONDS="5",
    )
    await _configure(s, "px1", "https://localhost", fake)
    with pytest.raises(Exception) as caught:
        await s.inference.Complete(hello(), metadata=auth("px1"), timeout=10)
    d = details_of(caught.value)
    assert d.reason == "BYOK_ENDPOINT_UNREACHABLE"
    assert "private or reserved addresses" in d.message
    assert proxy.seen == []
    assert fake.requests == []


async def test_the_platform_base_urls_use_a_proxy_on_a_private_host_name(
    servers, fake, proxy, monkeypatch
):
    # The usual in-cluster set-up: the operator's proxy, named by a private
    # host name. OpenAI (the platform's base URL) goes through it; the tenant's
    # Azure endpoint goes direct, so the proxy's address cannot make Azure
    # calls fail, and the proxy never sees the tenant's endpoint or key.
    _use_proxy(monkeypatch, f"http://localhost:{proxy.port}")
    _, s = await servers.start()  # development setting on: the Azure fake is loopback http
    await _configure(s, "px2", fake.azure_endpoint, fake)

    azure = await s.inference.Complete(hello(), metadata=auth("px2"), timeout=10)
    assert azure.usage.provider == "azure"
    assert [r.provider for r in fake.requests] == ["azure"]
    assert proxy.seen == []

    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            provider_config=cpb.ProviderConfig(azure=cpb.AzureOpenAIConfig()),
            update_mask={"paths": ["provider_config.azure"]},
        ),
        metadata=auth("px2"),
    )
    openai = await s.inference.Complete(hello(), metadata=auth("px2"), timeout=10)
    assert openai.usage.provider == "openai"
    assert fake.requests[-1].api_key == OPENAI_KEY
    assert proxy.seen == [f"POST {fake.openai_base_url}/chat/completions HTTP/1.1"]
