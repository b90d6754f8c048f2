"""What every part of the benchmark shares: paths, the scenarios, the request
every completion sends, tenant names, logging and the one error type.

Imports nothing of the service, so the orchestrator and the client workers can
load it before they decide what else they need.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent

SCENARIOS = ("B0", "B1", "G", "G-cold", "R")
# Scenarios a target compares run next to each other in every round.
ADJACENT = (("B0", "R"), ("B1", "G", "G-cold"))
CONCURRENCY = (1, 16, 64)
WARM_TENANT = "bench-warm"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 64
PROMPT = "Summarise in one sentence why a company would bring its own provider key."
CALL_TIMEOUT = 30.0
# The RSS target is for this many active tenants (and --rss-tenants defaults to it).
RSS_TARGET_TENANTS = 10_000


def cold_tenant(i: int) -> str:
    """The id of the ``i``-th cold tenant (each is called at most once)."""
    return f"bench-cold-{i:06d}"


def log(message: str) -> None:
    """A timestamped progress line on stderr (stdout holds the report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""
