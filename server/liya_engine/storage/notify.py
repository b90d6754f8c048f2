"""PostgreSQL LISTEN/NOTIFY: how replicas learn that another one changed a
tenant's config. A unit of work announces a change (delivered at commit); each
server's ``ChangeListener`` hears it on a dedicated connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "liya_config_changed"
_NOTIFY = text("SELECT pg_notify(:channel, :tenant)")


async def announce(session: AsyncSession, tenant_id: str) -> None:
    """Queue a notification naming ``tenant_id``; PostgreSQL sends it when the
    session's transaction commits, and drops it on rollback."""
    await session.execute(_NOTIFY, {"channel": CHANGES_CHANNEL, "tenant": tenant_id})


class ChangeListener:
    """A dedicated asyncpg connection LISTENing for config changes; reconnects.

    ``on_change(tenant_id)`` runs for every announced change; ``on_gap()`` runs
    whenever the connection was found lost, since changes may have been missed.
    """

    RETRY_SECONDS = 2.0

    def __init__(
        self, url: URL, on_change: Callable[[str], None], on_gap: Callable[[], None]
    ) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_change = on_change
        self._on_gap = on_gap
        self._conn = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._watch())

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn, timeout=10)
        await conn.add_listener(CHANGES_CHANNEL, self._notified)
        self._conn = conn

    def _notified(self, _conn, _pid, _channel, payload: str) -> None:
        self._on_change(payload)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.RETRY_SECONDS)
            if self._conn is not None and not self._conn.is_closed():
                continue
            self._on_gap()  # notifications may have been lost while disconnected
            with contextlib.suppress(Exception):
                await self._connect()
                log.info("listening for config changes again")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
