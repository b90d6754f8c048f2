"""The report of the streaming scenarios (S, S1), H and overload: their tables
and their targets from the performance issue, as ratios within the run.

``report`` appends these to its own tables and targets; the figures of S and
S1 are in ``figures`` like every scenario's (their latency is the time to
first delta, their req/s streams a second), H's and overload's in the dict
``hold_overload`` returns.
"""

from __future__ import annotations

import math
from typing import Any

from common import STREAM_CHUNKS

Figures = dict[str, dict[int, dict[str, Any]]]
HOLD_TARGET_STREAMS = 1000


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def per_chunk_us(figures: Figures, scenario: str, concurrency: int) -> float | None:
    """Server CPU per relayed chunk, in µs: per stream / ``STREAM_CHUNKS``."""
    per_stream = figures[scenario][concurrency]["server_cpu_ms_per_req"]
    return round(per_stream * 1000 / STREAM_CHUNKS, 1) if per_stream is not None else None


def stream_table(figures: Figures) -> str:
    """S and S1: time to first delta, streams/s, server CPU per stream and per chunk."""
    rows = [
        f"Streams ({STREAM_CHUNKS} deltas each, usage at the end; latency = time to first delta):",
        "",
        "| scenario | TTFT p50 c1 ms | TTFT p99 c1 ms | streams/s c16 | streams/s c64 "
        "| TTFT p99 c64 ms | server CPU ms/stream c64 | server CPU µs/chunk c64 | errors |",
        "|" + "---|" * 9,
    ]
    for name in ("S1", "S"):
        by_c = figures[name]
        direct = name == "S1"
        cpu = "-" if direct else _fmt(by_c[64]["server_cpu_ms_per_req"], 3)
        chunk = "-" if direct else _fmt(per_chunk_us(figures, name, 64), 1)
        rows.append(
            f"| {name} | {_fmt(by_c[1]['p50_ms'], 3)} | {_fmt(by_c[1]['p99_ms'], 3)} "
            f"| {_fmt(by_c[16]['throughput_rps'], 0)} | {_fmt(by_c[64]['throughput_rps'], 0)} "
            f"| {_fmt(by_c[64]['p99_ms'], 2)} | {cpu} | {chunk} "
            f"| {sum(by_c[c]['errors'] for c in by_c)} |"
        )
    return "\n".join(rows)


def hold_table(hold: dict[str, Any]) -> str:
    """H as one row."""
    return "\n".join(
        [
            f"H: {hold['streams']:,} CompleteStream calls launched {hold['launch_rate']} a "
            f"second ({hold['launch_s']} s taken), {hold['tenants']} tenants, "
            f"{hold['chunk_delay_s']} s between chunks after the first delta:",
            "",
            "| OK | errors | in flight in the server (peak) | open at the fake (peak) "
            "| TTFT p50 ms | TTFT p99 ms | TTFT max ms | stream s (p50) | RSS before MB "
            "| RSS peak MB | RSS growth MB | server CPU ms/stream |",
            "|" + "---|" * 12,
            f"| {_fmt(hold['ok'])} | {hold['errors']} | {_fmt(hold['server_in_flight_peak'])} "
            f"| {_fmt(hold['fake_open_peak'])} | {_fmt(hold['ttft_p50_ms'], 1)} "
            f"| {_fmt(hold['ttft_p99_ms'], 1)} | {_fmt(hold['ttft_max_ms'], 1)} "
            f"| {_fmt(hold['duration_p50_s'])} | {_fmt(hold['rss_before_mb'], 1)} "
            f"| {_fmt(hold['rss_peak_mb'], 1)} | {_fmt(hold['rss_growth_mb'], 1)} "
            f"| {_fmt(hold['server_cpu_ms_per_stream'], 3)} |",
        ]
        + ([f"H errors: {hold['error_kinds']}"] if hold["error_kinds"] else [])
    )


