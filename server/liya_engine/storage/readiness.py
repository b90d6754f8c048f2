"""The readiness check behind gRPC health: can the database serve calls,
writes included, right now?

Answering ``SELECT 1`` is not enough: a PostgreSQL standby (what a failover
leaves the service on until it reconnects), a server with
``default_transaction_read_only`` set, or a SQLite file that became read-only
all answer reads while every config change would fail. So the check also asks
whether a write could succeed:

- PostgreSQL: ``transaction_read_only`` of a fresh transaction (``on`` on a
  standby and under ``default_transaction_read_only``), read without taking
  any lock;
- SQLite: whether the process may write the database file and its directory
  (where the journal and WAL files live), which also sees a read-only mount.
"""

from __future__ import annotations

import asyncio
import enum
import os

from sqlalchemy.ext.asyncio import AsyncEngine

PING_TIMEOUT_SECONDS = 5.0  # a database that stops answering counts as down


class DatabaseState(enum.Enum):
    """What the check found."""

    USABLE = "usable"
    UNREACHABLE = "unreachable"  # no answer (refused, dropped, too slow, an error)
    READ_ONLY = "read-only"  # answers, but would refuse writes


async def check(engine: AsyncEngine, sqlite_path: str | None) -> DatabaseState:
    """The database's state, within ``PING_TIMEOUT_SECONDS``; ``sqlite_path``
    is the SQLite file behind ``engine`` (None: not a SQLite file)."""
    postgres = engine.dialect.name == "postgresql"
    try:
        async with asyncio.timeout(PING_TIMEOUT_SECONDS), engine.connect() as conn:
            if postgres:
                read_only = (await conn.exec_driver_sql("SHOW transaction_read_only")).scalar()
            else:
                await conn.exec_driver_sql("SELECT 1")
                read_only = "off"
    except Exception:
        return DatabaseState.UNREACHABLE
    if read_only != "off" or (sqlite_path is not None and not _writable_file(sqlite_path)):
        return DatabaseState.READ_ONLY
    return DatabaseState.USABLE


def _writable_file(path: str) -> bool:
    directory = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(directory, os.W_OK)
