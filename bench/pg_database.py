"""The bench's PostgreSQL database: ``--pg-tenants`` tenants (a million by
default), seeded once and reused by later runs while its seed marker matches.

Seeding a million tenants takes a couple of minutes, so the database persists
between runs under a fixed name (``liya_bench_1m``). A one-row marker table,
``bench_seed``, says what was seeded: ``SEED_VERSION`` (bumped whenever what
seeding writes changes), the schema revision, the tenant count and the master
key id. The master key line and the warm tenant's key are kept next to the
local results, in an ignored file (``bench/results/local/postgres/<db>.json``,
mode 0600): a later run's server needs that master key to decrypt the stored
provider keys. Keeping it in a file is safe because nothing in that database
is anyone's: the master key is generated for the bench at seeding time, the
tenants' "provider keys" are random strings valid nowhere, and the only
upstream the bench's servers call is the fake on loopback.

The database is reused only when the marker matches, the tenant count is
right and the kept master key decrypts the warm tenant's stored key (the key
file and the database belong together); otherwise it is dropped and seeded
again. Before reuse, the tables that calls write (usage ledger, key health,
deployment models, audit) are emptied: every run starts from the seeded state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, WARM_TENANT, BenchError, log
from seeding import seed_database

#: Bump when what seeding writes changes: databases of another version are seeded again.
SEED_VERSION = 1
DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_TENANTS = 1_000_000
MASTER_KEY_ID = "bench-1"
MARKER_TABLE = "bench_seed"
# What the bench's calls write; emptied before a database is reused.
CALL_WRITTEN_TABLES = ("usage_daily", "provider_health", "deployment_models", "audit_entries")
KEYS_DIR = RESULTS_DIR / "local" / "postgres"


@dataclass
class PgDatabase:
    """A seeded database: where it is, the secrets its server needs, how it was had."""

    name: str
    url: str
    tenants: int
    master_keys: str = field(repr=False)
    warm_key: str = field(repr=False)
    seed: dict[str, Any]
    server_version: str = ""


def database_name(tenants: int) -> str:
    """``liya_bench_1m`` for a million tenants, ``liya_bench_20k``, ``liya_bench_5``."""
    for unit, suffix in ((1_000_000, "m"), (1_000, "k")):
        if tenants >= unit and tenants % unit == 0:
            return f"liya_bench_{tenants // unit}{suffix}"
    return f"liya_bench_{tenants}"


def schema_head() -> str:
    """The newest migration's revision: a database seeded under another is reseeded."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from liya_engine.storage.migrations import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def expected_marker(tenants: int) -> dict[str, Any]:
    """The marker a database must carry to be reused for ``tenants`` tenants."""
    return {
        "seed_version": SEED_VERSION,
        "schema_revision": schema_head(),
        "tenants": tenants,
        "master_key_id": MASTER_KEY_ID,
    }


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@contextlib.asynccontextmanager
async def _connect(url: str) -> AsyncIterator[Any]:
    import asyncpg
    from sqlalchemy.engine import make_url

    try:
        conn = await asyncpg.connect(_plain(url), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise BenchError(
            f"PostgreSQL at {shown} is unreachable ({exc}); start it, "
            "name another server with --postgres URL, or run with --no-postgres"
        ) from None
    try:
        yield conn
    finally:
        await conn.close()


async def prepare(
    server: str,
    tenants: int,
    env: Mapping[str, str],
    *,
    name: str | None = None,
    keys_dir: Path = KEYS_DIR,
) -> PgDatabase:
    """The database for ``tenants`` tenants on the PostgreSQL ``server`` (a URL
    naming any database there): reused if it matches, else seeded afresh.

    ``env`` is the environment the server will get (everything but the
    database URL and the master keys, which are the database's own). ``name``
    defaults to ``database_name(tenants)``.
    """
    name = name or database_name(tenants)
    url = server.rsplit("/", 1)[0] + f"/{name}"
    keys_file = keys_dir / f"{name}.json"
    async with _connect(server) as admin:
        version = await admin.fetchval("SHOW server_version")
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    kept = await asyncio.to_thread(_read_keys, keys_file)
    reason = await _why_not_reusable(url, tenants, env, kept) if exists else "new"
    if reason is None and kept is not None:
        database = PgDatabase(name, url, tenants, *kept, seed=await _reuse(url))
    else:
        if exists:
            log(f"PostgreSQL database {name} is seeded again: {reason}")
        database = await _seed(server, name, url, tenants, env, keys_file)
    database.server_version = version
    return database


def _settings(env: Mapping[str, str], url: str, master_keys: str) -> Any:
    from liya_engine.errors import SettingsError
    from liya_engine.settings import Settings

    try:
        return Settings.from_env({**env, "LIYA_DATABASE_URL": url, "LIYA_MASTER_KEYS": master_keys})
    except SettingsError as exc:
        raise BenchError(f"the PostgreSQL server's settings: {exc}") from None


def _read_keys(keys_file: Path) -> tuple[str, str] | None:
    """(master key line, warm tenant's key) kept for a database, if any."""
    if not keys_file.exists():
        return None
    kept = json.loads(keys_file.read_text())
    return kept["master_keys"], kept["warm_key"]


def _write_keys(keys_file: Path, master_keys: str, warm_key: str) -> None:
    keys_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"master_keys": master_keys, "warm_key": warm_key}, out)


