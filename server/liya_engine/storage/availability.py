"""Which driver errors mean the database cannot serve the call right now, the
one ``StorageUnavailable`` they become (STORAGE_UNAVAILABLE, retryable), and
``read_mapped``, the one way a read runs (mapped so, and retried once on a
connection the server had ended): ``read_rows`` on the engine, the PostgreSQL
fast reader on its own pool.

Two kinds of evidence:

- the driver's own classes: SQLAlchemy's ``OperationalError`` and
  ``InterfaceError`` (SQLite's locked, read-only or full database; a dropped
  connection), an invalidated connection, OS errors and timeouts, and
  asyncpg's errors for a connection that was lost or that the server left in
  a broken state (the PostgreSQL fast reader uses asyncpg directly);
- PostgreSQL's SQLSTATE, which asyncpg keeps on its exceptions and SQLAlchemy
  on the error it wraps them in (``orig.sqlstate``). asyncpg maps most states
  to a generic error class, so the state is what says "unavailable". The
  classes and codes below are PostgreSQL's (Appendix A of its manual).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from liya_engine.errors import StorageUnavailable

T = TypeVar("T")

#: SQLSTATE classes (first two characters) that mean the server cannot serve now.
UNAVAILABLE_CLASSES = frozenset(
    {
        "08",  # connection exception: refused, dropped, rejected at connect
        "53",  # insufficient resources: 53100 disk full, 53200 out of memory,
        #        53300 too many connections
        "55",  # object not in prerequisite state: 55000 database not accepting
        #        connections, 55P03 lock not available, 55006 object in use
        "57",  # operator intervention: 57P01 admin shutdown, 57P02 crash
        #        shutdown, 57P03 cannot connect now (starting up, shutting down,
        #        in recovery), 57014 statement cancelled by a timeout
        "58",  # system error: 58030 I/O error on the server
    }
)
#: Single SQLSTATEs outside those classes that mean the same.
UNAVAILABLE_STATES = frozenset(
    {
        "25006",  # read-only SQL transaction: a standby after a failover, or
        #          default_transaction_read_only set by the operator
        "3D000",  # invalid catalog name: the database is gone (dropped, not
        #          restored yet)
    }
)
_CHAIN_LIMIT = 8  # how far to follow wrapped errors for a SQLSTATE


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable, busy or read-only
    (worth a retry, not a bug)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return True  # asyncpg found the connection in a state the server left it in
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True  # asyncpg on a connection that was lost (``pg_reader``)
    state = sqlstate(exc)
    return state is not None and (state[:2] in UNAVAILABLE_CLASSES or state in UNAVAILABLE_STATES)


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind ``exc``, if any: on the exception itself
    (asyncpg), on the driver error SQLAlchemy wraps (``orig``), or on what it
    was raised from."""
    seen: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if seen is None:
            return None
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and len(state) == 5:
            return state
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else seen.__cause__
    return None


def unavailable() -> StorageUnavailable:
    """The error a caller sees for any of those."""
    return StorageUnavailable("the configuration database is unavailable; retry shortly")


async def read_rows(
    engine: AsyncEngine, statement: Any, params: Mapping[str, Any] | None = None
) -> Sequence[Any]:
    """The rows of the read ``statement`` on a pooled connection of ``engine``;
    an unavailable database raises ``unavailable()``.

    The pool does not ping connections (``engine.create_engine``): a read that
    finds one the server ended (a restart, a failover) runs once more, and by
    then SQLAlchemy has invalidated the whole pool, so on a new connection.
    """
    return await read_mapped(lambda: _rows(engine, statement, params), again=_invalidated)


async def read_mapped(read: Callable[[], Awaitable[T]], *, again: Callable[[Exception], bool]) -> T:
    """``read()``, run once more when ``again(exc)`` says its failure was a
    connection the server had ended; an unavailable database raises
    ``unavailable()``. The one retry-and-mapping of every storage read."""
    try:
        try:
            return await read()
        except Exception as exc:
            if not again(exc):
                raise
            return await read()
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable() from None
        raise


def _invalidated(exc: Exception) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def _rows(engine: AsyncEngine, statement: Any, params: Mapping[str, Any] | None) -> Sequence:
    async with engine.connect() as conn:
        return (await conn.execute(statement, params)).all()
