"""The HTTP transport under both SDKs: httpx2's transport interface on aiohttp.

The SDKs talk to an ``httpx2.AsyncClient``; what moves the bytes is its
transport. httpx2's own (httpcore2, h11 and anyio) measured about a third more
CPU per call than aiohttp's client, and the SDK call is most of this service's
cost per completion, so the shared pool uses this transport.

The SDKs ship an aiohttp transport of their own, but it maps failures loosely
(a refused connection becomes a connect timeout, a server that closed the
connection becomes one too, and aiohttp's messages carry ``ssl:default``, which
reads as a TLS failure), so the error mapping built on it would tell callers the
wrong thing to fix. Here every aiohttp failure becomes the httpx2 exception with
the same meaning, chained to the OS error behind it:

    refused, reset, unreachable network   ConnectError (cause: the OSError)
    name does not resolve                  ConnectError (cause: socket.gaierror)
    TLS handshake or certificate           ConnectError (cause: ssl.SSLError)
    peer address not allowed               ConnectError (cause: ForbiddenAddress)
    connect took too long                  ConnectTimeout
    no byte within the read timeout        ReadTimeout
    closed before any answer               RemoteProtocolError
    closed in the middle of the body       RemoteProtocolError ("... complete message body")
    malformed HTTP                         RemoteProtocolError
    not an http(s) URL                     UnsupportedProtocol
    no free pooled connection in time      PoolTimeout (see ``pool``)

How many connections the pool holds and how long a call may wait for one are
``pool``'s business (``PoolLimits``, ``BoundedWaitConnector``).

The resolver is also where peer addresses are checked, by the Azure endpoint
policy (``liya_engine.config.endpoints.EndpointPolicy``): unless it allows
private addresses, a host name that resolves only to addresses it does not
allow (private, loopback, link-local, other non-public ones) is refused before
any connection is made, so a tenant's endpoint cannot point its key (or the
service) at the internal network by DNS; an IP literal is judged by the same
rule. Such a pool never goes through a proxy from the environment, which
would connect past this check (``ambient_proxies``).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx2
from aiohttp.abc import AbstractResolver, ResolveResult

from liya_engine.config.endpoints import EndpointPolicy, ip_literal, is_public_address
from liya_engine.errors import ForbiddenAddress
from liya_engine.providers.pool import BoundedWaitConnector, PoolLimits, PoolWaitTimeout

__all__ = ["AiohttpTransport", "ForbiddenAddress", "PublicPeersResolver", "is_public_address"]


class PublicPeersResolver(AbstractResolver):
    """Resolves through aiohttp's default resolver, keeping the addresses the
    policy allows (by default: public ones only).

    Raises ``ForbiddenAddress`` when a name has addresses but none is allowed;
    a name that has some allowed addresses connects to those alone.
    """

    def __init__(
        self, inner: AbstractResolver | None = None, policy: EndpointPolicy | None = None
    ) -> None:
        self._inner = inner or aiohttp.DefaultResolver()
        self._policy = policy or EndpointPolicy()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if self._policy.allows_address(r["host"])]
        if found and not public:
            raise ForbiddenAddress(
                f"{host} resolves only to private or reserved addresses, "
                "which this service does not connect to"
            )
        return public

    async def close(self) -> None:
        await self._inner.close()


def _translate(exc: BaseException) -> httpx2.TransportError | None:
    """The httpx2 exception meaning the same as this aiohttp failure (None: not ours)."""
    # Order matters: aiohttp's classes nest (a DNS error is a connector error is
    # an OS error), and the most specific meaning wins.
    if isinstance(exc, PoolWaitTimeout):
        return httpx2.PoolTimeout(str(exc))
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ForbiddenAddress):
        return httpx2.ConnectError(str(exc.os_error))
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return httpx2.ConnectError(f"TLS certificate verification failed: {exc.certificate_error}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return httpx2.ConnectError(f"TLS handshake failed: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return httpx2.ConnectError(f"name resolution failed: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(str(exc.os_error))
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx2.ConnectTimeout("timed out while connecting")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx2.ReadTimeout("timed out while reading the answer")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx2.RemoteProtocolError("Server disconnected without sending a response.")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx2.RemoteProtocolError(
            f"peer closed connection without sending complete message body ({exc})"
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised while the answer is parsed: not valid HTTP.
        return httpx2.RemoteProtocolError(f"malformed HTTP answer: {exc.message}")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx2.UnsupportedProtocol(f"not an http(s) URL: {exc}")
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx2.ReadError(str(exc))
    if isinstance(exc, aiohttp.ClientError):
        return httpx2.NetworkError(str(exc) or type(exc).__name__)
    return None


def _pool_options(pool: PoolLimits) -> dict[str, Any]:
    """The connector's pool bounds: total connections and the wait for one;
    no per-host bound (see ``pool``)."""
    return {"limit": pool.max_connections, "limit_per_host": 0, "pool_timeout": pool.pool_timeout}


def _refuse_reserved_literal(host: str, policy: EndpointPolicy) -> None:
    # aiohttp does not ask the resolver about IP literals, so they are checked here.
    literal = host.strip("[]")
    if ip_literal(literal) is None:
        return  # a name: the resolver checks what it resolves to
    if not policy.allows_address(literal):
        forbidden = ForbiddenAddress(f"{host} is a private or reserved address")
        raise httpx2.ConnectError(str(forbidden)) from forbidden


def _cause(exc: BaseException) -> BaseException | None:
    # The OS or TLS error behind an aiohttp failure, so callers can test for it
    # (ssl.SSLError, socket.gaierror, ForbiddenAddress) without aiohttp's own
    # message, which names ssl settings even for plain refused connections.
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return exc.certificate_error
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error
    return None


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        translated = _translate(exc)
        if translated is None:
            raise
        raise translated from _cause(exc)


class _ResponseBody(httpx2.AsyncByteStream):
    """An answer's body; once closed, ``elapsed`` is the time from the request's
    start (``httpx2.Response.elapsed`` reads it from the stream).

    ``owner`` is the response it is the body of. When the last byte of the
    body has arrived, that response is closed before its last chunk is handed
    on (aiohttp has already given the connection back to its pool then). The
    SDKs' stream readers stop at their end-of-stream event (OpenAI's
    ``[DONE]``), and on an HTTP/1.1 response that is still open then, OpenAI's
    drains what is left inside anyio cancel scopes: a few percent of a stream's
    CPU spent on a body with no bytes left. A closed response lets it skip
    that. When the end has not arrived with the last event, the drain runs as
    before. (A library that wraps ``response.stream``, as the Anthropic SDK's
    own tracing does, would see it closed before the last chunk: the adapters
    turn that tracing off.)
    """

    def __init__(self, response: aiohttp.ClientResponse, started: float) -> None:
        self._response = response
        self._started = started
        self.elapsed: datetime.timedelta | None = None
        self.owner: httpx2.Response | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _mapped():
            async for chunk in content.iter_any():
                owner = self.owner
                if owner is not None and content.at_eof():
                    await owner.aclose()  # nothing is left to read: the SDK need not drain
                    yield chunk
                    return
                yield chunk

    async def aclose(self) -> None:
        self.owner = None  # the response refers to this body: no cycle left for the collector
        self.elapsed = datetime.timedelta(seconds=time.perf_counter() - self._started)
        response = self._response
        if response.content.at_eof():
            response.release()  # back to the pool
        else:
            # Closed before the end (a cancelled call, a stream given up): the
            # connection is mid-answer and cannot be reused.
            response.close()


def ambient_proxies(endpoints: EndpointPolicy | None) -> dict[str, str]:
    """The egress proxies from the environment this transport sends through.

    A pool for tenants' endpoints (one given an endpoint policy) uses none: a
    proxy connects to whatever the tenant's endpoint names, after the only
    address this service could check (the proxy's own), so the private-address
    rule would not hold through it; and a proxy inside the cluster, on a
    private address itself, would be refused by that rule. The operator's own
    base URLs (OpenAI's, Anthropic's) may go through the operator's proxy,
    wherever it sits (``docs/operations.md``, "Proxies").
    """
    if endpoints is not None:
        return {}
    return {
        scheme: url
        for scheme, url in urllib.request.getproxies().items()
        if scheme in ("http", "https")
    }


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """``httpx2.AsyncBaseTransport`` over one ``aiohttp.ClientSession``.

    The session is created on first use, inside the running event loop. An
    egress proxy comes from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``), read when the transport is built, as httpx2's transport does,
    for the operator's base URLs only (``ambient_proxies``). ``endpoints`` (the
    Azure endpoint policy) decides which peer addresses it connects to, always
    directly; without one, any (the operator's own base URLs).
    """

    def __init__(
        self,
        *,
        pool: PoolLimits | None = None,
        keepalive_expiry: float = 30.0,
        endpoints: EndpointPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pool = pool or PoolLimits()
        self._keepalive_expiry = keepalive_expiry
        self._peers = endpoints if endpoints is not None and endpoints.checks_addresses else None
        self._ssl = ssl_context or httpx2.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._proxies = ambient_proxies(endpoints)

    @property
    def checks_addresses(self) -> bool:
        """Whether peer addresses are checked against the endpoint policy."""
        return self._peers is not None

    def _new_session(self) -> aiohttp.ClientSession:
        connector = BoundedWaitConnector(
            **_pool_options(self._pool),
            keepalive_timeout=self._keepalive_expiry,
            ssl=self._ssl,
            resolver=PublicPeersResolver(policy=self._peers) if self._peers else None,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # Cookies set by a provider for one tenant must not travel with
            # another tenant's calls on the shared pool.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Proxies are read once in __init__; aiohttp's trust_env would look
            # them (and ~/.netrc) up again in a thread on every request.
            trust_env=False,
            auto_decompress=False,  # httpx2 decodes by Content-Encoding itself
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._peers is not None:
            _refuse_reserved_literal(request.url.host, self._peers)
        session = self._session
        if session is None or session.closed:
            session = self._session = self._new_session()
        started = time.perf_counter()
        limits: dict[str, Any] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=limits.get("connect"),
            sock_read=limits.get("read"),
        )
        try:
            body = request.content
        except httpx2.RequestNotRead:
            body = await request.aread()
        with _mapped():
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                compress=None,
                timeout=timeout,
                server_hostname=request.extensions.get("sni_hostname"),
                proxy=self._proxy_for(request.url) if self._proxies else None,
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        body = _ResponseBody(response, started)
        answer = httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=body,
            request=request,
            extensions=extensions,
        )
        body.owner = answer
        return answer

    def _proxy_for(self, url: httpx2.URL) -> str | None:
        if urllib.request.proxy_bypass(url.host):
            return None
        return self._proxies.get(url.scheme)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Let the connector's transports finish closing before the loop moves on.
            await asyncio.sleep(0)
