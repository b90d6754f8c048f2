"""The storage layer on its own, on SQLite and on the real PostgreSQL: schema
migrations, the unit of work, both repositories, master key salts."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from helpers import head_revision
from liya_engine.config.model import (
    Change,
    ModelSettings,
    StoredProvider,
    TenantConfig,
)
from liya_engine.config.service import ConfigService
from liya_engine.crypto.cipher import KeyCipher, Keyring, KeyringEntry, new_salt
from liya_engine.errors import Conflict
from liya_engine.identity import Identity
from liya_engine.routing.catalog import Catalog
from liya_engine.secret import Secret
from liya_engine.settings import Settings
from liya_engine.storage.database import Database

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


HEAD = head_revision()


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    await database.migrate()
    yield database
    await database.dispose()


def config(tenant: str = "acme", version: int = 1, **providers: StoredProvider) -> TenantConfig:
    return TenantConfig(
        tenant_id=tenant,
        version=version,
        mode="byok",
        providers=dict(providers),
        model=ModelSettings(
            strategy="cost-optimised",
            overrides={"general_chat": "gpt-4o-mini"},
            cost_limit_usd_per_request=0.05,
        ),
        update_time=T0 + timedelta(seconds=version),
    )


def blob(key_id: str, fill: bytes = b"x") -> bytes:
    """Bytes shaped like a ciphertext header for ``key_id``; never decrypted here."""
    raw = key_id.encode()
    return bytes((1, len(raw))) + raw + fill * 40


async def save(db: Database, new: TenantConfig, previous: TenantConfig | None = None) -> None:
    previous = previous or TenantConfig(new.tenant_id)
    key_ids = {
        name: KeyCipher.key_id_of(p.api_key_ciphertext) or ""
        for name, p in new.providers.items()
        if p.api_key_ciphertext is not None
    }
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.save(new, previous=previous, key_ids=key_ids)
        await uow.commit()


async def load(db: Database, tenant: str = "acme") -> TenantConfig | None:
    async with db.unit_of_work() as uow:
        return await uow.configs.get(tenant)


# -- migrations ----------------------------------------------------------------


async def test_migrate_is_idempotent(db_url):
    database = Database(db_url)
    try:
        first = await database.migrate()
        second = await database.migrate()
        assert first == second == HEAD

        def tables(sync_conn):
            return set(inspect(sync_conn).get_table_names())

        async with database.engine.connect() as conn:
            names = await conn.run_sync(tables)
        assert {
            "tenant_configs",
            "provider_credentials",
            "audit_entries",
            "master_key_salts",
            "provider_health",
            "alembic_version",
        } <= names
    finally:
        await database.dispose()


async def test_replicas_migrating_together_all_succeed(db_url):
    databases = [Database(db_url) for _ in range(4)]
    try:
        revisions = await asyncio.gather(*(d.migrate() for d in databases))
        assert set(revisions) == {HEAD}
    finally:
        for d in databases:
            await d.dispose()


async def test_ping(db):
    assert await db.ping()


async def test_plain_driver_urls_get_the_async_driver(db_url):
    plain = db_url.replace("+asyncpg", "").replace("+aiosqlite", "")
    assert "+" not in plain.split("://")[0]
    database = Database(plain)
    try:
        assert database.url == db_url
        assert await database.migrate() == HEAD
    finally:
        await database.dispose()


# -- tenant configs --------------------------------------------------------------


async def test_config_round_trip(db):
    assert await load(db) is None
    stored = config(
        openai=StoredProvider(blob("k1"), "sk-...abcd", default_model="gpt-4o"),
        azure=StoredProvider(
            blob("k1", b"y"),
            "...wxyz",
            endpoint="https://contoso.openai.azure.com",
            deployment_name="prod",
            api_version="2024-10-21",
        ),
        anthropic=StoredProvider(default_model="claude-haiku-4-5"),  # model only, no key
    )
    await save(db, stored)
    got = await load(db)
    assert got == stored
    assert got.update_time.tzinfo is not None and got.update_time == stored.update_time
    assert got.configured_providers() == ["azure", "openai"]


async def test_unset_and_zero_cost_limits_differ(db):
    await save(db, replace(config(), model=ModelSettings()))
    assert (await load(db)).model.cost_limit_usd_per_request is None
    previous = await load(db)
    await save(
        db,
        replace(previous, version=2, model=ModelSettings(cost_limit_usd_per_request=0.0)),
        previous,
    )
    assert (await load(db)).model.cost_limit_usd_per_request == 0.0


async def test_stale_version_conflicts_and_writes_nothing(db):
    first = config(openai=StoredProvider(blob("k1"), "sk-...a"))
    await save(db, first)
    current = await load(db)
    await save(db, replace(current, version=2, mode="managed"), current)
    with pytest.raises(Conflict):
        await save(db, replace(current, version=2, mode="byok", providers={}), current)
    got = await load(db)
    assert got.version == 2 and got.mode == "managed" and got.provider("openai").configured


async def test_second_first_insert_conflicts(db):
    await save(db, config())
    with pytest.raises(Conflict):
        await save(db, replace(config(), mode="managed"))
    assert (await load(db)).mode == "byok"


async def test_providers_are_added_changed_and_removed(db):
    await save(db, config(openai=StoredProvider(blob("k1"), "sk-...a", default_model="o1")))
    previous = await load(db)
    new = previous.with_provider("anthropic", StoredProvider(blob("k1", b"z"), "sk-ant-...b"))
    new = new.with_provider("openai", replace(previous.provider("openai"), default_model="gpt-4o"))
    await save(db, replace(new, version=2), previous)
    got = await load(db)
    assert got.provider("openai").default_model == "gpt-4o"
    assert got.provider("openai").api_key_ciphertext == blob("k1")
    assert got.provider("anthropic").configured
    previous = got
    await save(db, replace(got.with_provider("openai", StoredProvider()), version=3), previous)
    got = await load(db)
    assert "openai" not in got.providers and got.provider("anthropic").configured


async def test_save_leaves_untouched_ciphertexts_alone(db):
    """A config write based on an older read must not undo a rewrap done since."""
    await save(db, config(openai=StoredProvider(blob("old"), "sk-...a")))
    previous = await load(db)
    async with db.unit_of_work(write=True) as uow:
        assert await uow.configs.replace_ciphertext(
            "acme", "openai", blob("old"), blob("new"), "new"
        )
        await uow.commit()
    await save(db, replace(previous, version=2, mode="managed"), previous)
    got = await load(db)
    assert got.mode == "managed"
    assert got.provider("openai").api_key_ciphertext == blob("new")
    async with db.unit_of_work() as uow:
        assert await uow.configs.count_by_master_key() == {"new": 1}


async def test_unit_of_work_without_commit_rolls_back(db):
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.save(config(), previous=TenantConfig("acme"), key_ids={})
        await uow.audit.add(
            tenant_id="acme",
            actor="a",
            request_id="r" * 8,
            create_time=T0,
            changed_paths=["provider_config.mode"],
            mode_before="managed",
            mode_after="byok",
        )
    assert await load(db) is None
    async with db.unit_of_work() as uow:
        assert await uow.audit.list("acme", limit=10, before_id=None) == []


async def test_an_error_in_the_unit_of_work_rolls_back(db):
    with pytest.raises(RuntimeError):
        async with db.unit_of_work(write=True) as uow:
            await uow.configs.save(config(), previous=TenantConfig("acme"), key_ids={})
            raise RuntimeError("boom")
    assert await load(db) is None


# -- rewrap support ------------------------------------------------------------------


async def test_stale_ciphertexts_pages_through_rows_not_under_the_primary(db):
    for i in range(5):
        await save(
            db,
            config(
                f"t{i}",
                openai=StoredProvider(blob("old"), "sk-...a"),
                anthropic=StoredProvider(blob("new"), "sk-ant-...b"),
                azure=StoredProvider(default_model="x"),  # no key: never selected
            ),
        )
    seen, after = [], None
    while True:
        async with db.unit_of_work() as uow:
            batch = await uow.configs.stale_ciphertexts("new", 2, after)
        if not batch:
            break
        assert len(batch) <= 2
        seen += [(t, p) for t, p, _ in batch]
        after = batch[-1][:2]
    assert seen == [(f"t{i}", "openai") for i in range(5)]
    async with db.unit_of_work() as uow:
        assert await uow.configs.count_by_master_key() == {"old": 5, "new": 5}


async def test_replace_ciphertext_only_swaps_the_value_it_read(db):
    await save(db, config(openai=StoredProvider(blob("old"), "sk-...a")))
    async with db.unit_of_work(write=True) as uow:
        swapped = await uow.configs.replace_ciphertext(
            "acme", "openai", blob("old", b"q"), blob("new"), "new"
        )
        await uow.commit()
    assert not swapped
    assert (await load(db)).provider("openai").api_key_ciphertext == blob("old")


# -- audit ---------------------------------------------------------------------------


async def test_audit_entries_list_newest_first_per_tenant(db):
    async with db.unit_of_work(write=True) as uow:
        for i in range(7):
            for tenant in ("acme", "globex"):
                await uow.audit.add(
                    tenant_id=tenant,
                    actor=f"actor-{i}",
                    request_id=f"request-{i:03d}",
                    create_time=T0 + timedelta(seconds=i),
                    changed_paths=["model_config.strategy", "provider_config.openai.api_key"],
                    mode_before="managed",
                    mode_after="byok",
                )
        await uow.commit()
    pages, before = [], None
    while True:
        async with db.unit_of_work() as uow:
            page = await uow.audit.list("acme", limit=3, before_id=before)
        if not page:
            break
        pages.append(page)
        before = page[-1].id
    entries = [e for page in pages for e in page]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [e.actor for e in entries] == [f"actor-{i}" for i in reversed(range(7))]
    assert all(e.tenant_id == "acme" for e in entries)
    assert entries[0].changed_paths == (
        "model_config.strategy",
        "provider_config.openai.api_key",
    )
    assert entries[0].create_time == T0 + timedelta(seconds=6)
    assert entries[0].create_time.tzinfo is not None


# -- master key salts ------------------------------------------------------------------


async def test_salts_are_created_once_and_stable(db_url):
    first = Database(db_url)
    try:
        await first.migrate()
        salts = await first.salts_for(["k1", "k2", "k1"])
        assert set(salts) == {"k1", "k2"}
        assert all(len(s) == 32 for s in salts.values()) and salts["k1"] != salts["k2"]
        assert await first.salts_for(["k2", "k1"]) == salts
    finally:
        await first.dispose()
    second = Database(db_url)  # another process, later
    try:
        assert await second.salts_for(["k1", "k2"]) == salts
    finally:
        await second.dispose()


async def test_concurrent_salt_creation_agrees(db_url):
    """Replicas starting together with a new master key derive the same keys."""
    databases = [Database(db_url) for _ in range(6)]
    try:
        await databases[0].migrate()
        results = await asyncio.gather(
            *(d.salts_for(["fresh-1", "fresh-2"]) for d in databases),
            *(databases[0].salts_for(["fresh-2"]) for _ in range(4)),
        )
        assert len({r["fresh-2"] for r in results}) == 1
        assert len({r["fresh-1"] for r in results if "fresh-1" in r}) == 1
    finally:
        for d in databases:
            await d.dispose()


# -- the config service on each backend ------------------------------------------------


N_WRITERS = 25


def _service(db: Database) -> ConfigService:
    entry = KeyringEntry("k1", os.urandom(32), new_salt())
    base = Catalog.load()
    # Extra intents give many writers a field each.
    catalog = replace(base, intents={**base.intents, **{f"x{i}": 1 for i in range(N_WRITERS)}})
    return ConfigService(db, KeyCipher(Keyring([entry])), catalog, Settings())


async def test_concurrent_writers_lose_nothing(db):
    service = _service(db)
    who = Identity("acme", "alice")
    n = N_WRITERS
    await asyncio.gather(
        *(
            service.update(who, f"req-{i:04d}", [Change(f"model_config.overrides.x{i}", "m")])
            for i in range(n)
        ),
        service.update(
            who, "req-key", [Change("provider_config.openai.api_key", Secret("sk-" + "a" * 30))]
        ),
    )
    got = await service.get("acme")
    assert got.model.overrides == {f"x{i}": "m" for i in range(n)}
    assert got.provider("openai").configured
    assert got.version == n + 1
    entries, _ = await service.list_audit("acme", 100, "")
    assert len(entries) == n + 1
    assert len({e.request_id for e in entries}) == n + 1


async def test_concurrent_writers_with_one_etag_one_wins(db):
    from liya_engine.errors import EtagMismatch

    service = _service(db)
    who = Identity("acme", "alice")
    base = await service.update(who, "req-base", [Change("provider_config.mode", "byok")])
    results = await asyncio.gather(
        *(
            service.update(
                who,
                f"req-{i:04d}",
                [Change("provider_config.openai.default_model", f"m{i}")],
                etag=base.config.etag,
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, EtagMismatch) for r in results if isinstance(r, BaseException))
    got = await service.get("acme")
    assert got.version == 2
    assert (
        got.provider("openai").default_model == winners[0].config.provider("openai").default_model
    )


# -- the SQLite read path ----------------------------------------------------------


async def test_sqlite_read_waits_out_a_lock_instead_of_failing(tmp_path):
    """A cache-miss read first tries without waiting; while another connection
    holds the database locked it must wait for the lock, not report an outage."""
    import sqlite3
    import threading
    import time

    path = tmp_path / "locked.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.migrate()
    try:
        stored = config(openai=StoredProvider(blob("k1"), "sk-...abcd"))
        await save(database, stored)
        await database.engine.dispose()
        # In WAL mode readers never wait; a rollback journal lets a writer
        # lock them out, which is the case to test.
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        assert raw.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
        raw.execute("BEGIN EXCLUSIVE")
        raw.execute("UPDATE tenant_configs SET strategy = 'latency-optimised'")

        def release_later() -> None:
            time.sleep(0.3)
            raw.execute("COMMIT")
            raw.close()

        thread = threading.Thread(target=release_later)
        started = time.monotonic()
        thread.start()
        try:
            got = await asyncio.wait_for(database.read_config("acme"), 10)
        finally:
            thread.join()
        assert time.monotonic() - started >= 0.25  # it did wait for the lock
        assert got is not None and got.model.strategy == "latency-optimised"
        assert await database.read_config("acme") == got  # and reads inline again
    finally:
        await database.dispose()
