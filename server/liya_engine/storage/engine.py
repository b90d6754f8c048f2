"""The async engine: database URLs, engine creation, SQLite's connection set-up,
ping (a readiness check that writes can succeed too: ``readiness``).

SQLite needs two hooks on every connection: WAL mode (readers never wait for a
writer) and an explicit BEGIN, whose kind a transaction chooses through the
``WRITE_OPTION`` execution option.
"""

from __future__ import annotations

import time

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from liya_engine.storage import readiness

# Connection execution option marking a transaction that will write: on SQLite
# it begins with BEGIN IMMEDIATE, taking the write lock at once (see _sqlite_begin).
WRITE_OPTION = "liya_write"
SQLITE_BUSY_TIMEOUT_SECONDS = 30

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def async_url(url: str) -> str:
    """``url`` with the async driver this service uses when it names none:
    operators often paste a plain ``postgresql://`` URL."""
    scheme, sep, rest = url.partition("://")
    return f"{_ASYNC_DRIVERS.get(scheme, scheme)}{sep}{rest}" if sep else url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """The process's engine for ``url`` (already an async URL), with SQLite's
    per-connection set-up installed."""
    kwargs: dict = {"echo": echo}
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    else:
        # No pre-ping: it is a round trip before every statement, about as
        # much again as the hot read itself. A connection the server dropped
        # (a restart, a failover) is found when used instead; SQLAlchemy then
        # invalidates the whole pool, and a read runs once more
        # (``availability.read_rows``).
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=False)
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The path of the SQLite file behind ``engine``; None for an in-memory
    SQLite database or any other backend."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    return None if database in (None, "", ":memory:") else database


async def ping(engine: AsyncEngine) -> bool:
    """Whether the database answers within ``readiness.PING_TIMEOUT_SECONDS`` and
    would take a write (``readiness.check``)."""
    return await readiness.check(engine, sqlite_file(engine)) is readiness.DatabaseState.USABLE


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # The driver's own transaction handling skips BEGIN before SELECT, so a
    # read-then-write is not one transaction; _sqlite_begin emits BEGIN instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    # Switching a new file to WAL needs a moment alone with it, and SQLite does
    # not wait for that: processes starting together on one file retry.
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:  # the driver's OperationalError, wrapped or not
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
