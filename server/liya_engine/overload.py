"""How the limits (``liya_engine.settings_limits``) are wired in: the methods
that take a tenant's slot, the gRPC server's handshake bound, each provider's
connection pool, and the start-up warning for a pool smaller than the calls
admitted. ``app`` calls these; the counting itself is ``api.admission``'s."""

from __future__ import annotations

import logging

from liya.engine.v1 import config_service_pb2, inference_service_pb2
from liya_engine.providers.pool import PoolLimits
from liya_engine.settings import Settings

log = logging.getLogger("liya_engine")

_CONFIG = config_service_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name
_INFERENCE = inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name

#: The methods that call a provider: each takes one of its tenant's
#: LIYA_TENANT_MAX_IN_FLIGHT slots while in flight.
PROVIDER_CALLING_METHODS = frozenset(
    {f"/{_INFERENCE}/Complete", f"/{_INFERENCE}/CompleteStream", f"/{_CONFIG}/VerifyConfig"}
)


def handshake_options(settings: Settings) -> list[tuple[str, int]]:
    """gRPC's bound on a new connection's handshake (120 s by default): a
    connection that has not sent its HTTP/2 preface and settings by then is
    closed, so idle half-open connections cannot pile up."""
    milliseconds = round(settings.limits.handshake_timeout_seconds * 1000)
    return [("grpc.server_handshake_timeout_ms", milliseconds)]


def upstream_pool(settings: Settings) -> PoolLimits:
    """Each provider's pool: room for every call admitted (unless the operator
    set fewer connections), and a bounded wait for a connection."""
    limits = settings.limits
    return PoolLimits(limits.upstream_connections, limits.upstream_pool_timeout_seconds)


def warn_about_limits(settings: Settings) -> None:
    """Say so at start when the pools cannot hold every call admitted."""
    limits = settings.limits
    if limits.upstream_connections < limits.max_in_flight:
        log.warning(
            "LIYA_UPSTREAM_MAX_CONNECTIONS=%d is below LIYA_MAX_IN_FLIGHT=%d: calls may "
            "wait for upstream connections and end SERVER_OVERLOADED",
            limits.upstream_connections,
            limits.max_in_flight,
        )
