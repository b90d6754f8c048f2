"""``--tracing``: what traces cost the warm path, tracing on against tracing off.

Two servers run side by side on the same database, the same fake and the same
client workers: one with no ``OTEL_*`` variable (tracing off), one with
``OTEL_EXPORTER_OTLP_ENDPOINT`` on a local OTLP/HTTP sink (tracing on, the
SDK's defaults otherwise: batch processor, parent-based always-on sampler).
Warm G blocks alternate between them, the order flipping every round (off on,
on off, ...), so drift on a shared machine favours neither. Each block's
server CPU is that of the server it loaded; the idle one costs nothing
measurable. The sink runs in this process: decoding the exports costs neither
server anything, and it counts the spans so the report shows they arrived.

``sdk_floor`` then measures, in this process, what the OpenTelemetry SDK alone
costs a traced call: the service's own span code (``liya_engine.tracing``)
making and ending the two spans of a Complete, and the OTLP/HTTP exporter
encoding them and posting them to the sink. Next to the servers' difference it
shows how much of tracing's cost is the SDK's, which no code of the service
can remove.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ab
from common import log
from harness import Bench, free_port, stop_process

#: The most tracing may add to the warm path's server CPU per call (the issue's target).
TARGET_OVERHEAD = 0.10
SETTLE_SECONDS = 6.0


class Sink:
    """An OTLP/HTTP receiver on loopback that counts the spans it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

        sink = self
        self.spans = 0
        self.exports = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                message = otlp.ExportTraceServiceRequest.FromString(body)
                count = sum(
                    len(scope.spans)
                    for resource in message.resource_spans
                    for scope in resource.scope_spans
                )
                with sink._lock:
                    sink.spans += count
                    sink.exports += 1
                reply = otlp.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per export would drown the progress lines

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def compare(bench: Bench) -> dict[str, Any]:
    """Start both servers, run the alternating G blocks, return the figures."""
    sink = Sink()
    servers: dict[str, ab.Served] = {}
    spans_before = 0

    def settled() -> None:  # the warm-up's spans exported before anything is measured
        nonlocal spans_before
        _settle(sink)
        spans_before = sink.spans

    try:
        # No OTEL_* variable: the environment is scrubbed of them.
        servers["off"] = ab.start(bench)
        bench.metrics_port = None  # the first server holds it
        bench.server_port = free_port()
        servers["on"] = ab.start(
            bench,
            [f"OTEL_EXPORTER_OTLP_ENDPOINT={sink.url}", "OTEL_SERVICE_NAME=liya-engine-bench"],
        )
        log(f"tracing off: port {servers['off'].port}; on: port {servers['on'].port} -> {sink.url}")
        blocks = ab.alternate(bench, servers, "tracing", after_warm_up=settled)
        stop_process(servers["on"].proc)  # flushes the last spans to the sink
        spans = sink.spans - spans_before
        floor = sdk_floor(sink)
    finally:
        for served in servers.values():
            if served.proc is not bench.server:
                stop_process(served.proc)
        sink.close()
    figures = ab.pair_figures(blocks)
    figures["target"] = TARGET_OVERHEAD
    figures["passed"] = figures["overhead"] <= TARGET_OVERHEAD
    figures["spans_exported"] = spans
    calls = figures["on"]["calls"]
    figures["spans_per_traced_call"] = round(spans / calls, 3) if calls else None
    figures["sdk_floor_us_per_call"] = floor
    figures["sdk_floor_share"] = round(
        floor["total"] / 1000 / figures["off"]["server_cpu_ms_per_req"], 4
    )
    return figures


#: The calls ``sdk_floor`` traces: four of the batch processor's default batches.
FLOOR_CALLS = 2048
FLOOR_BATCH = 512
FLOOR_REPEATS = 5


