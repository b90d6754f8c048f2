"""Benchmark of the Liya Engine service on loopback (``make bench``).

The fake providers, the service and client worker processes run on this
machine and talk over 127.0.0.1 only. The service runs on a fresh SQLite file
seeded with one warm tenant and ``--tenants`` cold ones, and a second one on
PostgreSQL (``--pg-tenants``, a million, seeded once and reused:
``pg_database``), whose G, G-cold and R blocks are paired with the SQLite
server's (``pg_side``). The scenarios (B0, B1, G, G-cold, R, S1, S:
bench/README.md says what each is) run interleaved in rounds, every scenario at
every concurrency in each round, each target's pair side by side, so that drift
on a shared machine hits all alike; after the rounds come H (1,000 streams held
open) and overload at twice G's capacity (``hold_overload``). Results go where
``saving`` says (the ignored bench/results/local/, or kept with ``--save``).
``--tracing`` (``--ledger``, ``--health``, ``--ab-baseline DIR``) runs instead
warm G blocks alternately with tracing (the usage ledger, key health, this
code) off and on, on two servers (``tracing_ab``, ``feature_ab``);
``--overload-only`` the overload phase alone, on one or two (``overload_ab``).

This module is the orchestration (command line, phases, order of the blocks);
``harness`` (processes), ``loadgen`` (load loops), ``blocks`` (one measured
block), ``phases`` (those before the rounds), ``databases``, ``seeding``,
``pg_database``, ``pg_side``, ``procstats`` (CPU, RSS, profiles), ``report``
and ``saving`` do the rest. ``python bench/run.py --help`` lists the knobs; bench/README.md explains
the figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import feature_ab
import hold_overload
import overload_ab
import saving
import tracing_ab
from blocks import Block, run_block
from common import (
    CONCURRENCY,
    DIRECT,
    RSS_TARGET_TENANTS,
    SCENARIOS,
    BenchError,
    block_order,
    log,
)
from databases import postgres_phase, seed_phase
from harness import Bench
from pg_database import DEFAULT_SERVER, DEFAULT_TENANTS
from pg_side import Beside
from phases import fake_phase, rss_phase, warm_up
from procstats import machine_info, profile_server
from report import Results, summarise, write_report


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
        help=f"the PostgreSQL server (any database on it; default {DEFAULT_SERVER}): "
        "its bench database is created there; with --tracing and the A/B runs, they run on a "
        "scratch database there (dropped afterwards) instead of SQLite",
    )
    p.add_argument(
        "--pg-tenants",
        type=int,
        default=DEFAULT_TENANTS,
        help="cold tenants of the PostgreSQL database (default 1000000; seeded once, reused)",
    )
    p.add_argument(
        "--no-postgres", action="store_true", help="SQLite only: no server on PostgreSQL"
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
    p.add_argument("--health", action="store_true", help="only key health's cost, as --tracing")
    p.add_argument(
        "--ab-baseline",
        metavar="DIR",
        help="only this checkout's server against the one in DIR (same schema), as --tracing",
    )
    p.add_argument(
        "--ab-scenario",
        choices=("G", "R", "S"),
        help="the blocks --tracing, --ledger, --health and --ab-baseline alternate: warm G "
        "(default), R (GetMaskedConfig) or S, streams (server CPU per stream of 20 chunks)",
    )
    hold_overload.add_arguments(p)
    overload_ab.add_arguments(p)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, db)")
    p.add_argument(
        "--save",
        action="store_true",
        help="keep a full run: its JSON in bench/results/ and its tables in README.md "
        "(else results go to the ignored bench/results/local/)",
    )
    p.add_argument("--no-save", action="store_true", help="write no results at all")
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
    if args.tracing or ab_feature(args):
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
    if args.save and (
        args.quick or args.no_save or args.tracing or ab_feature(args) or args.overload_only
    ):
        p.error("--save keeps full runs only: not with --quick, --no-save or an A/B run")
    if args.pg_tenants < 1:
        p.error("--pg-tenants must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0, 1 on a ``BenchError``, 130 on ^C."""
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = datetime.now(UTC)
    bench = Bench(args)
    try:
        if args.tracing or ab_feature(args):
            return run_ab(bench, stamp, ab_feature(args))
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
    seed = seed_phase(bench)  # 1. the databases, seeded before the servers exist
    pg_database = postgres_phase(bench)
    fake_alone = fake_phase(bench)  # 2. the fake alone, measured first
    bench.start_server()  # 3. the server
    log(
        f"server pid(s) {bench.server_pids} on 127.0.0.1:{bench.server_port} "
        f"({args.workers} worker(s), SQLite)"
    )
    warm_up(bench)  # 4. every scenario once; any error stops the run here
    beside = Beside(bench, pg_database) if pg_database else None
    if beside:
        beside.start()  # the server on PostgreSQL, warmed up likewise
    rss = rss_phase(bench)  # 5. RSS from 0 to N active tenants
    profiled = args.profile.split(",") if args.profile else []
    after_rounds = hold_overload.prepare(bench)  # their tenants, set aside first
    blocks = run_rounds(bench, "G-cold" in profiled, beside)  # 6. the interleaved rounds
    figures = {
        s: {
            c: summarise([b for b in blocks if b.scenario == s and b.concurrency == c])
            for c in CONCURRENCY
        }
        for s in SCENARIOS
    }
    # 7. Profile (after the measured rounds, so it perturbs none of them).
    profiles = [profile(bench, stamp, s) for s in profiled]
    if beside:
        profiles += beside.profiles(functools.partial(profile, bench, stamp), profiled)
    mem_end = bench.server_memory()
    rss["peak_mb"] = round(mem_end["VmHWM"] / 1024, 1)
    rss["final_mb"] = round(mem_end["VmRSS"] / 1024, 1)
    rss["cold_tenants_called"] = bench.cold_calls
    streaming = after_rounds(figures)  # 8. H and overload, last (H resets the peak RSS)
    # 9. Report.
    results = Results(args, stamp, started, machine, seed, fake_alone, figures, rss, blocks)
    results = replace(results, profiles=profiles, streaming=streaming)
    results.postgres = beside.summary(figures) if beside else None
    write_report(results)
    return 0


