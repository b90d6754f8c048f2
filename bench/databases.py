"""The databases of a run, made before any server starts: the SQLite file of
the main server (or, for ``--tracing``/``--ledger`` with ``--postgres``, a
scratch PostgreSQL database dropped at the end), seeded afresh every run; and
the PostgreSQL database of the server beside it (``pg_database``), reused
from run to run while its seed marker matches.
"""

from __future__ import annotations

import asyncio
from typing import Any

from common import BenchError, log
from harness import Bench
from pg_database import DEFAULT_SERVER, PgDatabase, prepare
from seeding import create_pg_database, seed_database


def seed_phase(bench: Bench, *, scratch_postgres: bool = False) -> dict[str, Any]:
    """Create the main server's database and seed it with the settings the
    server will get; on a scratch database of ``--postgres`` if
    ``scratch_postgres``, else on a SQLite file."""
    from liya_engine.errors import SettingsError
    from liya_engine.settings import Settings

    args = bench.args
    if scratch_postgres:
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


def postgres_phase(bench: Bench) -> PgDatabase | None:
    """The PostgreSQL database of the server beside the SQLite one (None with
    ``--no-postgres``): reused, or seeded now with ``--pg-tenants`` tenants."""
    args = bench.args
    if args.no_postgres:
        return None
    server = args.postgres or DEFAULT_SERVER
    return asyncio.run(prepare(server, args.pg_tenants, bench.server_env()))
