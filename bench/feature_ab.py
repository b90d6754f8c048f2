"""``--ledger``, ``--health``, ``--ab-baseline``: one part of the warm path,
on against off.

Two servers run side by side on the same database, the same fake and the same
client workers: one as deployed ("on") and one without the part measured
("off"). Warm G blocks alternate between them, the order flipping every round
(off on, on off, ...), so drift on a shared machine favours neither; each
block's server CPU is that of the server it loaded. What "off" is:

* ``ledger``: ``LIYA_USAGE_LEDGER=false``, the setting that turns the usage
  ledger off. Its flushes run inside the measured windows and are charged to it.
* ``health``: the key-health recorder's per-call methods replaced by no-ops
  (``variant.py no-health``: there is no setting, since health is part of the
  contract). Its background writer still runs, with nothing to write.
* ``code``: the server of another checkout (``--ab-baseline DIR``: its
  ``server/`` first on ``PYTHONPATH``), to measure a change against the code
  before it. Both checkouts must share the database schema.

``tracing_ab`` does the same for traces, with an OTLP sink of its own.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocks import Block, run_block
from common import BIN, ROOT, log
from harness import Bench, free_port, stop_process
from report import summarise
from tracing_ab import Served, _checked, _use

SCENARIO = "G"
CONCURRENCY = 16


@dataclass(frozen=True)
class Feature:
    """A part of the warm path and how a server runs without it."""

    name: str
    title: str
    #: The most it may add to the warm path's server CPU per call (None: reported only).
    target: float | None
    off_env: tuple[str, ...] = ()
    off_variant: str | None = None


LEDGER = Feature("ledger", "Usage ledger", 0.05, off_env=("LIYA_USAGE_LEDGER=false",))
#: Issue 13: the warm Complete path costs no more server CPU with key health than without.
HEALTH = Feature("health", "Key health", 0.02, off_variant="no-health")


def baseline(folder: str) -> Feature:
    """The code of the checkout at ``folder`` as "off", this checkout as "on"."""
    server = Path(folder).resolve() / "server"
    if not (server / "liya_engine").is_dir():
        raise SystemExit(f"--ab-baseline: {server} holds no liya_engine package")
    title = f"This checkout against {folder}"
    return Feature("code", title, None, off_env=(f"PYTHONPATH={server}",))


def _start(bench: Bench, env: tuple[str, ...], variant: str | None) -> Served:
    args = bench.args
    saved_env, saved_cmd = list(args.server_env), bench.server_command
    args.server_env += list(env)
    if variant:
        bench.server_command = [str(BIN / "python"), str(ROOT / "bench" / "variant.py"), variant]
    try:
        bench.start_server()
    finally:
        args.server_env, bench.server_command = saved_env, saved_cmd
    return Served(bench.server, bench.server_port, bench.server_pids)


def compare(bench: Bench, feature: Feature) -> dict[str, Any]:
    """Start both servers, run the alternating G blocks, return the figures."""
    args = bench.args
    servers: dict[str, Served] = {}
    try:
        # "off" first: the first server holds the metrics port.
        servers["off"] = _start(bench, feature.off_env, feature.off_variant)
        bench.metrics_port = None
        bench.server_port = free_port()
        servers["on"] = _start(bench, (), None)
        log(f"{feature.name} on: port {servers['on'].port}; off: port {servers['off'].port}")
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
    return figures_of(feature, blocks)


def figures_of(feature: Feature, blocks: dict[str, list[Block]]) -> dict[str, Any]:
    """The pooled figures of both sides and the overhead of "on", overall and per round."""
    figures: dict[str, Any] = {
        "feature": feature.name,
        "scenario": SCENARIO,
        "concurrency": CONCURRENCY,
    }
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
    # A round disturbed by another process on the machine moves the pooled figure;
    # the median of the rounds' ratios is the figure such a round cannot move.
    figures["overhead_median_round"] = round(statistics.median(figures["overhead_per_round"]), 4)
    figures["target"] = feature.target
    figures["passed"] = None if feature.target is None else figures["overhead"] <= feature.target
    return figures


def report(feature: Feature, figures: dict[str, Any], folder: Path | None, stamp: str) -> None:
    """Print the comparison; write it as JSON under ``folder`` unless it is ``None``."""
    print(f"\n{feature.title}: warm {SCENARIO} at c{CONCURRENCY}, blocks interleaved")
    print(f"| {feature.name} | calls | server CPU ms/req (per round) | req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for which in ("off", "on"):
        f = figures[which]
        rounds = ", ".join(f"{x:.3f}" for x in f["server_cpu_ms_per_req_per_round"])
        print(
            f"| {which} | {f['calls']} | {f['server_cpu_ms_per_req']:.3f} ({rounds}) "
            f"| {f['throughput_rps']:.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} |"
        )
    per_round = ", ".join(f"{x:+.1%}" for x in figures["overhead_per_round"])
    verdict = ""
    if feature.target is not None:
        outcome = "PASS" if figures["passed"] else "MISS"
        verdict = f"; target at most {feature.target:.0%}: {outcome}"
    print(
        f"\n{feature.name} adds {figures['overhead']:+.1%} server CPU per call "
        f"(median round {figures['overhead_median_round']:+.1%}; per round: {per_round})"
        f"{verdict}"
    )
    if folder is not None:
        path = folder / f"{feature.name}-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
