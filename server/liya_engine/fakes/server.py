"""The fake providers' HTTP server: routes, steering, and the record of what it received.

One aiohttp application serves every provider on one loopback port:

    POST /v1/chat/completions                              OpenAI (Bearer key)
    POST /v1/messages                                      Anthropic (x-api-key or Bearer)
    POST /openai/deployments/{deployment}/chat/completions Azure OpenAI (api-key header)

Every request is recorded (``FakeProviders.requests``) with the key it carried,
its JSON body and whether the client went away before the answer was complete.
What the answers and errors look like is each wire format module's business
(``openai_format``, ``anthropic_format``, ``azure_format``); how a failure is
asked for is ``failures``'; how an answer is written out is ``replies``'.

Steering from another process uses the control routes (``control``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from liya_engine.fakes import anthropic_format, azure_format, control, openai_format, replies
from liya_engine.fakes.failures import FailureRules
from liya_engine.fakes.recording import RecordedRequest
from liya_engine.fakes.replies import Cut, WireFormat
from liya_engine.fakes.served import served_model
from liya_engine.heap import settle_heap

PROVIDER_NAMES: tuple[str, ...] = ("openai", "anthropic", "azure")
WIRE_FORMATS: dict[str, WireFormat] = {
    "openai": openai_format,
    "anthropic": anthropic_format,
    "azure": azure_format,
}

# Kept open (bound, never listening) so the port cannot be reused by anyone else.
_REFUSED_SOCKETS: list[socket.socket] = []


def bind_refused_port(host: str = "127.0.0.1") -> int:
    """Return a loopback port where a connection attempt is refused.

    The port stays bound (without listening) for the life of the process, so no
    other server can take it and connecting gets an immediate RST.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    _REFUSED_SOCKETS.append(sock)
    return int(sock.getsockname()[1])


