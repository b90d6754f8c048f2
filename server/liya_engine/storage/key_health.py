"""Key health records (``config.health.HealthStore`` and the unit of work's
``HealthRepository``): one ``provider_health`` row per tenant and provider.

Writes are upserts that merge: each time column keeps the later of the stored
and the new value, and the failure reason and message go with the later
failure, so replicas writing the same row in any order agree on the result.
An outcome is dropped by the upsert's condition when the row describes newer
credentials than the call used (see ``config.health``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, case, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from liya_engine.config.health import Outcome, ProviderHealth
from liya_engine.storage import rows
from liya_engine.storage.availability import is_unavailable, read_rows, unavailable
from liya_engine.storage.engine import WRITE_OPTION
from liya_engine.storage.tables import ProviderHealthRow

_T = ProviderHealthRow.__table__
_KEY = ("tenant_id", "provider")
_READ = select(_T).where(_T.c.tenant_id == bindparam("tenant_id"))


def _insert(dialect: str):
    return (postgresql if dialect == "postgresql" else sqlite).insert(_T)


def _later(new, old):
    """Whether the proposed value ``new`` is set and later than the stored ``old``."""
    return and_(new.is_not(None), or_(old.is_(None), new > old))


def _merge_statement(dialect: str):
    """One upsert for every outcome, its values bound per row (executemany), so
    that a flush of many first outcomes (new tenants) compiles one statement."""
    ins = _insert(dialect).values({name: bindparam(name) for name in _COLUMNS})
    new = ins.excluded
    newer_success = _later(new.last_success_time, _T.c.last_success_time)
    newer_failure = _later(new.last_failure_time, _T.c.last_failure_time)
    return ins.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "last_success_time": case(
                (newer_success, new.last_success_time), else_=_T.c.last_success_time
            ),
            "last_failure_time": case(
                (newer_failure, new.last_failure_time), else_=_T.c.last_failure_time
            ),
            "last_failure_reason": case(
                (newer_failure, new.last_failure_reason), else_=_T.c.last_failure_reason
            ),
            "last_failure_message": case(
                (newer_failure, new.last_failure_message), else_=_T.c.last_failure_message
            ),
        },
        where=_T.c.credentials_version <= bindparam(_VERSION),
    )


_COLUMNS = tuple(rows.health_columns(Outcome("", "", 0)))
_VERSION = "outcome_config_version"  # the call's config version, not a column
_MERGE = {dialect: _merge_statement(dialect) for dialect in ("postgresql", "sqlite")}


class HealthTable:
    """Health reads and merged writes outside any config unit of work."""

    def __init__(self, engine_of) -> None:
        # A callable, read at each use: tests replace the engine to simulate an outage.
        self._engine_of = engine_of

    async def read_health(self, tenant_id: str) -> dict[str, ProviderHealth]:
        """The tenant's records by provider."""
        found = await read_rows(self._engine_of(), _READ, {"tenant_id": tenant_id})
        return {row.provider: rows.health_from_row(row) for row in found}

    async def record_health(self, outcomes: Sequence[Outcome]) -> None:
        """Merge each outcome into its record, all in one transaction."""
        if not outcomes:
            return
        engine: AsyncEngine = self._engine_of()
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    await _merge_all(conn, outcomes)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable() from None
            raise


async def _merge_all(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    params = [{**rows.health_columns(o), _VERSION: o.config_version} for o in outcomes]
    await conn.execute(_MERGE[conn.dialect.name], params)


class HealthRepository:
    """Health records inside a config unit of work: the reset that new
    credentials bring, in the same transaction as the config."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def reset(
        self,
        tenant_id: str,
        provider: str,
        *,
        credentials_version: int,
        key_set_time: datetime,
        verified_time: datetime | None,
    ) -> None:
        values = {
            "credentials_version": credentials_version,
            "key_set_time": key_set_time,
            "last_success_time": verified_time,
            "last_failure_time": None,
            "last_failure_reason": "",
            "last_failure_message": "",
        }
        ins = _insert(self._s.bind.dialect.name).values(
            tenant_id=tenant_id, provider=provider, **values
        )
        await self._s.execute(ins.on_conflict_do_update(index_elements=list(_KEY), set_=values))
