"""How a test asks the fake for a failure: the kinds, the queued rules, the error reply.

``FakeProviders.fail(provider, kind, times, **options)`` queues a ``FailureRule``;
each request to that provider takes the first matching rule. What a failure
looks like on the wire (status, headers, body) is the provider's own
(``error_shape`` of its wire format module), adjusted by the options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from liya_engine.fakes.malformed import SHAPES as MALFORMED_SHAPES
from liya_engine.fakes.openai_format import mask_key
from liya_engine.fakes.real_answers import REAL_KINDS, check_options

#: Failure kinds ``fail()`` accepts. Options common to all: ``status`` (override
#: the HTTP status), ``message`` (override the provider's message; ``{key}``,
#: ``{masked_key}`` and ``{model}`` are substituted), ``code`` (override the
#: error's code, Anthropic's error type; substituted the same way), ``headers``
#: (extra headers), ``delay`` (seconds to wait before failing). The kinds of
#: ``real_answers`` answer exactly as the real APIs do, headers included.
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
    "slow_stream",  # answer normally, ``chunk_delay`` seconds (default 0.2) between chunks,
    # the first ``after`` events (default 0) at once: with 2, the first delta is not delayed
    "stream_cut",  # send ``after`` events (default 2) then abort the connection
    "stream_error",  # send ``after`` events then the provider's in-stream error event
    "stream_end_early",  # send ``after`` events then end the stream cleanly, unfinished
    "redirect",  # 307 to ``location`` (default: the same URL)
    "disconnect",  # close the connection without any answer
    "garbage",  # 200 with an HTML page instead of a completion
    "malformed",  # 200 (plain or streamed) with the defect ``shape`` (``malformed.SHAPES``)
    "large",  # 200 whose text is ``bytes`` long (default 5,000,000), in one piece when streamed
    *REAL_KINDS,
)

#: Kinds that still answer (the failure, if any, happens during the answer).
ANSWERING_KINDS = ("slow", "slow_stream", "stream_cut", "stream_error", "stream_end_early")
#: Kinds that act after ``after`` events of a stream.
MID_STREAM_KINDS = ("stream_cut", "stream_error", "stream_end_early")

ErrorShape = Callable[[str, str, str], tuple[int, dict]]


@dataclass
class FailureRule:
    """One queued failure: for ``provider`` (None: any), ``remaining`` more times."""

    provider: str | None
    kind: str
    remaining: int | None
    opts: dict[str, Any]


class FailureRules:
    """The queue of failures asked for, oldest first."""

    def __init__(self) -> None:
        self._rules: list[FailureRule] = []

    def add(self, provider: str | None, kind: str, times: int | None, opts: Mapping) -> None:
        """Queue ``kind`` for ``times`` requests (None: until ``clear``); ``ValueError`` if bad."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {FAILURE_KINDS}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for until reset")
        if kind == "malformed" and opts.get("shape") not in MALFORMED_SHAPES:
            raise ValueError(f"malformed needs a shape, one of {', '.join(MALFORMED_SHAPES)}")
        check_options(provider, kind, opts)
        self._rules.append(FailureRule(provider, kind, times, dict(opts)))

    def take(self, provider: str) -> FailureRule | None:
        """The first rule for ``provider``, counted as used once."""
        for rule in self._rules:
            if rule.provider not in (None, provider):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
            return rule
        return None

    def clear(self) -> None:
        """Forget every queued failure."""
        self._rules.clear()


def parse_fail_request(
    payload: Mapping[str, Any],
) -> tuple[str | None, str, int | None, dict[str, Any]]:
    """``provider, kind, times, options`` of a ``POST /_control/fail`` body:
    ``{"provider": "openai"|"anthropic"|"azure"|"all", "kind": ..., "times": 1|null,
    ...options}``; ``ValueError`` naming what is missing or wrong."""
    opts = dict(payload)
    provider = opts.pop("provider", None)
    kind = opts.pop("kind", None)
    times = opts.pop("times", 1)
    if not isinstance(kind, str):
        raise ValueError(f"kind is required: one of {', '.join(FAILURE_KINDS)}")
    if kind not in FAILURE_KINDS:
        raise ValueError(f"unknown failure kind {kind!r}; expected one of {FAILURE_KINDS}")
    if provider is not None and not isinstance(provider, str):
        raise ValueError("provider must be openai, anthropic, azure or all")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
        raise ValueError("times must be a whole number of requests, or null for until reset")
    for name in (
        "delay",
        "chunk_delay",
        "retry_after",
        "retry_after_ms",
        "status",
        "after",
        "bytes",
    ):
        value = opts.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{name} must be a number")
    if kind == "malformed" and opts.get("shape") not in MALFORMED_SHAPES:
        raise ValueError(f"malformed needs a shape, one of {', '.join(MALFORMED_SHAPES)}")
    if "headers" in opts and not isinstance(opts["headers"], dict):
        raise ValueError("headers must be an object of header names to values")
    check_options(None if provider in (None, "all", "*") else provider, kind, opts)
    return provider, kind, times, opts


def error_reply(
    error_shape: ErrorShape, kind: str, opts: Mapping[str, Any], key: str, model: str
) -> tuple[int, dict, dict[str, str]]:
    """Status, body and headers of the failure ``kind``, with the options applied.

    ``error_shape`` is the provider's (its wire format module's ``error_shape``).
    """
    headers: dict[str, str] = {}
    status, body = error_shape(kind, key, model)
    if kind == "rate_limit":
        retry_after = opts.get("retry_after", 2)
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if opts.get("retry_after_ms") is not None:
            headers["retry-after-ms"] = str(opts["retry_after_ms"])
    if "status" in opts:
        status = int(opts["status"])
    if opts.get("message") is not None:
        message = str(opts["message"]).format(key=key, masked_key=mask_key(key), model=model)
        body["error"]["message"] = message
    if opts.get("code") is not None:
        code = str(opts["code"]).format(key=key, masked_key=mask_key(key), model=model)
        body["error"]["code" if "code" in body["error"] else "type"] = code
    headers.update({str(k): str(v) for k, v in (opts.get("headers") or {}).items()})
    return status, body, headers
