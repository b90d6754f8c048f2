"""The phases after the interleaved rounds: H (many streams held open at once)
and overload (an open-loop offered load at a multiple of G's capacity).

Their tenants are set aside before the rounds (``prepare``), so G-cold's share
of the cold tenants leaves them alone; each tenant's first call here is a
cold read. The load itself runs in the client workers (``streams.hold``,
``overload.open_loop``); this module sends the jobs, reads the server around
and during them, and pools the answers into the dict the report shows
(``stream_report``).

H: ``--hold-streams`` CompleteStream calls launched at an even rate, by
default half the streams a second S sustained at c64 in the rounds (so the
launches alone do not saturate the server: the time to first delta is that
of a server holding many streams, not of a burst beyond its capacity),
spread over enough tenants that each has at most half its
``LIYA_TENANT_MAX_IN_FLIGHT``, against a fake that streams slowly
(``slow_stream``: the role chunk and the first delta at once, then
``--hold-chunk-delay`` seconds between chunks, lengthened so that every
stream outlasts the launches by half), so all are open at once. A stream
lasts at most 30 s (half ``LIYA_UPSTREAM_TIMEOUT_SECONDS`` if that is less:
the server ends a provider call, a stream too, at that timeout), so on a
slow machine the launches are faster than half S's rate.
Measured: every stream checked (20 deltas, usage, OK), time to first delta,
the server's VmRSS before and at its peak during H (sampled, and VmHWM reset
through ``/proc/<pid>/clear_refs``), the most CompleteStream calls in flight
in the server (its ``liya_rpc_in_flight`` gauge) and at the fake at once.

Overload: for ``--overload-seconds``, calls launched at ``--overload-factor``
x G's req/s at c64 measured in the rounds, on the warm tenant (its
``LIYA_TENANT_MAX_IN_FLIGHT`` refuses with CONCURRENCY_LIMIT_EXCEEDED) and
spread over tenants enough that none reaches its own bound before the
process reaches ``LIYA_MAX_IN_FLIGHT`` (SERVER_OVERLOADED). The client keeps
at most 1.25 x ``LIYA_MAX_IN_FLIGHT`` calls outstanding.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import math
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import CALL_TIMEOUT, STREAM_CHUNKS, BenchError, log
from harness import Bench, http_post, split
from overload import REFUSALS
from report import percentile

Figures = dict[str, dict[int, dict[str, Any]]]
# The fake's events per stream: the role chunk, the deltas, the finish, the usage, [DONE].
STREAM_EVENTS = STREAM_CHUNKS + 4
HOLD_STREAMS = 1000
# H's streams end well within the server's LIYA_UPSTREAM_TIMEOUT_SECONDS (60 s:
# the longest a provider call may take, a stream too, and with 5 s more what a
# connection's calls get after its GOAWAY at 5 minutes of age).
HOLD_LONGEST_STREAM = 30.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The knobs of H and overload (0 skips a phase)."""
    p.add_argument("--hold-streams", type=int, help="H: streams (default 1000; quick 300)")
    p.add_argument(
        "--hold-rate", type=float, help="H: streams launched a second (default: half S's at c64)"
    )
    p.add_argument(
        "--hold-chunk-delay",
        type=float,
        help="H: seconds between chunks (default 1, longer if the launches take longer)",
    )
    p.add_argument("--overload-seconds", type=float, help="overload: seconds (default 10; quick 3)")
    p.add_argument("--overload-factor", type=float, default=2.0, help="x G's c64 req/s")


