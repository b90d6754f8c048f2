"""The client span of one provider call, as the OpenTelemetry GenAI semantic
conventions spell it (span ``chat {model}``, kind CLIENT).

Attributes are names, numbers and reasons only: never a prompt, an answer, a
key or a preview of one. They are the ones DESIGN.md lists and no more: each
costs the SDK and the exporter a few microseconds per call. The span is not
made current (nothing runs inside it but the adapter), and the propagator
``setup`` installs writes no context, so no trace context reaches a provider.
``start`` only notes the time and the request; the span is made, with all
its attributes at once, when the call has ended (``succeeded``, ``failed``),
which costs the SDK one attribute update instead of two. Both take what
``start`` returned and do nothing with ``None`` (tracing off).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from opentelemetry.trace import Span, SpanKind, StatusCode

import liya_engine.tracing as tracing
from liya_engine.providers import facts
from liya_engine.redact import scrub

#: ``gen_ai.provider.name`` of each provider, as the semantic conventions'
#: well-known values spell them.
GEN_AI_PROVIDERS = facts.GEN_AI_PROVIDER_NAMES
OPERATION = "chat"


@dataclass(slots=True)
class ProviderCall:
    """A provider call under way while tracing is on: when it started and what it asked."""

    started_ns: int
    provider: str
    model: str
    intent: str
    mode: str

    def attributes(self) -> dict[str, str | int | float]:
        return {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": GEN_AI_PROVIDERS.get(self.provider, self.provider),
            "gen_ai.request.model": self.model,
            "liya.intent": self.intent,
            "liya.mode": self.mode,
        }


def start(provider: str, model: str, *, intent: str, mode: str) -> ProviderCall | None:
    """A provider call about to be made, or ``None`` when tracing is off.

    ``model`` is the model (for Azure, the deployment) the request names.
    """
    if tracing.TRACER is None:
        return None
    return ProviderCall(time.time_ns(), provider, model, intent, mode)


def succeeded(
    call: ProviderCall | None,
    *,
    response_model: str,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float | None,
) -> None:
    """The span of a call that answered, with its usage (and cost, when the
    call is billed)."""
    if call is None:
        return
    attributes = call.attributes()
    attributes["gen_ai.response.model"] = response_model
    attributes["gen_ai.usage.input_tokens"] = input_tokens
    attributes["gen_ai.usage.output_tokens"] = output_tokens
    if cost_usd is not None:
        attributes["liya.cost_usd"] = cost_usd
    _span(call, attributes).end()


def failed(call: ProviderCall | None, exc: BaseException) -> None:
    """The span of a call that failed with ``exc`` (what the caller gets).

    ``error.type`` is the error's reason (the ErrorInfo reason), or for an
    exception that has none its class name; the exception event carries the
    scrubbed message and no stack trace (frames can quote values).
    """
    if call is None:
        return
    attributes = call.attributes()
    attributes["error.type"] = error_type(exc)
    span = _span(call, attributes)
    if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
        record_exception(span, exc)
    span.set_status(StatusCode.ERROR)
    span.end()


def _span(call: ProviderCall, attributes: dict[str, str | int | float]) -> Span:
    """The call's span, a child of the current (server) span."""
    tracer = tracing.TRACER
    assert tracer is not None, "a ProviderCall exists only while tracing is on"
    return tracer.start_span(
        f"{OPERATION} {call.model}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=call.started_ns,
    )


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of a failure: its reason, else a cancellation or its class name."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return type(exc).__qualname__


def record_exception(span: Span, exc: BaseException) -> None:
    """An ``exception`` event with the type and scrubbed message only."""
    span.add_event(
        "exception",
        {
            "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "exception.message": scrub(str(exc)),
        },
    )