class FakeProviders:
    """The fake server's state and its aiohttp application.

    Create and run it with ``FakeProviders.start()``; steer it with ``fail()``,
    ``set_keys()``, ``set_models()`` and ``reset()``; inspect ``requests``.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._rules = FailureRules()
        self._keys: dict[str, set[str] | None] = dict.fromkeys(PROVIDER_NAMES)
        self._models: dict[str, set[str] | None] = dict.fromkeys(PROVIDER_NAMES)
        self._deployments: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.host = "127.0.0.1"
        self.port = 0

    # ----------------------------------------------------------------- control

    def fail(self, provider: str | None, kind: str, times: int | None = 1, **opts: Any) -> None:
        """Make the next ``times`` requests to ``provider`` fail as ``kind``.

        ``provider`` is ``openai``/``anthropic``/``azure``, or ``None``/``"all"``
        for every provider; ``times=None`` keeps failing until ``reset()``.
        See ``FAILURE_KINDS`` for kinds and options.
        """
        self._rules.add(_normalise_provider(provider), kind, times, opts)

    def set_keys(self, provider: str, keys: Iterable[str] | None) -> None:
        """Accept only these keys for ``provider`` (others get a 401); None accepts any."""
        name = _normalise_provider(provider)
        for target in [name] if name else PROVIDER_NAMES:
            self._keys[target] = None if keys is None else set(keys)

    def set_models(self, provider: str, models: Iterable[str] | None) -> None:
        """Serve only these models (Azure: deployments); others get the provider's 404."""
        name = _normalise_provider(provider)
        for target in [name] if name else PROVIDER_NAMES:
            self._models[target] = None if models is None else set(models)

    def set_deployments(self, deployments: Mapping[str, str] | None) -> None:
        """Which model each Azure deployment runs, as its answers report it
        (``{"prod-chat": "gpt-4o-2024-08-06"}``); None forgets them all. An
        unmapped deployment reports as ``served.served_model`` says."""
        self._deployments = dict(deployments or {})

    def reset(self) -> None:
        """Forget failures, key/model restrictions, deployment models and
        recorded requests."""
        self._rules.clear()
        self._deployments = {}
        self.requests.clear()
        self._keys = dict.fromkeys(PROVIDER_NAMES)
        self._models = dict.fromkeys(PROVIDER_NAMES)

    def requests_for(self, provider: str) -> list[RecordedRequest]:
        """The recorded requests to one provider, oldest first."""
        return [r for r in self.requests if r.provider == provider]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (raises ``IndexError`` when there is none)."""
        return self.requests[-1]

    async def wait_for(
        self, predicate: Callable[[FakeProviders], bool], within: float = 5.0
    ) -> None:
        """Wait until ``predicate(self)`` holds, e.g. until a disconnect is recorded.

        Raises ``TimeoutError`` when it does not hold within ``within`` seconds.
        """
        async with asyncio.timeout(within):
            while not predicate(self):
                await self._changed.wait()

    def _notify(self) -> None:
        # Wake every waiter, then arm a fresh event for the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ------------------------------------------------------------------ server

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK (``…/v1``)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (it appends ``/v1/messages``)."""
        return self.base_url

    @property
    def azure_endpoint(self) -> str:
        """``azure_endpoint`` for the Azure OpenAI SDK."""
        return self.base_url

    def make_app(self) -> web.Application:
        """The aiohttp application serving the provider and control routes."""
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle_openai)
        app.router.add_post("/v1/messages", self._handle_anthropic)
        app.router.add_post(azure_format.ROUTE, self._handle_azure)
        control.add_routes(app, self)
        return app

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening (``port=0`` picks a free port; see ``self.port``)."""
        if self._runner is not None:
            raise RuntimeError("already serving")
        # handler_cancellation lets a handler notice the client went away while
        # it waits (slow answers, streams), which is what tests assert on.
        runner = web.AppRunner(
            self.make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop the server and drop open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[FakeProviders]:
        """``async with FakeProviders.start() as fake:`` runs a fake for the block."""
        fake = cls()
        await fake.serve(host, port)
        try:
            yield fake
        finally:
            await fake.aclose()

    # ---------------------------------------------------------------- handlers

    async def _handle_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "openai")

    async def _handle_anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "anthropic")

    async def _handle_azure(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "azure")

    async def _handle(self, request: web.Request, provider: str) -> web.StreamResponse:
        record = await _record(request, provider)
        self.requests.append(record)
        self._notify()
        try:
            response = await self._answer(request, provider, record)
            record.completed = record.status is not None and not record.client_disconnected
            return response
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client disconnects.
            record.client_disconnected = True
            raise
        except ConnectionResetError:
            record.client_disconnected = True
            return replies.gone()
        except Cut:
            return replies.gone()
        finally:
            record.finished_at = time.time()
            self._notify()

    async def _answer(
        self, request: web.Request, provider: str, record: RecordedRequest
    ) -> web.StreamResponse:
        wire = WIRE_FORMATS[provider]
        rule = self._rules.take(provider)
        key = record.api_key or ""
        if rule is not None:
            record.failure = rule.kind
            if rule.opts.get("delay") and rule.kind != "slow":
                await replies.sleep_watching(request, float(rule.opts["delay"]))
        refused = self._refusal(request, record, wire, key)
        if refused is not None:
            return refused
        served = served_model(record.provider, record.model or "", self._deployments)
        return await replies.respond(request, record, wire, rule, key, served)

    def _refusal(
        self, request: web.Request, record: RecordedRequest, wire: WireFormat, key: str
    ) -> web.Response | None:
        """What the provider itself answers before any failure asked for, if anything.

        In the providers' order: the key, the body, Azure's api-version, the model.
        """
        allowed_keys = self._keys[record.provider]
        if not key or (allowed_keys is not None and key not in allowed_keys):
            return replies.error(record, wire, "auth", {}, key)
        body = record.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return replies.error(record, wire, "bad_request", {"message": "invalid JSON body"}, key)
        if record.provider == "azure" and "api-version" not in request.query:
            return replies.json(record, *azure_format.MISSING_API_VERSION)
        allowed_models = self._models[record.provider]
        if allowed_models is not None and record.model not in allowed_models:
            return replies.error(record, wire, "not_found", {}, key)
        return None


async def _record(request: web.Request, provider: str) -> RecordedRequest:
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    deployment = request.match_info.get("deployment") if provider == "azure" else None
    model = deployment if provider == "azure" else None
    if model is None and isinstance(body, dict):
        model = body.get("model")
    return RecordedRequest(
        provider=provider,
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=dict(request.headers),
        api_key=_presented_key(request, provider),
        body=body,
        model=model,
        deployment=deployment,
        stream=bool(isinstance(body, dict) and body.get("stream")),
    )


def _normalise_provider(provider: str | None) -> str | None:
    if provider in (None, "all", "*"):
        return None
    if provider not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDER_NAMES}")
    return provider


def _presented_key(request: web.Request, provider: str) -> str | None:
    headers = request.headers
    if provider == "azure" and headers.get("api-key"):
        return headers["api-key"]
    if provider == "anthropic" and headers.get("x-api-key"):
        return headers["x-api-key"]
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def main_forever(host: str = "127.0.0.1", port: int = 8090) -> None:
    """Run the fake providers until SIGINT/SIGTERM (``liya-engine fake-providers``)."""

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        async with FakeProviders.start(host, port) as fake:
            # The service's collector settings: a provider does not stop for a
            # whole-heap scan while a thousand streams are open, so its stand-in
            # should not either.
            settle_heap()
            print(f"fake providers listening on {fake.base_url}", flush=True)
            print(f"  LIYA_OPENAI_BASE_URL={fake.openai_base_url}", flush=True)
            print(f"  LIYA_ANTHROPIC_BASE_URL={fake.anthropic_base_url}", flush=True)
            print(f"  Azure endpoint: {fake.azure_endpoint}", flush=True)
            print(
                f"  control: {fake.base_url}/_control/"
                "{fail,reset,keys,models,deployments,requests}",
                flush=True,
            )
            await stop.wait()

    asyncio.run(_run())
