"""Blocks: the measured unit of the benchmark, one scenario at one concurrency.

A block hands one ``load`` job to the client workers (the concurrency split
across them), reads the CPU of every process at the edges of the measured
window and the server's tenant cache counters around it, and pools the
workers' answers into a ``Block``. The load loops themselves are in
``loadgen``.
"""

from __future__ import annotations

import array
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from common import CALL_TIMEOUT
from harness import Bench, http_post, split
from procstats import Snapshot


@dataclass
class Block:
    """One measured block: a scenario at a concurrency in one round."""

    scenario: str
    concurrency: int
    round: int
    window: float
    done: int
    errors: int
    calls: int
    latencies: array.array
    server_cpu: float
    fake_cpu: float
    client_cpu: float
    server_rss_kb: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    exhausted: bool = False
    cache_hits: float | None = None
    cache_misses: float | None = None


def run_block(
    bench: Bench,
    scenario: str,
    concurrency: int,
    *,
    warm: float,
    window: float,
    round_no: int = 0,
    cold_budget: int = 0,
) -> Block:
    """Run one closed-loop block and read CPU at the window's edges.

    Concurrency 1 runs on one worker; more is split across all. G-cold takes
    about ``cold_budget`` fresh tenants, shared among the workers.
    """
    conns = bench.conns()[: 1 if concurrency == 1 else len(bench.clients)]
    shares = split(concurrency, len(conns))
    cache_before = bench.cache_counters() if scenario in ("G", "G-cold") else None
    start = time.monotonic() + 0.1
    measure, end = start + warm, start + warm + window
    offset = 0
    for conn, share in zip(conns, shares, strict=True):
        job: dict[str, Any] = {
            "op": "load",
            "scenario": scenario,
            "concurrency": share,
            "start": start,
            "measure": measure,
            "end": end,
            "slot_offset": offset,
        }
        offset += share
        if scenario == "G-cold":
            job["tenants"] = bench.take_tenants(max(1, cold_budget // len(conns)))
        conn.send(job)
    time.sleep(max(0.0, measure - time.monotonic()))
    before = bench.snapshot()
    time.sleep(max(0.0, end - time.monotonic()))
    after = bench.snapshot()
    rss = bench.server_memory()["VmRSS"]
    replies = [bench.answer(conn, CALL_TIMEOUT + 30) for conn in conns]
    _after_block(bench)
    hits = misses = None
    cache_after = bench.cache_counters() if cache_before else None
    if cache_before and cache_after:
        hits, misses = (a - b for a, b in zip(cache_after, cache_before, strict=True))
    if scenario == "G-cold":
        bench.cold_calls += sum(r["calls"] for r in replies)
    return _pooled(
        scenario,
        concurrency,
        replies,
        before,
        after,
        rss,
        round=round_no,
        done=sum(r["done"] for r in replies),
        exhausted=any(r["exhausted"] for r in replies),
        cache_hits=hits,
        cache_misses=misses,
    )


def run_count(bench: Bench, scenario: str, concurrency: int, count: int) -> Block:
    """Run exactly ``count`` G-cold calls (distinct tenants), as fast as allowed."""
    conns = bench.conns()
    shares = split(concurrency, len(conns))
    per = split(count, len(conns))
    start = time.monotonic() + 0.1
    for conn, share, n in zip(conns, shares, per, strict=True):
        conn.send(
            {
                "op": "load",
                "scenario": scenario,
                "concurrency": share,
                "start": start,
                "measure": start,
                "end": float("inf"),
                "tenants": bench.take_tenants(n),
            }
        )
    time.sleep(max(0.0, start - time.monotonic()))
    before = bench.snapshot()
    replies = [bench.answer(conn, 600) for conn in conns]
    after = bench.snapshot()
    _after_block(bench)
    bench.cold_calls += sum(r["calls"] for r in replies)
    rss = bench.server_memory()["VmRSS"]
    done = sum(r["calls"] - r["errors"] for r in replies)
    return _pooled(scenario, concurrency, replies, before, after, rss, round=0, done=done)


def _after_block(bench: Bench) -> None:
    bench.check_alive()
    with contextlib.suppress(OSError):
        http_post(f"{bench.fake_url}/_control/reset")  # the fake records every request


def _pooled(
    scenario: str,
    concurrency: int,
    replies: list[dict[str, Any]],
    before: Snapshot,
    after: Snapshot,
    rss_kb: int,
    **fields: Any,
) -> Block:
    """The workers' answers and the CPU readings as one block; ``fields`` are
    the rest (``round``, ``done``: the caller says which calls count)."""
    latencies = array.array("d")
    kinds: Counter[str] = Counter()
    for r in replies:
        latencies.frombytes(r["latencies"])
        kinds.update(r["error_kinds"])
    return Block(
        scenario=scenario,
        concurrency=concurrency,
        window=after.at - before.at,
        errors=sum(r["errors"] for r in replies),
        calls=sum(r["calls"] for r in replies),
        latencies=latencies,
        server_cpu=after.server - before.server,
        fake_cpu=after.fake - before.fake,
        client_cpu=after.clients - before.clients,
        server_rss_kb=rss_kb,
        error_kinds=dict(kinds),
        **fields,
    )
