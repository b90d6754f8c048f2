"""Traces: OpenTelemetry spans for each RPC and each provider call.

Off unless the standard ``OTEL_*`` variables ask for it (``setup.wanted``).
``TRACER`` below is the one flag: ``None`` while tracing is off, so the call
paths test it once and create no span object at all.

- ``provider``: the client span of one provider call (GenAI semantic
  conventions). Imported by the inference domain, so it and this module import
  the OpenTelemetry API only, never the SDK, an exporter, grpc or an HTTP client.
- ``server``: the server span of one RPC, continuing the caller's W3C
  ``traceparent`` from the gRPC metadata (the gRPC layer's).
- ``setup``: reads the ``OTEL_*`` variables, builds the SDK's tracer provider
  with the OTLP/HTTP exporter, puts the trace id on log records, flushes on
  stop. Imported by ``liya_engine.app`` only.
- ``encoding``: the OTLP/HTTP exporter ``setup`` uses, the SDK's with an
  encoder that writes the request's bytes directly (a third of the SDK
  encoder's cost).

No library is instrumented: the provider SDKs' HTTP clients never see the
trace context, so no ``traceparent`` reaches a provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

#: The service's tracer while tracing is on; ``None`` when it is off.
TRACER: Tracer | None = None
