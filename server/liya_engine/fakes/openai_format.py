"""OpenAI's chat completions wire format: answers, SSE chunks and error bodies.

``POST /v1/chat/completions`` with a Bearer key. Azure OpenAI answers in the
same format (``azure_format`` reuses this module) and differs in its errors.
"""

from __future__ import annotations

import time
from typing import Any

from liya_engine.fakes.answer import Answer, sse

ID_PREFIX = "chatcmpl-"
REQUEST_ID_HEADER = "x-request-id"


def mask_key(key: str) -> str:
    """A key as OpenAI's 401 message shows it: the first 8 and last 4 characters."""
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def plain_body(answer: Answer) -> dict[str, Any]:
    """The JSON body of a non-streamed completion."""
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "logprobs": None,
                "finish_reason": answer.finish,
            }
        ],
        "usage": _usage(answer),
        "system_fingerprint": "fp_fake",
    }


def stream_events(answer: Answer, include_usage: bool) -> list[bytes]:
    """The SSE chunks of a streamed completion, ending with ``data: [DONE]``.

    With ``stream_options.include_usage`` every chunk carries ``usage: null``
    and a last chunk without choices carries the usage, as OpenAI sends it.
    """
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        payload: dict[str, Any] = {
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answer.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return sse(payload)

    events = [chunk({"role": "assistant", "content": "", "refusal": None}, None)]
    events.extend(chunk({"content": piece}, None) for piece in answer.word_pieces())
    events.append(chunk({}, answer.finish))
    if include_usage:
        usage_chunk = {
            "id": answer.id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answer.model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": _usage(answer),
        }
        events.append(sse(usage_chunk))
    events.append(b"data: [DONE]\n\n")
    return events


def stream_error_event() -> bytes:
    """The error OpenAI sends inside an SSE stream (a ``data:`` line with ``error``)."""
    return sse(
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


def error(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _auth(key: str, model: str) -> tuple[int, dict]:
    return 401, error(
        f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


def _forbidden(key: str, model: str) -> tuple[int, dict]:
    return 403, error(
        "Country, region, or territory not supported",
        "request_forbidden",
        "unsupported_country_region_territory",
    )


def _not_found(key: str, model: str) -> tuple[int, dict]:
    return 404, error(
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )


def _rate_limit(key: str, model: str) -> tuple[int, dict]:
    return 429, error(
        f"Rate limit reached for {model} in organization org-fake on tokens per min (TPM): "
        "Limit 30000, Used 29800, Requested 500. Please try again in 1.2s.",
        "tokens",
        "rate_limit_exceeded",
    )


def _quota(key: str, model: str) -> tuple[int, dict]:
    return 429, error(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        "insufficient_quota",
    )


def _billing(key: str, model: str) -> tuple[int, dict]:
    return 400, error(
        "Billing hard limit has been reached",
        "invalid_request_error",
        "billing_hard_limit_reached",
    )


def _quota_403(key: str, model: str) -> tuple[int, dict]:
    # OpenAI has no 403 about quota; Azure does. The same Azure-shaped body
    # answers for both so a test can drive the "403 that is quota" rule anywhere.
    return 403, {
        "error": {
            "code": "403",
            "message": "Out of call volume quota for OpenAI API. "
            "Quota will be replenished in 00:00:30.",
        }
    }


def _bad_request(key: str, model: str) -> tuple[int, dict]:
    return 400, error(
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130000 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    )


def _overloaded(key: str, model: str) -> tuple[int, dict]:
    return 503, error(
        "The engine is currently overloaded, please try again later.", "server_error", None
    )


def _server_error(key: str, model: str) -> tuple[int, dict]:
    return 500, error(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )


_SHAPES = {
    "auth": _auth,
    "forbidden": _forbidden,
    "not_found": _not_found,
    "rate_limit": _rate_limit,
    "quota": _quota,
    "billing": _billing,
    "quota_403": _quota_403,
    "bad_request": _bad_request,
    "unavailable": _overloaded,
    "overloaded": _overloaded,
    "server_error": _server_error,
}


def error_shape(kind: str, key: str, model: str) -> tuple[int, dict]:
    """Status and body OpenAI sends for the failure ``kind`` (unknown: a 500)."""
    return _SHAPES.get(kind, _server_error)(key, model)
