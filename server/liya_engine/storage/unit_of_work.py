"""The unit of work: one transaction with its repositories, implementing
``config.ports.UnitOfWork``. Driver errors that mean the database cannot serve
(``availability``) leave it as ``StorageUnavailable``."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from liya_engine.storage import notify
from liya_engine.storage.availability import is_unavailable, unavailable
from liya_engine.storage.engine import WRITE_OPTION
from liya_engine.storage.key_health import HealthRepository
from liya_engine.storage.repositories import AuditRepository, TenantConfigRepository


class UnitOfWork:
    """One transaction: ``async with db.unit_of_work() as uow: ...; await uow.commit()``.
    Leaving the block without ``commit`` rolls back."""

    configs: TenantConfigRepository
    audit: AuditRepository
    health: HealthRepository

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, write: bool = False) -> None:
        self._sessions = sessions
        self._write = write

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        try:
            await self._session.begin()
            # Begins the transaction now, with the option engine._sqlite_begin reads.
            await self._session.connection(execution_options={WRITE_OPTION: self._write})
        except BaseException as exc:
            await asyncio.shield(self._session.close())
            if is_unavailable(exc):
                raise unavailable() from None
            raise
        self.configs = TenantConfigRepository(self._session)
        self.audit = AuditRepository(self._session)
        self.health = HealthRepository(self._session)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if self._session.in_transaction():
                await self._session.rollback()
        except Exception as cleanup:  # a dead connection fails the rollback too
            if not is_unavailable(cleanup):
                raise
        finally:
            await asyncio.shield(self._session.close())
        if exc is not None and is_unavailable(exc):
            raise unavailable() from None

    async def announce_change(self, tenant_id: str) -> None:
        """Tell other replicas, when this transaction commits, that the tenant's
        config changed (PostgreSQL NOTIFY; nothing to do on SQLite)."""
        if self._session.bind.dialect.name == "postgresql":
            await notify.announce(self._session, tenant_id)

    async def commit(self) -> None:
        """Make the unit's writes durable (and deliver its announcements);
        ``StorageUnavailable`` when the database cannot, so the domain inside
        the block never sees a driver error for an outage."""
        try:
            await self._session.commit()
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable() from None
            raise
