"""What the SDK-backed adapters share: client reuse, one connection pool, and
the call/stream skeleton with the timeout budget and error classification.

Both SDKs are built on ``httpx2`` (the maintained fork of httpx; Anthropic's
SDK rejects plain httpx clients), so the shared pool is an
``httpx2.AsyncClient``. It never follows redirects: an endpoint that redirects
must not get the chance to forward the key elsewhere.

An SDK client holds no tenant's key. Clients are shared per endpoint (base
URL and API version) in a bounded LRU, and each request carries its tenant's
key in the header the SDK itself would use (``key_headers``), which wins over
the client's own. The client is built with ``NO_TENANT_KEY``, a placeholder
that no provider accepts, so a request that somehow lost its header fails
authentication instead of travelling with another tenant's key. Sharing saves
building an SDK client (and the garbage it leaves) on every new tenant's first
call. Evicted clients are simply dropped: closing one would close the shared
pool. Never derive a client with the SDKs' ``with_options``/``copy``: they
build a new client from the environment again, which brings back what
``_build_client`` removes.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx2
from aiohttp.helpers import TimerContext

from liya_engine.config.endpoints import EndpointPolicy
from liya_engine.errors import IncompleteAnswer, ProviderError
from liya_engine.inference.estimate import estimate_prompt_tokens, estimate_text_tokens
from liya_engine.providers import answer_checks
from liya_engine.providers.base import (
    Credentials,
    ProviderName,
    ProviderRequest,
    ProviderResult,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)
from liya_engine.providers.classify import classify_error
from liya_engine.providers.direct_client import DirectClient
from liya_engine.providers.pool import PoolLimits
from liya_engine.providers.transport import AiohttpTransport

ClientT = TypeVar("ClientT")

# Where an SDK client sends: (base URL, API version).
Endpoint = tuple[str, str | None]

# Stands in for the key on shared clients; see the module docstring.
NO_TENANT_KEY = "liya-engine-no-tenant-key"

DEFAULT_MAX_CLIENTS = 1024
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Parsed request URLs kept by the shared pool (each endpoint's few paths)...
POOL_URLS_KEPT = 4 * DEFAULT_MAX_CLIENTS
#: ... and by each SDK client (its own few paths).
CLIENT_URLS_KEPT = 16


def new_http_client(
    *,
    pool: PoolLimits | None = None,
    keepalive_expiry: float = 30.0,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    endpoints: EndpointPolicy | None = None,
) -> httpx2.AsyncClient:
    """The connection pool one adapter shares between all its SDK clients.

    A ``DirectClient``, which follows no redirect and keeps no cookie: each
    request goes straight to the transport (see its module). Bytes move
    through ``AiohttpTransport`` (see its module for why). Keep-alive covers
    every connection, so a burst at high concurrency does not close and
    reopen connections. With ``endpoints`` (the Azure endpoint policy) a
    connection is made only to the peer addresses it allows. ``pool`` bounds
    the connections and the wait for one (``liya_engine.providers.pool``).
    """
    client = DirectClient(
        transport=AiohttpTransport(
            pool=pool,
            keepalive_expiry=keepalive_expiry,
            endpoints=endpoints,
        ),
        timeout=httpx2.Timeout(60.0, connect=connect_timeout),
        # The transport handles egress proxies; httpx2's would bypass it.
        trust_env=False,
    )
    _keep_parsed_urls(client, "_merge_url", POOL_URLS_KEPT)
    return client


def _keep_parsed_urls(client: Any, method: str, size: int) -> None:
    """Keep what ``client.<method>(url)`` answered for each URL it was given.

    Both SDKs turn a request's path into a URL on the client's base URL
    (``_prepare_url``), and the pool parses the result again (``_merge_url``):
    httpx2 checks a URL character by character in Python, about 100 us of a
    call's CPU on the bench machine, for an answer that never changes (a
    client's base URL is fixed, and a URL object is immutable). Both are pure
    functions of the URL given, so their answers can be kept.
    """
    setattr(client, method, functools.lru_cache(maxsize=size)(getattr(client, method)))


class ClientCache(Generic[ClientT]):
    """Bounded LRU of SDK clients keyed by their ``Endpoint``."""

    def __init__(self, factory: Callable[[Endpoint], ClientT], max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._factory = factory
        self._max_size = max_size
        self._clients: OrderedDict[Endpoint, ClientT] = OrderedDict()

    def get(self, endpoint: Endpoint) -> ClientT:
        """The cached client for this endpoint, creating it on a miss."""
        client = self._clients.get(endpoint)
        if client is not None:
            self._clients.move_to_end(endpoint)
            return client
        client = self._factory(endpoint)
        self._clients[endpoint] = client
        while len(self._clients) > self._max_size:
            self._clients.popitem(last=False)
        return client

    def clients(self) -> Iterable[ClientT]:
        """The cached clients, least recently used first."""
        return self._clients.values()

    def clear(self) -> None:
        """Drop every cached client (the shared pool stays open)."""
        self._clients.clear()

    def __len__(self) -> int:
        return len(self._clients)

    def __repr__(self) -> str:
        return f"ClientCache(size={len(self._clients)}, max_size={self._max_size})"


@dataclass
class StreamState:
    """What a stream has told us so far; turned into the final ``StreamEnd``."""

    model: str
    finish_reason: str = "stop"
    input_tokens: int | None = None
    output_tokens: int | None = None
    text_chars: int = 0
    finished: bool = False  # the provider sent its final event


class PooledAdapter(Generic[ClientT]):
    """Base of the SDK adapters: implements ``ProviderAdapter`` on a few hooks.

    Subclasses set ``name`` and implement ``_new_client``, ``_create``,
    ``_to_result``, ``_open_stream`` and ``_on_event``; ``_create`` and
    ``_open_stream`` send ``key_headers(creds)`` with their request.

    ``endpoints`` (for an owned pool) is the policy deciding which peer
    addresses it connects to, whatever DNS says: Azure's adapter gets the Azure
    endpoint policy; without one, any address (the operator's base URLs).
    ``pool`` (for an owned pool) sizes it and bounds the wait for a connection.

    ``request.timeout`` is a total budget for the call: for ``complete`` the whole
    answer, for ``stream`` everything up to the last event. When it runs out the
    upstream request is abandoned (its connection closed) and ``ProviderTimedOut``
    is raised.
    """

    name: ProviderName

    def __init__(
        self,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        http_client: httpx2.AsyncClient | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        endpoints: EndpointPolicy | None = None,
        pool: PoolLimits | None = None,
    ) -> None:
        self._owns_http_client = http_client is None
        self._http = http_client or new_http_client(
            connect_timeout=connect_timeout, endpoints=endpoints, pool=pool
        )
        if self._http.follow_redirects:
            raise ValueError("the shared http client must not follow redirects")
        self._connect_timeout = connect_timeout
        self._clients: ClientCache[ClientT] = ClientCache(self._build_client, max_clients)

    @property
    def http_client(self) -> httpx2.AsyncClient:
        """The connection pool shared by every SDK client of this adapter."""
        return self._http

    def client_for(self, creds: Credentials) -> ClientT:
        """The (shared) SDK client for the endpoint of these credentials."""
        if creds.provider != self.name:
            raise ValueError(f"{self.name} adapter given {creds.provider} credentials")
        return self._clients.get((creds.base_url, creds.api_version))

    def key_headers(self, creds: Credentials) -> dict[str, str]:
        """The header carrying the tenant's key, as the SDK would send it: a
        bearer token for both SDKs' own APIs (Azure overrides this)."""
        return {"Authorization": f"Bearer {creds.api_key.reveal()}"}

    async def complete(self, creds: Credentials, request: ProviderRequest) -> ProviderResult:
        """Run one completion; raise a ``ProviderError`` subclass on failure."""
        client = self.client_for(creds)
        error: ProviderError | None = None
        try:
            async with asyncio.timeout(request.timeout):
                with answer_checks.decoding(self.name):
                    raw = await self._create(client, creds, request)
            return self._to_result(raw, request)
        except Exception as exc:
            error = self._classify(exc, creds, request)
            if error is None:
                raise
        # Raised outside the except block so the SDK exception (which holds the
        # request and its auth headers) is not chained as __context__.
        raise error

    async def stream(
        self, creds: Credentials, request: ProviderRequest
    ) -> AsyncIterator[StreamEvent]:
        """Yield ``StreamDelta``s then one ``StreamEnd``; see the class docstring.

        A connection cut after the answer started raises ``ProviderUnavailable``.
        Closing this generator early closes the upstream response.
        """
        client = self.client_for(creds)
        loop = asyncio.get_running_loop()
        # The budget for the whole stream: one timer, and a read interrupted
        # only while it is under way. Expired while the consumer holds control
        # (at a yield), it interrupts nothing and the next read raises
        # TimeoutError at once. aiohttp's own timer context does exactly that
        # for its reads; an ``asyncio.timeout`` re-armed around every read
        # cost about a tenth of a slow stream's CPU.
        budget = TimerContext(loop)
        expiry = loop.call_at(loop.time() + request.timeout, budget.timeout)
        upstream: Any = None
        error: ProviderError | None = None
        reads = answer_checks.reading(self.name)
        try:
            with budget:
                upstream = await self._open_stream(client, creds, request)
            state = StreamState(model=request.model)
            iterator = upstream.__aiter__()
            while True:
                with reads:
                    try:
                        with budget:
                            event = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    text = self._on_event(state, event)
                if text:
                    state.text_chars += len(text)
                    yield StreamDelta(text)
            if not state.finished:
                # A clean end without the final event (a proxy closing the
                # stream, an HTML page served with 200) is still a failure.
                raise IncompleteAnswer(self.name)
            yield self._stream_end(state, request)
            return
        except Exception as exc:
            error = self._classify(exc, creds, request, mid_stream=upstream is not None)
            if error is None:
                raise
        finally:
            expiry.cancel()
            if upstream is not None:
                await upstream.close()
        raise error

    async def aclose(self) -> None:
        """Drop cached SDK clients and close the shared connection pool."""
        self._clients.clear()
        if self._owns_http_client:
            await self._http.aclose()

    # ------------------------------------------------------------------ hooks

    def _build_client(self, endpoint: Endpoint) -> ClientT:
        client = self._new_client(*endpoint, self._http)
        # Both SDKs add the headers in OPENAI_/ANTHROPIC_CUSTOM_HEADERS from the
        # environment to every request; the platform's environment must not
        # travel with tenants' calls. The service passes no headers of its own.
        client._custom_headers = {}  # type: ignore[attr-defined]
        _keep_parsed_urls(client, "_prepare_url", CLIENT_URLS_KEPT)
        # Each new SDK client looks the platform up (for its X-Stainless-*
        # headers) in a worker thread on its first call, a thread hop on the
        # first call to every Azure endpoint; the answer never changes, so new
        # clients are given the one an earlier client found.
        if getattr(client, "_platform", False) is None:
            known = [getattr(c, "_platform", None) for c in self._clients.clients()]
            client._platform = next((p for p in known if p is not None), None)  # type: ignore[attr-defined]
        return client

    def _new_client(
        self, base_url: str, api_version: str | None, http_client: httpx2.AsyncClient
    ) -> ClientT:
        """A new SDK client for this endpoint, holding ``NO_TENANT_KEY`` as its key."""
        raise NotImplementedError

    async def _create(self, client: ClientT, creds: Credentials, request: ProviderRequest) -> Any:
        raise NotImplementedError

    def _to_result(self, raw: Any, request: ProviderRequest) -> ProviderResult:
        raise NotImplementedError

    async def _open_stream(
        self, client: ClientT, creds: Credentials, request: ProviderRequest
    ) -> Any:
        raise NotImplementedError

    def _on_event(self, state: StreamState, event: Any) -> str:
        """Update ``state`` from one upstream event; return its text (or "")."""
        raise NotImplementedError

    # --------------------------------------------------------------- helpers

    def _sdk_timeout(self, request: ProviderRequest) -> httpx2.Timeout:
        # Connecting should not be allowed to eat the whole budget.
        return httpx2.Timeout(request.timeout, connect=min(request.timeout, self._connect_timeout))

    def _stream_end(self, state: StreamState, request: ProviderRequest) -> StreamEnd:
        # Usage missing (e.g. an Azure API version without stream usage):
        # estimate rather than report zero, so cost accounting stays roughly right.
        input_tokens = state.input_tokens
        if input_tokens is None:
            input_tokens = estimate_prompt_tokens(request.messages)
        output_tokens = state.output_tokens
        if output_tokens is None:
            output_tokens = estimate_text_tokens(state.text_chars)
        return StreamEnd(
            finish_reason=state.finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            model=state.model or request.model,
        )

    def _classify(
        self,
        exc: BaseException,
        creds: Credentials,
        request: ProviderRequest,
        *,
        mid_stream: bool = False,
    ) -> ProviderError | None:
        return classify_error(
            exc,
            provider=self.name,
            model=request.model,
            secrets=[creds.api_key],
            timeout=request.timeout,
            endpoint=creds.base_url,
            api_version=creds.api_version,
            mid_stream=mid_stream,
        )
