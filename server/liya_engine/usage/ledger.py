"""The usage ledger's in-memory side: every call adds to a dict, a background
task writes the dict out.

``record`` is on the per-call path: a dict lookup and a few additions, no I/O,
no await. Every ``flush_seconds`` (``LIYA_USAGE_FLUSH_SECONDS``) and on
graceful stop, ``flush`` hands the aggregate to the ``UsageStore`` as one
upsert per rollup key, so database writes grow with the active (tenant,
model, intent) rows, not with calls. A flush that fails (database down) puts
its totals back and the next interval retries them.

Memory is bounded: at most ``max_keys`` distinct rollup keys wait unwritten.
When the aggregate is full, calls on keys already in it still add up; a call
needing a new key is dropped from the ledger and counted in
``liya_usage_dropped_calls_total`` (and logged at each flush). A replica only
fills up when its database has been unwritable for a long time.

Budgets read ``spent``: the month's stored total (cached per tenant, refreshed
after each flush, so a warm call reads no database) plus what this replica
has recorded but not written, plus the worst cases of this replica's
budgeted calls in flight (``reserve``), so concurrent calls on one replica
cannot pass the same remaining budget twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from liya_engine.metrics import Metrics
from liya_engine.usage.ports import RollupKey, Totals, UsageStore

log = logging.getLogger("liya_engine.usage")

#: The rollup intent of ``VerifyConfig`` and of ``UpdateConfig``'s checks.
VERIFY_INTENT = "verify"
_REFRESH_CHUNK = 500  # tenants per month-total query
_IDLE_SECONDS = 300.0  # a cached month total unused this long is dropped
_EPSILON = 1e-12


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


class UsageLedger:
    """Aggregates usage in memory and flushes it to a ``UsageStore``."""

    enabled = True

    def __init__(
        self,
        store: UsageStore,
        metrics: Metrics,
        *,
        flush_seconds: float,
        max_keys: int,
        max_cached_tenants: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock  # UTC seconds: which day and month a call counts in
        self._interval = flush_seconds
        self._max_keys = max_keys
        self._max_cached = max_cached_tenants
        self._pending: dict[RollupKey, Totals] = {}
        # Cost per tenant recorded but not yet written, and the worst cases of
        # its budgeted calls in flight here.
        self._unflushed: dict[str, float] = {}
        self._reserved: dict[str, float] = {}
        # Stored month-to-date cost per tenant: [total, last used (monotonic)].
        self._stored: dict[str, list[float]] = {}
        # Bumped whenever written totals move from _unflushed to the store.
        self._generation = 0
        self._day = date.min
        self._day_ends = 0.0
        self._month = (date.min, date.min)
        self._dropped = 0
        self._failing = False
        self._last_flush = time.monotonic()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._dropped_metric = metrics.usage_dropped
        self._failures_metric = metrics.usage_flush_failures
        metrics.usage_flush_lag.set_function(self.flush_lag)

    # -- the per-call path -------------------------------------------------------

    def record(
        self,
        tenant_id: str,
        provider: str,
        model: str,
        intent: str,
        mode: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        failed: bool,
        reserved_usd: float = 0.0,
    ) -> None:
        """Add one call that reached a provider; release its reservation."""
        if reserved_usd:
            self._release(tenant_id, reserved_usd)
        now = self._clock()
        if now >= self._day_ends:
            self._new_day(now)
        key = (tenant_id, self._day, provider, model, intent, mode)
        totals = self._pending.get(key)
        if totals is None:
            if len(self._pending) >= self._max_keys:
                self._dropped += 1
                self._dropped_metric.inc()
                return
            totals = self._pending[key] = [0, 0, 0, 0, 0.0]
        totals[0] += 1
        if failed:
            totals[1] += 1
        totals[2] += input_tokens
        totals[3] += output_tokens
        if cost_usd:
            totals[4] += cost_usd
            self._unflushed[tenant_id] = self._unflushed.get(tenant_id, 0.0) + cost_usd

    def reserve(self, tenant_id: str, amount_usd: float) -> None:
        """Hold ``amount_usd`` (a call's worst case) against the tenant's budget
        until the call is recorded."""
        self._reserved[tenant_id] = self._reserved.get(tenant_id, 0.0) + amount_usd

    def _release(self, tenant_id: str, amount_usd: float) -> None:
        rest = self._reserved.get(tenant_id, 0.0) - amount_usd
        if rest > _EPSILON:
            self._reserved[tenant_id] = rest
        else:
            self._reserved.pop(tenant_id, None)

    async def spent(self, tenant_id: str) -> float:
        """The tenant's month-to-date cost as this replica knows it. Reads the
        store only when the tenant's stored total is not cached."""
        now = self._clock()
        if now >= self._day_ends:
            self._new_day(now)
        entry = self._stored.get(tenant_id)
        if entry is None:
            entry = await self._fill(tenant_id)
        entry[1] = time.monotonic()
        return entry[0] + self._unflushed.get(tenant_id, 0.0) + self._reserved.get(tenant_id, 0.0)

    async def month_to_date(self, tenant_id: str) -> float:
        """The month's cost as stored now plus what this replica has not
        written yet (no reservations): what ``ListDailyUsage`` shows."""
        if self._clock() >= self._day_ends:
            self._new_day(self._clock())
        return await self._read_stored(tenant_id) + self._unflushed.get(tenant_id, 0.0)

    async def _read_stored(self, tenant_id: str) -> float:
        start, end = self._month
        for _ in range(3):
            generation = self._generation
            totals = await self._store.month_costs([tenant_id], start, end)
            # A flush that finished meanwhile moved totals from _unflushed into
            # the store, maybe after this read: read again.
            if generation == self._generation and self._month == (start, end):
                break
            start, end = self._month
        return totals.get(tenant_id, 0.0)

    async def _fill(self, tenant_id: str) -> list[float]:
        entry = self._stored[tenant_id] = [await self._read_stored(tenant_id), 0.0]
        while len(self._stored) > self._max_cached:
            del self._stored[next(iter(self._stored))]
        return entry

    def _new_day(self, now: float) -> None:
        today = datetime.fromtimestamp(now, UTC).date()
        self._day = today
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
        self._day_ends = midnight.timestamp()
        month = (month_start(today), next_month_start(today))
        if month != self._month:
            self._month = month
            self._stored.clear()  # last month's totals say nothing about this one
            self._generation += 1

    def resets_at(self) -> datetime:
        """When the current month's budget starts over (the next month's start, UTC)."""
        if self._clock() >= self._day_ends:
            self._new_day(self._clock())
        end = self._month[1]
        return datetime(end.year, end.month, end.day, tzinfo=UTC)

    # -- flushing ----------------------------------------------------------------

    def flush_lag(self) -> float:
        """Seconds since everything recorded was last written (the metric)."""
        return 0.0 if self._task is None else time.monotonic() - self._last_flush

    def start(self) -> None:
        """Start the background flush task (in the running loop)."""
        if self._task is None:
            self._last_flush = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop the flush task and write what is left (graceful stop)."""
        if self._task is not None:
            async with self._lock:  # never cancel the task in the middle of a flush
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not await self.flush() and self._pending:
            calls = sum(t[0] for t in self._pending.values())
            log.error("usage of %d call(s) could not be written before stopping", calls)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:  # the loop must outlive any one failure
                log.exception("usage flush failed unexpectedly")

    async def flush(self) -> bool:
        """Write the aggregate; True when nothing recorded before is left unwritten."""
        async with self._lock:
            batch = self._pending
            if batch:
                self._pending = {}
                try:
                    await self._store.add_usage(batch)
                except asyncio.CancelledError:
                    self._put_back(batch)  # maybe written, maybe not: kept, as for a failure
                    raise
                except Exception as exc:
                    self._put_back(batch)
                    self._failures_metric.inc()
                    if not self._failing:
                        log.warning(
                            "usage could not be written (%s); kept in memory, retrying every %.1fs",
                            type(exc).__name__,
                            self._interval,
                        )
                    self._failing = True
                    return False
                self._written(batch)
            if self._failing:
                log.warning("usage written again after an outage")
                self._failing = False
            if self._dropped:
                log.warning("usage of %d call(s) dropped: the aggregate was full", self._dropped)
                self._dropped = 0
            self._last_flush = time.monotonic()
            await self._refresh()
            return True

    def _put_back(self, batch: dict[RollupKey, Totals]) -> None:
        """Merge a batch that was not written into what was recorded since."""
        for key, totals in batch.items():
            now = self._pending.get(key)
            if now is None:
                self._pending[key] = totals
            else:
                for i, value in enumerate(totals):
                    now[i] += value

    def _written(self, batch: dict[RollupKey, Totals]) -> None:
        costs: dict[str, float] = {}
        this_month = self._month[0]
        for key, totals in batch.items():
            if totals[4]:
                costs[key[0]] = costs.get(key[0], 0.0) + totals[4]
        for tenant, cost in costs.items():
            rest = self._unflushed.get(tenant, 0.0) - cost
            if rest > _EPSILON:
                self._unflushed[tenant] = rest
            else:
                self._unflushed.pop(tenant, None)
        for key, totals in batch.items():
            entry = self._stored.get(key[0])
            if entry is not None and key[1] >= this_month:
                entry[0] += totals[4]
        self._generation += 1

    async def _refresh(self) -> None:
        """Re-read the cached month totals: other replicas' spend shows up here
        within one interval of their flush."""
        idle = time.monotonic() - _IDLE_SECONDS
        for tenant in [t for t, e in self._stored.items() if e[1] < idle]:
            del self._stored[tenant]
        month = self._month
        for chunk in _chunks(list(self._stored), _REFRESH_CHUNK):
            try:
                totals = await self._store.month_costs(chunk, *month)
            except Exception:
                return  # the next flush tries again; the cached totals stay
            if self._month != month:
                return
            for tenant in chunk:
                entry = self._stored.get(tenant)
                if entry is not None:
                    entry[0] = totals.get(tenant, 0.0)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class NoLedger:
    """``LIYA_USAGE_LEDGER=false``: records nothing, and every budget sees 0
    spent (for benchmarks that measure the ledger's cost)."""

    enabled = False

    def record(self, *args: object) -> None:
        pass

    def reserve(self, tenant_id: str, amount_usd: float) -> None:
        pass

    async def spent(self, tenant_id: str) -> float:
        return 0.0

    async def month_to_date(self, tenant_id: str) -> float:
        return 0.0

    def resets_at(self) -> datetime:
        today = datetime.now(UTC).date()
        end = next_month_start(today)
        return datetime(end.year, end.month, end.day, tzinfo=UTC)

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
