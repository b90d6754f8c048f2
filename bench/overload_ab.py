"""``--overload-only``: the overload phase alone, without the rounds, H or the
profiles; with ``--overload-b NAME=VALUE`` on two servers, to compare a
setting (or a default) on and off under the same run conditions.

One server (A: the run's settings) or two side by side on the same database,
fake and client workers (B: A's settings plus every ``--overload-b``). Each
server's capacity is measured first: ``--rounds`` closed-loop G blocks at c64
(its req/s and p99 are what the overload is offered at and compared with;
both servers are offered the same rate, A's capacity times
``--overload-factor``, so that neither gets an easier load). Then
``--rounds`` rounds of the overload runs (warm tenant, then spread over
tenants), A before B in odd rounds and B before A in even ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import ab
import hold_overload
import saving
from blocks import run_block
from common import BenchError, log
from harness import Bench, free_port, stop_process
from report import summarise
from stream_report import overload_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The knobs of ``--overload-only``."""
    p.add_argument(
        "--overload-only",
        action="store_true",
        help="only G's capacity at c64 and the overload runs (see bench/overload_ab.py)",
    )
    p.add_argument(
        "--overload-b",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --overload-only: a second server B with this extra setting (repeatable)",
    )


def _capacity(bench: Bench, name: str) -> dict[str, Any]:
    """G at c64 on the server in use: ``--rounds`` blocks, pooled, after a
    ramp that must end without an error."""
    args = bench.args
    ramp = run_block(bench, "G", 64, warm=0.3, window=1.0)  # not measured
    if ramp.errors or not ramp.done:
        raise BenchError(f"{name}: G's ramp: {ramp.errors} errors: {ramp.error_kinds}")
    blocks = [
        run_block(bench, "G", 64, warm=args.warm, window=args.window, round_no=r + 1)
        for r in range(args.rounds)
    ]
    pooled = summarise(blocks)
    log(
        f"{name}: G c64 {pooled['throughput_rps']:.0f} req/s, p99 {pooled['p99_ms']:.1f} ms, "
        f"{pooled['errors']} errors {pooled['error_kinds'] or ''}"
    )
    return pooled


def compare(bench: Bench) -> dict[str, Any]:
    """Start the server(s), measure capacity, run the interleaved overload runs."""
    args = bench.args
    args.hold_streams = 0
    after_runs: dict[str, Any] = {}
    servers: dict[str, ab.Served] = {"A": ab.start(bench)}
    if args.overload_b:
        bench.server_port = free_port()
        bench.metrics_port = free_port() if args.workers == 1 else None
        servers["B"] = ab.start(bench, args.overload_b)
    try:
        capacity: dict[str, dict[str, Any]] = {}
        for name, served in servers.items():
            ab.use(bench, served)
            capacity[name] = _capacity(bench, name)
        names = list(servers)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                ab.use(bench, servers[name])
                # Both servers are offered A's capacity x the factor; each p99 is
                # compared with its own server's p99 at capacity.
                figures = {
                    "G": {
                        64: {
                            "throughput_rps": capacity["A"]["throughput_rps"],
                            "p99_ms": capacity[name]["p99_ms"],
                        }
                    }
                }
                phase = hold_overload.prepare(bench)(figures)
                for run in phase["overload"]:
                    run["server"] = name
                    run["round"] = r + 1
                after_runs.setdefault(name, []).extend(phase["overload"])
            log(f"overload round {r + 1}/{args.rounds} done")
    finally:
        for served in servers.values():
            if served.proc is not bench.server:
                stop_process(served.proc)
    if not after_runs:
        raise BenchError("no overload run (--overload-seconds 0?)")
    return {"b_settings": args.overload_b, "capacity": capacity, "runs": after_runs}


def run(bench: Bench, stamp: str, seed_phase: Any) -> int:
    """``--overload-only``: the database, the fake, the clients, then ``compare``."""
    seed_phase(bench)
    bench.start_fake()
    bench.start_clients()
    figures = compare(bench)
    report(figures, saving.folder(bench.args), stamp)
    return 0


def report(figures: dict[str, Any], folder: Path | None, stamp: str) -> None:
    """Print every server's runs; write the JSON under ``folder`` unless None."""
    for name, runs in figures["runs"].items():
        extra = f" (+ {', '.join(figures['b_settings'])})" if name == "B" else ""
        cap = figures["capacity"][name]
        print(
            f"\nServer {name}{extra}: G c64 {cap['throughput_rps']:.0f} req/s, "
            f"p99 {cap['p99_ms']:.1f} ms, {cap['errors']} errors"
        )
        for run in runs:
            run["variant"] = f"r{run['round']} {run['variant']}"
        print(overload_table(runs))
    if folder is not None:
        path = folder / f"overload-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
