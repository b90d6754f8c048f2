"""The models Azure deployments reported, per tenant: the ``deployment_models``
table. Implements ``inference.learned.DeploymentModelStore``; one upsert
(``INSERT ... ON CONFLICT DO UPDATE``) writes a batch on SQLite and PostgreSQL
alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from liya_engine.storage.availability import is_unavailable, read_rows, unavailable
from liya_engine.storage.engine import WRITE_OPTION
from liya_engine.storage.tables import DeploymentModelRow

_Row = DeploymentModelRow
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class DeploymentModelTable:
    """``deployment_models`` on the engine ``engine()`` returns at each call
    (read then, so a replaced engine takes effect at once)."""

    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine

    async def read(self, tenant_id: str) -> dict[str, str]:
        """The tenant's deployments and the model each last reported."""
        query = select(_Row.deployment, _Row.model).where(_Row.tenant_id == tenant_id)
        found = await read_rows(self._engine(), query)
        return {deployment: model for deployment, model in found}

    async def write(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """Insert or replace (tenant, deployment, model) entries, in one statement."""
        if not entries:
            return
        engine = self._engine()
        now = datetime.now(UTC)
        insert = _INSERTS[engine.dialect.name](_Row)
        statement = insert.on_conflict_do_update(
            index_elements=[_Row.tenant_id, _Row.deployment],
            set_={"model": insert.excluded.model, "update_time": insert.excluded.update_time},
        )
        values = [
            {"tenant_id": t, "deployment": d, "model": m, "update_time": now} for t, d, m in entries
        ]
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    await conn.execute(statement, values)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable() from None
            raise
