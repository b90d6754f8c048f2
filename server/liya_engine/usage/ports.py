"""What the usage ledger needs from storage, and the values it deals in.

A rollup key is ``(tenant_id, day, provider, model, intent, mode)``; its totals
are ``[calls, failed_calls, input_tokens, output_tokens, cost_usd]``, a list the
aggregator adds to in place. Nothing here imports SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Protocol

RollupKey = tuple[str, date, str, str, str, str]
"""``(tenant_id, UTC day, provider, model, intent, mode)``."""
Totals = list
"""``[calls, failed_calls, input_tokens, output_tokens, cost_usd]``."""
PageKey = tuple[date, str, str, str, str]
"""Where a page of one tenant's rows ended: ``(day, provider, model, intent, mode)``."""


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """One stored row of the ledger, for one tenant."""

    day: date
    provider: str
    model: str
    intent: str
    mode: str
    calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float

    @property
    def page_key(self) -> PageKey:
        return (self.day, self.provider, self.model, self.intent, self.mode)


class UsageStore(Protocol):
    """The stored ledger."""

    async def add_usage(self, deltas: Mapping[RollupKey, Totals]) -> None:
        """Add each key's totals to its stored row (created at 0 when new),
        one upsert per key, all in one transaction; raise on failure (then
        nothing was added)."""

    async def month_costs(
        self, tenant_ids: Collection[str], start: date, end: date
    ) -> dict[str, float]:
        """Each tenant's stored cost from ``start`` up to (not including)
        ``end``; tenants with no rows are left out."""

    async def daily_usage(
        self, tenant_id: str, start: date, end: date, *, limit: int, after: PageKey | None
    ) -> list[DailyUsage]:
        """Up to ``limit`` rows of ``tenant_id`` from ``start`` to ``end``
        (inclusive), newest day first, then by provider, model, intent, mode;
        only rows after ``after`` in that order when given."""
