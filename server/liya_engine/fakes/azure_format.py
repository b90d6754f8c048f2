"""Azure OpenAI's wire format: deployment URLs, the ``api-key`` header, its error shapes.

``POST /openai/deployments/{deployment}/chat/completions?api-version=...``.
Answers and streams are OpenAI's (reused from ``openai_format``); errors are
Azure's own ``{"error": {"code", "message"}}`` where Azure differs, with codes
that are sometimes a status number as a string ("401", "429").
"""

from __future__ import annotations

from liya_engine.fakes import openai_format
from liya_engine.fakes.openai_format import plain_body, stream_error_event, stream_events

ROUTE = "/openai/deployments/{deployment}/chat/completions"
ID_PREFIX = openai_format.ID_PREFIX
REQUEST_ID_HEADER = openai_format.REQUEST_ID_HEADER

#: What Azure answers when the ``api-version`` query parameter is missing.
MISSING_API_VERSION = (404, {"error": {"code": "404", "message": "Resource not found"}})


def error(code: str, message: str) -> dict:
    """Azure's error body."""
    return {"error": {"code": code, "message": message}}


# Where Azure's errors differ from OpenAI's; the other kinds answer as OpenAI.
_SHAPES: dict[str, tuple[int, dict]] = {
    "auth": (
        401,
        error(
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
            "to provide a valid key for an active subscription and use a correct regional "
            "API endpoint for your resource.",
        ),
    ),
    "forbidden": (
        403,
        error(
            "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource."
        ),
    ),
    "not_found": (
        404,
        error(
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the "
            "deployment within the last 5 minutes, please wait a moment and try again.",
        ),
    ),
    "rate_limit": (
        429,
        error(
            "429",
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
            "2024-02-15-preview have exceeded token rate limit of your current OpenAI S0 "
            "pricing tier. Please retry after 2 seconds.",
        ),
    ),
    "server_error": (
        500,
        error("InternalServerError", "The server had an error while processing your request."),
    ),
}
_LIKE_OPENAI = ("quota", "billing", "quota_403", "bad_request", "unavailable", "overloaded")


def error_shape(kind: str, key: str, model: str) -> tuple[int, dict]:
    """Status and body Azure sends for the failure ``kind`` (unknown: a 500)."""
    if kind in _LIKE_OPENAI:
        return openai_format.error_shape(kind, key, model)
    status, body = _SHAPES.get(kind, _SHAPES["server_error"])
    return status, {"error": dict(body["error"])}  # a copy: callers edit the message


__all__ = [
    "ID_PREFIX",
    "MISSING_API_VERSION",
    "REQUEST_ID_HEADER",
    "ROUTE",
    "error",
    "error_shape",
    "plain_body",
    "stream_error_event",
    "stream_events",
]