def ms_percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (seconds), in ms; None when empty."""
    return round(percentile(sorted(values), q) * 1000, 3) if values else None


def _floats(raw: bytes) -> list[float]:
    values = array.array("d")
    values.frombytes(raw)
    return values.tolist()


def prepare(bench: Bench) -> Callable[[Figures], dict[str, Any]]:
    """Set the tenants of H and overload aside; the phases, to run after the rounds."""
    from liya_engine.settings import Settings

    args = bench.args
    if args.hold_streams is None:
        args.hold_streams = 300 if args.quick else HOLD_STREAMS
    settings = Settings.from_env(bench.server_env())
    limits = settings.limits
    hold_tenants = math.ceil(args.hold_streams / max(1, limits.tenant_max_in_flight // 2))
    spread = 4 * math.ceil(limits.max_in_flight / limits.tenant_max_in_flight)
    hold_range = bench.take_tenants(hold_tenants) if args.hold_streams else None
    spread_range = bench.take_tenants(spread) if args.overload_seconds != 0 else None
    info = {
        "max_in_flight": limits.max_in_flight,
        "tenant_max_in_flight": limits.tenant_max_in_flight,
        "upstream_timeout_seconds": settings.upstream_timeout_seconds,
    }

    def after_rounds(figures: Figures) -> dict[str, Any]:
        out: dict[str, Any] = {"limits": info, "hold": None, "overload": []}
        if hold_range:
            longest = min(HOLD_LONGEST_STREAM, settings.upstream_timeout_seconds / 2)
            out["hold"] = run_hold(bench, figures, hold_range, longest)
        if spread_range:
            for tenants in (None, spread_range):
                out["overload"].append(run_overload(bench, figures, tenants, limits.max_in_flight))
        return out

    return after_rounds


def _reset_hwm(pids: list[int]) -> bool:
    """Reset the peak RSS (VmHWM) of ``pids`` to their RSS now; False if Linux refused."""
    try:
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _series(bench: Bench, name: str, method: str) -> list[tuple[str, float]] | None:
    """The server's Prometheus samples of ``name`` for ``method``, as (labels,
    value); None when unreadable (with ``--workers``, no metrics are served)."""
    text = bench.metrics_text()
    if text is None:
        return None
    samples = []
    for line in text.splitlines():
        if line.startswith(name + "{") and f'grpc_method="{method}"' in line:
            labels, _, value = line.rpartition(" ")
            samples.append((labels, float(value)))
    return samples


def _in_flight(bench: Bench, method: str) -> float | None:
    """The server's ``liya_rpc_in_flight`` of ``method``."""
    samples = _series(bench, "liya_rpc_in_flight", method)
    return None if samples is None else sum(value for _labels, value in samples)


def _handled(bench: Bench, method: str) -> dict[str, float]:
    """The calls of ``method`` the service's handlers ended, by "code reason"."""
    out: dict[str, float] = {}
    for labels, value in _series(bench, "grpc_server_handled_total", method) or []:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = f"{fields.get('grpc_code')} {fields.get('reason')}"
        out[key] = out.get(key, 0.0) + value
    return out


def _fake_peak_open(bench: Bench) -> int | None:
    """The most requests the fake was answering at once, from its record."""
    try:
        url = f"{bench.fake_url}/_control/requests?provider=openai"
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - loopback only
            records = json.loads(r.read())
    except OSError:
        return None
    edges = []
    for rec in records:
        edges.append((rec["started_at"], 1))
        edges.append((rec["finished_at"] or float("inf"), -1))
    peak = now = 0
    for _at, step in sorted(edges):
        now += step
        peak = max(peak, now)
    return peak


