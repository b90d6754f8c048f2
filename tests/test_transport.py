"""The HTTP transport under the SDKs (aiohttp behind httpx2's interface): TLS
works and an untrusted certificate says so, each
failure keeps its meaning, the Azure pool connects only to public addresses,
egress proxies from the environment are used, cookies never cross tenants, and
new SDK clients skip the platform lookup an earlier one did."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from aiohttp import web

from liya_engine.config.endpoints import EndpointPolicy
from liya_engine.errors import ForbiddenAddress, ProviderUnreachable
from liya_engine.fakes import FakeProviders
from liya_engine.providers.azure_adapter import AzureOpenAIAdapter
from liya_engine.providers.base import Credentials, Message, ProviderRequest
from liya_engine.providers.openai_adapter import OpenAIAdapter
from liya_engine.providers.registry import build_adapters
from liya_engine.providers.sdk_clients import new_http_client
from liya_engine.providers.transport import AiohttpTransport, is_public_address
from liya_engine.secret import Secret
from liya_engine.settings import Settings

AZURE_KEY = "3f9c2d1e8b7a4c6d9e0f1a2b3c4d5e6f"


@contextlib.asynccontextmanager
async def http_server(handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A one-route aiohttp server on a free loopback port (over TLS with
    ``ssl_context``); yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def https_server(handler, cert_file: Path, key_file: Path):
    """``http_server`` over TLS with the given certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return http_server(handler, context)


