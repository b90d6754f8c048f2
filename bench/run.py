"""Benchmark of the Liya Engine service on loopback (``make bench``).

Everything runs on this machine and talks over 127.0.0.1 only:

* the fake providers (``liya-engine fake-providers``) in their own process,
  measured alone first with plain httpx POSTs (scenario F);
* the service (``liya-engine serve``) in its own process, on a fresh SQLite file
  (or a scratch PostgreSQL database with ``--postgres``) seeded with one warm
  tenant and ``--tenants`` cold ones before it starts;
* client worker processes (``--clients``, spawned, each one asyncio loop) that
  generate the load, so the client is not one saturated core.

Scenarios, run interleaved in rounds (every scenario at every concurrency in each
round, in an order that changes from round to round, each target's pair side by
side) so that drift on a shared machine hits all alike:

    B0      grpc.health.v1.Health/Check on the service: the gRPC floor
    B1      the official OpenAI SDK (one reused AsyncOpenAI, max_retries=0,
            its default HTTP client) straight at the fake: the SDK + HTTP
            floor of a caller using the SDK directly (``--b1-aiohttp``: on the
            SDK's aiohttp client, the transport the service itself uses)
    G       InferenceService/Complete through the service, warm tenant
    G-cold  Complete, each call from a tenant never seen before
    R       ConfigService/GetMaskedConfig, warm tenant
    S1      the SDK's own stream straight at the fake (20 deltas, then usage)
    S       InferenceService/CompleteStream through the service, warm tenant

For each: p50/p99 latency at concurrency 1; throughput and p99 at 16 and 64;
CPU per request of the server, the fake and the clients (from /proc); the
server's RSS. Then RSS before and after ``--rss-tenants`` distinct tenants made
a call; after the rounds H (1,000 streams held open) and overload at twice G's
capacity (``hold_overload``); the issue's targets as ratios, tables, and JSON
under bench/results/.
``--profile`` samples the server with py-spy during an extra G block.
``--tracing`` (``--ledger``) runs instead warm G blocks alternately with tracing
(the usage ledger) off and on, on two servers (``tracing_ab``, ``ledger_ab``);
``--overload-only`` the overload phase alone, on one or two (``overload_ab``).

This module is the orchestration (command line, phases, order of the blocks);
``harness`` (processes), ``loadgen`` (load loops), ``blocks`` (one measured
block), ``seeding``, ``procstats`` (CPU, RSS, profiles) and ``report`` do the
rest. ``python bench/run.py --help`` lists the knobs; bench/README.md explains
the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import hold_overload
import ledger_ab
import overload_ab
import tracing_ab
from blocks import Block, run_block, run_count
from common import (
    CONCURRENCY,
    DIRECT,
    RESULTS_DIR,
    RSS_TARGET_TENANTS,
    SCENARIOS,
    BenchError,
    block_order,
    log,
)
from harness import Bench, tail
from procstats import machine_info, profile_server
from report import Results, summarise, write_report
from seeding import create_pg_database, seed_database


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with the defaults of a full run or of ``--quick`` filled in."""
    p = argparse.ArgumentParser(description="Benchmark the service (see bench/README.md).")
    p.add_argument("--quick", action="store_true", help="a short smoke run (1-2 minutes)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    p.add_argument("--window", type=float, help="measured seconds per block (default 3; quick 1)")
    p.add_argument(
        "--warm", type=float, help="unmeasured ramp seconds per block (default 0.5; quick 0.3)"
    )
    p.add_argument(
        "--tenants",
        type=int,
        help="cold tenants seeded in the database (default 100000; quick 20000)",
    )
    p.add_argument(
        "--rss-tenants",
        type=int,
        help="distinct tenants that call before the second RSS reading (default 10000; quick 1000)",
    )
    p.add_argument("--workers", type=int, default=1, help="serve --workers N (default 1)")
    p.add_argument(
        "--b1-aiohttp",
        action="store_true",
        help="B1 on the SDK's aiohttp client instead of its default (httpx2) one",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the server, e.g. LIYA_EVENT_LOOP=uvloop (repeatable)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=max(2, len(os.sched_getaffinity(0))),
        help="client worker processes (default: one per core, at least 2)",
    )
    p.add_argument("--channels", type=int, default=2, help="gRPC channels per client process")
    p.add_argument(
        "--postgres",
        metavar="URL",
        help="postgresql+asyncpg://user@host/db: run on a scratch database created "
        "on that server (dropped afterwards) instead of SQLite",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const="G",
        metavar="SCENARIOS",
        help="py-spy the server during an extra block of each scenario after the measured "
        "rounds (comma-separated; default G)",
    )
    p.add_argument("--profile-seconds", type=float, help="default 10; quick 4")
    p.add_argument(
        "--profile-native", action="store_true", help="py-spy --native: C/Cython frames too"
    )
    p.add_argument(
        "--tracing",
        action="store_true",
        help="only the tracing cost: warm G blocks, tracing off and on alternately "
        "(rounds 4, quick 2; window 3, quick 1.5; ramp 0.2)",
    )
    p.add_argument("--ledger", action="store_true", help="only the ledger's cost, as --tracing")
    hold_overload.add_arguments(p)
    overload_ab.add_arguments(p)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, db)")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "rounds": 1 if quick else 3,
        "window": 1.0 if quick else 3.0,
        "warm": 0.3 if quick else 0.5,
        "tenants": 20_000 if quick else 100_000,
        "rss_tenants": 1_000 if quick else RSS_TARGET_TENANTS,
        "profile_seconds": 4.0 if quick else 10.0,
    }
    if args.overload_only:  # the overload runs use 128 cold tenants each
        defaults.update(tenants=2_000, rss_tenants=1)
    if args.tracing or args.ledger:
        # Pairs of blocks; a short ramp, since spans of the ramp's calls are
        # exported (and charged) in the window; only the warm tenant is called.
        defaults.update(
            rounds=2 if quick else 4,
            window=1.5 if quick else 3.0,
            warm=0.2,
            tenants=100,
            rss_tenants=1,
        )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.clients < 1 or args.channels < 1 or args.rounds < 1 or args.workers < 1:
        p.error("--clients, --channels, --rounds and --workers must be at least 1")
    if args.profile and not set(args.profile.split(",")) <= set(SCENARIOS) - set(DIRECT):
        p.error("--profile takes scenarios of the server: B0, G, G-cold, R, S")
    if args.rss_tenants >= args.tenants:
        p.error("--rss-tenants must be below --tenants")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0, 1 on a ``BenchError``, 130 on ^C."""
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = datetime.now(UTC)
    bench = Bench(args)
    try:
        if args.tracing or args.ledger:
            return run_ab(bench, stamp, ledger_ab if args.ledger else tracing_ab)
        if args.overload_only:
            return overload_ab.run(bench, stamp, seed_phase)
        return run(bench, stamp, started)
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.close()


def run(bench: Bench, stamp: str, started: datetime) -> int:
    """The phases of a run, in order, then the report."""
    args = bench.args
    machine = machine_info()
    log(
        f"{machine['nproc']} cores ({machine['cpu_model']}), Python {machine['python']}, "
        f"grpcio {machine['grpcio']}; load average {machine['load_average_at_start']}"
    )
    seed = seed_phase(bench)  # 1. the database, seeded before the server exists
    fake_alone = fake_phase(bench)  # 2. the fake alone, measured first
    bench.start_server()  # 3. the server
    log(
        f"server pid(s) {bench.server_pids} on 127.0.0.1:{bench.server_port} "
        f"({args.workers} worker(s), {'PostgreSQL' if args.postgres else 'SQLite'})"
    )
    warm_up(bench)  # 4. every scenario once; any error stops the run here
    rss = rss_phase(bench)  # 5. RSS from 0 to N active tenants
    profiled = args.profile.split(",") if args.profile else []
    after_rounds = hold_overload.prepare(bench)  # their tenants, set aside first
    blocks = run_rounds(bench, "G-cold" in profiled)  # 6. the interleaved rounds
    figures = {
        s: {
            c: summarise([b for b in blocks if b.scenario == s and b.concurrency == c])
            for c in CONCURRENCY
        }
        for s in SCENARIOS
    }
    # 7. Profile (after the measured rounds, so it perturbs none of them).
    profiles = [profile(bench, stamp, s) for s in profiled]
    mem_end = bench.server_memory()
    rss["peak_mb"] = round(mem_end["VmHWM"] / 1024, 1)
    rss["final_mb"] = round(mem_end["VmRSS"] / 1024, 1)
    rss["cold_tenants_called"] = bench.cold_calls
    streaming = after_rounds(figures)  # 8. H and overload, last (H resets the peak RSS)
    # 9. Report.
    results = Results(args, stamp, started, machine, seed, fake_alone, figures, rss, blocks)
    write_report(replace(results, profiles=profiles, streaming=streaming))
    return 0


def run_ab(bench: Bench, stamp: str, ab: Any) -> int:
    """``--tracing`` or ``--ledger``: the database, the fake and the clients,
    then the comparison (``ab``: ``tracing_ab`` or ``ledger_ab``)."""
    seed_phase(bench)
    bench.start_fake()
    bench.start_clients()
    figures = ab.compare(bench)
    ab.report(figures, None if bench.args.no_save else RESULTS_DIR, stamp)
    return 0


def seed_phase(bench: Bench) -> dict[str, Any]:
    """Create the database and seed it with the settings the server will get."""
    from liya_engine.errors import SettingsError
    from liya_engine.settings import Settings

    args = bench.args
    if args.postgres:
        name, bench.db_url = asyncio.run(create_pg_database(args.postgres))
        bench.scratch_pg = name
    else:
        bench.db_url = f"sqlite+aiosqlite:///{bench.tmp / 'bench.db'}"
    try:
        settings = Settings.from_env(bench.server_env())
    except SettingsError as exc:
        raise BenchError(f"the server's settings: {exc}") from None
    log(f"seeding {args.tenants:,} cold tenants + 1 warm tenant")
    seed = asyncio.run(seed_database(settings, bench.warm_key, args.tenants))
    log(
        f"seeded {seed['tenants']:,} tenants in {seed['seconds']}s "
        f"({seed['tenants_per_second']:,.0f}/s; encrypt {seed['encrypt_seconds']}s, "
        f"insert {seed['insert_seconds']}s)"
    )
    return seed


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


def run_rounds(bench: Bench, profile_cold: bool) -> list[Block]:
    """Every scenario at every concurrency, ``--rounds`` times, in ``block_order``.

    The cold tenants left are shared evenly among the G-cold blocks, less a
    reserve for a G-cold profile after the rounds (``profile_cold``).
    """
    args = bench.args
    blocks: list[Block] = []
    cold_blocks_left = args.rounds * len(CONCURRENCY)
    reserve = min(args.tenants // 5, int(1_500 * args.profile_seconds)) if profile_cold else 0
    total = args.rounds * len(CONCURRENCY) * len(SCENARIOS)
    log(f"{total} blocks of {args.warm}+{args.window}s in {args.rounds} round(s)")
    for r in range(args.rounds):
        for c in CONCURRENCY:
            for scenario in block_order(r):
                budget = 0
                if scenario == "G-cold":
                    budget = (args.tenants - reserve - bench.tenant_cursor) // cold_blocks_left
                    cold_blocks_left -= 1
                block = run_block(
                    bench,
                    scenario,
                    c,
                    warm=args.warm,
                    window=args.window,
                    round_no=r + 1,
                    cold_budget=budget,
                )
                blocks.append(block)
                if block.exhausted:
                    log(f"warning: {scenario} c{c} ran out of cold tenants; its req/s is low")
        log(f"round {r + 1}/{args.rounds} done")
    return blocks


def profile(bench: Bench, stamp: str, scenario: str) -> dict[str, Any]:
    """Sample the server with py-spy during an extra block of ``scenario`` at c16."""
    args = bench.args

    def during() -> float:
        budget = (args.tenants - bench.tenant_cursor) if scenario == "G-cold" else 0
        block = run_block(
            bench, scenario, 16, warm=0.2, window=args.profile_seconds, cold_budget=budget
        )
        return block.done / block.window

    return profile_server(
        bench.server.pid if bench.server else 0,
        # With --no-save the profile goes to the temporary directory (see --keep).
        folder=bench.tmp if args.no_save else RESULTS_DIR,
        stamp=stamp,
        scenario=scenario,
        seconds=args.profile_seconds,
        subprocesses=args.workers > 1,
        native=args.profile_native,
        during=during,
    )


if __name__ == "__main__":
    sys.exit(main())
