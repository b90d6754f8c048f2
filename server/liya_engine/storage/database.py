"""``Database``: the storage behind one URL, as the rest of the service sees it.

A small facade over the modules of this package; it implements
``config.ports.ConfigStore`` (the hot read and units of work) and
``config.ports.SaltStore`` (master key salts), ``usage.ports.UsageStore``
(the usage ledger) and ``config.health.HealthStore`` (key health), and owns
the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from liya_engine.config.health import Outcome, ProviderHealth
from liya_engine.config.model import TenantConfig
from liya_engine.storage import engine as engines
from liya_engine.storage import migrations, readiness
from liya_engine.storage.availability import read_rows
from liya_engine.storage.key_health import HealthTable
from liya_engine.storage.notify import ChangeListener
from liya_engine.storage.pg_reader import PostgresReader
from liya_engine.storage.readiness import DatabaseState
from liya_engine.storage.rows import READ_CONFIG, config_from_rows
from liya_engine.storage.salts import SaltTable
from liya_engine.storage.sqlite_reader import SqliteReader
from liya_engine.storage.unit_of_work import UnitOfWork
from liya_engine.storage.usage import UsageTable
from liya_engine.usage.ports import DailyUsage, PageKey, RollupKey, Totals

__all__ = ["ChangeListener", "Database", "UnitOfWork"]


class Database:
    """Owns the async engine. One per process.

    ``engine`` and the session factory are read at each call, never copied
    into longer-lived objects, so replacing them (as a test does to simulate
    an outage) takes effect at once.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        url = engines.async_url(url)
        self.url = url
        self.is_sqlite = engines.is_sqlite(url)
        self.engine: AsyncEngine = engines.create_engine(url, echo=echo)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        path = engines.sqlite_file(self.engine)
        self._sqlite_reader = SqliteReader(path) if path is not None else None
        dialect = self.engine.dialect.name
        self._pg_reader = PostgresReader(lambda: self.engine) if dialect == "postgresql" else None
        self._health = HealthTable(lambda: self.engine)

    async def read_config(self, tenant_id: str) -> TenantConfig | None:
        """The stored config, or None: one query, no session or explicit
        transaction (reads need neither), on the fast reader of SQLite or
        PostgreSQL (``sqlite_reader``, ``pg_reader``), else on the engine."""
        if self._sqlite_reader is not None:
            return config_from_rows(tenant_id, await self._sqlite_reader.read(tenant_id))
        if self._pg_reader is not None:
            return config_from_rows(tenant_id, await self._pg_reader.read(tenant_id))
        found = await read_rows(self.engine, READ_CONFIG, {"tenant_id": tenant_id})
        return config_from_rows(tenant_id, found)

    async def read_health(self, tenant_id: str) -> dict[str, ProviderHealth]:
        """The tenant's key health records by provider."""
        return await self._health.read_health(tenant_id)

    async def record_health(self, outcomes: Sequence[Outcome]) -> None:
        """Merge recorded call outcomes into the health records."""
        await self._health.record_health(outcomes)

    def unit_of_work(self, *, write: bool = False) -> UnitOfWork:
        """A transaction. ``write=True`` for one that reads then writes a
        tenant's config: on SQLite it takes the write lock at BEGIN, so
        concurrent writers queue instead of failing their version check."""
        return UnitOfWork(self._sessions, write=write)

    async def migrate(self) -> str:
        """Bring the schema to the latest revision; return it (see
        ``migrations.upgrade``)."""
        return await migrations.upgrade(self.engine)

    async def ping(self) -> bool:
        """Whether the database answers now and would take a write."""
        return await engines.ping(self.engine)

    async def check(self) -> DatabaseState:
        """What readiness reports: usable, unreachable or read-only (``health``)."""
        return await readiness.check(self.engine, engines.sqlite_file(self.engine))

    async def salts_for(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The HKDF salt of each master key id, created on first use."""
        return await SaltTable(self._sessions).salts_for(key_ids)

    async def add_usage(self, deltas: Mapping[RollupKey, Totals]) -> None:
        """Add a flush of the usage ledger (``storage.usage``)."""
        await UsageTable(self.engine).add_usage(deltas)

    async def month_costs(
        self, tenant_ids: Collection[str], start: date, end: date
    ) -> dict[str, float]:
        """Each tenant's stored cost in ``[start, end)``."""
        return await UsageTable(self.engine).month_costs(tenant_ids, start, end)

    async def daily_usage(
        self, tenant_id: str, start: date, end: date, *, limit: int, after: PageKey | None
    ) -> list[DailyUsage]:
        """A page of a tenant's ledger rows, newest day first."""
        return await UsageTable(self.engine).daily_usage(
            tenant_id, start, end, limit=limit, after=after
        )

    async def dispose(self) -> None:
        """Close the fast reader and every pooled connection."""
        if self._sqlite_reader is not None:
            self._sqlite_reader.close()
        if self._pg_reader is not None:
            await self._pg_reader.close()
        await self.engine.dispose()

    async def listen_for_changes(
        self, on_change: Callable[[str], None], on_gap: Callable[[], None]
    ) -> ChangeListener | None:
        """On PostgreSQL, call ``on_change(tenant_id)`` for every config change
        any replica commits (LISTEN/NOTIFY), and ``on_gap()`` whenever changes
        may have been missed (the listening connection was lost). None on SQLite,
        where every writer is this process or shares no cache with it."""
        if self.is_sqlite:
            return None
        listener = ChangeListener(self.engine.url, on_change, on_gap)
        await listener.start()
        return listener
