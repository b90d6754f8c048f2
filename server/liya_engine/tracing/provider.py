"""The client span of one provider call, as the OpenTelemetry GenAI semantic
conventions spell it (span ``chat {model}``, kind CLIENT).

Attributes are names, numbers and reasons only: never a prompt, an answer, a
key or a preview of one. The span is started without being made current, so
nothing below it (the SDKs, their HTTP clients) can pick up its context, and
no trace context is ever sent to a provider. Every function takes the span
that ``start`` returned and does nothing with ``None`` (tracing off).
"""

from __future__ import annotations

import asyncio

from opentelemetry.trace import Span, SpanKind, StatusCode

import liya_engine.tracing as tracing
from liya_engine.redact import scrub

#: ``gen_ai.provider.name`` of each provider, as the semantic conventions'
#: well-known values spell them.
GEN_AI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "azure": "azure.ai.openai"}
OPERATION = "chat"


def start(
    provider: str,
    model: str,
    *,
    intent: str,
    mode: str,
    max_tokens: int,
    temperature: float | None = None,
) -> Span | None:
    """The span of a provider call about to be made, or ``None`` when tracing is off.

    ``model`` is the model (for Azure, the deployment) the request names.
    """
    tracer = tracing.TRACER
    if tracer is None:
        return None
    attributes: dict[str, str | int | float] = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": GEN_AI_PROVIDERS.get(provider, provider),
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens,
        "liya.intent": intent,
        "liya.mode": mode,
    }
    if temperature is not None:
        attributes["gen_ai.request.temperature"] = temperature
    return tracer.start_span(f"{OPERATION} {model}", kind=SpanKind.CLIENT, attributes=attributes)


def succeeded(
    span: Span | None,
    *,
    response_model: str,
    input_tokens: int,
    output_tokens: int,
    finish_reason: str,
    cost_usd: float | None,
) -> None:
    """End the span of a call that answered, with its usage."""
    if span is None:
        return
    span.set_attributes(
        {
            "gen_ai.response.model": response_model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.response.finish_reasons": (finish_reason,),
        }
    )
    if cost_usd is not None:
        span.set_attribute("liya.cost_usd", cost_usd)
    span.end()


def failed(span: Span | None, exc: BaseException) -> None:
    """End the span of a call that failed with ``exc`` (what the caller gets).

    ``error.type`` is the error's reason (the ErrorInfo reason), or for an
    exception that has none its class name; the exception event carries the
    scrubbed message and no stack trace (frames can quote values).
    """
    if span is None:
        return
    span.set_attribute("error.type", error_type(exc))
    if not isinstance(exc, asyncio.CancelledError | GeneratorExit):
        record_exception(span, exc)
    span.set_status(StatusCode.ERROR)
    span.end()


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
