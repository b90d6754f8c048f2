"""The PostgreSQL fast reader (``storage.pg_reader``) on the real PostgreSQL:
it honours the URL the operator wrote, it follows the engine ``Database``
holds, an unreachable database is STORAGE_UNAVAILABLE, and it hands back
what the engine's read path hands back (``test_storage_ports`` checks every
field)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from liya_engine.config.model import StoredProvider, TenantConfig
from liya_engine.errors import StorageUnavailable
from liya_engine.fakes import bind_refused_port
from liya_engine.storage.database import Database


async def saved(db: Database, tenant: str) -> TenantConfig:
    config = TenantConfig(
        tenant,
        version=1,
        mode="byok",
        providers={"openai": StoredProvider(api_key_ciphertext=b"\x00sealed", default_model="m")},
        update_time=datetime(2026, 12, 3, 12, 0, tzinfo=UTC),
    )
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.save(config, previous=TenantConfig(tenant), key_ids={})
        await uow.commit()
    return config


async def test_a_url_without_prepared_statements_reads_as_one_with(postgres_url):
    # Behind a pooler in transaction mode the operator turns asyncpg's
    # statement cache off on the URL; the reader must take the same URL.
    db = Database(f"{postgres_url}?prepared_statement_cache_size=0")
    try:
        await db.migrate()
        config = await saved(db, "acme")
        for _ in range(3):
            got = await db.read_config("acme")
            assert got.providers["openai"] == config.providers["openai"]
            assert got.version == 1
        assert await db.read_config("nobody") is None
    finally:
        await db.dispose()


async def test_the_reader_follows_the_engine_and_maps_an_outage(postgres_url):
    db = Database(postgres_url)
    try:
        await db.migrate()
        await saved(db, "acme")
        assert (await db.read_config("acme")).mode == "byok"
        good = db.engine

        def point_at(engine) -> None:
            db.engine = engine
            db._sessions = async_sessionmaker(engine, expire_on_commit=False)

        point_at(create_async_engine(good.url.set(port=bind_refused_port())))
        with pytest.raises(StorageUnavailable) as caught:
            await db.read_config("acme")
        assert caught.value.reason == "STORAGE_UNAVAILABLE"
        await db.engine.dispose()
        point_at(good)
        assert (await db.read_config("acme")).mode == "byok"
    finally:
        await db.dispose()


async def test_a_read_whose_connection_the_server_ends_mid_query_runs_again(postgres_url):
    # The server ends the connection while the read waits on it (a failover
    # in the middle of a query). asyncpg has then already taken the broken
    # connection out of the pool, so the reader must not fail on giving it
    # back: the read runs once more, on a new connection, and answers.
    db = Database(postgres_url)
    url = make_url(postgres_url)
    admin = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        await db.migrate()
        await saved(db, "acme")
        assert (await db.read_config("acme")).mode == "byok"
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE tenant_configs IN ACCESS EXCLUSIVE MODE")
        read = asyncio.create_task(db.read_config("acme"))
        pid = None
        for _ in range(200):
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND pid <> pg_backend_pid()"
            )
            if pid is not None:
                break
            await asyncio.sleep(0.05)
        assert pid is not None, "the read never waited on the lock"
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await lock.commit()
        got = await asyncio.wait_for(read, 15)
        assert got.mode == "byok"
        assert got.providers["openai"].default_model == "m"
    finally:
        await admin.close()
        await db.dispose()