def sdk_floor(sink: Sink) -> dict[str, float]:
    """The SDK's CPU per traced Complete, in microseconds, best of a few runs:
    ``spans`` (the server span opened from the caller's metadata and ended
    with its outcome, the provider span made with its GenAI attributes), then
    ``encode`` (the service's OTLP encoding, ``liya_engine.tracing.encoding``),
    ``encode_sdk`` (the SDK exporter's protobuf encoding, for comparison) and
    ``export`` (the service's exporter: encoding and the HTTP POST to the
    sink, this thread's CPU only: the sink's decoding runs on its own
    threads). ``total`` = spans + export."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

    import liya_engine.tracing as tracing
    from liya_engine.heap import GC_THRESHOLDS
    from liya_engine.tracing import provider as provider_spans
    from liya_engine.tracing import server as server_spans
    from liya_engine.tracing.encoding import Encoder, SpanExporter
    from liya_engine.tracing.setup import HashedResource, Resource

    ended: list[ReadableSpan] = []

    class Collect(SpanProcessor):  # the batch processor's part on the call's thread: a queue append
        def on_end(self, span: ReadableSpan) -> None:
            ended.append(span)

    provider = TracerProvider(resource=HashedResource.of(Resource.create({})))
    provider.add_span_processor(Collect())
    exporter = SpanExporter(endpoint=f"{sink.url}/v1/traces")
    encoder = Encoder()
    metadata = (("authorization", "Bearer x"), ("x-request-id", "0" * 32), ("user-agent", "grpc"))
    method = "/liya.engine.v1.InferenceService/Complete"

    def one_call() -> None:
        with server_spans.span(method, metadata):
            call = provider_spans.start("openai", "gpt-4o-mini", intent="chat", mode="byok")
            provider_spans.succeeded(
                call, response_model="gpt-4o-mini", input_tokens=20, output_tokens=64, cost_usd=None
            )
            server_spans.finished("OK", "")

    def batches() -> list[list[ReadableSpan]]:
        return [ended[i : i + FLOOR_BATCH] for i in range(0, len(ended), FLOOR_BATCH)]

    best = dict.fromkeys(("spans", "encode", "encode_sdk", "export"), float("inf"))
    thresholds = gc.get_threshold()
    tracing.TRACER = provider.get_tracer("liya_engine")
    # The server's collector thresholds: the SDK's and the encoder's
    # allocations cost what they cost there.
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        for _ in range(FLOOR_REPEATS):
            ended.clear()
            started = time.thread_time()
            for _ in range(FLOOR_CALLS):
                one_call()
            best["spans"] = min(best["spans"], time.thread_time() - started)
            started = time.thread_time()
            for batch in batches():
                encoder.encode(batch)
            best["encode"] = min(best["encode"], time.thread_time() - started)
            started = time.thread_time()
            for batch in batches():
                encode_spans(batch).SerializePartialToString()
            best["encode_sdk"] = min(best["encode_sdk"], time.thread_time() - started)
            started = time.thread_time()
            for batch in batches():
                exporter.export(batch)
            best["export"] = min(best["export"], time.thread_time() - started)
    finally:
        tracing.TRACER = None
        gc.set_threshold(*thresholds)
        exporter.shutdown()
    floor = {part: round(seconds / FLOOR_CALLS * 1e6, 1) for part, seconds in best.items()}
    floor["total"] = round(floor["spans"] + floor["export"], 1)
    return floor


def _settle(sink: Sink) -> None:
    """Wait until the batch processor has exported what it holds (it waits up to
    OTEL_BSP_SCHEDULE_DELAY, 5 s by default, for a batch to fill)."""
    seen = -1
    while sink.spans != seen:
        seen = sink.spans
        time.sleep(SETTLE_SECONDS)


def report(figures: dict[str, Any], folder: Path | None, stamp: str) -> None:
    """Print the comparison; write it as JSON under ``folder`` unless it is ``None``."""
    ab.print_sides("Tracing cost", "tracing", figures)
    per_round = ", ".join(f"{x:+.1%}" for x in figures["overhead_per_round"])
    verdict = "PASS" if figures["passed"] else "MISS"
    print(
        f"\ntracing on adds {figures['overhead']:+.1%} server CPU per call (per round: "
        f"{per_round}; median {figures['overhead_median_round']:+.1%}); "
        f"target at most {TARGET_OVERHEAD:.0%}: {verdict}\n"
        f"round by round: {ab.describe_paired(figures)}"
    )
    print(
        f"spans received by the sink: {figures['spans_exported']} "
        f"({figures['spans_per_traced_call']} per traced call)"
    )
    floor = figures["sdk_floor_us_per_call"]
    print(
        f"tracing on adds {figures['added_us_per_call']:.0f} us per call; the SDK alone costs "
        f"{floor['total']:.0f} us (spans {floor['spans']:.0f}, export {floor['export']:.0f} "
        f"of which encoding {floor['encode']:.0f}; the SDK's encoder would take "
        f"{floor['encode_sdk']:.0f}) = {figures['sdk_floor_share']:.1%} "
        "of the off server's CPU per call"
    )
    if folder is not None:
        path = folder / f"tracing-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