def ab_feature(args: argparse.Namespace) -> feature_ab.Feature | None:
    """The part of the warm path ``--ledger``, ``--health`` or ``--ab-baseline`` measures."""
    if args.ab_baseline:
        return feature_ab.baseline(args.ab_baseline)
    return feature_ab.LEDGER if args.ledger else feature_ab.HEALTH if args.health else None


def run_ab(bench: Bench, stamp: str, feature: feature_ab.Feature | None) -> int:
    """``--tracing`` (``feature`` None), ``--ledger``, ``--health``, ``--ab-baseline``:
    the database, the fake and the clients, then the comparison."""
    seed_phase(bench, scratch_postgres=bool(bench.args.postgres))
    bench.start_fake()
    bench.start_clients()
    folder = saving.folder(bench.args)
    if feature is None:
        tracing_ab.report(tracing_ab.compare(bench), folder, stamp)
    else:
        feature_ab.report(feature, feature_ab.compare(bench, feature), folder, stamp)
    return 0


def run_rounds(bench: Bench, profile_cold: bool, beside: Beside | None) -> list[Block]:
    """Every scenario at every concurrency, ``--rounds`` times, in ``block_order``,
    each block paired with its twin on PostgreSQL by ``beside`` (if any).

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
                measure = functools.partial(
                    run_block,
                    bench,
                    scenario,
                    c,
                    warm=args.warm,
                    window=args.window,
                    round_no=r + 1,
                    cold_budget=budget,
                )
                block = beside.pair(scenario, c, r, measure) if beside else measure()
                blocks.append(block)
                if block.exhausted:
                    log(f"warning: {scenario} c{c} ran out of cold tenants; its req/s is low")
        log(f"round {r + 1}/{args.rounds} done")
    return blocks


def profile(bench: Bench, stamp: str, scenario: str, label: str = "") -> dict[str, Any]:
    """Sample the server with py-spy during an extra block of ``scenario`` at c16
    (``label``, default ``scenario``, names the files)."""
    args = bench.args

    def during() -> float:
        budget = (bench.tenant_limit - bench.tenant_cursor) if scenario == "G-cold" else 0
        block = run_block(
            bench, scenario, 16, warm=0.2, window=args.profile_seconds, cold_budget=budget
        )
        return block.done / block.window

    return profile_server(
        bench.server.pid if bench.server else 0,
        # With --no-save the profile goes to the temporary directory (see --keep).
        folder=saving.folder(args) or bench.tmp,
        stamp=stamp,
        scenario=label or scenario,
        seconds=args.profile_seconds,
        subprocesses=args.workers > 1,
        native=args.profile_native,
        during=during,
    )


if __name__ == "__main__":
    sys.exit(main())