async def _why_not_reusable(
    url: str, tenants: int, env: Mapping[str, str], kept: tuple[str, str] | None
) -> str | None:
    """None if the database at ``url`` can be reused as it is; else why not."""
    import asyncpg

    from liya_engine.bootstrap import build_cipher
    from liya_engine.errors import KeyDecryptionFailed
    from liya_engine.storage.database import Database

    async with _connect(url) as conn:
        try:
            row = await conn.fetchrow(f"SELECT marker FROM {MARKER_TABLE}")  # noqa: S608
        except asyncpg.UndefinedTableError:
            row = None
        if row is None:
            return "no seed marker (an earlier seeding did not finish)"
        marker = json.loads(row["marker"])
        wanted = expected_marker(tenants)
        if any(marker.get(k) != v for k, v in wanted.items()):
            return f"its marker is { ({k: marker.get(k) for k in wanted}) }, not {wanted}"
        count = await conn.fetchval("SELECT count(*) FROM tenant_configs")
        if count != tenants + 1:
            return f"{count:,} tenants stored, not {tenants + 1:,}"
    if kept is None:
        return "its master key file is gone"
    master_keys, warm_key = kept
    db = Database(url)
    try:
        cipher = await build_cipher(_settings(env, url, master_keys), db)
        config = await db.read_config(WARM_TENANT)
        blob = config.providers["openai"].api_key_ciphertext if config else None
        if blob is None:
            return "no warm tenant"
        try:
            plain = cipher.decrypt(blob, tenant_id=WARM_TENANT, provider="openai", field="api_key")
        except KeyDecryptionFailed:
            return "the kept master key does not decrypt its keys"
        return None if plain.reveal() == warm_key else "the warm tenant's key is not the kept one"
    finally:
        await db.dispose()


async def _reuse(url: str) -> dict[str, Any]:
    """Empty what calls wrote; the seeding record of the reused database."""
    async with _connect(url) as conn:
        await conn.execute(f"TRUNCATE {', '.join(CALL_WRITTEN_TABLES)}")
        marker = json.loads(await conn.fetchval(f"SELECT marker FROM {MARKER_TABLE}"))  # noqa: S608
    seeded = marker.get("seed", {})
    log(
        f"PostgreSQL: reusing {url.rsplit('/', 1)[1]} ({marker['tenants']:,} tenants, "
        f"seeded {marker.get('seeded_at')} in {seeded.get('seconds')}s)"
    )
    return {**seeded, "reused": True, "seeded_at": marker.get("seeded_at")}


async def _seed(
    server: str, name: str, url: str, tenants: int, env: Mapping[str, str], keys_file: Path
) -> PgDatabase:
    """Create ``name`` afresh, seed it with new secrets, then mark it."""
    from liya_engine.crypto.cipher import generate_master_key_line

    async with _connect(server) as admin:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    master_keys = generate_master_key_line(MASTER_KEY_ID)
    warm_key = "sk-proj-benchwarm" + secrets.token_hex(16)
    # Written before seeding: a database whose seeding finished always has its key.
    await asyncio.to_thread(_write_keys, keys_file, master_keys, warm_key)
    log(f"PostgreSQL: seeding {name} with {tenants:,} cold tenants + 1 warm tenant")
    started = time.perf_counter()
    seed = await seed_database(_settings(env, url, master_keys), warm_key, tenants, shuffled=True)
    async with _connect(url) as conn:
        analyse_started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")  # the planner's statistics, the visibility map
        seed["analyse_seconds"] = round(time.perf_counter() - analyse_started, 2)
        seed["seconds"] = round(time.perf_counter() - started, 2)
        marker = {
            **expected_marker(tenants),
            "seeded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": seed,
        }
        await conn.execute(f"CREATE TABLE {MARKER_TABLE} (marker text NOT NULL)")
        await conn.execute(f"INSERT INTO {MARKER_TABLE} VALUES ($1)", json.dumps(marker))  # noqa: S608
    log(
        f"PostgreSQL: seeded {seed['tenants']:,} tenants in {seed['seconds']}s "
        f"(encrypt {seed['encrypt_seconds']}s, insert {seed['insert_seconds']}s, "
        f"VACUUM ANALYZE {seed['analyse_seconds']}s)"
    )
    return PgDatabase(name, url, tenants, master_keys, warm_key, seed={**seed, "reused": False})