@contextlib.asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[str]:
    """A TCP server that reads a request, writes ``answer`` and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_to_a_trusted_server_carries_the_answer(tmp_path):
    # Providers are reached over TLS; this runs on uvloop and on asyncio.
    cert_file, key_file = self_signed_certificate(tmp_path)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"scheme": request.scheme, "body": await request.text()})

    trusted = ssl.create_default_context(cafile=str(cert_file))
    async with https_server(ok, cert_file, key_file) as url:
        transport = AiohttpTransport(ssl_context=trusted)
        async with httpx2.AsyncClient(transport=transport) as http:
            reply = await http.post(f"{url}/v1/chat/completions", content=b"hello")
    assert reply.status_code == 200
    assert reply.json() == {"scheme": "https", "body": "hello"}


async def test_an_untrusted_certificate_is_a_connect_error_saying_so(tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path)

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="must not be read")

    async with https_server(ok, cert_file, key_file) as url:
        async with httpx2.AsyncClient(transport=AiohttpTransport()) as http:
            with pytest.raises(httpx2.ConnectError) as caught:
                await http.get(f"{url}/")
    assert "certificate verification failed" in str(caught.value)
    assert isinstance(caught.value.__cause__, ssl.SSLError)


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def azure_creds(base_url: str) -> Credentials:
    return Credentials(
        provider="azure", api_key=Secret(AZURE_KEY), base_url=base_url, api_version="2024-10-21"
    )


def request(timeout: float = 5.0) -> ProviderRequest:
    return ProviderRequest(
        model="prod-gpt4o", messages=(Message("user", "hi"),), max_tokens=8, timeout=timeout
    )


# -- failures keep their meaning -------------------------------------------------


async def test_refused_connection_is_a_connect_error_not_a_timeout_or_tls():
    async with new_http_client() as http:
        with pytest.raises(httpx2.ConnectError) as caught:
            await http.get(refused_url())
    assert not isinstance(caught.value, httpx2.TimeoutException)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert "ssl" not in str(caught.value).lower()


async def test_server_hanging_up_without_an_answer_is_a_protocol_error():
    async with raw_server(b"") as url, new_http_client() as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
            await http.get(url)


async def test_answer_cut_in_the_body_is_an_incomplete_body():
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{"
    async with raw_server(cut) as url, new_http_client() as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="complete message body"):
            await http.get(url)


async def test_no_answer_within_the_read_timeout_is_a_read_timeout():
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async with http_server(slow) as url, new_http_client() as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.get(url, timeout=httpx2.Timeout(5.0, read=0.2))


async def test_garbage_instead_of_http_is_a_protocol_error():
    async with raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as url, new_http_client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(url)


async def test_answers_pass_through_with_status_headers_and_body():
    async def echo(req: web.Request) -> web.Response:
        body = await req.read()
        return web.json_response(
            {
                "method": req.method,
                "path": req.path_qs,
                "body": body.decode(),
                "h": req.headers.get("x-t"),
            },
            status=201,
            headers={"x-answer": "yes"},
        )

    async with http_server(echo) as url, new_http_client() as http:
        answer = await http.post(f"{url}/a/b?c=d", content=b'{"x":1}', headers={"x-t": "v"})
    assert answer.status_code == 201
    assert answer.headers["x-answer"] == "yes"
    assert answer.json() == {"method": "POST", "path": "/a/b?c=d", "body": '{"x":1}', "h": "v"}


async def test_redirects_are_returned_not_followed():
    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:1/elsewhere")

    async with http_server(redirect) as url, new_http_client() as http:
        answer = await http.get(url)
    assert answer.status_code == 302


# -- cookies and proxies -----------------------------------------------------------


async def test_cookies_a_provider_sets_are_never_sent_back():
    seen: list[str | None] = []

    async def cookie_setter(req: web.Request) -> web.Response:
        seen.append(req.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "tenant-a-affinity")
        return response

    async with http_server(cookie_setter) as url, new_http_client() as http:
        for _ in range(3):
            await http.get(url)
    assert seen == [None, None, None]


async def test_egress_proxy_from_the_environment_is_used(monkeypatch):
    proxied: list[str] = []

    async def proxy(req: web.Request) -> web.Response:
        proxied.append(str(req.url))
        return web.Response(text="via proxy")

    async with http_server(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "skip.example")
        transport = AiohttpTransport()
        async with httpx2.AsyncClient(transport=transport, trust_env=False) as http:
            answer = await http.get("http://upstream.example/v1/models")
            assert answer.text == "via proxy"
            with pytest.raises(httpx2.ConnectError):
                # Not proxied: the name is looked up directly and does not resolve.
                await http.get("http://skip.example/v1/models", timeout=3)
    assert proxied == ["http://upstream.example/v1/models"]


# -- public peers only ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(address) is public


async def test_azure_name_resolving_to_loopback_is_refused_before_connecting():
    fake_hits: list[str] = []

    async def would_answer(req: web.Request) -> web.Response:
        fake_hits.append(req.path)
        return web.json_response({})

    async with http_server(would_answer) as url:
        port = url.rsplit(":", 1)[1]
        adapter = AzureOpenAIAdapter(endpoints=EndpointPolicy())
        try:
            with pytest.raises(ProviderUnreachable) as caught:
                await adapter.complete(azure_creds(f"http://localhost:{port}"), request())
            with pytest.raises(ProviderUnreachable) as literal:
                await adapter.complete(azure_creds(url), request())
        finally:
            await adapter.aclose()
    assert caught.type is ProviderUnreachable and literal.type is ProviderUnreachable
    assert fake_hits == []  # the key never left the service
    assert "private or reserved addresses" in caught.value.message
    assert "LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES" in caught.value.message
    assert "private or reserved" in literal.value.message
    assert AZURE_KEY not in caught.value.message


async def test_forbidden_address_is_the_cause_callers_can_test_for():
    async with new_http_client(endpoints=EndpointPolicy()) as http:
        with pytest.raises(httpx2.ConnectError) as caught:
            await http.get("http://localhost:9/")
    assert isinstance(caught.value.__cause__, ForbiddenAddress)


async def test_without_the_guard_loopback_names_connect():
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with http_server(ok) as url, new_http_client() as http:
        port = url.rsplit(":", 1)[1]
        assert (await http.get(f"http://localhost:{port}/")).text == "ok"


@pytest.mark.parametrize(
    ("env", "loopback", "checked"),
    [
        ({}, False, True),
        ({"LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES": "true"}, True, False),
        # Development lets loopback through, and the check stays on for the rest.
        ({"LIYA_ALLOW_INSECURE_ENDPOINTS": "true"}, True, True),
    ],
)
async def test_the_azure_pool_applies_the_endpoint_policy_of_the_settings(env, loopback, checked):
    # The one policy object the config checks use also decides the Azure pool's peers.
    settings = Settings.from_env({"LIYA_JWT_HS256_SECRET": "s" * 32, **env})
    policy = EndpointPolicy.from_settings(settings)
    assert policy.allows_address("127.0.0.1") is loopback
    assert policy.allows_address("10.1.2.3") is not checked
    assert policy.allows_address("8.8.8.8") is True

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    adapters = build_adapters(azure_endpoints=policy)
    try:
        assert adapters["openai"].http_client._transport.checks_addresses is False
        http = adapters["azure"].http_client
        assert http._transport.checks_addresses is checked
        async with http_server(ok) as url:
            port = url.rsplit(":", 1)[1]
            if not loopback:
                with pytest.raises(httpx2.ConnectError) as caught:
                    await http.get(f"http://localhost:{port}/")
                assert isinstance(caught.value.__cause__, ForbiddenAddress)
            else:
                assert (await http.get(f"http://localhost:{port}/")).text == "ok"
            if checked:
                # A private address that is not loopback stays refused, at once.
                with pytest.raises(httpx2.ConnectError) as caught:
                    await http.get("http://10.255.255.1:9/")
                assert isinstance(caught.value.__cause__, ForbiddenAddress)
    finally:
        for adapter in adapters.values():
            await adapter.aclose()


# -- SDK clients -----------------------------------------------------------------------


async def test_new_sdk_clients_reuse_the_platform_an_earlier_one_found():
    async with FakeProviders.start() as fake:
        adapter = OpenAIAdapter()
        try:
            first = Credentials(
                provider="openai",
                api_key=Secret("sk-proj-" + "p" * 40),
                base_url=fake.openai_base_url,
            )
            fresh = adapter.client_for(first)
            assert fresh._platform is None  # the SDK would look it up in a thread
            await adapter.complete(first, request())
            other = Credentials(  # another endpoint, so another SDK client
                provider="openai",
                api_key=Secret("sk-other-" + "x" * 40),
                base_url=fake.openai_base_url.replace("127.0.0.1", "localhost"),
            )
            assert adapter.client_for(other) is not fresh
            assert adapter.client_for(other)._platform == fresh._platform
            assert fresh._platform is not None
        finally:
            await adapter.aclose()
