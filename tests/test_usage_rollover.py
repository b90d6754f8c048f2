"""The ledger across a UTC day and month boundary, on the real store (SQLite
and PostgreSQL). Only the clock is set: a month's end cannot be waited for."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from liya_engine.metrics import Metrics
from liya_engine.storage.database import Database
from liya_engine.usage.ledger import UsageLedger


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def time(self) -> float:
        return self.now


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    await database.migrate()
    yield database
    await database.dispose()


async def test_calls_count_on_their_utc_day_and_budgets_on_their_month(db):
    clock = Clock(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    ledger = UsageLedger(db, Metrics(), flush_seconds=1, max_keys=100, clock=clock.time)
    ledger.record("t", "openai", "gpt-4o", "general_chat", "byok", 10, 20, 1.25, False)
    assert await ledger.spent("t") == 1.25  # unwritten, this month
    assert await ledger.flush()
    assert await ledger.spent("t") == 1.25  # written, read back

    clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC).timestamp()
    assert await ledger.spent("t") == 0.0  # a new month starts over
    assert ledger.resets_at() == datetime(2027, 1, 1, tzinfo=UTC)
    ledger.record("t", "openai", "gpt-4o", "general_chat", "byok", 1, 2, 0.5, True)
    assert await ledger.flush()
    assert await ledger.spent("t") == 0.5
    rows = await db.daily_usage("t", date(2026, 11, 1), date(2026, 12, 31), limit=10, after=None)
    assert [(r.day, r.calls, r.failed_calls, r.input_tokens, r.cost_usd) for r in rows] == [
        (date(2026, 12, 1), 1, 1, 1, 0.5),
        (date(2026, 11, 30), 1, 0, 10, 1.25),
    ]


async def test_a_reservation_is_held_until_the_call_is_recorded(db):
    ledger = UsageLedger(db, Metrics(), flush_seconds=1, max_keys=100)
    ledger.reserve("t", 0.75)
    assert await ledger.spent("t") == 0.75
    ledger.record("t", "openai", "gpt-4o", "x", "byok", 1, 1, 0.25, False, 0.75)
    assert await ledger.spent("t") == 0.25
    assert await ledger.month_to_date("t") == 0.25


async def test_repeated_flushes_add_up_in_one_row(db):
    ledger = UsageLedger(db, Metrics(), flush_seconds=1, max_keys=100)
    for _ in range(3):
        ledger.record("t", "azure", "prod-chat", "general_chat", "managed", 5, 7, 0.1, False)
        assert await ledger.flush()
    today = datetime.now(UTC).date()
    rows = await db.daily_usage("t", today, today, limit=10, after=None)
    assert [(r.model, r.mode, r.calls, r.input_tokens, r.output_tokens) for r in rows] == [
        ("prod-chat", "managed", 3, 15, 21)
    ]
    assert rows[0].cost_usd == pytest.approx(0.3)
