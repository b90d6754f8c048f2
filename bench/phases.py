"""The phases of a full run before its measured rounds: the fake measured
alone, the warm-up of every scenario, and the server's RSS as tenants become
active, called in order by ``run.run`` (its numbered steps).
"""

from __future__ import annotations

import time
from typing import Any

from blocks import run_block, run_count
from common import CONCURRENCY, SCENARIOS, BenchError, log
from harness import Bench, tail
from report import summarise


def fake_phase(bench: Bench) -> dict[int, dict[str, Any]]:
    """Start the fake and the clients; measure the fake alone at each concurrency."""
    args = bench.args
    bench.start_fake()
    bench.start_clients()
    log(f"fake providers on {bench.fake_url}; {args.clients} client processes")
    run_block(bench, "F", 64, warm=0.2, window=0.5)  # ramp, not measured
    fake_blocks = {
        c: run_block(bench, "F", c, warm=args.warm, window=args.window) for c in CONCURRENCY
    }
    fake_alone = {c: summarise([b]) for c, b in fake_blocks.items()}
    log(
        "fake alone: "
        + ", ".join(f"c{c} {fake_alone[c]['throughput_rps']:.0f} req/s" for c in CONCURRENCY)
    )
    return fake_alone


def warm_up(bench: Bench) -> None:
    """One short block of every scenario; raise ``BenchError`` on any error."""
    args = bench.args
    warm_budget = 200 * args.clients
    for scenario in SCENARIOS:
        block = run_block(
            bench, scenario, 16, warm=0.2, window=max(0.5, args.warm), cold_budget=warm_budget
        )
        if block.errors or not block.done:
            raise BenchError(
                f"warm-up of {scenario}: {block.errors} errors of {block.calls} calls: "
                f"{block.error_kinds}\n--- server log ---\n{tail(bench.tmp / 'server.log')}"
            )


def rss_phase(bench: Bench) -> dict[str, Any]:
    """The server's RSS before and after ``--rss-tenants`` distinct tenants called."""
    args = bench.args
    time.sleep(0.5)
    mem_before = bench.server_memory()
    log(f"RSS {mem_before['VmRSS'] / 1024:.1f} MB; {args.rss_tenants:,} distinct tenants now call")
    rss_block = run_count(bench, "G-cold", 16, args.rss_tenants)
    time.sleep(0.5)
    mem_after = bench.server_memory()
    growth_mb = (mem_after["VmRSS"] - mem_before["VmRSS"]) / 1024
    rss = {
        "tenants": args.rss_tenants,
        "before_mb": round(mem_before["VmRSS"] / 1024, 1),
        "after_mb": round(mem_after["VmRSS"] / 1024, 1),
        "growth_mb": round(growth_mb, 1),
        "growth_mb_per_10k": round(growth_mb * 10_000 / args.rss_tenants, 1),
        "peak_mb_after": round(mem_after["VmHWM"] / 1024, 1),
        "calls_per_second": round(rss_block.done / rss_block.window, 1),
        "errors": rss_block.errors,
    }
    log(
        f"RSS {rss['before_mb']} -> {rss['after_mb']} MB (+{rss['growth_mb']} MB) after "
        f"{args.rss_tenants:,} tenants at {rss['calls_per_second']:.0f} calls/s"
    )
    return rss
