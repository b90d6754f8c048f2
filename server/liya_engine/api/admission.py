"""Admission: whether this process takes on one more call.

Three bounds, all decided before the call does any I/O (``CallGuard`` asks
here as it begins a call):

- ``LIYA_MAX_IN_FLIGHT``: calls of every guarded method in flight in this
  process (``Metrics.calls_in_flight``, the count a drain waits for) ->
  ``ServerOverloaded``.
- ``LIYA_QUEUE_DELAY_TARGET_MS``: how long calls wait in front of the
  service, kept above the target for a while (``api.queue_delay``): the
  process is past its CPU capacity, and every call would wait in its queue
  -> ``ServerOverloaded``.
- ``LIYA_TENANT_MAX_IN_FLIGHT``: calls of the methods that call a provider,
  per tenant -> ``ConcurrencyLimitExceeded``. This bound is what keeps one
  tenant's slow or hung provider calls from taking the upstream connections
  other tenants need (the pools are sized to the calls admitted).

Counting is a dict update on the event loop's thread: no lock, no await, and
every ``take`` is matched by exactly one ``give_back`` (the guard's
``finally``), however the call ends.
"""

from __future__ import annotations

from liya_engine.errors import ConcurrencyLimitExceeded, ServerOverloaded

#: The RetryInfo of CONCURRENCY_LIMIT_EXCEEDED: short, a slot frees when any
#: of the tenant's calls ends.
TENANT_RETRY_AFTER_SECONDS = 1.0
#: The RetryInfo of SERVER_OVERLOADED from admission: an overload passes (or
#: the caller's retry goes to another replica) within about a second.
OVERLOAD_RETRY_AFTER_SECONDS = 1.0


class TenantSlots:
    """Calls in flight per tenant, at most ``limit`` each."""

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def take(self, tenant_id: str) -> None:
        """Count one more call of ``tenant_id``; ``ConcurrencyLimitExceeded``
        (nothing counted) when it already has ``limit``."""
        held = self._counts.get(tenant_id, 0)
        if held >= self.limit:
            raise ConcurrencyLimitExceeded(
                f"this tenant already has {self.limit} calls in flight on this replica, "
                "the most it may have; retry when one has finished, or make fewer "
                "concurrent calls",
                retry_after=TENANT_RETRY_AFTER_SECONDS,
            )
        self._counts[tenant_id] = held + 1

    def give_back(self, tenant_id: str) -> None:
        """One call of ``tenant_id`` that ``take`` counted has ended."""
        held = self._counts[tenant_id] - 1
        if held:
            self._counts[tenant_id] = held
        else:
            del self._counts[tenant_id]

    def held(self, tenant_id: str) -> int:
        """Calls of ``tenant_id`` in flight now."""
        return self._counts.get(tenant_id, 0)

    def __len__(self) -> int:
        """Tenants with a call in flight."""
        return len(self._counts)


def overloaded(max_in_flight: int, lagging: bool = False) -> ServerOverloaded:
    """The answer to a call beyond ``LIYA_MAX_IN_FLIGHT`` or, with ``lagging``,
    while calls are queueing (``api.queue_delay``)."""
    if lagging:
        message = (
            "this replica is past its capacity (its calls are queueing); retry with "
            "backoff, another replica may serve the call"
        )
    else:
        message = (
            f"this replica is serving its most calls at once ({max_in_flight}); "
            "retry with backoff, another replica may serve the call"
        )
    refusal = ServerOverloaded(message)
    refusal.retry_after = OVERLOAD_RETRY_AFTER_SECONDS
    return refusal