def overload_table(runs: list[dict[str, Any]]) -> str:
    """Overload, one row per run (warm tenant, spread)."""
    rows = [
        "Overload (open loop; offered = factor x G's req/s at c64; shares of the calls launched):",
        "",
        "| load | offered/s | launched/s | admitted | admitted p99 ms | G p99 c64 ms "
        "| ratio | SERVER_OVERLOADED | CONCURRENCY_LIMIT_EXCEEDED | refusals p99 ms "
        "| other errors (p99 ms) | shed by client | server cores |",
        "|" + "---|" * 13,
    ]
    for run in runs:
        by = run["by_reason"]
        shares = [
            f"{_fmt(by[r]['count'])} ({_fmt((by[r]['share'] or 0) * 100, 1)}%)"
            for r in ("SERVER_OVERLOADED", "CONCURRENCY_LIMIT_EXCEEDED")
        ]
        rows.append(
            f"| {run['variant']} | {_fmt(run['offered_rps'], 0)} | {_fmt(run['launched_rps'], 0)} "
            f"| {_fmt(run['admitted'])} | {_fmt(run['admitted_p99_ms'], 1)} "
            f"| {_fmt(run['capacity_p99_ms'], 1)} | {_fmt(run['p99_ratio'])} "
            f"| {shares[0]} | {shares[1]} | {_fmt(run['refusals_p99_ms'], 2)} "
            f"| {_fmt(run['errors'])} ({_fmt(run['errors_p99_ms'], 1)}) "
            f"| {_fmt(run['shed_by_client'])} | {_fmt(run['server_cores'])} |"
        )
    for run in runs:
        if run["error_kinds"]:
            rows.append(f"Overload ({run['variant']}) errors: {run['error_kinds']}")
            rows.append(f"Overload ({run['variant']}) one of each: {run.get('error_examples')}")
        if run.get("server_handled"):
            handled = ", ".join(f"{k} {v:,}" for k, v in sorted(run["server_handled"].items()))
            rows.append(f"Overload ({run['variant']}) ended by the service's handlers: {handled}")
    return "\n".join(rows)


def tables(figures: Figures, streaming: dict[str, Any]) -> str:
    """Every table of this module, as Markdown."""
    parts = [stream_table(figures)]
    if streaming.get("hold"):
        parts.append(hold_table(streaming["hold"]))
    if streaming.get("overload"):
        parts.append(overload_table(streaming["overload"]))
    return "\n\n".join(parts)


def _target(name: str, measured: Any, limit: float, unit: str, higher: bool) -> dict[str, Any]:
    value = float("nan") if measured is None else float(measured)
    ok = value >= limit if higher else value <= limit
    return {
        "target": name,
        "measured": value,
        "limit": limit,
        "unit": unit,
        "higher_is_better": higher,
        "result": "n/a" if math.isnan(value) else "PASS" if ok else "MISS",
    }


def targets(figures: Figures, streaming: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for S, H and overload."""
    b0_p50 = figures["B0"][1]["p50_ms"]
    b0_cpu = figures["B0"][64]["server_cpu_ms_per_req"] or float("nan")
    thr = {s: figures[s][64]["throughput_rps"] for s in ("S", "S1")}
    chunk = per_chunk_us(figures, "S", 64)
    ratio = thr["S"] / thr["S1"] if thr["S1"] else None
    out = [
        _target(
            "p50 TTFT(S) - p50 TTFT(S1) <= 1 x p50(B0)",
            figures["S"][1]["p50_ms"] - figures["S1"][1]["p50_ms"],
            b0_p50,
            "ms",
            False,
        ),
        _target(
            "server CPU per relayed chunk (S, c64) <= 0.3 x B0's per call (c64)",
            None if chunk is None else chunk / 1000 / b0_cpu,
            0.3,
            "x B0",
            False,
        ),
        _target("streams/s c64: S >= 0.8 x S1", ratio, 0.8, "x S1", True),
    ]
    pairs = zip(
        figures["S"][64]["throughput_rps_per_round"],
        figures["S1"][64]["throughput_rps_per_round"],
        strict=False,
    )
    out[-1]["per_round"] = [round(a / b, 3) if b else float("nan") for a, b in pairs]
    hold = streaming.get("hold")
    if hold:
        label = f"H: {hold['streams']:,} open streams"
        all_ok = _target(f"{label} all OK", hold["ok"], float(hold["streams"]), "OK", True)
        if hold["streams"] < HOLD_TARGET_STREAMS:
            all_ok["result"] = "n/a"  # the target is for 1,000 at once
        out += [
            all_ok,
            _target(f"{label}: RSS growth <= 100 MB", hold["rss_growth_mb"], 100.0, "MB", False),
            _target(f"{label}: TTFT p99 <= 50 ms", hold["ttft_p99_ms"], 50.0, "ms", False),
        ]
    for run in streaming.get("overload", []):
        name = f"overload {run['variant']}"
        out += [
            _target(
                f"{name}: admitted p99 <= 3 x p99 at capacity (G c64)",
                run["p99_ratio"],
                3.0,
                "x",
                False,
            ),
            _target(f"{name}: refusals p99 <= 5 ms", run["refusals_p99_ms"], 5.0, "ms", False),
        ]
    return out
