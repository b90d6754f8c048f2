"""The fast read path on PostgreSQL: cache-miss reads on asyncpg's own pool
instead of through SQLAlchemy's async engine.

A primary-key read through the engine costs about 0.9 ms of CPU on the bench
machine (the greenlet hop, the pool's checkout and reset, the result's
processing) where asyncpg alone takes 0.13 ms: most of what a cold call on
PostgreSQL cost over one on SQLite. Everything else (writes, units of work,
key health, the ledger, migrations) stays on the engine.

- **The same query and rows:** it runs the row mapper's ``READ_CONFIG``,
  compiled by the engine's dialect, and returns rows shaped as SQLAlchemy
  returns them (attribute access by column name), JSON decoded as the
  dialect decodes it, for ``rows.config_from_rows``.
- **The same connection:** the engine's dialect turns its URL into asyncpg's
  connect arguments (host, port, user, password, database, ``ssl``...), and
  the URL's ``prepared_statement_cache_size`` sizes asyncpg's statement cache
  (0 behind a pooler in transaction mode), as it does for the engine.
- **The same failures:** what ``availability.is_unavailable`` calls unavailable
  becomes ``StorageUnavailable``, after one more try on a fresh connection
  (a connection the server ended: a restart, a failover; asyncpg's pool
  replaces a connection that broke).
- **It follows the engine:** the pool is opened on the first read, for the
  engine ``Database`` holds then; when that engine is replaced, the next read
  opens a pool for the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import namedtuple
from collections.abc import Callable

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from liya_engine.storage.availability import is_unavailable, read_mapped
from liya_engine.storage.rows import READ_CONFIG

#: Connections the read pool holds at most, beside the engine's own pool.
POOL_SIZE = 10
#: The longest a read waits for a pooled connection (the engine's default
#: ``pool_timeout``); past it the read is STORAGE_UNAVAILABLE.
ACQUIRE_TIMEOUT_SECONDS = 30.0
#: An idle connection is closed after this long (asyncpg's default).
IDLE_SECONDS = 300.0


class PostgresReader:
    """Runs ``READ_CONFIG`` on asyncpg's pool for ``engine()``; ``close()`` when done."""

    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self._pool: asyncpg.Pool | None = None
        self._pool_engine: AsyncEngine | None = None
        self._opening = asyncio.Lock()
        self._sql = ""
        columns = READ_CONFIG.selected_columns
        self._row = namedtuple("ConfigRow", [c.key for c in columns])  # type: ignore[misc]

    async def read(self, tenant_id: str) -> list[tuple]:
        """The rows of ``tenant_id``'s config; ``StorageUnavailable`` when the
        database cannot answer."""
        return await read_mapped(lambda: self._read(tenant_id), again=_ended)

    async def _read(self, tenant_id: str) -> list[tuple]:
        pool = await self._current_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT_SECONDS) as conn:
            try:
                records = await conn.fetch(self._sql, tenant_id)
            except BaseException:
                # A connection whose read failed is never given back for reuse:
                # its state is unknown, and no reset query would find out. One
                # the server ended mid-read asyncpg has already taken out of
                # the pool, and its proxy refuses every call with
                # InterfaceError: nothing left to terminate, and the read's own
                # failure is what the caller must see.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
                raise
        row = self._row
        return [row(*record) for record in records]

    async def _current_pool(self) -> asyncpg.Pool:
        engine = self._engine()
        if self._pool is not None and self._pool_engine is engine:
            return self._pool
        async with self._opening:
            if self._pool is None or self._pool_engine is not engine:
                await self._open(engine)
        assert self._pool is not None
        return self._pool

    async def _open(self, engine: AsyncEngine) -> None:
        stale, self._pool = self._pool, None
        if stale is not None:
            stale.terminate()  # the engine it served was replaced
        _args, connect = engine.dialect.create_connect_args(engine.url)
        cache_size = connect.pop("prepared_statement_cache_size", None)
        if cache_size is not None:
            connect["statement_cache_size"] = int(cache_size)
        self._sql = str(READ_CONFIG.compile(dialect=engine.dialect))
        self._pool = await asyncpg.create_pool(
            min_size=0,
            max_size=POOL_SIZE,
            max_inactive_connection_lifetime=IDLE_SECONDS,
            init=_decode_json,
            reset=_nothing_to_reset,
            **connect,
        )
        self._pool_engine = engine

    async def close(self) -> None:
        """Close the pool's connections (waiting for reads under way)."""
        pool, self._pool, self._pool_engine = self._pool, None, None
        if pool is not None:
            await pool.close()


def _ended(exc: Exception) -> bool:
    """Whether a failed read is worth once more on a fresh connection: the
    database looked unavailable, but not because the pool stayed busy or no
    connection opened in time (waiting again would double the wait)."""
    return is_unavailable(exc) and not isinstance(exc, TimeoutError)


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """What the pool runs on a connection given back: nothing. asyncpg's default
    is a reset query (advisory locks, cursors, LISTEN, settings): a round trip
    after every read, for state that a single SELECT never leaves."""


async def _decode_json(conn: asyncpg.Connection) -> None:
    """JSON columns as Python values, as SQLAlchemy's asyncpg dialect decodes them."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )
