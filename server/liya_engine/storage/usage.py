"""The stored usage ledger (``usage_daily``): it implements
``usage.ports.UsageStore``.

A flush is one transaction of ``INSERT ... ON CONFLICT DO UPDATE`` adding each
key's deltas to its row (SQLAlchemy's SQLite and PostgreSQL inserts, the same
statement on both), keys in sorted order so that replicas flushing the same
rows at once take their locks in the same order and never deadlock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from liya_engine.storage.availability import is_unavailable, read_rows, unavailable
from liya_engine.storage.engine import WRITE_OPTION
from liya_engine.storage.tables import UsageDailyRow
from liya_engine.usage.ports import DailyUsage, PageKey, RollupKey, Totals

_T = UsageDailyRow.__table__
KEY_COLUMNS = ("tenant_id", "usage_date", "provider", "model", "intent", "mode")
TOTAL_COLUMNS = ("calls", "failed_calls", "input_tokens", "output_tokens", "cost_usd")


def _upsert(dialect_name: str):
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    stmt = insert(_T)
    return stmt.on_conflict_do_update(
        index_elements=[_T.c[name] for name in KEY_COLUMNS],
        set_={name: _T.c[name] + stmt.excluded[name] for name in TOTAL_COLUMNS},
    )


def _row(key: RollupKey, totals: Totals) -> dict[str, object]:
    return dict(zip(KEY_COLUMNS + TOTAL_COLUMNS, (*key, *totals), strict=True))


class UsageTable:
    """``usage_daily`` on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._upsert = _upsert(engine.dialect.name)

    async def add_usage(self, deltas: Mapping[RollupKey, Totals]) -> None:
        rows = [_row(key, deltas[key]) for key in sorted(deltas)]
        try:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    await conn.execute(self._upsert, rows)
        except Exception as exc:
            if is_unavailable(exc):
                raise unavailable() from None
            raise

    async def month_costs(
        self, tenant_ids: Collection[str], start: date, end: date
    ) -> dict[str, float]:
        query = (
            select(_T.c.tenant_id, func.sum(_T.c.cost_usd))
            .where(
                _T.c.tenant_id.in_(list(tenant_ids)),
                _T.c.usage_date >= start,
                _T.c.usage_date < end,
            )
            .group_by(_T.c.tenant_id)
        )
        found = await read_rows(self._engine, query)
        return {tenant: float(total or 0.0) for tenant, total in found}

    async def daily_usage(
        self, tenant_id: str, start: date, end: date, *, limit: int, after: PageKey | None
    ) -> list[DailyUsage]:
        c = _T.c
        query = select(*(c[name] for name in KEY_COLUMNS[1:] + TOTAL_COLUMNS)).where(
            c.tenant_id == tenant_id, c.usage_date >= start, c.usage_date <= end
        )
        if after is not None:
            day, *rest = after
            query = query.where(
                or_(
                    c.usage_date < day,
                    and_(
                        c.usage_date == day,
                        tuple_(c.provider, c.model, c.intent, c.mode) > tuple_(*rest),
                    ),
                )
            )
        query = query.order_by(c.usage_date.desc(), c.provider, c.model, c.intent, c.mode).limit(
            limit
        )
        return [
            DailyUsage(
                day=r.usage_date,
                provider=r.provider,
                model=r.model,
                intent=r.intent,
                mode=r.mode,
                calls=int(r.calls),
                failed_calls=int(r.failed_calls),
                input_tokens=int(r.input_tokens),
                output_tokens=int(r.output_tokens),
                cost_usd=float(r.cost_usd),
            )
            for r in await read_rows(self._engine, query)
        ]
