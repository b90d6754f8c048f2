"""Engine set-up, migrations, and the unit of work with its repositories.

Domain code sees ``UnitOfWork`` and its two repositories only; rows never
leave this module (they are turned into ``config.model`` objects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections import namedtuple
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, delete, event, func, select, text, tuple_, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from liya_engine.config.model import AuditEntry, ModelSettings, StoredProvider, TenantConfig
from liya_engine.errors import Conflict, StorageUnavailable
from liya_engine.storage.tables import (
    AuditEntryRow,
    MasterKeySaltRow,
    ProviderCredentialRow,
    TenantConfigRow,
)

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Connection execution option marking a transaction that will write (see _sqlite_begin).
_WRITE_OPTION = "liya_write"
PING_TIMEOUT_SECONDS = 5.0  # a database that stops answering counts as down


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


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


class Database:
    """Owns the async engine. One per process."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        url = async_url(url)
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
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        database = self.engine.url.database
        self._sqlite_reader = (
            _SqliteReader(database)
            if self.is_sqlite and database not in (None, "", ":memory:")
            else None
        )

    async def read_config(self, tenant_id: str) -> TenantConfig | None:
        """The stored config, or None: one query on a plain connection, no
        session or explicit transaction (reads need neither)."""
        if self._sqlite_reader is not None:
            return _config_from_rows(tenant_id, await self._sqlite_reader.read(tenant_id))
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(_READ_CONFIG, {"tenant_id": tenant_id})).all()
        except Exception as exc:
            if _is_unavailable(exc):
                raise _unavailable() from None
            raise
        return _config_from_rows(tenant_id, rows)

    def unit_of_work(self, *, write: bool = False) -> UnitOfWork:
        """A transaction. ``write=True`` for one that reads then writes a
        tenant's config: on SQLite it takes the write lock at BEGIN, so
        concurrent writers queue instead of failing their version check."""
        return UnitOfWork(self._sessions, write=write)

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

        async with self.engine.connect() as conn:
            # SQLite: hold the write lock from BEGIN, as PostgreSQL's advisory lock does.
            conn = await conn.execution_options(**{_WRITE_OPTION: True})
            async with conn.begin():
                return await conn.run_sync(run)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    async def salts_for(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The HKDF salt of each master key id, created on first use.

        Replicas starting together with a new key agree on one salt: the
        first insert wins and the others read it.
        """
        wanted = list(dict.fromkeys(key_ids))
        for _attempt in range(3):
            async with self._sessions() as session:
                await session.connection(execution_options={_WRITE_OPTION: True})
                rows = (
                    await session.execute(
                        select(MasterKeySaltRow).where(MasterKeySaltRow.key_id.in_(wanted))
                    )
                ).scalars()
                salts = {r.key_id: r.salt for r in rows}
                missing = [k for k in wanted if k not in salts]
                if not missing:
                    return salts
                now = datetime.now(UTC)
                for key_id in missing:
                    salts[key_id] = os.urandom(32)
                    session.add(
                        MasterKeySaltRow(key_id=key_id, salt=salts[key_id], create_time=now)
                    )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()  # another replica was first: read its salt
                    continue
                return salts
        raise RuntimeError("master key salts kept changing; retry")

    async def dispose(self) -> None:
        if self._sqlite_reader is not None:
            self._sqlite_reader.close()
        await self.engine.dispose()

    async def listen_for_changes(self, on_change, on_gap) -> ChangeListener | None:
        """On PostgreSQL, call ``on_change(tenant_id)`` for every config change
        any replica commits (LISTEN/NOTIFY), and ``on_gap()`` whenever changes
        may have been missed (the listening connection was lost). None on SQLite,
        where every writer is this process or shares no cache with it."""
        if self.is_sqlite:
            return None
        listener = ChangeListener(self.engine.url, on_change, on_gap)
        await listener.start()
        return listener


class _SqliteReader:
    """Cache-miss reads on SQLite on plain sqlite3 connections, not the async
    driver (which takes half a dozen thread hops per query).

    A read is first tried right on the event loop, on a connection that never
    waits for a lock: in WAL mode readers do not wait for writers, and a
    primary-key lookup takes tens of microseconds, less than handing it to a
    thread (about 0.2 ms). Only when the database is locked (a checkpoint, a
    recovery, a writer in exclusive mode) does the read go to the reader
    thread, whose connection waits for the busy timeout.
    """

    def __init__(self, path: str, busy_timeout: float = 30.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        dialect = sqlite_dialect.dialect()
        self._sql = str(_READ_CONFIG.compile(dialect=dialect))
        # Rows as SQLAlchemy would give them: the query's column names, and its
        # column types' own conversions (JSON text, SQLite's datetime format).
        columns = _READ_CONFIG.selected_columns
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
        try:
            return self._read_now(tenant_id)
        except sqlite3.OperationalError:
            pass  # locked (or gone): the reader thread waits, or says so
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._read_waiting, tenant_id
            )
        except sqlite3.OperationalError:
            raise _unavailable() from None

    def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None

        def close_waiting() -> None:
            if self._waiting is not None:
                self._waiting.close()

        self._executor.submit(close_waiting)
        self._executor.shutdown(wait=True)


CHANGES_CHANNEL = "liya_config_changed"


class ChangeListener:
    """A dedicated asyncpg connection LISTENing for config changes; reconnects."""

    RETRY_SECONDS = 2.0

    def __init__(self, url, on_change, on_gap) -> None:
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # The driver's own transaction handling skips BEGIN before SELECT, so a
    # read-then-write is not one transaction; _sqlite_begin emits BEGIN instead.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
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
    write = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _read_config_query():
    t, p = TenantConfigRow.__table__, ProviderCredentialRow.__table__
    return (
        select(
            t.c.version,
            t.c.mode,
            t.c.strategy,
            t.c.overrides,
            t.c.cost_limit_usd,
            t.c.update_time,
            p.c.provider,
            p.c.api_key_ciphertext,
            p.c.api_key_preview,
            p.c.default_model,
            p.c.endpoint,
            p.c.deployment_name,
            p.c.api_version,
        )
        .select_from(t.outerjoin(p, p.c.tenant_id == t.c.tenant_id))
        .where(t.c.tenant_id == bindparam("tenant_id"))
    )


# One joined query, built once: the read path of every cache miss.
_READ_CONFIG = _read_config_query()


def _config_from_rows(tenant_id: str, rows: Sequence) -> TenantConfig | None:
    if not rows:
        return None
    first = rows[0]
    providers = {
        r.provider: StoredProvider(
            api_key_ciphertext=r.api_key_ciphertext,
            api_key_preview=r.api_key_preview,
            default_model=r.default_model,
            endpoint=r.endpoint,
            deployment_name=r.deployment_name,
            api_version=r.api_version,
        )
        for r in rows
        if r.provider is not None
    }
    return TenantConfig(
        tenant_id=tenant_id,
        version=first.version,
        mode=first.mode,
        providers=providers,
        model=ModelSettings(
            strategy=first.strategy,
            overrides=dict(first.overrides or {}),
            cost_limit_usd_per_request=first.cost_limit_usd,
        ),
        update_time=_utc(first.update_time),
    )


class TenantConfigRepository:
    """Tenant configurations with their provider credentials."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, tenant_id: str, *, for_update: bool = False) -> TenantConfig | None:
        """The stored config, or None. ``for_update`` locks the tenant's row
        (PostgreSQL) until the transaction ends, so concurrent writers of one
        tenant take turns."""
        query = _READ_CONFIG
        if for_update:
            # Lock only the config row: PostgreSQL refuses FOR UPDATE on the
            # nullable side of the outer join.
            query = query.with_for_update(of=TenantConfigRow.__table__)
        rows = (await self._s.execute(query, {"tenant_id": tenant_id})).all()
        return _config_from_rows(tenant_id, rows)

    async def save(
        self, config: TenantConfig, *, previous: TenantConfig, key_ids: dict[str, str]
    ) -> None:
        """Write ``config`` if the stored version is still ``previous.version``;
        else raise ``Conflict``.

        Only the provider columns that differ from ``previous`` are written:
        rewriting an untouched ciphertext would undo a concurrent rewrap.
        ``key_ids`` maps provider -> master key id of its ciphertext.
        """
        expected_version = previous.version
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
        for name in sorted(set(previous.providers) | set(config.providers)):
            await self._save_provider(
                config.tenant_id,
                name,
                previous.providers.get(name),
                config.providers.get(name),
                key_ids.get(name),
            )
        await self._s.flush()

    async def _save_provider(
        self,
        tenant_id: str,
        name: str,
        old: StoredProvider | None,
        new: StoredProvider | None,
        key_id: str | None,
    ) -> None:
        where = (
            ProviderCredentialRow.tenant_id == tenant_id,
            ProviderCredentialRow.provider == name,
        )
        if new is None:
            await self._s.execute(delete(ProviderCredentialRow).where(*where))
            return
        columns = {
            "api_key_ciphertext": new.api_key_ciphertext,
            "api_key_preview": new.api_key_preview,
            "default_model": new.default_model,
            "endpoint": new.endpoint,
            "deployment_name": new.deployment_name,
            "api_version": new.api_version,
        }
        if old is None:
            self._s.add(
                ProviderCredentialRow(
                    tenant_id=tenant_id, provider=name, master_key_id=key_id, **columns
                )
            )
            return
        changed = {k: v for k, v in columns.items() if getattr(old, k) != v}
        if "api_key_ciphertext" in changed:
            changed["master_key_id"] = key_id
        if changed:
            result = await self._s.execute(
                update(ProviderCredentialRow).where(*where).values(**changed)
            )
            if result.rowcount != 1:
                raise Conflict(tenant_id)

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


def _is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable or busy (worth a retry)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError)


