"""Key health into the masked config: ``config.health.ProviderHealth`` as the
``liya.engine.v1.ProviderHealth`` of each configured provider."""

from __future__ import annotations

from collections.abc import Mapping

from liya.engine.v1 import config_service_pb2 as pb
from liya_engine.config.health import ProviderHealth


def provider_health(record: ProviderHealth) -> pb.ProviderHealth:
    out = pb.ProviderHealth(
        state=record.state,
        last_failure_reason=record.last_failure_reason,
        last_failure_message=record.last_failure_message,
    )
    for name in ("last_success_time", "last_failure_time", "key_set_time"):
        value = getattr(record, name)
        if value is not None:
            getattr(out, name).FromDatetime(value)
    return out


def with_health(
    masked: pb.MaskedConfig, records: Mapping[str, ProviderHealth] | None
) -> pb.MaskedConfig:
    """A copy of ``masked`` with each provider's health (``records`` by
    provider); unchanged when health could not be read (None)."""
    if not records:
        return masked
    out = pb.MaskedConfig()
    out.CopyFrom(masked)
    for provider, record in records.items():
        getattr(out, provider).health.CopyFrom(provider_health(record))
    return out
