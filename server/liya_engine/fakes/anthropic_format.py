"""Anthropic's messages wire format: answers, streaming events and error bodies.

``POST /v1/messages`` with ``x-api-key`` (or a Bearer key).
"""

from __future__ import annotations

from typing import Any

from liya_engine.fakes.answer import Answer, sse
from liya_engine.fakes.real_answers import anthropic_request_id

ID_PREFIX = "msg_"
REQUEST_ID_HEADER = "request-id"


def _stop_reason(answer: Answer) -> str:
    return "max_tokens" if answer.finish == "length" else "end_turn"


def plain_body(answer: Answer) -> dict[str, Any]:
    """The JSON body of a non-streamed message."""
    return {
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": _stop_reason(answer),
        "stop_sequence": None,
        "usage": {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens,
        },
    }


def stream_events(answer: Answer, include_usage: bool = False) -> list[bytes]:
    """The named SSE events of a streamed message (usage always included)."""
    start = {
        "type": "message_start",
        "message": {
            "id": answer.id,
            "type": "message",
            "role": "assistant",
            "model": answer.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
        },
    }
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    events = [
        sse(start, "message_start"),
        sse(block, "content_block_start"),
        sse({"type": "ping"}, "ping"),
    ]
    for piece in answer.word_pieces():
        delta = {"type": "text_delta", "text": piece}
        events.append(
            sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        )
    events.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
        "usage": {"output_tokens": answer.completion_tokens},
    }
    events.append(sse(end, "message_delta"))
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


def stream_error_event() -> bytes:
    """The ``error`` event Anthropic sends inside a stream."""
    return sse(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        "error",
    )


def error(type_: str, message: str) -> dict:
    """Anthropic's error body."""
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": anthropic_request_id(),
    }


_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
    "Billing to upgrade or purchase credits."
)
# kind -> (status, error type, message); ``{model}`` is substituted.
_SHAPES: dict[str, tuple[int, str, str]] = {
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "forbidden": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "not_found": (404, "not_found_error", "model: {model}"),
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests "
        "per minute. For details, refer to https://docs.claude.com/en/api/rate-limits.",
    ),
    "quota": (400, "invalid_request_error", _CREDIT),
    "billing": (400, "invalid_request_error", _CREDIT),
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


def error_shape(kind: str, key: str, model: str) -> tuple[int, dict]:
    """Status and body Anthropic sends for the failure ``kind`` (unknown: a 500)."""
    status, type_, message = _SHAPES.get(kind, _SHAPES["server_error"])
    return status, error(type_, message.replace("{model}", model))
