"""Key health records on the real SQLite and PostgreSQL: merged writes tied to
the credentials they describe, and the recorder's write policy (state changes
at once, further successes at most every 30 s)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from liya_engine.config.health import (
    FORGET_IDLE_SECONDS,
    SUCCESS_REWRITE_SECONDS,
    Outcome,
    ProviderHealth,
)
from liya_engine.config.health_recorder import PRUNE_EVERY_SECONDS, HealthRecorder
from liya_engine.errors import StorageUnavailable
from liya_engine.storage.database import Database

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    await database.migrate()
    yield database
    await database.dispose()


async def reset(db: Database, version: int, *, verified: datetime | None = None) -> None:
    async with db.unit_of_work(write=True) as uow:
        await uow.health.reset(
            "t", "openai", credentials_version=version, key_set_time=T0, verified_time=verified
        )
        await uow.commit()


async def stored(db: Database) -> ProviderHealth:
    return (await db.read_health("t"))["openai"]


def success(version: int, when: float) -> Outcome:
    return Outcome("t", "openai", version, success_time=at(when))


def failure(version: int, when: float, reason: str = "BYOK_AUTH_FAILED") -> Outcome:
    return Outcome("t", "openai", version, failure_time=at(when), reason=reason, message=reason)


async def test_reset_starts_unknown_or_ok_when_verified(db):
    await reset(db, 3)
    record = await stored(db)
    assert (record.state, record.credentials_version, record.key_set_time) == ("unknown", 3, T0)
    await db.record_health([failure(3, 5)])
    assert (await stored(db)).state == "failing"

    await reset(db, 4, verified=at(10))
    record = await stored(db)
    assert (record.state, record.last_success_time, record.last_failure_time) == (
        "ok",
        at(10),
        None,
    )
    assert record.last_failure_reason == ""


async def test_outcomes_of_older_credentials_are_dropped(db):
    await reset(db, 3)
    await db.record_health([failure(2, 5)])  # a call made with config v2: the old key
    assert (await stored(db)).state == "unknown"
    await db.record_health([success(3, 6)])
    await db.record_health([failure(7, 8)])  # v7: later config, same credentials
    record = await stored(db)
    assert (record.state, record.last_failure_time, record.last_success_time) == (
        "failing",
        at(8),
        at(6),
    )


async def test_writes_from_several_replicas_merge_by_time(db):
    await reset(db, 1)
    await db.record_health([failure(1, 20, "BYOK_QUOTA_EXCEEDED")])
    # Late writes of earlier outcomes change nothing that is newer.
    await db.record_health([success(1, 10), failure(1, 15, "PROVIDER_UNAVAILABLE")])
    record = await stored(db)
    assert (record.state, record.last_failure_reason, record.last_success_time) == (
        "failing",
        "BYOK_QUOTA_EXCEEDED",
        at(10),
    )
    await db.record_health([success(1, 21)])
    assert (await stored(db)).state == "ok"
    assert (await stored(db)).last_failure_reason == "BYOK_QUOTA_EXCEEDED"


async def test_credentials_stored_before_health_existed_get_a_record(db):
    await db.record_health([success(9, 1)])
    record = await stored(db)
    assert (record.state, record.credentials_version, record.key_set_time) == ("ok", 0, None)


async def test_one_write_of_many_outcomes_judges_each_by_its_own_config_version(db):
    # A flush writes the outcomes of many tenants in one statement: each row's
    # config version decides for that row alone.
    for tenant, version in (("a", 5), ("b", 1)):
        async with db.unit_of_work(write=True) as uow:
            await uow.health.reset(
                tenant, "openai", credentials_version=version, key_set_time=T0, verified_time=None
            )
            await uow.commit()
    await db.record_health(
        [
            Outcome("new", "openai", 9, success_time=at(1)),  # no record yet
            Outcome("a", "openai", 3, failure_time=at(2), reason="BYOK_AUTH_FAILED"),  # old key
            Outcome("b", "openai", 2, failure_time=at(3), reason="BYOK_QUOTA_EXCEEDED"),
        ]
    )
    assert (await db.read_health("new"))["openai"].state == "ok"
    assert (await db.read_health("a"))["openai"].state == "unknown"
    b = (await db.read_health("b"))["openai"]
    assert (b.state, b.last_failure_reason, b.last_failure_time) == (
        "failing",
        "BYOK_QUOTA_EXCEEDED",
        at(3),
    )


# -- the recorder's write policy ------------------------------------------------------


class CountingStore:
    """The real database, counting what the recorder hands it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writes: list[list[Outcome]] = []
        self.down = False

    async def read_health(self, tenant_id):
        return await self.db.read_health(tenant_id)

    async def record_health(self, outcomes):
        if self.down:
            raise StorageUnavailable("down")
        self.writes.append(list(outcomes))
        await self.db.record_health(outcomes)


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def sqlite_db(sqlite_url):
    """The policy does not depend on the database: SQLite alone."""
    database = Database(sqlite_url)
    await database.migrate()
    yield database
    await database.dispose()


