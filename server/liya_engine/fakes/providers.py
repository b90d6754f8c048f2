"""One loopback HTTP server that speaks the OpenAI, Anthropic and Azure OpenAI wire formats.

Used by tests (through the real SDKs) and by ``liya-engine fake-providers`` for
local demos. Routes:

    POST /v1/chat/completions                              OpenAI (Bearer key)
    POST /v1/messages                                      Anthropic (x-api-key or Bearer)
    POST /openai/deployments/{deployment}/chat/completions Azure OpenAI (api-key header)

Answers are deterministic: the reply echoes the start of the last user message,
one "token" per word, so ``max_tokens`` truncation and usage numbers are easy to
predict. Prompt tokens are ``3 + sum(4 + len(text) // 4)`` over the messages.

Every request is recorded (``FakeProviders.requests``) with the key it carried,
its JSON body and whether the client went away before the answer was complete.
Failures are injected per provider with ``fail()``; error bodies use each
provider's real JSON error shape so the SDKs raise their real exception classes.

Steering from another process uses the control routes:

    POST /_control/fail      {"provider": "openai"|"anthropic"|"azure"|"all",
                              "kind": ..., "times": 1 | null, ...options}
    POST /_control/reset
    POST /_control/keys      {"provider": ..., "keys": [...] | null}
    POST /_control/models    {"provider": ..., "models": [...] | null}
    GET  /_control/requests  [?provider=...]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PROVIDER_NAMES: tuple[str, ...] = ("openai", "anthropic", "azure")

#: Failure kinds ``fail()`` accepts. Options common to all: ``status`` (override
#: the HTTP status), ``message`` (override the provider's message; ``{key}``,
#: ``{masked_key}`` and ``{model}`` are substituted), ``headers`` (extra headers),
#: ``delay`` (seconds to wait before failing).
FAILURE_KINDS: tuple[str, ...] = (
    "auth",  # 401; OpenAI echoes the masked key as the real API does
    "forbidden",  # 403
    "not_found",  # 404 model_not_found / DeploymentNotFound / not_found_error
    "rate_limit",  # 429 with retry-after (options: retry_after, retry_after_ms)
    "quota",  # OpenAI/Azure 429 insufficient_quota; Anthropic 400 credit balance
    "billing",  # 400 billing error (billing_hard_limit_reached / credit balance)
    "quota_403",  # 403 that is about quota, as Azure reports call-volume quota
    "bad_request",  # 400 context_length_exceeded / prompt too long
    "server_error",  # 500
    "unavailable",  # 503
    "overloaded",  # Anthropic 529 overloaded_error; OpenAI/Azure 503 overloaded
    "slow",  # wait ``delay`` seconds (default 5), then answer normally
    "slow_stream",  # answer normally, ``chunk_delay`` seconds (default 0.2) between chunks
    "stream_cut",  # send ``after`` events (default 2) then abort the connection
    "stream_error",  # send ``after`` events then the provider's in-stream error event
    "stream_end_early",  # send ``after`` events then end the stream cleanly, unfinished
    "redirect",  # 307 to ``location`` (default: the same URL)
    "disconnect",  # close the connection without any answer
    "garbage",  # 200 with an HTML page instead of a completion
)

_ANSWER_PREFIX = "Fake answer to:"
_MAX_ECHO_WORDS = 40

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


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]], system: Any = None) -> int:
    """The fake's prompt token count: 3 + (4 + len(text) // 4) per message."""
    total = 3
    if system:
        total += 4 + len(_text_of(system)) // 4
    for message in messages:
        total += 4 + len(_text_of(message.get("content"))) // 4
    return total


def answer_words(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The words of the fake's full answer (one output token per word)."""
    last_user = ""
    for message in messages:
        if message.get("role") == "user":
            last_user = _text_of(message.get("content"))
    echo = last_user.split()[:_MAX_ECHO_WORDS]
    return [*_ANSWER_PREFIX.split(), *(echo or ["(nothing)"])]


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, Mapping):
                parts.append(str(block.get("text", "")))
            else:
                parts.append(str(block))
        return " ".join(parts)
    return str(content)


