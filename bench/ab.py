"""What the benchmark's comparisons of two servers share (``tracing_ab``,
``feature_ab``, ``overload_ab``): a server started with extra settings, the
client workers pointed at one server or the other, warm G blocks alternating
between "off" and "on" with the order flipping every round, and the figures
of the two sides with the overhead of "on".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from blocks import Block, run_block
from common import BenchError, log
from harness import Bench
from report import summarise

SCENARIO = "G"  # the default; ``--ab-scenario`` chooses
CONCURRENCY = 16


def scenario_of(bench: Bench) -> str:
    """The scenario the comparison's blocks run (``--ab-scenario``)."""
    return getattr(bench.args, "ab_scenario", None) or SCENARIO


@dataclass
class Served:
    """One of the servers: its process, port, metrics port and pids."""

    proc: Any
    port: int
    pids: list[int]
    metrics_port: int | None = None


def start(
    bench: Bench, env: list[str] | tuple[str, ...] = (), command: list[str] | None = None
) -> Served:
    """Start a server with the extra settings ``env`` (and, if given, ``command``
    before ``serve``); the bench's own settings and command are left as they were."""
    args = bench.args
    saved_env, saved_cmd = list(args.server_env), bench.server_command
    args.server_env = saved_env + list(env)
    if command:
        bench.server_command = command
    try:
        bench.start_server()
    finally:
        args.server_env, bench.server_command = saved_env, saved_cmd
    return Served(bench.server, bench.server_port, bench.server_pids, bench.metrics_port)


def use(bench: Bench, served: Served) -> None:
    """Point the client workers, the CPU and the metrics readings at ``served``."""
    bench.server, bench.server_port, bench.server_pids = served.proc, served.port, served.pids
    bench.metrics_port = served.metrics_port
    for conn in bench.conns():
        bench.ask(conn, {"op": "connect", "port": served.port, "channels": bench.args.channels})


def checked(block: Block, label: str) -> Block:
    """``block``, or ``BenchError`` if any of its calls failed or none ended."""
    if block.errors or not block.done:
        raise BenchError(f"{label}: {block.errors} errors: {block.error_kinds}")
    return block


def alternate(
    bench: Bench,
    servers: dict[str, Served],
    name: str,
    after_warm_up: Callable[[], None] | None = None,
) -> dict[str, list[Block]]:
    """A warm-up block on each of ``servers["off"]`` and ``servers["on"]`` (not
    measured; ``after_warm_up`` runs next), then ``--rounds`` rounds of one
    warm G block on each, off first in even rounds and on first in odd ones."""
    args = bench.args
    scenario = scenario_of(bench)
    for which in ("off", "on"):
        use(bench, servers[which])
        checked(run_block(bench, scenario, CONCURRENCY, warm=0.3, window=0.5), f"{name} {which}")
    if after_warm_up is not None:
        after_warm_up()
    blocks: dict[str, list[Block]] = {"off": [], "on": []}
    for r in range(args.rounds):
        for which in ("off", "on") if r % 2 == 0 else ("on", "off"):
            use(bench, servers[which])
            block = run_block(
                bench, scenario, CONCURRENCY, warm=args.warm, window=args.window, round_no=r + 1
            )
            blocks[which].append(checked(block, f"{name} {which}"))
        log(f"round {r + 1}/{args.rounds} done")
    return blocks


def pair_figures(blocks: dict[str, list[Block]]) -> dict[str, Any]:
    """Each side's pooled figures, and what "on" adds to "off": overall, in µs
    per call, per round and for the median round."""
    scenario = next(b.scenario for measured in blocks.values() for b in measured)
    figures: dict[str, Any] = {"scenario": scenario, "concurrency": CONCURRENCY}
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
    figures["added_us_per_call"] = round(
        (on["server_cpu_ms_per_req"] - off["server_cpu_ms_per_req"]) * 1000, 1
    )
    pairs = zip(
        on["server_cpu_ms_per_req_per_round"], off["server_cpu_ms_per_req_per_round"], strict=True
    )
    figures["overhead_per_round"] = [round(a / b - 1, 4) for a, b in pairs]
    # A round disturbed by another process on the machine moves the pooled figure;
    # the median of the rounds' ratios is the figure such a round cannot move.
    figures["overhead_median_round"] = round(statistics.median(figures["overhead_per_round"]), 4)
    figures["overhead_paired"], figures["overhead_paired_se"] = paired_ratio(
        on["server_cpu_ms_per_req_per_round"], off["server_cpu_ms_per_req_per_round"]
    )
    return figures


def paired_ratio(on: list[float], off: list[float]) -> tuple[float, float | None]:
    """What "on" adds, from the rounds' ratios on/off: their geometric mean - 1,
    and its standard error (in the same units, for small values), None with
    one round. Each round's pair ran back to back, so slow drift on a shared
    machine cancels in its ratio; the spread of the ratios is the noise left,
    and the error says how far the mean of this many rounds can be from the
    cost (an A/A run, both servers the same, reads 0 within it)."""
    logs = [math.log(a / b) for a, b in zip(on, off, strict=True)]
    mean = statistics.fmean(logs)
    error = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else None
    return round(math.exp(mean) - 1, 4), None if error is None else round(error, 4)


def describe_paired(figures: dict[str, Any]) -> str:
    """``+15.8% ± 1.9% over 120 paired rounds``, as the reports print it."""
    error = figures["overhead_paired_se"]
    spread = "" if error is None else f" ± {error:.1%}"
    rounds = len(figures["overhead_per_round"])
    return f"{figures['overhead_paired']:+.1%}{spread} over {rounds} paired rounds"


def print_sides(title: str, column: str, figures: dict[str, Any]) -> None:
    """The two sides as a Markdown table under ``title``."""
    print(f"\n{title}: warm {figures['scenario']} at c{CONCURRENCY}, blocks interleaved")
    print(f"| {column} | calls | server CPU ms/req (per round) | req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for which in ("off", "on"):
        f = figures[which]
        rounds = ", ".join(f"{x:.3f}" for x in f["server_cpu_ms_per_req_per_round"])
        print(
            f"| {which} | {f['calls']} | {f['server_cpu_ms_per_req']:.3f} ({rounds}) "
            f"| {f['throughput_rps']:.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} |"
        )
