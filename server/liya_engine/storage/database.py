"""Engine set-up, migrations, and the unit of work with its repositories.

Domain code sees ``UnitOfWork`` and its two repositories only; rows never
leave this module (they are turned into ``config.model`` objects).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, event, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from liya_engine.config.model import AuditEntry, ModelSettings, StoredProvider, TenantConfig
from liya_engine.storage.tables import (
    AuditEntryRow,
    MasterKeySaltRow,
    ProviderCredentialRow,
    TenantConfigRow,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PING_TIMEOUT_SECONDS = 5.0  # a database that stops answering counts as down


class Conflict(Exception):
    """The row changed (or appeared) since it was read: an optimistic write lost."""


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Database:
    """Owns the async engine. One per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self._sessions)

    async def migrate(self) -> str:
        """Bring the schema to the latest revision; return it.

        On PostgreSQL an advisory lock makes replicas that start together
        migrate one after the other.
        """
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        def run(sync_conn) -> str:
            if sync_conn.dialect.name == "postgresql":
                sync_conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7316044415)")
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")
            return MigrationContext.configure(sync_conn).get_current_revision() or ""

        async with self.engine.begin() as conn:
            return await conn.run_sync(run)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    async def salts_for(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The HKDF salt of each master key id, created on first use."""
        wanted = list(dict.fromkeys(key_ids))
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(MasterKeySaltRow).where(MasterKeySaltRow.key_id.in_(wanted))
                )
            ).scalars()
            salts = {r.key_id: r.salt for r in rows}
            for key_id in wanted:
                if key_id in salts:
                    continue
                session.add(
                    MasterKeySaltRow(
                        key_id=key_id, salt=os.urandom(32), create_time=datetime.now(UTC)
                    )
                )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()  # another replica created it first
                row = await session.get(MasterKeySaltRow, key_id, populate_existing=True)
                assert row is not None
                salts[key_id] = row.salt
        return salts

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class TenantConfigRepository:
    """Tenant configurations with their provider credentials."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, tenant_id: str) -> TenantConfig | None:
        row = await self._s.get(TenantConfigRow, tenant_id, populate_existing=True)
        if row is None:
            return None
        creds = (
            await self._s.execute(
                select(ProviderCredentialRow).where(ProviderCredentialRow.tenant_id == tenant_id)
            )
        ).scalars()
        providers = {
            c.provider: StoredProvider(
                api_key_ciphertext=c.api_key_ciphertext,
                api_key_preview=c.api_key_preview,
                default_model=c.default_model,
                endpoint=c.endpoint,
                deployment_name=c.deployment_name,
                api_version=c.api_version,
            )
            for c in creds
        }
        return TenantConfig(
            tenant_id=row.tenant_id,
            version=row.version,
            mode=row.mode,
            providers=providers,
            model=ModelSettings(
                strategy=row.strategy,
                overrides=dict(row.overrides or {}),
                cost_limit_usd_per_request=row.cost_limit_usd,
            ),
            update_time=_utc(row.update_time),
        )

    async def version_of(self, tenant_id: str) -> int | None:
        return (
            await self._s.execute(
                select(TenantConfigRow.version).where(TenantConfigRow.tenant_id == tenant_id)
            )
        ).scalar_one_or_none()

    async def save(
        self, config: TenantConfig, *, expected_version: int, key_ids: dict[str, str]
    ) -> None:
        """Write ``config`` (whose version is ``expected_version + 1``) if the
        stored version is still ``expected_version``; else raise ``Conflict``.

        ``key_ids`` maps provider -> master key id of its ciphertext.
        """
        values = dict(
            version=config.version,
            mode=config.mode,
            strategy=config.model.strategy,
            overrides=dict(config.model.overrides),
            cost_limit_usd=config.model.cost_limit_usd_per_request,
            update_time=config.update_time,
        )
        if expected_version == 0:
            self._s.add(TenantConfigRow(tenant_id=config.tenant_id, **values))
            try:
                await self._s.flush()
            except IntegrityError:
                raise Conflict(config.tenant_id) from None
        else:
            result = await self._s.execute(
                update(TenantConfigRow)
                .where(
                    TenantConfigRow.tenant_id == config.tenant_id,
                    TenantConfigRow.version == expected_version,
                )
                .values(**values)
            )
            if result.rowcount != 1:
                raise Conflict(config.tenant_id)
        await self._s.execute(
            delete(ProviderCredentialRow).where(ProviderCredentialRow.tenant_id == config.tenant_id)
        )
        for name, p in config.providers.items():
            self._s.add(
                ProviderCredentialRow(
                    tenant_id=config.tenant_id,
                    provider=name,
                    api_key_ciphertext=p.api_key_ciphertext,
                    master_key_id=key_ids.get(name),
                    api_key_preview=p.api_key_preview,
                    default_model=p.default_model,
                    endpoint=p.endpoint,
                    deployment_name=p.deployment_name,
                    api_version=p.api_version,
                )
            )
        await self._s.flush()

    async def stale_ciphertexts(
        self, primary_key_id: str, limit: int, after: tuple[str, str] | None = None
    ) -> Sequence[tuple[str, str, bytes]]:
        """Up to ``limit`` (tenant, provider, ciphertext) not under the primary
        key, ordered, starting after the ``(tenant, provider)`` pair ``after``."""
        query = select(
            ProviderCredentialRow.tenant_id,
            ProviderCredentialRow.provider,
            ProviderCredentialRow.api_key_ciphertext,
        ).where(
            ProviderCredentialRow.api_key_ciphertext.is_not(None),
            (ProviderCredentialRow.master_key_id != primary_key_id)
            | ProviderCredentialRow.master_key_id.is_(None),
        )
        if after is not None:
            query = query.where(
                tuple_(ProviderCredentialRow.tenant_id, ProviderCredentialRow.provider)
                > tuple_(*after)
            )
        rows = await self._s.execute(
            query.order_by(ProviderCredentialRow.tenant_id, ProviderCredentialRow.provider).limit(
                limit
            )
        )
        return [(t, p, c) for t, p, c in rows.all()]

    async def replace_ciphertext(
        self, tenant_id: str, provider: str, old: bytes, new: bytes, key_id: str
    ) -> bool:
        """Swap ``old`` for ``new`` only if the row still holds ``old``: a
        concurrent key update wins over a rewrap."""
        result = await self._s.execute(
            update(ProviderCredentialRow)
            .where(
                ProviderCredentialRow.tenant_id == tenant_id,
                ProviderCredentialRow.provider == provider,
                ProviderCredentialRow.api_key_ciphertext == old,
            )
            .values(api_key_ciphertext=new, master_key_id=key_id)
        )
        return result.rowcount == 1

    async def count_by_master_key(self) -> dict[str, int]:
        rows = await self._s.execute(
            select(ProviderCredentialRow.master_key_id, func.count())
            .where(ProviderCredentialRow.api_key_ciphertext.is_not(None))
            .group_by(ProviderCredentialRow.master_key_id)
        )
        return {k or "": n for k, n in rows.all()}


class AuditRepository:
    """Append-only audit entries."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(
        self,
        *,
        tenant_id: str,
        actor: str,
        request_id: str,
        create_time: datetime,
        changed_paths: Sequence[str],
        mode_before: str,
        mode_after: str,
    ) -> None:
        self._s.add(
            AuditEntryRow(
                tenant_id=tenant_id,
                actor=actor,
                request_id=request_id,
                create_time=create_time,
                changed_paths=list(changed_paths),
                mode_before=mode_before,
                mode_after=mode_after,
            )
        )
        await self._s.flush()

    async def list(self, tenant_id: str, *, limit: int, before_id: int | None) -> list[AuditEntry]:
        query = select(AuditEntryRow).where(AuditEntryRow.tenant_id == tenant_id)
        if before_id is not None:
            query = query.where(AuditEntryRow.id < before_id)
        rows = await self._s.execute(query.order_by(AuditEntryRow.id.desc()).limit(limit))
        return [
            AuditEntry(
                id=r.id,
                tenant_id=r.tenant_id,
                actor=r.actor,
                request_id=r.request_id,
                create_time=_utc(r.create_time),
                changed_paths=tuple(r.changed_paths),
                mode_before=r.mode_before,
                mode_after=r.mode_after,
            )
            for r in rows.scalars()
        ]


class UnitOfWork:
    """One transaction: ``async with db.unit_of_work() as uow: ...; await uow.commit()``.
    Leaving the block without ``commit`` rolls back."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        await self._session.begin()
        self.configs = TenantConfigRepository(self._session)
        self.audit = AuditRepository(self._session)
        return self

    async def __aexit__(self, *exc_info) -> None:
        try:
            if self._session.in_transaction():
                await self._session.rollback()
        finally:
            await asyncio.shield(self._session.close())

    async def commit(self) -> None:
        await self._session.commit()