def _unavailable() -> StorageUnavailable:
    return StorageUnavailable("the configuration database is unavailable; retry shortly")


class UnitOfWork:
    """One transaction: ``async with db.unit_of_work() as uow: ...; await uow.commit()``.
    Leaving the block without ``commit`` rolls back."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, write: bool = False) -> None:
        self._sessions = sessions
        self._write = write

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        try:
            await self._session.begin()
            # Begins the transaction now, with the option _sqlite_begin reads.
            await self._session.connection(execution_options={_WRITE_OPTION: self._write})
        except BaseException as exc:
            await asyncio.shield(self._session.close())
            if _is_unavailable(exc):
                raise _unavailable() from None
            raise
        self.configs = TenantConfigRepository(self._session)
        self.audit = AuditRepository(self._session)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if self._session.in_transaction():
                await self._session.rollback()
        except Exception as cleanup:  # a dead connection fails the rollback too
            if not _is_unavailable(cleanup):
                raise
        finally:
            await asyncio.shield(self._session.close())
        if exc is not None and _is_unavailable(exc):
            raise _unavailable() from None

    async def announce_change(self, tenant_id: str) -> None:
        """Tell other replicas, when this transaction commits, that the tenant's
        config changed (PostgreSQL NOTIFY; nothing to do on SQLite)."""
        if self._session.bind.dialect.name == "postgresql":
            await self._session.execute(
                text("SELECT pg_notify(:channel, :tenant)"),
                {"channel": CHANGES_CHANNEL, "tenant": tenant_id},
            )

    async def commit(self) -> None:
        await self._session.commit()
