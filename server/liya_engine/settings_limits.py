"""The settings that bound how much one server process takes on: calls in
flight (in all and per tenant), how long calls may queue before it
refuses new ones, upstream connections and how long a call may wait for one, and how long
a new connection may take to finish its HTTP/2 handshake. Rows of the
settings table like those of ``liya_engine.settings`` (which reads them into
``Settings.limits``); docs/operations.md, "Limits and overload", says how to
size them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from liya_engine.settings_schema import integer, number, read_settings, setting


@dataclass(frozen=True, slots=True)
class Limits:
    """Admission and pool bounds of one server process."""

    max_in_flight: int = setting(
        "LIYA_MAX_IN_FLIGHT",
        integer(minimum=1),
        2000,
        "calls one process serves at once; beyond, SERVER_OVERLOADED at once",
    )
    queue_delay_target_ms: float = setting(
        "LIYA_QUEUE_DELAY_TARGET_MS",
        number(minimum=0),
        0.0,
        "how long calls may queue before the service takes them in; kept above it for "
        "100 ms, new calls get SERVER_OVERLOADED until it is below again; 0 = off "
        "(the default)",
    )
    tenant_max_in_flight: int = setting(
        "LIYA_TENANT_MAX_IN_FLIGHT",
        integer(minimum=1),
        64,
        "provider-calling calls one tenant has in flight per process; beyond, "
        "CONCURRENCY_LIMIT_EXCEEDED",
    )
    upstream_max_connections: int | None = setting(
        "LIYA_UPSTREAM_MAX_CONNECTIONS",
        integer(minimum=1),
        None,
        "open connections per provider pool; unset = LIYA_MAX_IN_FLIGHT",
    )
    upstream_pool_timeout_seconds: float = setting(
        "LIYA_UPSTREAM_POOL_TIMEOUT_SECONDS",
        number(minimum=0.001),
        1.0,
        "longest wait for a pooled upstream connection; then SERVER_OVERLOADED",
    )
    handshake_timeout_seconds: float = setting(
        "LIYA_HANDSHAKE_TIMEOUT_SECONDS",
        number(minimum=0.1),
        10.0,
        "a client connection that has not finished its HTTP/2 handshake by then is closed",
    )

    @property
    def upstream_connections(self) -> int:
        """Connections each provider's pool may open: never fewer than the calls
        admitted unless the operator asked for fewer."""
        return self.upstream_max_connections or self.max_in_flight

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """Read the limits (all have defaults)."""
        return cls(**read_settings(cls, env))