def run_hold(
    bench: Bench, figures: Figures, tenants: tuple[int, int], longest: float
) -> dict[str, Any]:
    """H: the streams held open at once, each lasting at most about ``longest``
    seconds; see the module's docstring."""
    args = bench.args
    n = args.hold_streams
    # Every stream lasts about ``gaps`` x delay: longer than the launches, by half.
    rate = args.hold_rate or max(figures["S"][64]["throughput_rps"] / 2, 1.5 * n / longest)
    ramp = n / rate
    gaps = STREAM_EVENTS - 1  # the pauses: after every event but the first
    delay = args.hold_chunk_delay or min(max(1.0, 1.5 * ramp / gaps), longest / gaps)
    delay = round(delay, 2)
    log(
        f"H: {n:,} streams over {tenants[1] - tenants[0]} tenants, {rate:.0f} launched a "
        f"second, {delay}s between chunks"
    )
    http_post(f"{bench.fake_url}/_control/reset")
    slow = {"provider": "openai", "kind": "slow_stream", "times": None}
    http_post(f"{bench.fake_url}/_control/fail", slow | {"chunk_delay": delay, "after": 2})
    conns = bench.conns()
    # Fresh connections: the server sends a connection of 5 minutes a GOAWAY and
    # cuts its calls 30 s later (grpc.max_connection_age), which would cut H's
    # long streams or not depending on when the run connected.
    for conn in conns:
        bench.ask(conn, {"op": "connect", "port": bench.server_port, "channels": args.channels})
    try:
        time.sleep(0.5)
        rss_before = bench.server_memory()["VmRSS"]
        hwm_reset = _reset_hwm(bench.server_pids)
        before = bench.snapshot()
        start = time.monotonic() + 0.2
        timeout = ramp + STREAM_EVENTS * delay + CALL_TIMEOUT
        lo = tenants[0]
        for conn, share, per in zip(
            conns, split(n, len(conns)), split(tenants[1] - tenants[0], len(conns)), strict=True
        ):
            job = {"op": "hold", "streams": share, "tenants": (lo, lo + per), "start": start}
            conn.send(job | {"rate": share / ramp, "timeout": timeout})
            lo += per
        replies, peaks = _wait_sampling(bench, conns, start + timeout + 30)
        after = bench.snapshot()
        fake_peak = _fake_peak_open(bench)
    finally:
        with contextlib.suppress(OSError):
            http_post(f"{bench.fake_url}/_control/reset")
    rss_peak = max(peaks["rss"], bench.server_memory()["VmHWM"] if hwm_reset else 0)
    ttft = [x for r in replies for x in _floats(r["ttft"])]
    durations = [x for r in replies for x in _floats(r["durations"])]
    cpu = after.server - before.server
    kinds: dict[str, int] = {}
    for r in replies:
        for kind, count in r["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    hold = {
        "streams": n,
        "tenants": tenants[1] - tenants[0],
        "chunk_delay_s": delay,
        "launch_rate": round(rate, 1),
        "ramp_s": round(ramp, 2),
        "ok": len(ttft),
        "errors": sum(r["errors"] for r in replies),
        "error_kinds": kinds,
        "ttft_p50_ms": ms_percentile(ttft, 50),
        "ttft_p99_ms": ms_percentile(ttft, 99),
        "ttft_max_ms": ms_percentile(ttft, 100),
        "duration_p50_s": round((ms_percentile(durations, 50) or 0) / 1000, 2),
        "launch_s": round(max(r["launch_seconds"] for r in replies), 2),
        "rss_before_mb": round(rss_before / 1024, 1),
        "rss_peak_mb": round(rss_peak / 1024, 1),
        "rss_growth_mb": round((rss_peak - rss_before) / 1024, 1),
        "rss_peak_from": "VmHWM and samples" if hwm_reset else "samples every 0.1 s",
        "server_in_flight_peak": peaks["in_flight"],
        "fake_open_peak": fake_peak,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_ms_per_stream": round(cpu / len(ttft) * 1000, 3) if ttft else None,
    }
    log(
        f"H: {hold['ok']:,}/{n:,} OK, TTFT p99 {hold['ttft_p99_ms']} ms, RSS "
        f"+{hold['rss_growth_mb']} MB, {hold['server_in_flight_peak']} in flight in the "
        f"server and {fake_peak} at the fake at most"
    )
    return hold


