"""How big each provider's connection pool is, and how long a call may wait
for a connection from it.

Every admitted call holds at most one upstream connection, so a pool with
room for every call the process admits (``LIYA_MAX_IN_FLIGHT``) never makes
one tenant's calls wait for another's: what bounds a tenant is its own
``LIYA_TENANT_MAX_IN_FLIGHT``, not the pool. There is no per-host limit: the
Azure endpoints of different tenants are different hosts of one pool.

Should the pool still be full (an operator set ``LIYA_UPSTREAM_MAX_CONNECTIONS``
below the calls admitted), a call waits for a connection at most
``pool_timeout`` seconds and then fails with ``PoolWaitTimeout``, which the
transport turns into ``httpx2.PoolTimeout`` and the classification into
SERVER_OVERLOADED: the replica is busy, another may serve the call. Without
this bound the wait would last the call's whole budget.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from liya_engine.settings_limits import Limits

_DEFAULTS = Limits()


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """One adapter's pool: open connections at most, and the longest wait for one."""

    max_connections: int = _DEFAULTS.upstream_connections
    #: None: no bound of its own (the call's budget bounds the wait).
    pool_timeout: float | None = _DEFAULTS.upstream_pool_timeout_seconds


class PoolWaitTimeout(aiohttp.ClientConnectionError):
    """No pooled connection became free within the pool timeout.

    Not an ``asyncio.TimeoutError``: aiohttp would report that as a connect
    timeout, which blames the provider's endpoint.
    """


class BoundedWaitConnector(aiohttp.TCPConnector):
    """aiohttp's connector whose wait for a free connection slot is bounded.

    aiohttp bounds that wait only together with connecting itself (its
    ``connect`` timeout); this bounds the wait alone, by wrapping the one
    method in which the connector waits for a slot.
    """

    def __init__(self, *, pool_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool_timeout = pool_timeout

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        if self._pool_timeout is None:
            await super()._wait_for_available_connection(key, traces)
            return
        try:
            async with asyncio.timeout(self._pool_timeout):
                await super()._wait_for_available_connection(key, traces)
        except TimeoutError:
            raise PoolWaitTimeout(
                f"no free upstream connection within {self._pool_timeout:g}s ({self.limit} in use)"
            ) from None
