"""``--ledger``: what the usage ledger costs the warm path, on against off.

As ``tracing_ab`` does for traces: two servers on the same database, fake and
client workers, one as deployed (the ledger on: every call added to the
in-memory aggregate, flushed every ``LIYA_USAGE_FLUSH_SECONDS``) and one with
``LIYA_USAGE_LEDGER=false``; warm G blocks alternate between them, the order
flipping every round, so drift on a shared machine favours neither. The
flushes run inside the measured windows and are charged to the ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blocks import Block, run_block
from common import log
from harness import Bench, free_port, stop_process
from report import summarise
from tracing_ab import Served, _checked, _use

SCENARIO = "G"
CONCURRENCY = 16
#: The most the ledger may add to the warm path's server CPU per call (the issue's target).
TARGET_OVERHEAD = 0.05
OFF = "LIYA_USAGE_LEDGER=false"


def compare(bench: Bench) -> dict[str, Any]:
    """Start both servers, run the alternating G blocks, return the figures."""
    args = bench.args
    servers: dict[str, Served] = {}
    try:
        # The baseline first, as tracing_ab starts it (the first holds the metrics port).
        args.server_env.append(OFF)
        bench.start_server()
        servers["off"] = Served(bench.server, bench.server_port, bench.server_pids)
        args.server_env.remove(OFF)
        bench.metrics_port = None
        bench.server_port = free_port()
        bench.start_server()  # as deployed: the ledger on
        servers["on"] = Served(bench.server, bench.server_port, bench.server_pids)
        log(f"ledger on: port {servers['on'].port}; off: port {servers['off'].port}")
        blocks: dict[str, list[Block]] = {"off": [], "on": []}
        for which in ("off", "on"):  # warm-up, not measured
            _use(bench, servers[which])
            _checked(run_block(bench, SCENARIO, CONCURRENCY, warm=0.3, window=0.5), which)
        for r in range(args.rounds):
            for which in ("off", "on") if r % 2 == 0 else ("on", "off"):
                _use(bench, servers[which])
                block = run_block(
                    bench, SCENARIO, CONCURRENCY, warm=args.warm, window=args.window, round_no=r + 1
                )
                blocks[which].append(_checked(block, which))
            log(f"round {r + 1}/{args.rounds} done")
    finally:
        for served in servers.values():
            if served.proc is not bench.server:
                stop_process(served.proc)
    return _figures(blocks)


def _figures(blocks: dict[str, list[Block]]) -> dict[str, Any]:
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
    figures["overhead"] = round(on["server_cpu_ms_per_req"] / off["server_cpu_ms_per_req"] - 1, 4)
    pairs = zip(
        on["server_cpu_ms_per_req_per_round"], off["server_cpu_ms_per_req_per_round"], strict=True
    )
    figures["overhead_per_round"] = [round(a / b - 1, 4) for a, b in pairs]
    figures["target"] = TARGET_OVERHEAD
    figures["passed"] = figures["overhead"] <= TARGET_OVERHEAD
    return figures


def report(figures: dict[str, Any], folder: Path | None, stamp: str) -> None:
    """Print the comparison; write it as JSON under ``folder`` unless it is ``None``."""
    print(f"\nUsage ledger cost, warm {SCENARIO} at c{CONCURRENCY}, blocks interleaved")
    print("| ledger | calls | server CPU ms/req (per round) | req/s | p50 ms | p99 ms |")
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
        f"\nthe ledger adds {figures['overhead']:+.1%} server CPU per call (per round: "
        f"{per_round}); target at most {TARGET_OVERHEAD:.0%}: {verdict}"
    )
    if folder is not None:
        path = folder / f"ledger-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
