"""Answers that break the provider's promise: a 200 whose body is not what the API says.

``fail(provider, "malformed", shape=...)`` makes the fake answer a completion
(plain or streamed) that is well formed up to one defect, the ``shape``:

    negative_input_tokens   the prompt token count is -5
    negative_output_tokens  the completion token count is -7
    tokens_above_int64      a token count of 2**70
    tokens_1_5e300          a token count of 1.5e300
    tokens_nan              a token count of NaN (JSON as Python writes it)
    tokens_string           a token count that is a string
    content_number          the text is a number
    content_list            the text is a list
    content_object          the text is an object
    lone_surrogate          the text holds an unpaired UTF-16 surrogate (\\ud800)
    usage_list              ``usage`` is a list
    usage_string            ``usage`` is a string
    model_number            ``model`` is a number
    finish_number           the finish/stop reason is a number
    no_content              no choices (OpenAI, Azure) / no content (Anthropic)
    null_body               the JSON is ``null`` (in a stream: one event's data)
    not_json                the body (or one event's data) is not JSON
    empty                   an empty body (in a stream: no events at all)
    deep_nesting            JSON nested 100,000 deep

OpenAI and Azure share the chat completions format; Anthropic has its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from liya_engine.fakes import anthropic_format, openai_format
from liya_engine.fakes.answer import Answer

DEEP = 100_000
# Shapes that replace the whole body (or an event's data) instead of one value.
_RAW: dict[str, bytes] = {
    "null_body": b"null",
    "not_json": b"this is not JSON {",
    "empty": b"",
    "deep_nesting": b"[" * DEEP + b"]" * DEEP,
}
# The defect's value for shapes that set one value.
_VALUES: dict[str, Any] = {
    "negative_input_tokens": -5,
    "negative_output_tokens": -7,
    "tokens_above_int64": 2**70,
    "tokens_1_5e300": 1.5e300,
    "tokens_nan": float("nan"),
    "tokens_string": "many",
    "content_number": 42,
    "content_list": ["a", "b"],
    "content_object": {"text": "hi"},
    "lone_surrogate": "half \ud800 a character",
    "usage_list": [1, 2],
    "usage_string": "lots",
    "model_number": 12345,
    "finish_number": 7,
}
SHAPES: tuple[str, ...] = (*_VALUES, "no_content", *_RAW)

Edit = Callable[[dict[str, Any]], None]


def _set(path: tuple[Any, ...], value: Any) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        target: Any = payload
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


def _drop(key: str) -> Edit:
    return lambda payload: payload.pop(key, None)


def _openai_edit(shape: str, kind: str) -> Edit | None:
    """How ``shape`` changes an OpenAI payload of ``kind`` (body, delta, finish, usage)."""
    value = _VALUES.get(shape)
    if shape.startswith(("negative_", "tokens_")):
        field = "prompt_tokens" if shape == "negative_input_tokens" else "completion_tokens"
        return _set(("usage", field), value) if kind in ("body", "usage") else None
    if shape.startswith("usage_"):
        return _set(("usage",), value) if kind in ("body", "usage") else None
    if shape.startswith("content_") or shape == "lone_surrogate":
        if kind == "body":
            return _set(("choices", 0, "message", "content"), value)
        return _set(("choices", 0, "delta", "content"), value) if kind == "delta" else None
    if shape == "model_number":
        return _set(("model",), value)
    if shape == "finish_number":
        return _set(("choices", 0, "finish_reason"), value) if kind in ("body", "finish") else None
    if shape == "no_content":
        return _set(("choices",), {}) if kind in ("body", "delta") else None
    return None


def _anthropic_edit(shape: str, kind: str) -> Edit | None:
    """How ``shape`` changes an Anthropic payload of ``kind`` (body, start, delta, end)."""
    value = _VALUES.get(shape)
    usage_at = {"body": ("usage",), "start": ("message", "usage"), "end": ("usage",)}
    if shape.startswith(("negative_", "tokens_")):
        if shape == "negative_input_tokens":  # message_start carries it in a stream
            where = usage_at.get(kind) if kind in ("body", "start") else None
            return _set((*where, "input_tokens"), value) if where else None
        where = usage_at.get(kind) if kind in ("body", "end") else None
        return _set((*where, "output_tokens"), value) if where else None
    if shape.startswith("usage_"):
        return _set(usage_at[kind], value) if kind in ("body", "end") else None
    if shape.startswith("content_") or shape == "lone_surrogate":
        if kind == "body":
            whole = shape != "lone_surrogate" and shape != "content_list"
            return _set(("content",) if whole else ("content", 0, "text"), value)
        return _set(("delta", "text"), value) if kind == "delta" else None
    if shape == "model_number":
        path = {"body": ("model",), "start": ("message", "model")}.get(kind)
        return _set(path, value) if path else None
    if shape == "finish_number":
        path = {"body": ("stop_reason",), "end": ("delta", "stop_reason")}.get(kind)
        return _set(path, value) if path else None
    if shape == "no_content":
        if kind == "body":
            return _drop("content")
        return _drop("delta") if kind == "delta" else None
    return None


def plain_body(provider: str, answer: Answer, shape: str) -> bytes:
    """The non-streamed answer with the defect ``shape``."""
    if shape in _RAW:
        return _RAW[shape]
    if provider == "anthropic":
        body = anthropic_format.plain_body(answer)
        edit = _anthropic_edit(shape, "body")
    else:
        body = openai_format.plain_body(answer)
        edit = _openai_edit(shape, "body")
    if edit is not None:
        edit(body)
    return json.dumps(body).encode()


def stream_events(provider: str, answer: Answer, shape: str) -> list[bytes]:
    """The streamed answer with the defect ``shape`` (one event broken, or all)."""
    if shape == "empty":
        return []
    if provider == "anthropic":
        return _anthropic_stream(answer, shape)
    return _openai_stream(answer, shape)


def _data(payload: Any, event: str | None = None, raw: bytes | None = None) -> bytes:
    prefix = f"event: {event}\n".encode() if event else b""
    data = raw if raw is not None else json.dumps(payload, separators=(",", ":")).encode()
    return prefix + b"data: " + data + b"\n\n"


def _events_of(events: list[bytes]) -> list[tuple[str | None, Any]]:
    parsed = []
    for event in events:
        name, data = None, None
        for line in event.decode().splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        parsed.append((name, data if data == "[DONE]" else json.loads(data or "null")))
    return parsed


def _openai_stream(answer: Answer, shape: str) -> list[bytes]:
    events = _events_of(openai_format.stream_events(answer, include_usage=True))
    out: list[bytes] = []
    broke = False
    for _name, payload in events:
        if payload == "[DONE]":
            out.append(b"data: [DONE]\n\n")
            continue
        choices = payload.get("choices") or []
        if not choices:
            kind = "usage"
        elif choices[0].get("finish_reason"):
            kind = "finish"
        else:
            kind = "delta" if choices[0]["delta"].get("content") else "role"
        if shape in _RAW and kind == "delta" and not broke:
            out.append(_data(None, raw=_RAW[shape]))
            broke = True
            continue
        edit = _openai_edit(shape, kind)
        if edit is not None and (kind != "delta" or not broke):
            edit(payload)
            broke = True
        out.append(_data(payload))
    return out


def _anthropic_stream(answer: Answer, shape: str) -> list[bytes]:
    events = _events_of(anthropic_format.stream_events(answer))
    kinds = {"message_start": "start", "content_block_delta": "delta", "message_delta": "end"}
    out: list[bytes] = []
    broke = False
    for name, payload in events:
        kind = kinds.get(name or "", "")
        if shape in _RAW and kind == "delta" and not broke:
            out.append(_data(None, name, raw=_RAW[shape]))
            broke = True
            continue
        edit = _anthropic_edit(shape, kind) if kind else None
        if edit is not None and not (kind == "delta" and broke):
            edit(payload)
            broke = broke or kind == "delta"
        out.append(_data(payload, name))
    return out
