"""The benchmark seeds its tenants through the service's repositories: what it
writes reads back through ``Database.read_config`` as a byok config whose key
the server's own cipher decrypts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from helpers import test_env
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
