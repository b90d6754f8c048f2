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
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from blocks import Block, run_block
from common import BenchError, log
from harness import Bench, free_port, stop_process
from report import summarise

SCENARIO = "G"
CONCURRENCY = 16
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


@dataclass
class Served:
    """One of the two servers: its process, port and pids."""

    proc: Any
    port: int
    pids: list[int]


def compare(bench: Bench) -> dict[str, Any]:
    """Start both servers, run the alternating G blocks, return the figures."""
    args = bench.args
    sink = Sink()
    servers: dict[str, Served] = {}
    try:
        bench.start_server()  # no OTEL_* variable: the environment is scrubbed of them
        servers["off"] = Served(bench.server, bench.server_port, bench.server_pids)
        bench.metrics_port = None  # the first server holds it
        bench.server_port = free_port()
        args.server_env += [
            f"OTEL_EXPORTER_OTLP_ENDPOINT={sink.url}",
            "OTEL_SERVICE_NAME=liya-engine-bench",
        ]
        bench.start_server()
        servers["on"] = Served(bench.server, bench.server_port, bench.server_pids)
        log(f"tracing off: port {servers['off'].port}; on: port {servers['on'].port} -> {sink.url}")
        blocks: dict[str, list[Block]] = {"off": [], "on": []}
        for which in ("off", "on"):  # warm-up, not measured
            _use(bench, servers[which])
            _checked(run_block(bench, SCENARIO, CONCURRENCY, warm=0.3, window=0.5), which)
        _settle(sink)  # the warm-up's spans exported before anything is measured
        spans_before = sink.spans
        for r in range(args.rounds):
            for which in ("off", "on") if r % 2 == 0 else ("on", "off"):
                _use(bench, servers[which])
                block = run_block(
                    bench, SCENARIO, CONCURRENCY, warm=args.warm, window=args.window, round_no=r + 1
                )
                blocks[which].append(_checked(block, which))
            log(f"round {r + 1}/{args.rounds} done")
        stop_process(servers["on"].proc)  # flushes the last spans to the sink
        spans = sink.spans - spans_before
    finally:
        for served in servers.values():
            if served.proc is not bench.server:
                stop_process(served.proc)
        sink.close()
    return _figures(blocks, spans)


def _settle(sink: Sink) -> None:
    """Wait until the batch processor has exported what it holds (it waits up to
    OTEL_BSP_SCHEDULE_DELAY, 5 s by default, for a batch to fill)."""
    seen = -1
    while sink.spans != seen:
        seen = sink.spans
        time.sleep(SETTLE_SECONDS)


def _use(bench: Bench, served: Served) -> None:
    """Point the client workers (and the CPU readings) at ``served``."""
    bench.server, bench.server_port, bench.server_pids = served.proc, served.port, served.pids
    for conn in bench.conns():
        bench.ask(conn, {"op": "connect", "port": served.port, "channels": bench.args.channels})


def _checked(block: Block, which: str) -> Block:
    if block.errors or not block.done:
        raise BenchError(f"tracing {which}: {block.errors} errors: {block.error_kinds}")
    return block


def _figures(blocks: dict[str, list[Block]], spans: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"scenario": SCENARIO, "concurrency": CONCURRENCY}
    for which, measured in blocks.items():
        pooled = summarise(measured)
        figures[which] = {
            "calls": sum(b.done for b in measured),
            "server_cpu_ms_per_req": pooled["server_cpu_ms_per_req"],
            "server_cpu_ms_per_req_per_round": [
                round(b.server_cpu / b.done * 1000, 4) for b in measured
            ],
            "throughput_rps": pooled["throughput_rps"],
            "p50_ms": pooled["p50_ms"],
            "p99_ms": pooled["p99_ms"],
        }
    off, on = figures["off"], figures["on"]
    overhead = on["server_cpu_ms_per_req"] / off["server_cpu_ms_per_req"] - 1
    figures["overhead"] = round(overhead, 4)
    pairs = zip(
        on["server_cpu_ms_per_req_per_round"], off["server_cpu_ms_per_req_per_round"], strict=True
    )
    figures["overhead_per_round"] = [round(a / b - 1, 4) for a, b in pairs]
    figures["target"] = TARGET_OVERHEAD
    figures["passed"] = overhead <= TARGET_OVERHEAD
    figures["spans_exported"] = spans
    figures["spans_per_traced_call"] = round(spans / on["calls"], 3) if on["calls"] else None
    return figures


def report(figures: dict[str, Any], folder: Path | None, stamp: str) -> None:
    """Print the comparison; write it as JSON under ``folder`` unless it is ``None``."""
    print(f"\nTracing cost, warm {SCENARIO} at c{CONCURRENCY}, blocks interleaved")
    print("| tracing | calls | server CPU ms/req (per round) | req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for which in ("off", "on"):
        f = figures[which]
        rounds = ", ".join(f"{x:.3f}" for x in f["server_cpu_ms_per_req_per_round"])
        print(
            f"| {which} | {f['calls']} | {f['server_cpu_ms_per_req']:.3f} ({rounds}) "
            f"| {f['throughput_rps']:.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} |"
        )
    per_round = ", ".join(f"{x:+.1%}" for x in figures["overhead_per_round"])
    verdict = "PASS" if figures["passed"] else "MISS"
    print(
        f"\ntracing on adds {figures['overhead']:+.1%} server CPU per call (per round: "
        f"{per_round}); target at most {TARGET_OVERHEAD:.0%}: {verdict}"
    )
    print(
        f"spans received by the sink: {figures['spans_exported']} "
        f"({figures['spans_per_traced_call']} per traced call)"
    )
    if folder is not None:
        path = folder / f"tracing-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
