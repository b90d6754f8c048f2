"""The service's OTLP encoding writes the bytes the SDK exporter's encoder writes.

The SDK's encoder (``encode_spans``) is the oracle: for every kind of span the
service makes, and for the shapes it does not make but a span can have, the
service's ``Encoder`` must produce the same serialised request, byte for byte.
The exporter built on it is checked against a real OTLP/HTTP receiver on
loopback: it delivers, and it keeps the SDK exporter's size limit and failure
answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

import liya_engine.tracing as tracing
from liya_engine.errors import ProviderAuthFailed
from liya_engine.tracing import encoding
from liya_engine.tracing import provider as provider_spans
from liya_engine.tracing import server as server_spans
from liya_engine.tracing.setup import HashedResource

METHOD = "/liya.engine.v1.InferenceService/Complete"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Collected(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


@pytest.fixture
def collected() -> Iterator[tuple[TracerProvider, Collected]]:
    """The service's tracer on a provider whose ended spans are kept in a list."""
    provider = TracerProvider(
        resource=HashedResource.of(Resource.create({"service.name": "liya-engine"})),
        span_limits=SpanLimits(max_span_attributes=12, max_events=2),
    )
    kept = Collected()
    provider.add_span_processor(kept)
    saved = tracing.TRACER
    tracing.TRACER = provider.get_tracer("liya_engine", "1.1.0")
    try:
        yield provider, kept
    finally:
        tracing.TRACER = saved


def service_calls() -> None:
    """The spans of a traced Complete that answered and of one that failed,
    one continuing a caller's trace (with a trace state), one starting its own."""
    metadata = (("traceparent", TRACEPARENT), ("tracestate", "vendor=abc,other=1"))
    with server_spans.span(METHOD, metadata):
        call = provider_spans.start("openai", "gpt-4o-mini", intent="chat", mode="byok")
        provider_spans.succeeded(
            call,
            response_model="gpt-4o-mini-2024-07-18",
            input_tokens=20,
            output_tokens=64,
            cost_usd=0.000387,
        )
        server_spans.finished("OK", "")
    with server_spans.span(METHOD, [("user-agent", "grpc-python")], {"http.route": "/v1/x"}):
        call = provider_spans.start("anthropic", "claude-sonnet-4", intent="interview", mode="byok")
        refused = ProviderAuthFailed("the provider refused the key", provider="anthropic")
        provider_spans.failed(call, refused)
        server_spans.finished("UNAUTHENTICATED", "BYOK_AUTH_FAILED")


def assert_same_encoding(spans: list[ReadableSpan]) -> None:
    expected = encode_spans(spans).SerializeToString()
    encoded = encoding.Encoder().encode(spans)
    assert ExportTraceServiceRequest.FromString(encoded) == encode_spans(spans)
    assert encoded == expected


def test_the_spans_of_a_traced_call_encode_as_the_sdk_encodes_them(collected):
    _, kept = collected
    service_calls()
    assert [span.kind for span in kept.spans] == [SpanKind.CLIENT, SpanKind.SERVER] * 2
    assert kept.spans[2].events, "the failed call's exception event is part of the check"
    assert_same_encoding(kept.spans)


def test_every_attribute_type_links_events_limits_and_two_resources(collected):
    provider, kept = collected
    tracer = tracing.TRACER
    service_calls()
    first = kept.spans[0].get_span_context()
    odd = tracer.start_span(
        "odd",
        kind=SpanKind.PRODUCER,
        attributes={
            "ints": [1, 2, 3],
            "strs": ["a", "b"],
            "negative": -5,
            "big": 2**63 - 1,
            "float": 1.5,
            "yes": True,
            "no": False,
            "one": 1,
            "zero": 0,
            "empty": "",
            "unicode": "résumé ✓",
        },
        links=[Link(first, {"why": "retry"}), Link(first)],
    )
    for index in range(5):  # over the limit of 12 attributes and of 2 events
        odd.set_attribute(f"extra.{index}", index)
        odd.add_event(f"event {index}", {"index": index})
    odd.set_status(Status(StatusCode.ERROR, "what went wrong"))
    odd.end()
    assert kept.spans[-1].dropped_attributes == 4 and kept.spans[-1].dropped_events == 3
    other = TracerProvider(resource=Resource.create({"service.name": "other"}, "https://s/1"))
    other.add_span_processor(kept)
    other.get_tracer("scope.b", "2", schema_url="https://s/2").start_span("b").end()
    provider.get_tracer("scope.c").start_span("c", start_time=0).end()
    assert_same_encoding(kept.spans)
    assert_same_encoding(kept.spans[::-1])


def test_a_table_that_fills_is_emptied_and_encodes_the_same(collected, monkeypatch):
    _, kept = collected
    monkeypatch.setattr(encoding, "PAIRS_KEPT", 3)
    encoder = encoding.Encoder()
    for round_ in range(3):
        kept.spans.clear()
        service_calls()
        encoded = encoder.encode(kept.spans)
        assert encoded == encode_spans(kept.spans).SerializeToString(), f"round {round_}"
        assert len(encoder._pairs) <= 3


class Receiver:
    """An OTLP/HTTP receiver on loopback answering ``status``; keeps what it is sent."""

    def __init__(self, status: int = 200) -> None:
        receiver = self
        self.bodies: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_the_exporter_delivers_what_it_encodes(collected):
    _, kept = collected
    service_calls()
    receiver = Receiver()
    exporter = encoding.SpanExporter(endpoint=receiver.url)
    try:
        assert exporter.export(kept.spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
        receiver.close()
    (body,) = receiver.bodies
    assert ExportTraceServiceRequest.FromString(body) == encode_spans(kept.spans)


def test_the_exporter_keeps_the_sdks_size_limit_and_failures(collected):
    _, kept = collected
    service_calls()
    receiver = Receiver(status=400)  # not retryable: one attempt
    small = encoding.SpanExporter(endpoint=receiver.url, max_request_size=64)
    refused = encoding.SpanExporter(endpoint=receiver.url)
    try:
        assert small.export(kept.spans) is SpanExportResult.FAILURE
        assert receiver.bodies == [], "a request over the limit is dropped before it is sent"
        assert refused.export(kept.spans) is SpanExportResult.FAILURE
        assert len(receiver.bodies) == 1
        refused.shutdown()
        assert refused.export(kept.spans) is SpanExportResult.FAILURE
        assert len(receiver.bodies) == 1, "a shut-down exporter sends nothing"
    finally:
        small.shutdown()
        receiver.close()
