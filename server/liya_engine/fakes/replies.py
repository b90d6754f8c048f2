"""How the fake writes a reply: a JSON answer, an SSE stream, an error, or a failure on purpose.

What the bytes look like comes from the provider's wire format module (a
``WireFormat``); this module decides which reply a request gets, given the
failure rule it drew, and writes it to the aiohttp response.
"""

from __future__ import annotations

import asyncio
import json as _json
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from liya_engine.fakes import malformed
from liya_engine.fakes.answer import Answer
from liya_engine.fakes.failures import ANSWERING_KINDS, MID_STREAM_KINDS, FailureRule, error_reply
from liya_engine.fakes.real_answers import REAL_KINDS, REQUEST_IDS, real_answer
from liya_engine.fakes.recording import RecordedRequest


class WireFormat(Protocol):
    """What a wire format module provides (``openai_format``, ``anthropic_format``...)."""

    ID_PREFIX: str
    REQUEST_ID_HEADER: str

    def plain_body(self, answer: Answer) -> dict[str, Any]: ...
    def stream_events(self, answer: Answer, include_usage: bool) -> list[bytes]: ...
    def stream_error_event(self) -> bytes: ...
    def error_shape(self, kind: str, key: str, model: str) -> tuple[int, dict]: ...


class Cut(Exception):
    """Raised inside a handler after the connection was aborted on purpose."""


def gone() -> web.Response:
    """The reply to a client that is gone: the transport is closed, aiohttp drops it unsent."""
    return web.Response(status=499)


def abort(request: web.Request) -> None:
    """Drop the connection without a reply."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def sleep_watching(request: web.Request, seconds: float) -> None:
    """Sleep, but raise ``ConnectionResetError`` as soon as the client goes away."""
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


def json(record: RecordedRequest, status: int, body: Any, **headers: str) -> web.Response:
    """A JSON reply, its status recorded."""
    record.status = status
    return web.json_response(body, status=status, headers=headers or None)


def error(
    record: RecordedRequest, wire: WireFormat, kind: str, opts: Mapping[str, Any], key: str
) -> web.Response:
    """The provider's error reply for the failure ``kind``, with a request id header."""
    status, body, headers = error_reply(wire.error_shape, kind, opts, key, record.model or "")
    name, new_id = REQUEST_IDS[record.provider]
    headers.setdefault(name, new_id())
    record.status = status
    return web.json_response(body, status=status, headers=headers)


def real(record: RecordedRequest, kind: str, opts: Mapping[str, Any]) -> web.Response:
    """The real API's answer ``kind`` (``real_answers``), byte for byte."""
    status, headers, body, content_type = real_answer(
        record.provider, kind, record.model or "", opts
    )
    record.status = status
    headers["Content-Type"] = content_type + "; charset=utf-8"
    return web.Response(status=status, body=body, headers=headers)


async def respond(
    request: web.Request,
    record: RecordedRequest,
    wire: WireFormat,
    rule: FailureRule | None,
    key: str,
    served_model: str,
) -> web.StreamResponse:
    """The reply to an acceptable request, as the failure ``rule`` (if any)
    shapes it, naming ``served_model`` as the model that answered."""
    kind = rule.kind if rule else None
    opts = rule.opts if rule else {}
    if kind == "disconnect":
        abort(request)
        raise Cut
    if kind == "garbage":
        record.status = 200
        return web.Response(
            status=200, text="<html><body>Welcome</body></html>", content_type="text/html"
        )
    if kind == "malformed":
        return await _malformed(request, record, wire, str(opts["shape"]))
    if kind == "large":
        return await _large(request, record, wire, int(opts.get("bytes", 5_000_000)))
    if kind in REAL_KINDS:
        return real(record, kind, opts)
    if kind == "redirect":
        location = opts.get("location") or str(request.url)
        record.status = int(opts.get("status", 307))
        return web.Response(status=record.status, headers={"Location": location})
    if kind == "slow":
        await sleep_watching(request, float(opts.get("delay", 5.0)))
    elif kind is not None and kind not in ANSWERING_KINDS:
        return error(record, wire, kind, opts, key)
    if kind in ("stream_error", "stream_end_early") and not record.stream:
        return error(record, wire, "server_error", opts, key)
    answer = Answer.build(record.body, served_model, wire.ID_PREFIX)
    if not record.stream:
        if kind == "stream_cut":
            return await _cut_plain(request, record, wire, answer)
        return json(record, 200, wire.plain_body(answer))
    return await _stream(request, record, wire, answer, kind, opts)


async def _malformed(
    request: web.Request, record: RecordedRequest, wire: WireFormat, shape: str
) -> web.StreamResponse:
    """A 200 answer, in the provider's format but for the defect ``shape``."""
    answer = Answer.build(record.body, record.model or "", wire.ID_PREFIX)
    record.status = 200
    if not record.stream:
        body = malformed.plain_body(record.provider, answer, shape)
        return web.Response(status=200, body=body, content_type="application/json")
    response = web.StreamResponse(status=200)
    response.content_type = "text/event-stream"
    await response.prepare(request)
    for event in malformed.stream_events(record.provider, answer, shape):
        await response.write(event)
    await response.write_eof()
    return response


async def _large(
    request: web.Request, record: RecordedRequest, wire: WireFormat, size: int
) -> web.StreamResponse:
    """A well-formed answer whose text is ``size`` bytes (one word, one stream delta)."""
    answer = Answer.build(record.body, record.model or "", wire.ID_PREFIX)
    answer.words = ["x" * size]
    if not record.stream:
        return json(record, 200, wire.plain_body(answer))
    return await _stream(request, record, wire, answer, None, {})


async def _cut_plain(
    request: web.Request, record: RecordedRequest, wire: WireFormat, answer: Answer
) -> web.StreamResponse:
    payload = _json.dumps(wire.plain_body(answer)).encode()
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.content_length = len(payload)
    record.status = 200
    await response.prepare(request)
    await response.write(payload[: len(payload) // 2])
    await asyncio.sleep(0.01)
    abort(request)
    raise Cut


async def _stream(
    request: web.Request,
    record: RecordedRequest,
    wire: WireFormat,
    answer: Answer,
    kind: str | None,
    opts: Mapping[str, Any],
) -> web.StreamResponse:
    response = web.StreamResponse(status=200)
    response.content_type = "text/event-stream"
    response.headers["Cache-Control"] = "no-cache"
    record.status = 200
    await response.prepare(request)
    slow = kind == "slow_stream"
    chunk_delay = float(opts.get("chunk_delay", 0.2)) if slow else 0.0
    # ``after``: the mid-stream kinds act after that many events (default 2);
    # slow_stream sends that many at once before it starts pausing (default 0:
    # a pause after every event), so the first delta can come at once.
    after = int(opts.get("after", 0 if slow else 2))
    include_usage = bool((record.body.get("stream_options") or {}).get("include_usage"))
    for index, event in enumerate(wire.stream_events(answer, include_usage)):
        if kind in MID_STREAM_KINDS and index == after:
            if kind == "stream_cut":
                await asyncio.sleep(0.01)
                abort(request)
                raise Cut
            if kind == "stream_error":
                await response.write(wire.stream_error_event())
            break
        await response.write(event)
        if chunk_delay and index + 1 >= after:
            await asyncio.sleep(chunk_delay)
    await response.write_eof()
    return response
