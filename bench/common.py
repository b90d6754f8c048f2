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

SCENARIOS = ("B0", "B1", "G", "G-cold", "R", "S1", "S")
# Scenarios a target compares run next to each other in every round.
ADJACENT = (("B0", "R"), ("B1", "G", "G-cold"), ("S1", "S"))
# Scenarios whose calls do not reach the server (no server CPU per call to show).
DIRECT = ("F", "B1", "S1")
CONCURRENCY = (1, 16, 64)
WARM_TENANT = "bench-warm"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 64
PROMPT = "Summarise in one sentence why a company would bring its own provider key."
CALL_TIMEOUT = 30.0
# Streams (S, S1, H): the fake's answer is "Fake answer to:" and then the
# prompt's words, one delta per word, so 17 words give exactly 20 deltas (the
# max_tokens of STREAM_CHUNKS would cut a longer prompt to 20 as well).
STREAM_CHUNKS = 20
STREAM_PROMPT = (
    "Write one line for a candidate who asked how a mock interview about system design is scored."
)
# The RSS target is for this many active tenants (and --rss-tenants defaults to it).
RSS_TARGET_TENANTS = 10_000


def block_order(round_index: int) -> list[str]:
    """The scenarios of one round: groups of ``ADJACENT`` stay together, and
    both the order of the groups and the order within them flip from round to
    round, so a steady drift favours no scenario of a compared pair."""
    groups = [list(group) for group in ADJACENT]
    if round_index % 2:
        groups = [group[::-1] for group in reversed(groups)]
    return [scenario for group in groups for scenario in group]


def cold_tenant(i: int) -> str:
    """The id of the ``i``-th cold tenant (each is called at most once)."""
    return f"bench-cold-{i:06d}"


def describe(exc: BaseException) -> str:
    """A short kind of failure to count: the gRPC status, or the exception."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {(details() or '')[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def log(message: str) -> None:
    """A timestamped progress line on stderr (stdout holds the report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""
