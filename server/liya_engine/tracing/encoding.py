"""The OTLP encoding of a batch of spans, and the OTLP/HTTP exporter that sends it.

The OTLP exporter's own encoder (``opentelemetry.exporter.otlp.proto.common``)
builds a protobuf object for every span, attribute and value, and then
serialises the tree: about 36 us a span on this service's machine, more than
half of what the SDK costs a traced call, spent on the export thread while it
holds the GIL the event loop needs. ``encode`` writes the same bytes directly:

- a protobuf message's encoding is its fields' encodings one after the other,
  in field-number order (which is how the runtime writes them), so a span is
  the concatenation of its fields, each a tag and a value;
- what repeats from span to span is encoded once and kept: the resource and
  the instrumentation scope of a batch, and each ``(key, value)`` attribute
  pair whose value is a string or a bool (method names, models, intents,
  reasons), in a bounded table;
- what is rare (events, links, a trace state, dropped counts, attribute values
  that are lists) goes through the exporter's own encoder, field by field, so
  its shape stays the library's.

The result parses to the message the exporter's encoder builds, span for span
(``tests/test_tracing_encoding.py`` checks it against that encoder for every
kind of span the service makes and more); ``bench/tracing_ab.py``'s SDK floor
shows what it saves.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_key_value,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _SPAN_KIND_MAP,
    _encode_events,
    _encode_links,
    _encode_trace_state,
    _span_flags,
)
from opentelemetry.exporter.otlp.proto.http._common import (
    RequestPayloadTooLargeError,
    _is_request_too_large,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PB2Status
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanContext

# The SDK exporter's logger, so its operators' filters see the same lines.
_logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

# Field tags (field number << 3 | wire type) of opentelemetry/proto/trace/v1/trace.proto
# and common.proto. Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32.
_REQUEST_RESOURCE_SPANS = b"\x0a"  # ExportTraceServiceRequest.resource_spans = 1
_RESOURCE = b"\x0a"  # ResourceSpans.resource = 1
_RESOURCE_SCOPE_SPANS = b"\x12"  # ResourceSpans.scope_spans = 2
_SCHEMA_URL = b"\x1a"  # ResourceSpans.schema_url = 3, ScopeSpans.schema_url = 3
_SCOPE = b"\x0a"  # ScopeSpans.scope = 1
_SCOPE_SPANS = b"\x12"  # ScopeSpans.spans = 2
_TRACE_ID = b"\x0a\x10"  # Span.trace_id = 1, 16 bytes
_SPAN_ID = b"\x12\x08"  # Span.span_id = 2, 8 bytes
_TRACE_STATE = b"\x1a"  # Span.trace_state = 3
_PARENT_SPAN_ID = b"\x22\x08"  # Span.parent_span_id = 4, 8 bytes
_NAME = b"\x2a"  # Span.name = 5
_KIND = b"\x30"  # Span.kind = 6
_START = b"\x39"  # Span.start_time_unix_nano = 7, fixed64
_END = b"\x41"  # Span.end_time_unix_nano = 8, fixed64
_ATTRIBUTE = b"\x4a"  # Span.attributes = 9
_DROPPED_ATTRIBUTES = b"\x50"  # Span.dropped_attributes_count = 10
_STATUS = b"\x7a"  # Span.status = 15
_FLAGS = b"\x85\x01"  # Span.flags = 16, fixed32
_KEY = b"\x0a"  # KeyValue.key = 1
_VALUE = b"\x12"  # KeyValue.value = 2
_STRING_VALUE = b"\x0a"  # AnyValue.string_value = 1
_BOOL_VALUE = b"\x10"  # AnyValue.bool_value = 2
_INT_VALUE = b"\x18"  # AnyValue.int_value = 3
_DOUBLE_VALUE = b"\x21"  # AnyValue.double_value = 4, fixed64

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack
_INT64_MASK = (1 << 64) - 1

#: Encodings each of ``Encoder``'s tables keeps at most.
PAIRS_KEPT = 4096


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


_KINDS = {kind: _KIND + _varint(value) for kind, value in _SPAN_KIND_MAP.items()}
# Span.flags of a span with a local parent (or none) and with a remote one, as
# the exporter's encoder computes them.
_FLAGS_LOCAL = _FLAGS + _FIXED32(_span_flags(None))
_FLAGS_REMOTE = _FLAGS + _FIXED32(_span_flags(SpanContext(1, 1, is_remote=True)))


class _Kept(dict):
    """Encodings by what they encode, made by ``make(key)`` on first need. A
    table that fills is emptied and refilled, so values that stop coming (a
    model no longer used) do not hold memory. A hit is a plain dict lookup."""

    def __init__(self, make: Callable[[Any], bytes]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> bytes:
        if len(self) >= PAIRS_KEPT:
            self.clear()
        encoded = self[key] = self._make(key)
        return encoded


class Encoder:
    """Encodes batches of ended spans as an ``ExportTraceServiceRequest``.

    Keeps what it encoded once (resources, scopes, status messages, names,
    attribute keys and pairs); one instance per exporter, used by its export
    thread only.
    """

    def __init__(self) -> None:
        # (key, value's class, value) of a string or bool attribute.
        self._pairs = _Kept(lambda pair: _attribute(self._keys[pair[0]], pair[0], pair[2]))
        self._keys = _Kept(lambda key: _delimited(_KEY, key.encode()))
        self._names = _Kept(lambda name: _delimited(_NAME, name.encode()))
        # (status code, description).
        self._statuses = _Kept(
            lambda status: _delimited(
                _STATUS, PB2Status(code=status[0], message=status[1]).SerializeToString()
            )
        )
        self._resources = _Kept(lambda resource: _encode_resource(resource).SerializeToString())
        self._scopes = _Kept(lambda scope: _encode_instrumentation_scope(scope).SerializeToString())

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """The serialised request for ``spans``, grouped by resource, then scope
        (each in the order first seen), as the exporter's encoder groups them."""
        grouped: dict[Any, dict[Any, list[bytes]]] = {}
        for span in spans:
            scopes = grouped.setdefault(span.resource, {})
            scopes.setdefault(span.instrumentation_scope or None, []).append(
                _delimited(_SCOPE_SPANS, self._span(span))
            )
        out = []
        for resource, scopes in grouped.items():
            body = [_delimited(_RESOURCE, self._resources[resource])]
            for scope, encoded in scopes.items():
                parts = [_delimited(_SCOPE, self._scopes[scope]), *encoded]
                if scope is not None and scope.schema_url:
                    parts.append(_delimited(_SCHEMA_URL, scope.schema_url.encode()))
                body.append(_delimited(_RESOURCE_SCOPE_SPANS, b"".join(parts)))
            if resource.schema_url:
                body.append(_delimited(_SCHEMA_URL, resource.schema_url.encode()))
            out.append(_delimited(_REQUEST_RESOURCE_SPANS, b"".join(body)))
        return b"".join(out)

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.get_span_context()
        parent = span.parent
        parts = [_TRACE_ID, context.trace_id.to_bytes(16, "big")]
        parts += (_SPAN_ID, context.span_id.to_bytes(8, "big"))
        if context.trace_state:
            trace_state = _encode_trace_state(context.trace_state).encode()
            parts.append(_delimited(_TRACE_STATE, trace_state))
        if parent is None:
            flags = _FLAGS_LOCAL
        else:
            parts += (_PARENT_SPAN_ID, parent.span_id.to_bytes(8, "big"))
            flags = _FLAGS_REMOTE if parent.is_remote else _FLAGS_LOCAL
        parts += (self._names[span.name], _KINDS[span.kind])
        if span.start_time:
            parts += (_START, _FIXED64(span.start_time))
        if span.end_time:
            parts += (_END, _FIXED64(span.end_time))
        pair = self._pair
        parts += [pair(key, value) for key, value in span.attributes.items()]
        if span.dropped_attributes:
            parts += (_DROPPED_ATTRIBUTES, _varint(span.dropped_attributes))
        if span.events or span.links or span.dropped_events or span.dropped_links:
            parts.append(_rare_fields(span))
        status = span.status
        parts += (self._statuses[status.status_code.value, status.description], flags)
        return b"".join(parts)

    def _pair(self, key: str, value: Any) -> bytes:
        kind = value.__class__
        if kind is str or kind is bool:
            return self._pairs[key, kind, value]
        # Numbers (token counts, costs): too many values to keep, cheap to write.
        return _attribute(self._keys[key], key, value)