def _mask_key(key: str) -> str:
    # The real OpenAI message shows the key's first 8 and last 4 characters.
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


@dataclass
class RecordedRequest:
    """One request the fake received, as tests want to see it."""

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    api_key: str | None
    body: Any
    model: str | None
    deployment: str | None
    stream: bool
    failure: str | None = None
    status: int | None = None
    completed: bool = False
    client_disconnected: bool = False
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what ``GET /_control/requests`` returns)."""
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "api_key": self.api_key,
            "body": self.body,
            "model": self.model,
            "deployment": self.deployment,
            "stream": self.stream,
            "failure": self.failure,
            "status": self.status,
            "completed": self.completed,
            "client_disconnected": self.client_disconnected,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass
class _Rule:
    provider: str | None
    kind: str
    remaining: int | None
    opts: dict[str, Any]


class _Cut(Exception):
    """Raised inside a handler after the connection was aborted on purpose."""


class FakeProviders:
    """The fake server's state and its aiohttp application.

    Create and run it with ``FakeProviders.start()``; steer it with ``fail()``,
    ``set_keys()``, ``set_models()`` and ``reset()``; inspect ``requests``.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._rules: list[_Rule] = []
        self._keys: dict[str, set[str] | None] = dict.fromkeys(PROVIDER_NAMES)
        self._models: dict[str, set[str] | None] = dict.fromkeys(PROVIDER_NAMES)
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
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {FAILURE_KINDS}")
        target = _normalise_provider(provider)
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for until reset")
        self._rules.append(_Rule(target, kind, times, dict(opts)))

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

    def reset(self) -> None:
        """Forget failures, key/model restrictions and recorded requests."""
        self._rules.clear()
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
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._handle_azure)
        app.router.add_post("/_control/fail", self._control_fail)
        app.router.add_post("/_control/reset", self._control_reset)
        app.router.add_post("/_control/keys", self._control_keys)
        app.router.add_post("/_control/models", self._control_models)
        app.router.add_get("/_control/requests", self._control_requests)
        app.router.add_get("/_control/health", self._control_health)
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
        try:
            body: Any = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        deployment = request.match_info.get("deployment") if provider == "azure" else None
        model = deployment if provider == "azure" else None
        if model is None and isinstance(body, dict):
            model = body.get("model")
        record = RecordedRequest(
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
            return _gone()
        except _Cut:
            return _gone()
        finally:
            record.finished_at = time.time()
            self._notify()

    async def _answer(
        self, request: web.Request, provider: str, record: RecordedRequest
    ) -> web.StreamResponse:
        rule = self._take_rule(provider)
        key = record.api_key or ""
        if rule is not None:
            record.failure = rule.kind
            if rule.opts.get("delay") and rule.kind != "slow":
                await self._sleep_watching(request, float(rule.opts["delay"]))
        body = record.body if isinstance(record.body, dict) else None

        if not key or (self._keys[provider] is not None and key not in self._keys[provider]):
            return self._error(record, provider, "auth", {}, key)
        if body is None or not isinstance(body.get("messages"), list):
            return self._error(
                record, provider, "bad_request", {"message": "invalid JSON body"}, key
            )
        if provider == "azure" and "api-version" not in request.query:
            return self._json(
                record,
                404,
                {"error": {"code": "404", "message": "Resource not found"}},
            )
        allowed_models = self._models[provider]
        if allowed_models is not None and record.model not in allowed_models:
            return self._error(record, provider, "not_found", {}, key)

        kind = rule.kind if rule else None
        opts = rule.opts if rule else {}
        if kind == "disconnect":
            _abort(request)
            raise _Cut
        if kind == "garbage":
            record.status = 200
            return web.Response(
                status=200, text="<html><body>Welcome</body></html>", content_type="text/html"
            )
        if kind == "redirect":
            location = opts.get("location") or str(request.url)
            record.status = int(opts.get("status", 307))
            return web.Response(status=record.status, headers={"Location": location})
        if kind == "slow":
            await self._sleep_watching(request, float(opts.get("delay", 5.0)))
        elif kind not in (None, "slow_stream", "stream_cut", "stream_error", "stream_end_early"):
            return self._error(record, provider, kind, opts, key)
        if kind in ("stream_error", "stream_end_early") and not record.stream:
            return self._error(record, provider, "server_error", opts, key)

        answer = _Answer.build(provider, body, record.model or "")
        if not record.stream:
            if kind == "stream_cut":
                return await self._cut_plain(request, record, provider, answer)
            return self._json(record, 200, answer.plain_body())
        return await self._stream(request, record, provider, answer, kind, opts)

    def _take_rule(self, provider: str) -> _Rule | None:
        for rule in self._rules:
            if rule.provider not in (None, provider):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
            return rule
        return None

    async def _sleep_watching(self, request: web.Request, seconds: float) -> None:
        # Cancellation covers most disconnects; polling the transport covers a
        # half-closed socket that aiohttp has not noticed yet.
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            await asyncio.sleep(min(remaining, 0.02))

    def _json(
        self, record: RecordedRequest, status: int, body: Any, **headers: str
    ) -> web.Response:
        record.status = status
        return web.json_response(body, status=status, headers=headers or None)

    def _error(
        self,
        record: RecordedRequest,
        provider: str,
        kind: str,
        opts: Mapping[str, Any],
        key: str,
    ) -> web.Response:
        status, body, headers = _error_for(provider, kind, opts, key, record.model or "")
        headers = {**headers, **{str(k): str(v) for k, v in (opts.get("headers") or {}).items()}}
        if provider == "anthropic":
            headers.setdefault("request-id", f"req_{uuid.uuid4().hex[:24]}")
        else:
            headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        record.status = status
        return web.json_response(body, status=status, headers=headers)

    async def _cut_plain(
        self, request: web.Request, record: RecordedRequest, provider: str, answer: _Answer
    ) -> web.StreamResponse:
        payload = json.dumps(answer.plain_body()).encode()
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.content_length = len(payload)
        record.status = 200
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        await asyncio.sleep(0.01)
        _abort(request)
        raise _Cut

    async def _stream(
        self,
        request: web.Request,
        record: RecordedRequest,
        provider: str,
        answer: _Answer,
        kind: str | None,
        opts: Mapping[str, Any],
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "text/event-stream"
        response.headers["Cache-Control"] = "no-cache"
        record.status = 200
        await response.prepare(request)
        chunk_delay = float(opts.get("chunk_delay", 0.2)) if kind == "slow_stream" else 0.0
        after = int(opts.get("after", 2))
        include_usage = bool((record.body.get("stream_options") or {}).get("include_usage"))
        events = (
            answer.anthropic_events()
            if provider == "anthropic"
            else answer.openai_events(include_usage)
        )
        for index, event in enumerate(events):
            if kind in ("stream_cut", "stream_error", "stream_end_early") and index == after:
                if kind == "stream_cut":
                    await asyncio.sleep(0.01)
                    _abort(request)
                    raise _Cut
                if kind == "stream_error":
                    await response.write(_stream_error_event(provider))
                break
            await response.write(event)
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
        await response.write_eof()
        return response

    # ----------------------------------------------------------- control routes

    async def _control_fail(self, request: web.Request) -> web.Response:
        payload = await request.json()
        provider = payload.pop("provider", None)
        kind = payload.pop("kind")
        times = payload.pop("times", 1)
        try:
            self.fail(provider, kind, times, **payload)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_keys(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.set_keys(payload.get("provider", "all"), payload.get("keys"))
        return web.json_response({"ok": True})

    async def _control_models(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.set_models(payload.get("provider", "all"), payload.get("models"))
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.Response:
        provider = request.query.get("provider")
        chosen = self.requests_for(provider) if provider else self.requests
        return web.json_response([r.to_json() for r in chosen])

    async def _control_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


def _gone() -> web.Response:
    # The transport is already closed; aiohttp drops this unsent.
    return web.Response(status=499)


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


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


@dataclass
class _Answer:
    provider: str
    model: str
    words: list[str]
    prompt_tokens: int
    finish: str  # "stop" | "length"
    id: str

    @classmethod
    def build(cls, provider: str, body: Mapping[str, Any], model: str) -> _Answer:
        messages = body.get("messages") or []
        words = answer_words(messages)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, finish = words[:limit], "length"
        prefix = "msg_" if provider == "anthropic" else "chatcmpl-"
        return cls(
            provider=provider,
            model=model,
            words=words,
            prompt_tokens=count_prompt_tokens(messages, body.get("system")),
            finish=finish,
            id=prefix + uuid.uuid4().hex[:24],
        )

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def completion_tokens(self) -> int:
        return len(self.words)

    def _openai_usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def plain_body(self) -> dict[str, Any]:
        if self.provider == "anthropic":
            return {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [{"type": "text", "text": self.text}],
                "stop_reason": "max_tokens" if self.finish == "length" else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": self.prompt_tokens,
                    "output_tokens": self.completion_tokens,
                },
            }
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish,
                }
            ],
            "usage": self._openai_usage(),
            "system_fingerprint": "fp_fake",
        }

    def openai_events(self, include_usage: bool) -> list[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            payload: dict[str, Any] = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                payload["usage"] = None
            payload.update(extra)
            return _sse(payload)

        events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
        for i, word in enumerate(self.words):
            events.append(chunk({"content": word if i == 0 else " " + word}, None))
        events.append(chunk({}, self.finish))
        if include_usage:
            usage_chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": self._openai_usage(),
            }
            events.append(_sse(usage_chunk))
        events.append(b"data: [DONE]\n\n")
        return events

    def anthropic_events(self) -> list[bytes]:
        start = {
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": self.prompt_tokens, "output_tokens": 1},
            },
        }
        events = [
            _sse(start, "message_start"),
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
        ]
        for i, word in enumerate(self.words):
            delta = {"type": "text_delta", "text": word if i == 0 else " " + word}
            events.append(
                _sse(
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                    "content_block_delta",
                )
            )
        events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        events.append(
            _sse(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": "max_tokens" if self.finish == "length" else "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": {"output_tokens": self.completion_tokens},
                },
                "message_delta",
            )
        )
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        return events


