"""The aiohttp server of the HTTP/JSON surface.

Every method registered with the ``CallGuard`` that has a ``google.api.http``
annotation gets its route; nothing here names a method. A call runs the
guard-wrapped servicer method with an ``HttpContext``, so identity, request
id, metrics, the access log, the server span and the error mapping are the
gRPC surface's. Unary answers are protobuf JSON; server-streaming answers are
``text/event-stream`` (one ``data:`` line per message; a failure after the
first message ends the stream with ``event: error`` carrying the error body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from liya_engine.api import status as rpc_status
from liya_engine.api.calls import CallGuard
from liya_engine.http import transcode
from liya_engine.http.context import HttpAbort, HttpContext
from liya_engine.http.routes import Route, check_unique, route_for

log = logging.getLogger("liya_engine.http")

# The caller's X-Server-Timeout bounds the call: the domain answers
# DEADLINE_EXCEEDED itself when a provider call runs into it; this margin
# lets that answer win over the surface's own cut-off.
_DEADLINE_MARGIN_SECONDS = 0.25
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class HttpSurface:
    """The HTTP/JSON server; ``start`` binds it, ``stop`` drains and closes it."""

    def __init__(self, guard: CallGuard, *, max_bytes: int, shutdown_grace: float) -> None:
        self.routes: list[Route] = []
        handlers = guard.http_handlers(lambda method: self._decoder(method, max_bytes))
        check_unique(self.routes)
        app = web.Application(client_max_size=max_bytes)
        for route in self.routes:
            app.router.add_route(route.http_method, route.template, self._handler(route, handlers))
        app.router.add_route("*", "/{tail:.*}", self._no_route)
        # Handlers are cancelled when the caller goes away, as gRPC cancels a
        # call, so a provider request never outlives its caller; aiohttp's own
        # access log stays off (LIYA_ACCESS_LOG covers calls).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_grace
        )
        self.port = 0

    def _decoder(self, method: str, max_bytes: int):
        route = route_for(method)
        if route is None:
            return None
        self.routes.append(route)
        attributes = {"http.request.method": route.http_method, "http.route": route.template}
        return transcode.decoder(route, max_bytes), attributes

    async def start(self, address: str, *, reuse_port: bool = False) -> int:
        """Listen on ``host:port``; return the port (useful with port 0)."""
        host, _, port = address.rpartition(":")
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host.strip("[]") or "127.0.0.1", int(port), reuse_port=reuse_port
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {address} (LIYA_HTTP_LISTEN_ADDRESS): {exc}") from None
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Stop listening, let in-flight calls finish (up to the shutdown grace)."""
        await self._runner.cleanup()

    def _handler(
        self, route: Route, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        handler = handlers[route.method]
        if route.server_streaming:
            stream = handler.unary_stream

            async def serve_stream(request: web.Request) -> web.StreamResponse:
                http, context, timeout = await _read(request)
                return await _stream(request, stream(http, context), context, timeout)

            return serve_stream
        unary = handler.unary_unary

        async def serve_unary(request: web.Request) -> web.StreamResponse:
            http, context, timeout = await _read(request)
            try:
                async with asyncio.timeout(timeout):
                    reply = await unary(http, context)
            except HttpAbort as exc:
                return _error(exc.status, context)
            except TimeoutError:
                return _error(_deadline_status(context), context)
            return web.Response(
                text=transcode.to_json(reply),
                content_type="application/json",
                headers=_request_id(context),
            )

        return serve_unary

    async def _no_route(self, request: web.Request) -> web.StreamResponse:
        allowed = sorted({r.http_method for r in self.routes if _template_matches(r, request.path)})
        if allowed:
            status = _plain_status(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{request.method} is not served at {request.path}; use {', '.join(allowed)}",
            )
            return _json(transcode.error_json(status, 405), 405, {"Allow": ", ".join(allowed)})
        status = _plain_status(grpc.StatusCode.NOT_FOUND, f"no method is served at {request.path}")
        return _json(transcode.error_json(status), 404, {})


async def _read(request: web.Request) -> tuple[transcode.HttpRequest, HttpContext, float | None]:
    try:
        body: bytes | None = await request.read()
    except web.HTTPRequestEntityTooLarge:
        body = None
    raw_timeout = request.headers.get(transcode.TIMEOUT_HEADER)
    http = transcode.HttpRequest(body, request.query.items(), dict(request.match_info), raw_timeout)
    timeout = transcode.deadline_seconds(raw_timeout)
    context = HttpContext(request.headers.items(), timeout)
    return http, context, None if timeout is None else timeout + _DEADLINE_MARGIN_SECONDS


async def _stream(
    request: web.Request,
    items: AsyncIterator[Any],
    context: HttpContext,
    seconds: float | None,
) -> web.StreamResponse:
    """Answer a server-streaming call as server-sent events."""
    response: web.StreamResponse | None = None
    finished = False
    try:
        async with asyncio.timeout(seconds):
            try:
                async for item in items:
                    if response is None:
                        response = await _sse(request, context)
                    await response.write(b"data: " + transcode.to_json(item).encode() + b"\n\n")
                finished = True
            except HttpAbort as exc:
                finished = True
                if response is None:
                    return _error(exc.status, context)
                await _event_error(response, exc.status)
    except TimeoutError:
        if response is None:
            return _error(_deadline_status(context), context)
        await _event_error(response, _deadline_status(context))
    finally:
        if not finished:
            # The caller went away (or the deadline struck) while we wrote: tell
            # the guard the call was cancelled, as gRPC would.
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, HttpAbort):
                await items.athrow(asyncio.CancelledError())
    if response is None:  # a stream with no message at all
        response = await _sse(request, context)
    await response.write_eof()
    return response


async def _sse(request: web.Request, context: HttpContext) -> web.StreamResponse:
    response = web.StreamResponse(headers={**_SSE_HEADERS, **_request_id(context)})
    await response.prepare(request)
    return response


async def _event_error(response: web.StreamResponse, status: Any) -> None:
    payload = transcode.error_json(status).encode()
    await response.write(b"event: error\ndata: " + payload + b"\n\n")


def _error(status: Any, context: HttpContext) -> web.Response:
    headers = _request_id(context)
    retry = transcode.retry_after(status)
    if retry is not None:
        headers["Retry-After"] = retry
    return _json(transcode.error_json(status), transcode.HTTP_STATUS.get(status.code, 500), headers)


def _json(text: str, http_status: int, headers: dict[str, str]) -> web.Response:
    return web.Response(
        text=text, status=http_status, content_type="application/json", headers=headers
    )


def _request_id(context: HttpContext) -> dict[str, str]:
    request_id = context.request_id()
    return {"X-Request-Id": request_id} if request_id else {}


def _deadline_status(context: HttpContext) -> Any:
    st = rpc_status.deadline_status(context.request_id() or "")
    return transcode.status_of(st.code.value[0], st.details, st.trailing_metadata)


def _plain_status(code: grpc.StatusCode, message: str) -> Any:
    return transcode.status_of(code.value[0], message, ())


def _template_matches(route: Route, path: str) -> bool:
    pattern = re.escape(route.template)
    for name in route.path_fields:
        pattern = pattern.replace(re.escape("{" + name + "}"), "[^/]+")
    return re.fullmatch(pattern, path) is not None
