"""The benchmark seeds its tenants through the service's repositories: what it
writes reads back through ``Database.read_config`` as a byok config whose key
the server's own cipher decrypts. Its PostgreSQL database (by COPY) is seeded
once and reused while its seed marker and kept master key match.
"""

from __future__ import annotations

import importlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import asyncpg
import pytest

from helpers import master_key_line, test_env
from liya_engine.bootstrap import build_cipher
from liya_engine.settings import Settings
from liya_engine.storage.database import Database

BENCH = Path(__file__).resolve().parent.parent / "bench"
COLD = 5


@pytest.fixture
def seeding(monkeypatch) -> ModuleType:
    # bench/ is a directory of scripts (``python bench/run.py``), not a package.
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("seeding")


def bench_key(tenant: str) -> str:
    return f"sk-proj-{tenant}-0123456789abcdef"


async def test_seeded_tenants_read_back_with_their_keys(seeding, db_url):
    settings = Settings.from_env(test_env(db_url))
    warm_key = "sk-proj-benchwarm-fedcba9876543210"

    # Batches of 2: three units of work.
    seed = await seeding.seed_database(settings, warm_key, COLD, key_for=bench_key, batch=2)

    assert seed["tenants"] == COLD + 1
    expected = {"bench-warm": warm_key} | {
        f"bench-cold-{i:06d}": bench_key(f"bench-cold-{i:06d}") for i in range(COLD)
    }
    db = Database(settings.database_url)
    try:
        cipher = await build_cipher(settings, db)  # as the server builds it, salt from the db
        for tenant, key in expected.items():
            config = await db.read_config(tenant)
            assert config is not None, tenant
            assert (config.version, config.mode) == (1, "byok")
            assert list(config.providers) == ["openai"]
            openai = config.providers["openai"]
            assert openai.default_model == "gpt-4o-mini"
            assert openai.api_key_preview == "sk-proj-..." + key[-4:]
            plaintext = cipher.decrypt(
                openai.api_key_ciphertext, tenant_id=tenant, provider="openai", field="api_key"
            )
            assert plaintext.reveal() == key
        assert await db.read_config("bench-cold-000005") is None
        async with db.unit_of_work() as uow:
            assert await uow.configs.count_by_master_key() == {"test-1": COLD + 1}
            assert await uow.audit.list("bench-warm", limit=10, before_id=None) == []
    finally:
        await db.dispose()


# -- the PostgreSQL database of the bench: seeded once, reused while it matches --


@pytest.fixture
def pg_database(monkeypatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("pg_database")


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def read_back(db_url: str, master_keys: str, warm_key: str) -> dict[str, str]:
    """Every stored tenant's key, decrypted by a cipher built as the server builds it."""
    settings = Settings.from_env(test_env(db_url, LIYA_MASTER_KEYS=master_keys))
    db = Database(db_url)
    try:
        cipher = await build_cipher(settings, db)
        keys = {}
        for tenant in ["bench-warm", *(f"bench-cold-{i:06d}" for i in range(COLD))]:
            config = await db.read_config(tenant)
            assert config is not None, tenant
            blob = config.providers["openai"].api_key_ciphertext
            keys[tenant] = cipher.decrypt(
                blob, tenant_id=tenant, provider="openai", field="api_key"
            ).reveal()
        assert keys["bench-warm"] == warm_key
        return keys
    finally:
        await db.dispose()


async def test_postgres_database_is_seeded_once_then_reused(
    pg_database, postgres_url, tmp_path, monkeypatch
):
    # ``postgres_url`` (a scratch database) names the server; the bench's
    # database is made beside it. Fails, not skips, in CI without PostgreSQL.
    name = f"liya_test_bench_{uuid.uuid4().hex[:10]}"
    env = test_env("sqlite+aiosqlite:///unused.db")  # all but the database and master keys

    async def prepare():
        return await pg_database.prepare(postgres_url, COLD, env, name=name, keys_dir=tmp_path)

    try:
        first = await prepare()
        assert first.seed["reused"] is False
        assert first.seed["tenants"] == COLD + 1
        assert first.url == postgres_url.rsplit("/", 1)[0] + f"/{name}"
        assert first.server_version
        keys = await read_back(first.url, first.master_keys, first.warm_key)
        assert len(set(keys.values())) == COLD + 1  # every tenant its own key
        assert (tmp_path / f"{name}.json").stat().st_mode & 0o777 == 0o600

        # A run's calls leave rows behind; the next run reuses the database
        # with them gone, and with the same keys.
        db = Database(first.url)
        try:
            async with db.unit_of_work(write=True) as uow:
                await uow.audit.add(
                    tenant_id="bench-warm",
                    actor="a",
                    request_id="r",
                    create_time=datetime.now(UTC),
                    changed_paths=["mode"],
                    mode_before="byok",
                    mode_after="byok",
                )
                await uow.commit()
            again = await prepare()
            assert again.seed["reused"] is True
            assert again.seed["seconds"] == first.seed["seconds"]
            assert (again.master_keys, again.warm_key) == (first.master_keys, first.warm_key)
            async with db.unit_of_work() as uow:
                assert await uow.audit.list("bench-warm", limit=10, before_id=None) == []
        finally:
            await db.dispose()
        assert await read_back(again.url, again.master_keys, again.warm_key) == keys

        # Seeded again, with new keys: when the seed version changes ...
        monkeypatch.setattr(pg_database, "SEED_VERSION", pg_database.SEED_VERSION + 1)
        bumped = await prepare()
        assert bumped.seed["reused"] is False
        assert bumped.master_keys != first.master_keys
        assert (await prepare()).seed["reused"] is True
        # ... when the kept master key is lost ...
        (tmp_path / f"{name}.json").unlink()
        assert (await prepare()).seed["reused"] is False
        # ... or is not the one the database was seeded with.
        other = await prepare()
        assert other.seed["reused"] is True
        kept = json.loads((tmp_path / f"{name}.json").read_text())
        kept["master_keys"] = master_key_line("bench-1")  # same id, other material
        (tmp_path / f"{name}.json").write_text(json.dumps(kept))
        reseeded = await prepare()
        assert reseeded.seed["reused"] is False
        await read_back(reseeded.url, reseeded.master_keys, reseeded.warm_key)
        # A seeding that did not finish left no marker: seeded again.
        conn = await asyncpg.connect(reseeded.url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("DROP TABLE bench_seed")
        finally:
            await conn.close()
        assert (await prepare()).seed["reused"] is False
    finally:
        await drop_database(postgres_url, name)


def test_database_names(pg_database):
    assert pg_database.database_name(1_000_000) == "liya_bench_1m"
    assert pg_database.database_name(20_000) == "liya_bench_20k"
    assert pg_database.database_name(1_500) == "liya_bench_1500"
