"""Tenants' configs ready for calls: decrypted keys held only in memory, in a
bounded cache so a warm call makes no database round trip.

Staleness bound: a change made through this process invalidates its entry at
once; on PostgreSQL a change made through another replica arrives by NOTIFY and
invalidates it within milliseconds; in any case an entry is re-read after
``ttl_seconds`` (``LIYA_CONFIG_CACHE_TTL_SECONDS``).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from liya_engine.config.model import TenantConfig
from liya_engine.config.service import ConfigService
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.metrics import Metrics
from liya_engine.secret import Secret


class ResolvedTenant:
    """A tenant's config with its keys decrypted on first use and kept in memory.

    Keys are decrypted one provider at a time, so a key that cannot be
    decrypted fails only the calls that need it.
    """

    __slots__ = ("_cipher", "_keys", "config", "learned", "shown", "shown_with_health")

    def __init__(self, config: TenantConfig, cipher: KeyCipher) -> None:
        self.config = config
        self._cipher = cipher
        self._keys: dict[str, Secret] = {}
        # The masked form built for GetMaskedConfig, kept with this version,
        # and the last reply with health: (the health it shows, the reply).
        self.shown: object | None = None
        self.shown_with_health: tuple[object, object] | None = None
        # Azure deployment -> the model its answers reported, read on first
        # need (``liya_engine.inference.learned``); None until then.
        self.learned: dict[str, str] | None = None

    def key(self, provider: str) -> Secret:
        """The decrypted key of ``provider``; raises ``KeyDecryptionFailed``."""
        key = self._keys.get(provider)
        if key is None:
            blob = self.config.provider(provider).api_key_ciphertext
            if blob is None:
                raise KeyError(provider)
            key = self._cipher.decrypt(
                blob, tenant_id=self.config.tenant_id, provider=provider, field="api_key"
            )
            self._keys[provider] = key
        return key

    def __repr__(self) -> str:
        return f"ResolvedTenant({self.config.tenant_id!r}, v{self.config.version})"


class TenantCache:
    """LRU of ``ResolvedTenant`` with a time-to-live per entry."""

    def __init__(
        self,
        configs: ConfigService,
        cipher: KeyCipher,
        metrics: Metrics,
        *,
        max_entries: int,
        ttl_seconds: float,
    ) -> None:
        self._configs = configs
        self._cipher = cipher
        self._hits = metrics.config_cache.labels("hit")
        self._misses = metrics.config_cache.labels("miss")
        self._max = max_entries
        self._ttl = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, ResolvedTenant]] = OrderedDict()
        # Bumped by every invalidation: a read that started before one must not
        # put what it read into the cache.
        self._generation = 0
        configs.on_change(self.invalidate)

    def invalidate(self, tenant_id: str) -> None:
        self._generation += 1
        self._entries.pop(tenant_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, tenant_id: str) -> ResolvedTenant:
        now = time.monotonic()
        hit = self._entries.get(tenant_id)
        if hit is not None and now - hit[0] < self._ttl:
            self._entries.move_to_end(tenant_id)
            self._hits.inc()
            return hit[1]
        self._misses.inc()
        generation = self._generation
        resolved = ResolvedTenant(await self._configs.get(tenant_id), self._cipher)
        if self._max > 0 and generation == self._generation:
            self._entries[tenant_id] = (now, resolved)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return resolved
