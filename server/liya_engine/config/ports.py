"""The storage the config plane needs, as small Protocols it owns.

``liya_engine.storage`` implements them; ``liya_engine.app`` wires the two
together. Nothing here imports SQLAlchemy: domain code depends on these shapes
only, so it can be read, imported and tested without a database driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol

from liya_engine.config.health import HealthRepository
from liya_engine.config.model import AuditEntry, TenantConfig


class ConfigRepository(Protocol):
    """Tenant configs inside one unit of work."""

    async def get(self, tenant_id: str, *, for_update: bool = False) -> TenantConfig | None:
        """The stored config, or None; ``for_update`` locks it until commit."""

    async def save(
        self, config: TenantConfig, *, previous: TenantConfig, key_ids: Mapping[str, str]
    ) -> None:
        """Write ``config`` if the stored one is still ``previous``, else raise
        ``errors.Conflict``. ``key_ids`` names each ciphertext's master key."""

    async def stale_ciphertexts(
        self, primary_key_id: str, limit: int, after: tuple[str, str] | None
    ) -> list[tuple[str, str, bytes]]:
        """(tenant, provider, ciphertext) not under ``primary_key_id``, in key order."""

    async def replace_ciphertext(
        self, tenant_id: str, provider: str, old: bytes, new: bytes, key_id: str
    ) -> bool:
        """Swap ``old`` for ``new`` if the row still holds ``old``."""

    async def count_by_master_key(self) -> dict[str, int]:
        """How many stored keys each master key id encrypts."""


class AuditRepository(Protocol):
    """Audit entries inside one unit of work."""

    async def add(
        self,
        *,
        tenant_id: str,
        actor: str,
        request_id: str,
        create_time: datetime,
        changed_paths: Iterable[str],
        mode_before: str,
        mode_after: str,
    ) -> None:
        """Record one change."""

    async def list(self, tenant_id: str, *, limit: int, before_id: int | None) -> list[AuditEntry]:
        """Newest first, ids below ``before_id`` when given."""


class UnitOfWork(Protocol):
    """One transaction: repositories, a change announcement, commit."""

    configs: ConfigRepository
    audit: AuditRepository
    health: HealthRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, exc_type, exc, tb) -> None: ...

    async def announce_change(self, tenant_id: str) -> None:
        """Tell other replicas, at commit, that the tenant's config changed."""

    async def commit(self) -> None:
        """Make the unit's writes durable; raise ``StorageUnavailable`` if not."""


class ConfigStore(Protocol):
    """Where configs live: a fast read and units of work."""

    async def read_config(self, tenant_id: str) -> TenantConfig | None:
        """The tenant's config outside any unit of work (the hot read)."""

    def unit_of_work(self, *, write: bool = False) -> UnitOfWork:
        """A new unit of work; ``write`` says it will write."""


class SaltStore(Protocol):
    """Per master key salts for key derivation, created on first use."""

    async def salts_for(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The salt of each id, creating missing ones."""
