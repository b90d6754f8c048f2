"""What an Azure deployment runs, learned from Azure's answers.

A deployment's name is the tenant's own (``prod-chat``); when the tenant did
not say what it runs (``provider_config.azure.model``) and the name prices
nothing, the model Azure reports in each answer says it. That model is kept
per tenant and deployment in shared storage (``DeploymentModelStore``), so
every replica prices the next call, cost limit included, from it.

Off the per-call path: a call's answer only updates memory (a dict lookup when
nothing changed, which is nearly always); a background task writes what
changed, retrying while storage is down, and the last of it on ``close``.
Reads happen once per cached tenant config, and only for a tenant whose Azure
deployment needs it (``ResolvedTenant.learned``), so a replica sees what
another learned when it next reads the tenant (at most the config cache's
time to live later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from liya_engine.errors import StorageUnavailable
from liya_engine.inference.tenants import ResolvedTenant

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0
MAX_PENDING = 10_000
"""Changes waiting for storage at most; beyond it new ones wait for the next
answer that reports them (each answer reports the model again)."""


class DeploymentModelStore(Protocol):
    """Where learned deployment models live, shared by replicas."""

    async def read(self, tenant_id: str) -> dict[str, str]:
        """The tenant's deployments and the model each last reported."""

    async def write(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """Insert or replace (tenant, deployment, model) entries."""


class LearnedModels:
    """Reads learned models for a tenant, and learns from answers."""

    def __init__(self, store: DeploymentModelStore, *, retry_seconds: float = RETRY_SECONDS):
        self._store = store
        self._retry = retry_seconds
        self._pending: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task | None = None
        self._closed = False

    async def load(self, tenant: ResolvedTenant) -> None:
        """Fill ``tenant.learned`` from storage. When storage cannot answer the
        call goes on without (its deployment unpriced) and the next call reads
        again."""
        try:
            found = await self._store.read(tenant.config.tenant_id)
        except StorageUnavailable:
            log.warning("learned deployment models unreadable now: storage unavailable")
            return
        tenant_id = tenant.config.tenant_id
        # What this replica learned but has not written yet is newer.
        found.update({d: m for (t, d), m in self._pending.items() if t == tenant_id})
        tenant.learned = found

    def learn(self, tenant: ResolvedTenant, deployment: str, model: str) -> None:
        """Azure answered for ``deployment`` as ``model``: remember it, and have
        it written if it is news."""
        known = tenant.learned
        if known is not None and known.get(deployment) == model:
            return
        if not model or model == deployment:
            return  # no model reported (the adapter's fallback is the deployment)
        if known is None:
            tenant.learned = known = {}
        known[deployment] = model
        key = (tenant.config.tenant_id, deployment)
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            return
        self._pending[key] = model
        if (self._task is None or self._task.done()) and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._flush_until_done())

    async def _write_pending(self) -> None:
        batch = dict(self._pending)
        await self._store.write([(t, d, m) for (t, d), m in batch.items()])
        for key, model in batch.items():
            if self._pending.get(key) == model:  # not changed again meanwhile
                del self._pending[key]

    async def _flush_until_done(self) -> None:
        while self._pending:
            try:
                await self._write_pending()
            except Exception as exc:  # storage down, or worse: keep them, retry
                log.warning(
                    "learned deployment models not written (%s); retrying in %.0fs",
                    type(exc).__name__,
                    self._retry,
                )
                await asyncio.sleep(self._retry)

    async def close(self, within: float = 2.0) -> None:
        """Write what is pending (for at most ``within`` seconds) and stop."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:
            try:
                async with asyncio.timeout(within):
                    await self._write_pending()
            except Exception:  # storage down at stop: the next answers report them again
                log.warning(
                    "%d learned deployment model(s) not written at stop", len(self._pending)
                )
