"""Storage behind the config plane's ports, on SQLite and on the real
PostgreSQL: the one row mapper round-trips every field through every read
path, rewrap runs on the ports it is handed, and the domain loads no storage."""

from __future__ import annotations

import os
from dataclasses import fields, replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from liya_engine.config.model import (
    PROVIDER_ORDER,
    ModelPrice,
    ModelSettings,
    StoredProvider,
    TenantConfig,
)
from liya_engine.config.rewrap import rewrap_all
from liya_engine.crypto.cipher import KeyCipher, Keyring, KeyringEntry, new_salt
from liya_engine.errors import Conflict, StorageUnavailable
from liya_engine.storage import rows
from liya_engine.storage.availability import read_rows
from liya_engine.storage.database import Database
from liya_engine.storage.pg_reader import PostgresReader
from liya_engine.storage.sqlite_reader import SqliteReader
from liya_engine.storage.tables import MasterKeySaltRow, ProviderCredentialRow, TenantConfigRow


@pytest.fixture
async def db(db_url):
    database = Database(db_url)
    await database.migrate()
    yield database
    await database.dispose()


def every_field_set(tenant: str, version: int, tag: str) -> TenantConfig:
    """A config with every field of every provider set, each value distinct
    (a mapper that swapped two columns or two providers would show)."""
    providers = {
        name: StoredProvider(
            api_key_ciphertext=f"{tag}-{name}-ciphertext".encode() + bytes(range(256)),
            api_key_preview=f"{name[:2]}-...{tag}",
            default_model=f"{name}-model-{tag}",
            endpoint=f"https://{name}-{tag}.example.com",
            deployment_name=f"{name}-deployment-{tag}",
            api_version=f"2024-10-{version:02d}-{name}",
            model=f"{name}-runs-{tag}",
        )
        for name in PROVIDER_ORDER
    }
    return TenantConfig(
        tenant_id=tenant,
        version=version,
        mode="byok" if version % 2 else "managed",
        providers=providers,
        model=ModelSettings(
            strategy="quality-optimised" if version % 2 else "latency-optimised",
            overrides={"general_chat": f"gpt-4o-{tag}", "code": f"claude-{tag}", "é": "ü"},
            cost_limit_usd_per_request=0.125 * version,
            # A price of 0 is a price: it must come back as 0, not as absent.
            prices={
                f"gpt-4o-{tag}": ModelPrice(0.0, 0.0),
                "gpt-4.1": ModelPrice(2.0 + version, 8.5),
            },
            monthly_budget_usd=100.5 * version,
        ),
        update_time=datetime(2026, 11, 27, 12, 0, version, 123456, tzinfo=UTC),
    )


def test_the_example_sets_every_field():
    """Guards the round trip below: a field added to the model but not to the
    example fails here, not silently there."""
    cfg = every_field_set("acme", 1, "a")
    for name in PROVIDER_ORDER:
        stored = cfg.providers[name]
        for f in fields(StoredProvider):
            if f.metadata.get("stored", True):  # an unsealed key is never stored
                assert getattr(stored, f.name) != f.default, (name, f.name)
    assert sorted(cfg.providers) == sorted(PROVIDER_ORDER) and len(cfg.providers) == 3
    assert all(
        getattr(cfg.model, f.name) != getattr(ModelSettings(), f.name)
        for f in fields(ModelSettings)
    )
    assert all(
        getattr(cfg, f.name) != getattr(TenantConfig("acme"), f.name)
        for f in fields(TenantConfig)
        if f.name != "tenant_id"
    )


def test_the_row_mapper_covers_every_column():
    """Every stored column is written from the model and read back by the one
    joined query; the keys and the master key id are the repository's."""
    cfg = every_field_set("acme", 1, "a")
    config_cols = {c.key for c in TenantConfigRow.__table__.columns} - {"tenant_id"}
    provider_cols = {c.key for c in ProviderCredentialRow.__table__.columns} - {
        "tenant_id",
        "provider",
        "master_key_id",
    }
    assert set(rows.config_columns(cfg)) == config_cols
    assert set(rows.provider_columns(cfg.providers["azure"])) == provider_cols
    assert {c.key for c in rows.READ_CONFIG.selected_columns} == config_cols | provider_cols | {
        "provider"
    }


async def read_every_way(db: Database, db_url: str, tenant: str) -> dict[str, TenantConfig | None]:
    """The config as each read path returns it."""
    got: dict[str, TenantConfig | None] = {"read_config": await db.read_config(tenant)}
    got["engine"] = rows.config_from_rows(
        tenant, await read_rows(db.engine, rows.READ_CONFIG, {"tenant_id": tenant})
    )
    async with db.unit_of_work() as uow:
        got["unit of work"] = await uow.configs.get(tenant)
    async with db.unit_of_work(write=True) as uow:
        got["unit of work, for update"] = await uow.configs.get(tenant, for_update=True)
    if db.is_sqlite:
        reader = SqliteReader(db_url.split(":///", 1)[1])
        try:
            got["sqlite reader"] = rows.config_from_rows(tenant, await reader.read(tenant))
        finally:
            reader.close()
    return got


