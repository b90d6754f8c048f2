"""Seeding: the bench's tenants, written before the server starts through the
service's own repositories, and the scratch PostgreSQL database of
``--postgres``.

Each tenant is in byok mode with its own OpenAI key, encrypted by a
``KeyCipher`` built the way the server builds it (``bootstrap.build_cipher``:
the same master key, the same stored salt) and saved by the repository's
``uow.configs.create_many`` (what ``save`` writes for a first version, by
COPY on PostgreSQL and multi-row INSERTs on SQLite), many tenants per unit of
work. No
audit rows are written: no caller made these changes.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from common import MODEL, WARM_TENANT, cold_tenant

from liya_engine.config.model import MODE_BYOK, StoredProvider, TenantConfig
from liya_engine.secret import Secret

if TYPE_CHECKING:  # the storage stack loads only when seeding, not in client workers
    from liya_engine.crypto.cipher import KeyCipher
    from liya_engine.settings import Settings
    from liya_engine.storage.database import Database

# Tenants per unit of work: one commit for many saves. One unit of work at a
# time: SQLite has a single writer, and PostgreSQL (written by COPY) keeps up
# with this one process. Encrypting in worker processes was tried and was not
# faster on 2 cores: sealing costs about 16 us a tenant, little of the total.
SEED_BATCH = 5_000
PROVIDER = "openai"


def random_key(_tenant: str) -> str:
    """A fresh OpenAI-shaped key: every cold tenant has a key of its own."""
    return "sk-proj-" + secrets.token_hex(24)


def tenant_ids(tenants: int) -> list[str]:
    """The warm tenant, then ``tenants`` cold ones."""
    return [WARM_TENANT, *(cold_tenant(i) for i in range(tenants))]


async def seed_database(
    settings: Settings,
    warm_key: str,
    tenants: int,
    *,
    key_for: Callable[[str], str] = random_key,
    batch: int = SEED_BATCH,
    shuffled: bool = False,
) -> dict[str, Any]:
    """Migrate ``settings.database_url``, then save the warm tenant (with
    ``warm_key``) and ``tenants`` cold ones (each with ``key_for(tenant)``).

    ``settings`` are the server's ``Settings``: their master keys encrypt the
    provider keys. ``shuffled`` saves the tenants in a random order, so that
    tenants called one after the other (consecutive ids) are not neighbours in
    the table's storage, as in a database that grew over years. Returns the
    timings the report shows.
    """
    from liya_engine.bootstrap import build_cipher
    from liya_engine.config.keys import key_preview
    from liya_engine.storage.database import Database

    db = Database(settings.database_url)
    try:
        started = time.perf_counter()
        await db.migrate()
        cipher = await build_cipher(settings, db)
        migrated = time.perf_counter()
        ids = tenant_ids(tenants)
        if shuffled:
            random.shuffle(ids)  # not for secrecy: a layout on disk

        def keys(tenant: str) -> str:
            return warm_key if tenant == WARM_TENANT else key_for(tenant)

        writer = _Writer(db, cipher, keys, key_preview)
        for first in range(0, len(ids), batch):
            await writer.save(ids[first : first + batch])
        done = time.perf_counter()
        return {
            "tenants": len(ids),
            "seconds": round(done - started, 2),
            "migrate_seconds": round(migrated - started, 2),
            "encrypt_seconds": round(writer.encrypt_seconds, 2),
            "insert_seconds": round(done - migrated - writer.encrypt_seconds, 2),
            "tenants_per_second": round(len(ids) / (done - migrated), 1),
        }
    finally:
        await db.dispose()


class _Writer:
    """Saves batches of tenants, one unit of work per batch."""

    def __init__(
        self,
        db: Database,
        cipher: KeyCipher,
        key_for: Callable[[str], str],
        preview: Callable[[Secret], str],
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._key_for = key_for
        self._preview = preview
        self._key_ids = {PROVIDER: cipher.keyring.primary_id}
        self._now = datetime.now(UTC)
        self.encrypt_seconds = 0.0

    def config_of(self, tenant: str) -> TenantConfig:
        """The first version of ``tenant``'s config, its key encrypted."""
        key = Secret(self._key_for(tenant))
        stored = StoredProvider(
            api_key_ciphertext=self._cipher.encrypt(
                key, tenant_id=tenant, provider=PROVIDER, field="api_key"
            ),
            api_key_preview=self._preview(key),
            default_model=MODEL,
        )
        return TenantConfig(
            tenant_id=tenant,
            version=1,
            mode=MODE_BYOK,
            providers={PROVIDER: stored},
            update_time=self._now,
        )

    async def save(self, tenants: list[str]) -> None:
        """Save the first version of each tenant's config, in one unit of work."""
        t0 = time.perf_counter()
        configs = [self.config_of(tenant) for tenant in tenants]
        self.encrypt_seconds += time.perf_counter() - t0
        async with self._db.unit_of_work(write=True) as uow:
            await uow.configs.create_many(configs, key_ids=self._key_ids)
            await uow.commit()


async def create_pg_database(url: str) -> tuple[str, str]:
    """A fresh database on the PostgreSQL server of ``url``: (its name, its URL)."""
    import asyncpg

    name = f"liya_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, url.rsplit("/", 1)[0] + f"/{name}"


async def drop_pg_database(url: str, name: str) -> None:
    """Drop the scratch database ``name`` on the server of ``url``, sessions and all."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
