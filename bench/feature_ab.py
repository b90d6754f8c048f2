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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ab
from common import BIN, ROOT, log
from harness import Bench, free_port, stop_process


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


def compare(bench: Bench, feature: Feature) -> dict[str, Any]:
    """Start both servers, run the alternating G blocks, return the figures."""
    servers: dict[str, ab.Served] = {}
    variant = feature.off_variant
    command = (
        [str(BIN / "python"), str(ROOT / "bench" / "variant.py"), variant] if variant else None
    )
    try:
        # "off" first: the first server holds the metrics port.
        servers["off"] = ab.start(bench, feature.off_env, command)
        bench.metrics_port = None
        bench.server_port = free_port()
        servers["on"] = ab.start(bench)
        log(f"{feature.name} on: port {servers['on'].port}; off: port {servers['off'].port}")
        blocks = ab.alternate(bench, servers, feature.name)
    finally:
        for served in servers.values():
            if served.proc is not bench.server:
                stop_process(served.proc)
    figures = {"feature": feature.name, **ab.pair_figures(blocks)}
    figures["target"] = feature.target
    figures["passed"] = None if feature.target is None else figures["overhead"] <= feature.target
    return figures


def report(feature: Feature, figures: dict[str, Any], folder: Path | None, stamp: str) -> None:
    """Print the comparison; write it as JSON under ``folder`` unless it is ``None``."""
    ab.print_sides(feature.title, feature.name, figures)
    per_round = ", ".join(f"{x:+.1%}" for x in figures["overhead_per_round"])
    verdict = ""
    if feature.target is not None:
        outcome = "PASS" if figures["passed"] else "MISS"
        verdict = f"; target at most {feature.target:.0%}: {outcome}"
    print(
        f"\n{feature.name} adds {figures['overhead']:+.1%} server CPU per call "
        f"(median round {figures['overhead_median_round']:+.1%}; per round: {per_round}; "
        f"round by round: {ab.describe_paired(figures)})"
        f"{verdict}"
    )
    if folder is not None:
        path = folder / f"{feature.name}-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        log(f"wrote {path}")
