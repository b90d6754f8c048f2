"""Key health: whether a tenant's stored provider credentials work, as the
calls made with them have found (DESIGN.md, "Key health and verify before save").

The rules live here, with the values and the storage ports they need:

- which failures count (``HEALTH_REASONS``): those that say something about the
  credentials or the provider; a caller's own mistake or deadline does not;
- which fields are credentials (``CREDENTIAL_FIELDS``): storing a new value of
  one starts the provider's health again at ``unknown``;
- how a record is tied to the credentials it describes: a health row carries
  ``credentials_version``, the config version at which its credentials were
  stored. A call made with config version ``V`` describes that row's
  credentials exactly when ``credentials_version <= V`` (credentials changes
  reset the row in the same transaction as the config), so an outcome of an
  old key never lands on a new one, and a row of an old key is never shown
  for a new one.

``health_recorder`` records outcomes in memory on the call path and writes
them in the background; ``health_view`` reads them for ``GetMaskedConfig``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from liya_engine.config.model import KEY_FIELD, PROVIDER_FIELDS
from liya_engine.config.paths import provider_field_path
from liya_engine.errors import (
    ProviderAuthFailed,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderUnavailable,
    ProviderUnreachable,
)
from liya_engine.redact import scrub
from liya_engine.secret import Secret

STATE_UNKNOWN: Final = "unknown"
STATE_OK: Final = "ok"
STATE_FAILING: Final = "failing"

HEALTH_REASONS: Final = frozenset(
    cls.reason
    for cls in (
        ProviderAuthFailed,
        ProviderQuotaExceeded,
        ProviderModelNotFound,
        ProviderUnreachable,
        ProviderUnavailable,
    )
)
"""The failures that change health: about the key, its account or the provider."""

_CREDENTIALS = (KEY_FIELD, "endpoint", "deployment_name", "api_version")
CREDENTIAL_FIELDS: Final = {
    provider: tuple(f for f in fields if f in _CREDENTIALS)
    for provider, fields in PROVIDER_FIELDS.items()
}
"""Per provider, the fields that make its credentials; the default model is not one."""

MAX_MESSAGE_CHARS: Final = 200
FLUSH_SECONDS: Final = 1.0
"""How often recorded outcomes are written: a failure is in the database at
most this long after the call."""
VIEW_TTL_SECONDS: Final = 2.0
"""How long a replica shows health it read before reading it again. With
``FLUSH_SECONDS`` this bounds how late a failure shows on another replica
(under the 5 s DESIGN.md promises)."""
SUCCESS_REWRITE_SECONDS: Final = 30.0
"""A success (or a repeat of the same failure) that changes no state is
written at most this often per tenant and provider."""
FORGET_IDLE_SECONDS: Final = 600.0
"""A replica forgets the outcomes of a tenant and provider with no call for this
long, once they are written, so its memory grows with the tenants calling now
rather than with every tenant it ever served. The next call starts from
``unknown`` again on that replica, as after a restart."""


def credential_providers(changed_paths: Iterable[str]) -> list[str]:
    """The providers, in precedence order, whose credentials ``changed_paths``
    (leaf paths of a config change) touch."""
    paths = set(changed_paths)
    return [
        provider
        for provider, fields in CREDENTIAL_FIELDS.items()
        if any(provider_field_path(provider, name) in paths for name in fields)
    ]


def shown_message(message: str, secrets: Iterable[Secret | None] = ()) -> str:
    """A failure message as health keeps it: scrubbed of key material (also of
    the call's own key) and at most ``MAX_MESSAGE_CHARS`` long."""
    text = scrub(message, secrets)
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 3].rstrip() + "..."


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """One provider's health for one tenant, as stored and shown.

    ``state`` follows from the times: the latest outcome wins, so records from
    several replicas merge without coordination.
    """

    credentials_version: int = 0
    key_set_time: datetime | None = None
    last_success_time: datetime | None = None
    last_failure_time: datetime | None = None
    last_failure_reason: str = ""
    last_failure_message: str = ""

    @property
    def state(self) -> str:
        success, failure = self.last_success_time, self.last_failure_time
        if success is None and failure is None:
            return STATE_UNKNOWN
        if failure is None or (success is not None and success >= failure):
            return STATE_OK
        return STATE_FAILING

    def merged(self, outcome: Outcome) -> ProviderHealth:
        """This record with ``outcome`` (of the same credentials) folded in."""
        failure = _later(self.last_failure_time, outcome.failure_time)
        newer_failure = outcome.failure_time is not None and failure == outcome.failure_time
        return ProviderHealth(
            credentials_version=self.credentials_version,
            key_set_time=self.key_set_time,
            last_success_time=_later(self.last_success_time, outcome.success_time),
            last_failure_time=failure,
            last_failure_reason=outcome.reason if newer_failure else self.last_failure_reason,
            last_failure_message=outcome.message if newer_failure else self.last_failure_message,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What calls of one tenant and provider found since the last write:
    the latest success and the latest failure, made with config
    ``config_version``."""

    tenant_id: str
    provider: str
    config_version: int
    success_time: datetime | None = None
    failure_time: datetime | None = None
    reason: str = ""
    message: str = ""


class HealthStore(Protocol):
    """Where health lives, shared by all replicas (``liya_engine.storage``)."""

    async def read_health(self, tenant_id: str) -> dict[str, ProviderHealth]:
        """The tenant's stored records by provider; raises ``StorageUnavailable``."""

    async def record_health(self, outcomes: Sequence[Outcome]) -> None:
        """Fold each outcome into its record, in one transaction, unless the
        record describes newer credentials (``credentials_version`` above the
        outcome's ``config_version``)."""


class HealthRepository(Protocol):
    """Health records inside a config unit of work."""

    async def reset(
        self,
        tenant_id: str,
        provider: str,
        *,
        credentials_version: int,
        key_set_time: datetime,
        verified_time: datetime | None,
    ) -> None:
        """Start the record of new credentials: ``unknown``, or ``ok`` as of
        ``verified_time`` when a verify call just succeeded with them."""