async def test_every_field_round_trips_through_every_read_path(db, db_url):
    # read_config is the fast reader of each: plain sqlite3, or asyncpg's own pool.
    assert isinstance(db._sqlite_reader, SqliteReader) is db.is_sqlite
    assert isinstance(db._pg_reader, PostgresReader) is (not db.is_sqlite)
    first = every_field_set("acme", 1, "a")
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.save(first, previous=TenantConfig("acme"), key_ids={})
        await uow.commit()
    paths = await read_every_way(db, db_url, "acme")
    assert len(paths) == (5 if db.is_sqlite else 4)
    for path, got in paths.items():
        assert got == first, path
        assert got.update_time.utcoffset().total_seconds() == 0, path

    # Every field changed at once: the update path writes each column too.
    second = every_field_set("acme", 2, "b")
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.save(second, previous=first, key_ids={})
        await uow.commit()
    for path, got in (await read_every_way(db, db_url, "acme")).items():
        assert got == second, path

    # A provider removed, another tenant untouched, an unknown tenant absent.
    third = replace(second.with_provider("anthropic", StoredProvider()), version=3)
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.save(third, previous=second, key_ids={})
        await uow.configs.save(
            every_field_set("globex", 1, "g"), previous=TenantConfig("globex"), key_ids={}
        )
        await uow.commit()
    for path, got in (await read_every_way(db, db_url, "acme")).items():
        assert got == third and sorted(got.providers) == ["azure", "openai"], path
    for path, got in (await read_every_way(db, db_url, "nobody")).items():
        assert got is None, path


async def test_create_many_writes_what_save_writes_and_refuses_a_second_time(db, db_url):
    many = [every_field_set(f"t{i}", 1, f"m{i}") for i in range(3)]
    key_ids = {"openai": "k-openai", "anthropic": "k-anthropic", "azure": "k-azure"}
    async with db.unit_of_work(write=True) as uow:
        await uow.configs.create_many(many, key_ids=key_ids)
        await uow.commit()
    for config in many:
        for path, got in (await read_every_way(db, db_url, config.tenant_id)).items():
            assert got == config, path
    async with db.unit_of_work() as uow:
        assert await uow.configs.count_by_master_key() == {
            "k-openai": 3,
            "k-anthropic": 3,
            "k-azure": 3,
        }
    # A tenant that already has a config: nothing of the batch is written.
    with pytest.raises(Conflict):
        async with db.unit_of_work(write=True) as uow:
            await uow.configs.create_many(
                [every_field_set("fresh", 1, "f"), many[0]], key_ids=key_ids
            )
            await uow.commit()
    assert await db.read_config("fresh") is None


# -- rewrap on the ports it is handed -----------------------------------------------


def entry(key_id: str) -> KeyringEntry:
    return KeyringEntry(key_id, os.urandom(32), new_salt())


async def test_rewrap_with_a_handed_store_and_cipher(db):
    """No settings, no bootstrap, no salts table: the store and the cipher are
    all rewrap needs."""
    a, b = entry("mk-a"), entry("mk-b")
    under_a = KeyCipher(Keyring([a]))
    keys = {
        (f"t{i}", name): f"sk-{name}-{i}-" + "k" * 24 for i in range(5) for name in PROVIDER_ORDER
    }
    for tenant in sorted({t for t, _ in keys}):
        cfg = TenantConfig(tenant, version=1, mode="byok", update_time=datetime.now(UTC))
        for (t, name), key in keys.items():
            if t == tenant:
                blob = under_a.encrypt(key, tenant_id=tenant, provider=name, field="api_key")
                cfg = cfg.with_provider(name, StoredProvider(api_key_ciphertext=blob))
        async with db.unit_of_work(write=True) as uow:
            await uow.configs.save(
                cfg,
                previous=TenantConfig(tenant),
                key_ids=dict.fromkeys(cfg.providers, "mk-a"),
            )
            await uow.commit()

    report = await rewrap_all(db, KeyCipher(Keyring([b, a])), batch_size=4)
    assert (report.primary_key_id, report.rewrapped) == ("mk-b", len(keys))
    assert (report.failed, report.skipped_changed, report.failures) == (0, 0, [])
    assert report.remaining_by_key == {"mk-b": len(keys)}

    only_b = KeyCipher(Keyring([b]))
    for (tenant, name), key in keys.items():
        stored = (await db.read_config(tenant)).provider(name).api_key_ciphertext
        assert KeyCipher.key_id_of(stored) == "mk-b"
        assert (
            only_b.decrypt(stored, tenant_id=tenant, provider=name, field="api_key").reveal() == key
        )
    async with db.engine.connect() as conn:
        salts = (await conn.execute(select(func.count()).select_from(MasterKeySaltRow))).scalar()
    assert salts == 0  # nothing built a keyring from the database


# -- the domain loads no storage ----------------------------------------------------------


async def test_a_commit_on_a_lost_connection_is_storage_unavailable(postgres_url):
    """The domain inside the block sees ``StorageUnavailable`` from commit, not
    a driver error, and leaving the block does not fail again."""
    import asyncpg

    db = Database(postgres_url)
    try:
        await db.migrate()
        cfg = every_field_set("acme", 1, "a")
        async with db.unit_of_work(write=True) as uow:
            await uow.configs.save(cfg, previous=TenantConfig("acme"), key_ids={})
            admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
            try:  # every other connection to this database, the unit's included
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
            with pytest.raises(StorageUnavailable) as err:
                await uow.commit()
            assert type(err.value) is StorageUnavailable
            assert err.value.reason == "STORAGE_UNAVAILABLE"
        assert await db.read_config("acme") is None  # the pool reconnects; nothing landed
    finally:
        await db.dispose()