def _attribute(key_field: bytes, key: str, value: Any) -> bytes:
    """A ``Span.attributes`` field: scalars here, lists and maps by the
    exporter's encoder. ``key_field`` is ``key``'s encoding."""
    kind = value.__class__
    if kind is str:
        any_value = _delimited(_STRING_VALUE, value.encode())
    elif kind is bool:
        any_value = _BOOL_VALUE + (b"\x01" if value else b"\x00")
    elif kind is int:
        any_value = _INT_VALUE + _varint(value & _INT64_MASK)
    elif kind is float:
        any_value = _DOUBLE_VALUE + _DOUBLE(value)
    else:
        return _delimited(_ATTRIBUTE, _encode_key_value(key, value).SerializeToString())
    return _delimited(_ATTRIBUTE, key_field + _delimited(_VALUE, any_value))


def _rare_fields(span: ReadableSpan) -> bytes:
    """Span fields 11 to 14 (events, their dropped count, links, theirs), by the
    exporter's encoder: a partial span's encoding is those fields' encodings."""
    return PB2Span(
        events=_encode_events(span.events),
        dropped_events_count=span.dropped_events,
        links=_encode_links(span.links),
        dropped_links_count=span.dropped_links,
    ).SerializeToString()


class SpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, configured by it from the ``OTEL_*``
    variables, encoding with ``Encoder``.

    ``export`` is the SDK's (1.45) with the encoder replaced: the exporter's
    own metrics, the size limit, sending, retries and compression are its.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoder = Encoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._encoder.encode(spans)
            except Exception as error:  # as the SDK's: a batch that cannot be encoded is dropped
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(data, self._max_request_size):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds "
                    "max_request_size %d bytes.",
                    len(data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(data)} bytes exceeds "
                    f"max_request_size {self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                if sent.status_code is not None:
                    result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
