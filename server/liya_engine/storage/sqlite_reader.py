"""The fast read path on SQLite: cache-miss reads on plain ``sqlite3``
connections instead of the async driver (which takes half a dozen thread hops
per query).

A read is first tried right on the event loop, on a connection that never
waits for a lock: in WAL mode readers do not wait for writers, and a
primary-key lookup takes tens of microseconds, less than handing it to a thread
(about 0.2 ms). Only when the database is locked (a checkpoint, a recovery, a
writer in exclusive mode) does the read go to the reader thread, whose
connection waits for the busy timeout.

It runs the row mapper's ``READ_CONFIG`` and returns rows shaped as SQLAlchemy
would return them, for ``rows.config_from_rows``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.dialects import sqlite as sqlite_dialect

from liya_engine.storage.availability import unavailable
from liya_engine.storage.engine import SQLITE_BUSY_TIMEOUT_SECONDS
from liya_engine.storage.rows import READ_CONFIG


class SqliteReader:
    """Runs ``READ_CONFIG`` on one SQLite file; ``close()`` when done."""

    def __init__(self, path: str, busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        dialect = sqlite_dialect.dialect()
        self._sql = str(READ_CONFIG.compile(dialect=dialect))
        # Rows as SQLAlchemy would give them: the query's column names, and its
        # column types' own conversions (JSON text, SQLite's datetime format).
        columns = READ_CONFIG.selected_columns
        self._row = namedtuple("ConfigRow", [c.key for c in columns])  # type: ignore[misc]
        self._convert = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liya-read")
        self._inline: sqlite3.Connection | None = None
        self._waiting: sqlite3.Connection | None = None

    def _rows(self, conn: sqlite3.Connection, tenant_id: str) -> list[tuple]:
        rows = conn.execute(self._sql, (tenant_id,)).fetchall()
        return [
            self._row(*(f(v) if f else v for f, v in zip(self._convert, r, strict=True)))
            for r in rows
        ]

    def _connect(self, busy_timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(
            self._path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _read_now(self, tenant_id: str) -> list[tuple]:
        if self._inline is None:
            self._inline = self._connect(0)
        return self._rows(self._inline, tenant_id)

    def _read_waiting(self, tenant_id: str) -> list[tuple]:
        if self._waiting is None:
            self._waiting = self._connect(self._busy_timeout)
        return self._rows(self._waiting, tenant_id)

    async def read(self, tenant_id: str) -> list[tuple]:
        """The rows of ``tenant_id``'s config; ``StorageUnavailable`` when the
        file stays locked past the busy timeout or cannot be read."""
        try:
            return self._read_now(tenant_id)
        except sqlite3.OperationalError:
            pass  # locked (or gone): the reader thread waits, or says so
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._read_waiting, tenant_id
            )
        except sqlite3.OperationalError:
            raise unavailable() from None

    def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None

        def close_waiting() -> None:
            if self._waiting is not None:
                self._waiting.close()

        self._executor.submit(close_waiting)
        self._executor.shutdown(wait=True)