def _wait_sampling(
    bench: Bench, conns: list[Any], deadline: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The workers' answers; meanwhile the server's RSS (every 0.1 s) and its
    CompleteStream calls in flight (every 0.5 s), at their peaks."""
    replies: dict[int, dict[str, Any]] = {}
    peaks: dict[str, Any] = {"rss": 0, "in_flight": None}
    next_gauge = 0.0
    while len(replies) < len(conns):
        for k, conn in enumerate(conns):
            if k not in replies and conn.poll(0.05):
                replies[k] = bench.answer(conn, 1)
        peaks["rss"] = max(peaks["rss"], bench.server_memory()["VmRSS"])
        if time.monotonic() >= next_gauge:
            next_gauge = time.monotonic() + 0.5
            value = _in_flight(bench, "CompleteStream")
            if value is not None:
                peaks["in_flight"] = int(max(peaks["in_flight"] or 0, value))
        if time.monotonic() > deadline:
            raise BenchError("H: the client workers did not finish their streams")
        bench.check_alive()
    return [replies[k] for k in range(len(conns))], peaks


def run_overload(
    bench: Bench, figures: Figures, tenants: tuple[int, int] | None, max_in_flight: int
) -> dict[str, Any]:
    """One overload run: on the warm tenant (``tenants`` None) or spread over ``tenants``."""
    args = bench.args
    seconds = args.overload_seconds or (3.0 if args.quick else 10.0)
    capacity = figures["G"][64]["throughput_rps"]
    p99_capacity = figures["G"][64]["p99_ms"]
    rate = args.overload_factor * capacity
    bound = max_in_flight + max_in_flight // 4
    variant = "warm tenant" if tenants is None else f"{tenants[1] - tenants[0]} tenants"
    log(f"overload: {rate:.0f} calls/s for {seconds}s, {variant}")
    conns = bench.conns()
    time.sleep(0.5)
    handled_before = _handled(bench, "Complete")
    before = bench.snapshot()
    start = time.monotonic() + 0.2
    lo = tenants[0] if tenants else 0
    per_conn = split(tenants[1] - tenants[0], len(conns)) if tenants else [0] * len(conns)
    for conn, per, cap in zip(conns, per_conn, split(bound, len(conns)), strict=True):
        job = {"op": "open_loop", "start": start, "end": start + seconds, "bound": cap}
        conn.send(job | {"rate": rate / len(conns), "tenants": (lo, lo + per) if per else None})
        lo += per
    replies = [bench.answer(conn, seconds + CALL_TIMEOUT + 30) for conn in conns]
    after = bench.snapshot()
    bench.check_alive()
    handled = {
        key: int(value - handled_before.get(key, 0.0))
        for key, value in _handled(bench, "Complete").items()
        if value > handled_before.get(key, 0.0)
    }
    with contextlib.suppress(OSError):
        http_post(f"{bench.fake_url}/_control/reset")
    result = _pool_overload(replies, variant, seconds, capacity, p99_capacity, rate, after, before)
    # What the service's handlers saw: a call shed before them is not counted here.
    result["server_handled"] = handled
    return result


def _pool_overload(
    replies: list[dict[str, Any]],
    variant: str,
    seconds: float,
    capacity: float,
    p99_capacity: float,
    rate: float,
    after: Any,
    before: Any,
) -> dict[str, Any]:
    admitted = [x for r in replies for x in _floats(r["admitted"])]
    by_reason = {
        reason: [x for r in replies for x in _floats(r["refused"][reason])] for reason in REFUSALS
    }
    refused = [x for values in by_reason.values() for x in values]
    launched = sum(r["launched"] for r in replies)
    kinds: dict[str, int] = {}
    for r in replies:
        for kind, count in r["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    p99 = ms_percentile(admitted, 99)
    window = after.at - before.at
    result = {
        "variant": variant,
        "seconds": seconds,
        "capacity_rps": capacity,
        "offered_rps": round(rate, 1),
        "launched_rps": round(launched / max(r["launch_seconds"] for r in replies), 1),
        "launched": launched,
        "shed_by_client": sum(r["shed"] for r in replies),
        "launch_late_max_ms": round(max(r["late_max_s"] for r in replies) * 1000, 1),
        "peak_outstanding": sum(r["peak_outstanding"] for r in replies),
        "admitted": len(admitted),
        "admitted_rps": round(len(admitted) / seconds, 1),
        "admitted_p50_ms": ms_percentile(admitted, 50),
        "admitted_p99_ms": p99,
        "capacity_p99_ms": p99_capacity,
        "p99_ratio": round(p99 / p99_capacity, 3) if p99 and p99_capacity else None,
        "refused": len(refused),
        "refused_share": round(len(refused) / launched, 4) if launched else None,
        "refusals_p50_ms": ms_percentile(refused, 50),
        "refusals_p99_ms": ms_percentile(refused, 99),
        "by_reason": {
            reason: {
                "count": len(values),
                "share": round(len(values) / launched, 4) if launched else None,
                "p99_ms": ms_percentile(values, 99),
            }
            for reason, values in by_reason.items()
        },
        "errors": sum(r["errors"] for r in replies),
        "errors_p50_ms": ms_percentile([x for r in replies for x in _floats(r["failed"])], 50),
        "errors_p99_ms": ms_percentile([x for r in replies for x in _floats(r["failed"])], 99),
        "error_kinds": kinds,
        "error_examples": {k: v for r in replies for k, v in r.get("error_examples", {}).items()},
        "server_cores": round((after.server - before.server) / window, 3) if window else None,
    }
    log(
        f"overload ({variant}): {launched:,} launched, {len(admitted):,} admitted "
        f"(p99 {p99} ms), {len(refused):,} refused (p99 {result['refusals_p99_ms']} ms), "
        f"{result['errors']} other errors, {result['shed_by_client']} shed by the client"
    )
    return result
