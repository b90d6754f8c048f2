"""Turn tracing on from the standard ``OTEL_*`` variables, and off again.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
is set or ``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``; off
otherwise, when ``OTEL_TRACES_EXPORTER=none`` and when ``OTEL_SDK_DISABLED=true``.
Everything else is the SDK's own reading of the variables: the exporter's
endpoint, headers, timeout and compression, the batch processor's queue and
delay, the sampler, the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), the propagators that read a caller's context
(``OTEL_PROPAGATORS``). The tracer provider is the service's own and is not
installed globally: no library instrumentation can find it.

The trace context is never forwarded: while tracing is on, the global
propagator reads but never writes. A library that injects the current context
into its requests by itself (the Anthropic SDK does, through
``opentelemetry.propagate``) therefore writes nothing: no ``traceparent``
reaches a provider.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.util.types import Attributes

import liya_engine.tracing as tracing
from liya_engine.errors import SettingsError
from liya_engine.metrics import build_version
from liya_engine.tracing import encoding

log = logging.getLogger("liya_engine")

DEFAULT_SERVICE_NAME = "liya-engine"
SCOPE = "liya_engine"
EXPORTERS = ("otlp", "console")
PROTOCOL = "http/protobuf"


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables in ``environ`` ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = _exporter_names(environ)
    if names:
        return names != ["none"]
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


@dataclass
class Tracing:
    """Tracing while it is on: the provider to flush and shut down at stop."""

    provider: TracerProvider
    tracer: trace.Tracer
    propagator: TextMapPropagator

    def stop(self) -> None:
        """Export what is queued and stop (blocks up to the export timeout:
        call it off the event loop)."""
        if tracing.TRACER is self.tracer:
            tracing.TRACER = None
            propagate.set_global_textmap(self.propagator)
        _uninstall_log_fields()
        self.provider.shutdown()


def start(environ: Mapping[str, str]) -> Tracing | None:
    """Turn tracing on if ``environ`` asks for it; ``None`` when it stays off.

    Raises ``SettingsError`` for an exporter or protocol this service does not ship.
    """
    if not wanted(environ):
        return None
    exporters = _exporters(environ)
    detected = OTELResourceDetector().detect()
    version = build_version()
    defaults = {SERVICE_VERSION: version}
    if SERVICE_NAME not in detected.attributes:
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=HashedResource.of(Resource.create(defaults)))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    configured = propagate.get_global_textmap()
    propagate.set_global_textmap(ReadOnlyPropagator(configured))
    tracer = tracing.TRACER = provider.get_tracer(SCOPE, version)
    _install_log_fields()
    log.info(
        "traces on: service %s, exported to %s",
        provider.resource.attributes.get(SERVICE_NAME),
        ", ".join(_describe(e) for e in exporters),
    )
    return Tracing(provider, tracer, configured)


class HashedResource(Resource):
    """A resource whose hash is computed once.

    The OTLP encoder groups a batch's spans by resource, hashing the resource
    of every span it encodes, and ``Resource.__hash__`` serialises the
    attributes to JSON each time: about 3 us a span, 5% of what tracing
    costs a call. A resource is immutable, so its hash can be kept.
    """

    def __init__(self, attributes: Attributes, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    @classmethod
    def of(cls, resource: Resource) -> HashedResource:
        """``resource``, with the same attributes and schema URL, hashed once."""
        return cls(resource.attributes, resource.schema_url)

    def __hash__(self) -> int:
        return self._hash


class ReadOnlyPropagator(TextMapPropagator):
    """The configured propagators for reading a caller's trace context; writes none."""

    def __init__(self, configured: TextMapPropagator) -> None:
        self._configured = configured

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return self._configured.extract(carrier, context, getter)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Nothing: the service forwards its trace context to nobody."""

    @property
    def fields(self) -> set[str]:
        return set()


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    raw = environ.get("OTEL_TRACES_EXPORTER", "")
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = _exporter_names(environ) or ["otlp"]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not available; "
            f"use {' or '.join(EXPORTERS)}, or none"
        )
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(variable, "").strip().lower()
        if protocol and protocol != PROTOCOL:
            raise SettingsError(f"{variable}: traces are exported over {PROTOCOL} only")
        if protocol:
            break
    # With no arguments, the exporter reads its endpoint, headers, timeout,
    # certificate and compression from the OTEL_EXPORTER_OTLP_* variables.
    return [encoding.SpanExporter() if name == "otlp" else ConsoleSpanExporter() for name in names]


def _describe(exporter: SpanExporter) -> str:
    if isinstance(exporter, OTLPSpanExporter):
        # Where the exporter resolved the variables to (not public API), as
        # scheme, host and port only: userinfo or a query may hold a token.
        url = urlsplit(str(getattr(exporter, "_endpoint", "")))
        if not url.hostname:
            return "an OTLP/HTTP endpoint"
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{url.hostname}{port}{url.path}"
    return "the console"


# -- the trace id on log records ---------------------------------------------

_base_factory = None


def _install_log_fields() -> None:
    """Give each log record made inside a sampled span ``trace_id`` and
    ``span_id`` (hex, as trace back ends show them). A record factory rather
    than a handler filter, so every handler sees them, whichever was added
    when."""
    global _base_factory
    if _base_factory is not None:
        return
    base = _base_factory = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return record

    logging.setLogRecordFactory(factory)


def _uninstall_log_fields() -> None:
    global _base_factory
    if _base_factory is not None:
        logging.setLogRecordFactory(_base_factory)
        _base_factory = None