def _sse(payload: Mapping[str, Any], event: str | None = None) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


def _stream_error_event(provider: str) -> bytes:
    if provider == "anthropic":
        return _sse(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "error",
        )
    return _sse(
        {
            "error": {
                "message": "The server had an error while processing your request. "
                "Sorry about that!",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    )


# ------------------------------------------------------------- error bodies


def _openai_error(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _azure_error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _anthropic_error(type_: str, message: str) -> dict:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def _error_for(
    provider: str, kind: str, opts: Mapping[str, Any], key: str, model: str
) -> tuple[int, dict, dict[str, str]]:
    """Status, body and headers of the failure ``kind`` as ``provider`` sends it."""
    headers: dict[str, str] = {}
    status, body = _error_shape(provider, kind, key, model)
    if kind == "rate_limit":
        retry_after = opts.get("retry_after", 2)
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if opts.get("retry_after_ms") is not None:
            headers["retry-after-ms"] = str(opts["retry_after_ms"])
    if "status" in opts:
        status = int(opts["status"])
    if opts.get("message") is not None:
        message = str(opts["message"]).format(key=key, masked_key=_mask_key(key), model=model)
        body["error"]["message"] = message
    return status, body, headers


def _error_shape(provider: str, kind: str, key: str, model: str) -> tuple[int, dict]:
    masked = _mask_key(key)
    if provider == "anthropic":
        return _anthropic_shape(kind, model)
    azure = provider == "azure"
    if kind == "auth":
        if azure:
            return 401, _azure_error(
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource.",
            )
        return 401, _openai_error(
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
    if kind == "forbidden":
        if azure:
            return 403, _azure_error(
                "AuthenticationTypeDisabled",
                "Key based authentication is disabled for this resource.",
            )
        return 403, _openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        )
    if kind == "not_found":
        if azure:
            return 404, _azure_error(
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
            )
        return 404, _openai_error(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if kind == "rate_limit":
        if azure:
            return 429, _azure_error(
                "429",
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                "2024-02-15-preview have exceeded token rate limit of your current OpenAI S0 "
                "pricing tier. Please retry after 2 seconds.",
            )
        return 429, _openai_error(
            f"Rate limit reached for {model} in organization org-fake on tokens per min (TPM): "
            "Limit 30000, Used 29800, Requested 500. Please try again in 1.2s.",
            "tokens",
            "rate_limit_exceeded",
        )
    if kind == "quota":
        return 429, _openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        )
    if kind == "billing":
        return 400, _openai_error(
            "Billing hard limit has been reached",
            "invalid_request_error",
            "billing_hard_limit_reached",
        )
    if kind == "quota_403":
        return 403, _azure_error(
            "403",
            "Out of call volume quota for OpenAI API. Quota will be replenished in 00:00:30.",
        )
    if kind == "bad_request":
        return 400, _openai_error(
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
    if kind == "unavailable" or kind == "overloaded":
        return 503, _openai_error(
            "The engine is currently overloaded, please try again later.", "server_error", None
        )
    # server_error and anything else
    if azure:
        return 500, _azure_error(
            "InternalServerError", "The server had an error while processing your request."
        )
    return 500, _openai_error(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )


def _anthropic_shape(kind: str, model: str) -> tuple[int, dict]:
    credit = (
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits."
    )
    table: dict[str, tuple[int, str, str]] = {
        "auth": (401, "authentication_error", "invalid x-api-key"),
        "forbidden": (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        "not_found": (404, "not_found_error", f"model: {model}"),
        "rate_limit": (
            429,
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests "
            "per minute. For details, refer to https://docs.claude.com/en/api/rate-limits.",
        ),
        "quota": (400, "invalid_request_error", credit),
        "billing": (400, "invalid_request_error", credit),
        "quota_403": (
            403,
            "permission_error",
            "Your organization has reached its monthly spend limit. Raise the limit in the "
            "Console under Plans & Billing.",
        ),
        "bad_request": (
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
        "server_error": (500, "api_error", "Internal server error"),
        "unavailable": (503, "api_error", "Service temporarily unavailable"),
        "overloaded": (529, "overloaded_error", "Overloaded"),
    }
    status, type_, message = table.get(kind, table["server_error"])
    return status, _anthropic_error(type_, message)


# ------------------------------------------------------------------ command


def main_forever(host: str = "127.0.0.1", port: int = 8090) -> None:
    """Run the fake providers until SIGINT/SIGTERM (``liya-engine fake-providers``)."""

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        async with FakeProviders.start(host, port) as fake:
            print(f"fake providers listening on {fake.base_url}", flush=True)
            print(f"  LIYA_OPENAI_BASE_URL={fake.openai_base_url}", flush=True)
            print(f"  LIYA_ANTHROPIC_BASE_URL={fake.anthropic_base_url}", flush=True)
            print(f"  Azure endpoint: {fake.azure_endpoint}", flush=True)
            print(f"  control: {fake.base_url}/_control/{{fail,reset,requests}}", flush=True)
            await stop.wait()

    asyncio.run(_run())
