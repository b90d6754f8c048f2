"""The server on PostgreSQL, beside the SQLite one, in the same run.

A second ``liya-engine serve`` runs on the PostgreSQL database of
``pg_database`` (a million tenants by default) with that database's master
key; the fake, the client workers and the JWT secret are the run's. In every
round each block of G, G-cold and R on the SQLite server is paired with the
same block on the PostgreSQL server: right after it in even rounds, right
before it in odd ones (as ``tracing_ab`` alternates its two servers), so drift
on the shared machine favours neither database and the comparison is within
one run. G-cold on PostgreSQL draws from its own million cold tenants.

Outside ``Beside``'s methods the bench (its clients, CPU readings, cache
counters, cold tenant cursor) points at the SQLite server; ``Beside`` swaps
those to the PostgreSQL server for each of its blocks and back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from blocks import Block, run_block
from common import CONCURRENCY, BenchError, log
from harness import Bench, free_port, tail
from pg_database import PgDatabase
from report import block_json, fmt, summarise

SCENARIOS = ("G", "G-cold", "R")
# What the bench points at to load one server (swapped by ``Beside``).
_STATE = (
    "server",
    "server_port",
    "server_pids",
    "metrics_port",
    "server_log",
    "tenant_cursor",
    "tenant_limit",
    "cold_calls",
)
#: p50(G-cold) - p50(G) on PostgreSQL may be at most this many p50(B0) (the issue's target).
COLD_TARGET_B0 = 2.0


class Beside:
    """The PostgreSQL server of a run and its blocks."""

    def __init__(self, bench: Bench, database: PgDatabase) -> None:
        self.bench = bench
        self.database = database
        self.blocks: list[Block] = []
        self._other: dict[str, Any] = {}  # the state of the server not pointed at
        self._pointed = "sqlite"  # which server the bench's state is of
        self._connected = "sqlite"  # which server the client workers talk to
        self._cold_blocks_left = bench.args.rounds * len(CONCURRENCY)

    def start(self) -> None:
        """Start the server on PostgreSQL and warm it up; the bench points at
        the SQLite server (already started) again afterwards."""
        bench = self.bench
        main = {name: getattr(bench, name) for name in (*_STATE, "db_url", "master_keys")}
        bench.db_url, bench.master_keys = self.database.url, self.database.master_keys
        bench.server_port = free_port()
        bench.metrics_port = free_port() if bench.args.workers == 1 else None
        bench.server_log = "server-postgres.log"
        bench.tenant_cursor, bench.tenant_limit, bench.cold_calls = 0, self.database.tenants, 0
        try:
            bench.start_server()  # leaves the clients connected to it
            self._connected = "postgres"
        finally:
            if bench.server is not main["server"]:
                bench.more_servers.append(bench.server)
            self._other = {name: getattr(bench, name) for name in _STATE}
            for name, value in main.items():
                setattr(bench, name, value)
        log(
            f"PostgreSQL server pid(s) {self._other['server_pids']} on 127.0.0.1:"
            f"{self._other['server_port']} ({self.database.name}, "
            f"{self.database.tenants:,} cold tenants, PostgreSQL {self.database.server_version})"
        )
        self._use("postgres")
        try:
            self._warm_up()
        finally:
            self._point("sqlite")
        self._use("sqlite")

    def pair(
        self, scenario: str, concurrency: int, round_index: int, measure: Callable[[], Block]
    ) -> Block:
        """``measure()`` (the block on the SQLite server), with the same block
        on PostgreSQL after it in even rounds and before it in odd ones when
        ``scenario`` is one of ``SCENARIOS``; returns the SQLite block."""
        paired = scenario in SCENARIOS
        if paired and round_index % 2:
            self._block(scenario, concurrency, round_index)
        self._use("sqlite")
        block = measure()
        if paired and not round_index % 2:
            self._block(scenario, concurrency, round_index)
        return block

    def _block(self, scenario: str, concurrency: int, round_index: int) -> None:
        args = self.bench.args
        self._use("postgres")
        try:
            budget = 0
            if scenario == "G-cold":
                # An equal share for each G-cold block left and one more for a profile.
                left = self.bench.tenant_limit - self.bench.tenant_cursor
                budget = left // (self._cold_blocks_left + 1)
                self._cold_blocks_left -= 1
            block = run_block(
                self.bench,
                scenario,
                concurrency,
                warm=args.warm,
                window=args.window,
                round_no=round_index + 1,
                cold_budget=budget,
            )
        finally:
            self._point("sqlite")
        self._use("sqlite")  # what follows (a block, a profile) is the SQLite server's
        self.blocks.append(block)
        if block.exhausted:
            log(f"warning: {scenario} c{concurrency} on PostgreSQL ran out of cold tenants")

    def profiles(
        self, profile: Callable[[str, str], dict[str, Any]], scenarios: list[str]
    ) -> list[dict[str, Any]]:
        """``profile(scenario, label)`` (``run.profile``) of the PostgreSQL server
        for each of ``scenarios`` it serves, labelled ``<scenario>-postgres``."""
        taken = []
        for scenario in (s for s in scenarios if s in SCENARIOS):
            self._use("postgres")
            try:
                taken.append(profile(scenario, f"{scenario}-postgres"))
            finally:
                self._point("sqlite")
            self._use("sqlite")
        return taken

    def _warm_up(self) -> None:
        """One short block of each scenario; ``BenchError`` on any error."""
        bench = self.bench
        for scenario in SCENARIOS:
            block = run_block(
                bench,
                scenario,
                16,
                warm=0.2,
                window=max(0.5, bench.args.warm),
                cold_budget=200 * bench.args.clients,
            )
            if block.errors or not block.done:
                raise BenchError(
                    f"warm-up of {scenario} on PostgreSQL: {block.errors} errors of "
                    f"{block.calls} calls: {block.error_kinds}\n--- {bench.server_log} ---\n"
                    + tail(bench.tmp / bench.server_log)
                )

    def _point(self, which: str) -> None:
        """Point the bench's state (not the clients) at ``which`` server."""
        if which != self._pointed:
            for name in _STATE:
                mine = getattr(self.bench, name)
                setattr(self.bench, name, self._other[name])
                self._other[name] = mine
            self._pointed = which

    def _use(self, which: str) -> None:
        """Point the bench and its client workers at ``which`` server."""
        self._point(which)
        if which != self._connected:
            bench = self.bench
            job = {"op": "connect", "port": bench.server_port, "channels": bench.args.channels}
            for conn in bench.conns():
                bench.ask(conn, job)
            self._connected = which

    # -- the report --------------------------------------------------------------

    def summary(self, sqlite: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
        """The PostgreSQL figures beside ``sqlite``'s (the run's figures), the
        table, the target and the blocks, for the report and its JSON."""
        figures = {
            s: {
                c: summarise([b for b in self.blocks if b.scenario == s and b.concurrency == c])
                for c in CONCURRENCY
            }
            for s in SCENARIOS
        }
        database = self.database
        return {
            "database": database.name,
            "server_version": database.server_version,
            "tenants": database.tenants,
            "seed": database.seed,
            "scenarios": {s: {str(c): v for c, v in by_c.items()} for s, by_c in figures.items()},
            "table_markdown": render_table(sqlite, figures),
            "seed_line": describe_seed(database),
            "targets": [cold_target(figures, sqlite["B0"][1]["p50_ms"], database.tenants)],
            "blocks": [block_json(b) for b in self.blocks],
        }


def cold_target(
    figures: dict[str, dict[int, dict[str, Any]]], b0_p50: float, tenants: int
) -> dict[str, Any]:
    """The issue's target for G-cold on PostgreSQL, in the form of the report's targets."""
    measured = figures["G-cold"][1]["p50_ms"] - figures["G"][1]["p50_ms"]
    limit = COLD_TARGET_B0 * b0_p50
    return {
        "target": f"PostgreSQL, {tenants:,} tenants: p50(G-cold) - p50(G) "
        f"<= {COLD_TARGET_B0:g} x p50(B0)",
        "measured": measured,
        "limit": limit,
        "unit": "ms",
        "higher_is_better": False,
        "result": "PASS" if measured <= limit else "MISS",
    }


def render_table(
    sqlite: dict[str, dict[int, dict[str, Any]]], postgres: dict[str, dict[int, dict[str, Any]]]
) -> str:
    """G, G-cold and R on each database, side by side, as Markdown."""
    rows = [
        "| scenario | database | p50 c1 ms | p99 c1 ms | req/s c16 | req/s c64 | p99 c64 ms "
        "| server CPU ms/req (c1 / c64) | cache misses/call c64 | errors |",
        "|" + "---|" * 10,
    ]
    for scenario in SCENARIOS:
        for name, figures in (("SQLite", sqlite), ("PostgreSQL", postgres)):
            by_c = figures[scenario]
            c1, c16, c64 = by_c[1], by_c[16], by_c[64]
            rows.append(
                f"| {scenario} | {name} | {fmt(c1['p50_ms'], 3)} | {fmt(c1['p99_ms'], 3)} "
                f"| {fmt(c16['throughput_rps'], 0)} | {fmt(c64['throughput_rps'], 0)} "
                f"| {fmt(c64['p99_ms'], 2)} | {fmt(c1['server_cpu_ms_per_req'], 3)} / "
                f"{fmt(c64['server_cpu_ms_per_req'], 3)} | {fmt(c64['cache_misses_per_call'], 4)} "
                f"| {sum(by_c[c]['errors'] for c in CONCURRENCY)} |"
            )
    return "\n".join(rows)


def describe_seed(database: PgDatabase) -> str:
    """One line on how the PostgreSQL database was had: seeded now, or reused."""
    seed = database.seed
    head = (
        f"PostgreSQL {database.server_version}, database {database.name} "
        f"({database.tenants:,} cold tenants + 1 warm): "
    )
    if seed.get("reused"):
        return head + f"reused (seeded {seed.get('seeded_at')} in {seed.get('seconds')}s)."
    return head + (
        f"seeded in {seed['seconds']}s (encrypt {seed['encrypt_seconds']}s, insert "
        f"{seed['insert_seconds']}s, VACUUM ANALYZE {seed['analyse_seconds']}s)."
    )
