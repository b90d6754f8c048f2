"""``ListDailyUsage``: the date range, the page size and token, and the page.

Dates are ``YYYY-MM-DD`` UTC, inclusive; the defaults are the current month's
first day and today. The page token is opaque to callers: URL-safe base64 of
``u1`` and the last row served (date, provider, model, intent, mode) plus the
range it was served for, so a page starts right after the previous one and a
token is refused with other dates.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from liya_engine.errors import FieldViolation, InvalidRequest
from liya_engine.inference.tenants import TenantCache
from liya_engine.usage.ledger import month_start
from liya_engine.usage.ports import DailyUsage, PageKey, UsageStore

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000
_TAG = "u1"


@dataclass(frozen=True, slots=True)
class UsagePage:
    """One page of the answer."""

    rows: list[DailyUsage]
    next_page_token: str
    month_to_date_cost_usd: float
    monthly_budget_usd: float | None = None


class _Ledger(Protocol):
    async def month_to_date(self, tenant_id: str) -> float: ...


def _bad(field: str, description: str) -> InvalidRequest:
    return InvalidRequest(f"{field} {description}", [FieldViolation(field, description)])


def parse_date(field: str, value: str, default: date) -> date:
    """``value`` as a date; ``default`` when empty; ``InvalidRequest`` otherwise."""
    if not value:
        return default
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise _bad(field, "must be a date as YYYY-MM-DD, such as 2026-12-01") from None


def page_size(requested: int) -> int:
    """0 is the default; more than the maximum is the maximum; negative is refused."""
    if requested < 0:
        raise _bad("page_size", f"must be 0 (default {DEFAULT_PAGE_SIZE}) to {MAX_PAGE_SIZE}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(key: PageKey, start: date, end: date) -> str:
    day, provider, model, intent, mode = key
    raw = json.dumps(
        [_TAG, start.isoformat(), end.isoformat(), day.isoformat(), provider, model, intent, mode],
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, start: date, end: date) -> PageKey:
    """The row a ``next_page_token`` names; ``InvalidRequest`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parts = json.loads(raw)
        if (
            not isinstance(parts, list)
            or len(parts) != 8
            or not all(isinstance(p, str) for p in parts)
            or parts[0] != _TAG
        ):
            raise ValueError
        _, first, last, day, provider, model, intent, mode = parts
        same_range = (first, last) == (start.isoformat(), end.isoformat())
        key = (date.fromisoformat(day), provider, model, intent, mode)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad(
            "page_token", "must be a next_page_token from an earlier ListDailyUsage call"
        ) from None
    if not same_range:
        raise _bad("page_token", "was issued for other start_date and end_date")
    return key


def date_range(start_date: str, end_date: str, *, today: date | None = None) -> tuple[date, date]:
    """The inclusive range a request asks for, defaults filled in."""
    today = today or datetime.now(UTC).date()
    start = parse_date("start_date", start_date, month_start(today))
    end = parse_date("end_date", end_date, today)
    if end < start:
        raise _bad("end_date", "must not be before start_date")
    return start, end


def parse_request(
    start_date: str, end_date: str, requested_size: int, page_token: str
) -> tuple[date, date, int, PageKey | None]:
    """The range, page size and start of a request; ``InvalidRequest`` when bad."""
    start, end = date_range(start_date, end_date)
    size = page_size(requested_size)
    after = decode_token(page_token, start, end) if page_token else None
    return start, end, size, after


class UsageReports:
    """The ``ListDailyUsage`` use case: the stored rows, the month-to-date
    cost as the ledger knows it, the tenant's budget."""

    def __init__(self, store: UsageStore, ledger: _Ledger, tenants: TenantCache) -> None:
        self._store = store
        self._ledger = ledger
        self._tenants = tenants

    async def list_daily_usage(
        self, tenant_id: str, start_date: str, end_date: str, page_size: int, page_token: str
    ) -> UsagePage:
        """One page; ``InvalidRequest`` for bad dates, sizes or tokens."""
        start, end, size, after = parse_request(start_date, end_date, page_size, page_token)
        # One row more than the page: whether there is a next page, without a count.
        rows = await self._store.daily_usage(tenant_id, start, end, limit=size + 1, after=after)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token(rows[-1].page_key, start, end)
        tenant = await self._tenants.get(tenant_id)
        return UsagePage(
            rows,
            token,
            await self._ledger.month_to_date(tenant_id),
            tenant.config.model.monthly_budget_usd,
        )
