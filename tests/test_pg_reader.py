"""The PostgreSQL fast reader (``storage.pg_reader``) on the real PostgreSQL:
it honours the URL the operator wrote, it follows the engine ``Database``
holds, an unreachable database is STORAGE_UNAVAILABLE, and it hands back
what the engine's read path hands back (``test_storage_ports`` checks every
field)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
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
