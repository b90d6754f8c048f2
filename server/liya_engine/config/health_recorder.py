"""Recording key health off the per-call path.

A call's outcome is a dict lookup and a few attribute writes in memory
(``HealthRecorder.succeeded`` / ``failed``: no await, no I/O, no lock). A
background task (``HealthRecorder.run``) writes what changed every
``FLUSH_SECONDS``: every change of state (``unknown`` to ``ok`` is one; so
is a new failure reason) and the first outcome after the tenant's config
changed, and otherwise a further success or a repeat of the same failure at
most every ``SUCCESS_REWRITE_SECONDS`` per tenant and provider. So database
writes grow with tenants whose health changes, not with calls.

A write that fails (database down) is retried at the next flush; kill -9 loses
at most one interval of outcomes, which the next calls record again. Entries
idle for ``FORGET_IDLE_SECONDS`` and written are forgotten (checked at most
once a minute), which bounds memory by the tenants calling recently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from liya_engine.config.health import (
    FLUSH_SECONDS,
    FORGET_IDLE_SECONDS,
    HEALTH_REASONS,
    STATE_FAILING,
    STATE_OK,
    STATE_UNKNOWN,
    SUCCESS_REWRITE_SECONDS,
    HealthStore,
    Outcome,
)

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (tenant, provider)
PRUNE_EVERY_SECONDS = 60.0  # a scan of every entry: not at each flush
Transition = Callable[[str, str, str], None]  # (provider, from state, to state)


class LocalHealth:
    """What this replica's calls found for one tenant and provider, with
    config ``version``."""

    __slots__ = ("failure", "fresh", "message", "reason", "state", "success", "version", "written")

    def __init__(self, version: int, state: str) -> None:
        self.version = version
        self.state = state
        self.success: float | None = None
        self.failure: float | None = None
        self.reason = ""
        self.message = ""
        self.written = float("-inf")  # when an outcome was last handed to the store
        self.fresh = True  # no outcome of this version written yet

    def outcome(self, tenant_id: str, provider: str) -> Outcome:
        return Outcome(
            tenant_id,
            provider,
            self.version,
            success_time=_utc(self.success),
            failure_time=_utc(self.failure),
            reason=self.reason if self.failure is not None else "",
            message=self.message if self.failure is not None else "",
        )


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class HealthRecorder:
    """Outcomes of byok calls by (tenant, provider), and their writer."""

    def __init__(
        self,
        store: HealthStore,
        on_transition: Transition,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._on_transition = on_transition
        self._clock = clock
        # tenant -> provider -> entry: the call path allocates no key tuple.
        self._entries: dict[str, dict[str, LocalHealth]] = {}
        self._due: set[Key] = set()
        self._pruned_at = clock()

    # -- the call path: no await, no I/O ------------------------------------------

    def succeeded(self, tenant_id: str, provider: str, version: int) -> None:
        """A call with config ``version`` reached ``provider`` and got an answer."""
        entry = self._entry(tenant_id, provider, version)
        if entry is None:
            return
        now = entry.success = self._clock()
        if entry.state != STATE_OK:
            self._moved(provider, entry, STATE_OK)
            self._due.add((tenant_id, provider))
        elif entry.fresh or now - entry.written >= SUCCESS_REWRITE_SECONDS:
            self._due.add((tenant_id, provider))

    def failed(
        self, tenant_id: str, provider: str, version: int, reason: str, message: str
    ) -> None:
        """A call with config ``version`` failed with ``reason``; only
        ``HEALTH_REASONS`` count. ``message`` must be scrubbed already."""
        if reason not in HEALTH_REASONS:
            return
        key = (tenant_id, provider)
        entry = self._entry(tenant_id, provider, version)
        if entry is None:
            return
        now = entry.failure = self._clock()
        if entry.state != STATE_FAILING or entry.reason != reason:
            self._moved(provider, entry, STATE_FAILING)
            entry.reason, entry.message = reason, message
            self._due.add(key)
        elif entry.fresh or now - entry.written >= SUCCESS_REWRITE_SECONDS:
            entry.message = message
            self._due.add(key)

    def _entry(self, tenant_id: str, provider: str, version: int) -> LocalHealth | None:
        tenant = self._entries.get(tenant_id)
        if tenant is None:
            tenant = self._entries[tenant_id] = {}
        entry = tenant.get(provider)
        if entry is not None and entry.version == version:
            return entry
        if entry is not None and entry.version > version:
            return None  # a call that began before this replica saw a newer config
        # A new config version usually keeps the credentials (a model change),
        # so the state carries over; its first outcome is written in any case.
        state = entry.state if entry is not None else STATE_UNKNOWN
        entry = tenant[provider] = LocalHealth(version, state)
        return entry

    def _moved(self, provider: str, entry: LocalHealth, to: str) -> None:
        if entry.state != to:
            self._on_transition(provider, entry.state, to)
            entry.state = to

    # -- for readers -----------------------------------------------------------------

    def local(self, tenant_id: str, provider: str) -> Outcome | None:
        """This replica's latest outcomes for the tenant and provider, if any."""
        entry = self._entries.get(tenant_id, {}).get(provider)
        if entry is None or (entry.success is None and entry.failure is None):
            return None
        return entry.outcome(tenant_id, provider)

    # -- the writer -------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the outcomes that are due (kept due if the write fails); at most
        once a minute, forget the idle entries."""
        if self._due:
            await self._write_due()
        now = self._clock()
        if now - self._pruned_at >= PRUNE_EVERY_SECONDS:
            self.forget_idle(now)

    async def _write_due(self) -> None:
        due, self._due = self._due, set()
        now = self._clock()
        written: list[tuple[Key, LocalHealth]] = []
        for key in due:
            entry = self._entries.get(key[0], {}).get(key[1])
            if entry is not None:
                written.append((key, entry))
        try:
            await self._store.record_health([e.outcome(*key) for key, e in written])
        except Exception as exc:  # an outage: keep them for the next flush
            self._due |= due
            log.warning("key health not written, will retry: %s", type(exc).__name__)
            return
        for _key, entry in written:
            entry.written = now
            entry.fresh = False

    def forget_idle(self, now: float) -> int:
        """Drop entries written and with no outcome since ``now - FORGET_IDLE_SECONDS``;
        how many were dropped. Entries still due (a write failed) are kept."""
        self._pruned_at = now
        horizon = now - FORGET_IDLE_SECONDS
        dropped = 0
        for tenant_id in list(self._entries):
            providers = self._entries[tenant_id]
            for provider, entry in list(providers.items()):
                last = max(entry.success or 0.0, entry.failure or 0.0)
                if last < horizon and not entry.fresh and (tenant_id, provider) not in self._due:
                    del providers[provider]
                    dropped += 1
            if not providers:
                del self._entries[tenant_id]
        return dropped

    async def run(self, interval: float = FLUSH_SECONDS) -> None:
        """Flush every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()
