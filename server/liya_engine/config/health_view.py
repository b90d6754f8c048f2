"""Reading key health for ``GetMaskedConfig`` and ``UpdateConfig``, apart from
the tenant config cache (a health write never invalidates a config).

Each tenant's stored records are kept ``VIEW_TTL_SECONDS`` at most, merged
with what this replica's own calls found since (so the serving replica shows
its latest outcome at once), and dropped whenever the tenant's config changes
(here or, by notification, on another replica), so health read before new
credentials were stored is never shown with them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from liya_engine.config.health import VIEW_TTL_SECONDS, HealthStore, ProviderHealth
from liya_engine.config.health_recorder import HealthRecorder
from liya_engine.config.model import TenantConfig
from liya_engine.errors import StorageUnavailable

log = logging.getLogger(__name__)

Records = dict[str, ProviderHealth]


class HealthView:
    """A small cache of stored health per tenant with a short time-to-live."""

    def __init__(
        self,
        store: HealthStore,
        recorder: HealthRecorder,
        *,
        ttl_seconds: float = VIEW_TTL_SECONDS,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Records]] = OrderedDict()
        self._generation = 0

    def invalidate(self, tenant_id: str) -> None:
        self._generation += 1
        self._entries.pop(tenant_id, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def _stored(self, tenant_id: str) -> Records | None:
        now = self._clock()
        hit = self._entries.get(tenant_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        generation = self._generation
        try:
            records = await self._store.read_health(tenant_id)
        except StorageUnavailable:
            # Health is an aid: the config is still shown, with the last health
            # read, or without health when there is none.
            return hit[1] if hit is not None else None
        if generation == self._generation:
            self._entries[tenant_id] = (now, records)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return records

    async def for_config(self, config: TenantConfig) -> Records | None:
        """The health of each configured provider of ``config``, by provider;
        None when it cannot be read now. A provider with no record of its
        current credentials is ``unknown``."""
        configured = config.configured_providers()
        if not configured:
            return {}
        stored = await self._stored(config.tenant_id)
        if stored is None:
            return None
        out: Records = {}
        for provider in configured:
            record = stored.get(provider)
            if record is None or record.credentials_version > config.version:
                # No record, or one of credentials newer than this config:
                # nothing known about the credentials shown.
                record = ProviderHealth()
            local = self._recorder.local(config.tenant_id, provider)
            if local is not None and record.credentials_version <= local.config_version:
                if local.config_version <= config.version:
                    record = record.merged(local)
            out[provider] = record
        return out