async def test_state_changes_are_written_at_once_further_successes_every_30_s(sqlite_db):
    store, clock, moves = CountingStore(sqlite_db), Clock(), []
    recorder = HealthRecorder(store, lambda *m: moves.append(m), clock=clock)

    async def written() -> int:
        before = len(store.writes)
        await recorder.flush()
        return len(store.writes) - before

    recorder.succeeded("t", "openai", 1)  # unknown -> ok
    assert await written() == 1
    for _ in range(100):
        clock.advance(0.25)
        recorder.succeeded("t", "openai", 1)
        assert await written() == 0  # 25 s of successes: nothing new to say
    clock.advance(SUCCESS_REWRITE_SECONDS - 25)
    recorder.succeeded("t", "openai", 1)
    assert await written() == 1

    clock.advance(1)
    recorder.failed("t", "openai", 1, "BYOK_AUTH_FAILED", "bad key")  # ok -> failing
    assert await written() == 1
    clock.advance(1)
    recorder.failed("t", "openai", 1, "BYOK_AUTH_FAILED", "bad key")
    assert await written() == 0
    recorder.failed("t", "openai", 1, "BYOK_QUOTA_EXCEEDED", "quota")  # a new reason
    assert await written() == 1
    recorder.failed("t", "openai", 1, "PROVIDER_REJECTED_REQUEST", "too long")  # not counted
    recorder.failed("t", "openai", 1, "DEADLINE_EXCEEDED", "late")
    assert await written() == 0
    assert (await store.read_health("t"))["openai"].last_failure_reason == "BYOK_QUOTA_EXCEEDED"

    # A new config version (the credentials may be new) is written at its first outcome.
    clock.advance(1)
    recorder.failed("t", "openai", 2, "BYOK_QUOTA_EXCEEDED", "quota")
    assert await written() == 1
    recorder.succeeded("t", "openai", 1)  # a call that began before v2 was seen
    assert await written() == 0
    assert moves == [
        ("openai", "unknown", "ok"),
        ("openai", "ok", "failing"),
    ]


async def test_a_failed_write_is_retried_at_the_next_flush(sqlite_db):
    store, clock = CountingStore(sqlite_db), Clock()
    recorder = HealthRecorder(store, lambda *m: None, clock=clock)
    recorder.failed("t", "openai", 1, "BYOK_AUTH_FAILED", "bad key")
    store.down = True
    await recorder.flush()
    assert store.writes == []
    store.down = False
    await recorder.flush()
    assert [o.reason for o in store.writes[0]] == ["BYOK_AUTH_FAILED"]
    assert (await store.read_health("t"))["openai"].state == "failing"


async def test_idle_written_entries_are_forgotten_and_memory_stays_bounded(sqlite_db):
    store, clock, moves = CountingStore(sqlite_db), Clock(), []
    recorder = HealthRecorder(store, lambda *m: moves.append(m), clock=clock)
    for i in range(50):
        recorder.succeeded(f"t{i}", "openai", 1)
    recorder.failed("down", "openai", 1, "BYOK_AUTH_FAILED", "bad key")
    await recorder.flush()  # all written
    store.down = True
    clock.advance(FORGET_IDLE_SECONDS - 1)
    recorder.succeeded("t0", "openai", 1)  # t0 called again: not idle
    recorder.succeeded("late", "openai", 1)  # due, and its write fails below
    clock.advance(PRUNE_EVERY_SECONDS)
    await recorder.flush()  # the write fails; idle and written entries go
    assert recorder.local("t1", "openai") is None
    assert recorder.local("down", "openai") is None
    assert recorder.local("t0", "openai") is not None
    assert recorder.local("late", "openai") is not None  # not written yet: kept
    # What was forgotten is still in the database for every replica to read.
    assert (await store.read_health("down"))["openai"].last_failure_reason == "BYOK_AUTH_FAILED"
    store.down = False
    await recorder.flush()
    assert (await store.read_health("late"))["openai"].state == "ok"
    # A forgotten key's next outcome starts from unknown on this replica, as after a restart.
    moves.clear()
    recorder.succeeded("t1", "openai", 1)
    assert moves == [("openai", "unknown", "ok")]
