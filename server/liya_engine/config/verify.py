"""Verify before save: ``UpdateConfigRequest.verify`` tests the credentials an
update sets with a minimal real call each, before anything is written.

The config plane owns the ``CredentialsProbe`` port; the inference plane
implements it with the same adapters, errors and accounting as a completion
(``InferenceService.verify_credentials``). Which providers are tested: those
whose credentials (``config.health.CREDENTIAL_FIELDS``) the request sets,
also to the value already stored (a "test key" of the stored key), as long as
the resulting provider has a key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from liya_engine.config.changes import ConfigChange, SetApiKey, SetProviderField
from liya_engine.config.health import CREDENTIAL_FIELDS, HealthRepository, credential_providers
from liya_engine.config.model import KEY_FIELD, PROVIDER_ORDER, TenantConfig
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.secret import Secret


@dataclass(frozen=True, slots=True)
class TestedCredentials:
    """One provider's credentials as an update would store them, with the
    model a minimal call uses (the default model; for Azure the deployment)."""

    __test__ = False  # not a test class, despite its name

    provider: str
    api_key: Secret = field(repr=False)
    endpoint: str = ""
    deployment_name: str = ""
    api_version: str = ""
    default_model: str = field(default="", compare=False)


class CredentialsProbe(Protocol):
    """Makes one minimal real call with ``credentials``; raises the
    ``ProviderError`` (or ``DeadlineExceeded``) a completion would."""

    async def __call__(
        self,
        tenant_id: str,
        request_id: str,
        credentials: TestedCredentials,
        *,
        deadline: float | None,
    ) -> None: ...


def providers_set(changes: Sequence[ConfigChange]) -> list[str]:
    """The providers, in precedence order, whose credentials ``changes`` set
    to a value (clearing one is not setting it)."""
    named: set[str] = set()
    for change in changes:
        if isinstance(change, SetApiKey) and change.key is not None:
            named.add(change.provider)
        elif (
            isinstance(change, SetProviderField)
            and change.value is not None
            and change.name in CREDENTIAL_FIELDS[change.provider]
        ):
            named.add(change.provider)
    return [p for p in PROVIDER_ORDER if p in named]


def credentials_of(
    config: TenantConfig, provider: str, cipher: KeyCipher
) -> TestedCredentials | None:
    """``provider``'s credentials in ``config`` (a key set by the update still
    pending, or the stored one decrypted); None when it has no key."""
    stored = config.provider(provider)
    key = stored.pending_key
    if key is None and stored.api_key_ciphertext is not None:
        key = cipher.decrypt(
            stored.api_key_ciphertext,
            tenant_id=config.tenant_id,
            provider=provider,
            field=KEY_FIELD,
        )
    if key is None:
        return None
    return TestedCredentials(
        provider,
        key,
        stored.endpoint,
        stored.deployment_name,
        stored.api_version,
        stored.default_model,
    )


def to_test(
    config: TenantConfig, changes: Sequence[ConfigChange], cipher: KeyCipher
) -> list[TestedCredentials]:
    """What a verify of ``changes``, applied to give ``config``, calls with."""
    found = (credentials_of(config, p, cipher) for p in providers_set(changes))
    return [c for c in found if c is not None]


@dataclass(frozen=True, slots=True)
class Verified:
    """The credentials a verify tested with success, and when."""

    tested: tuple[TestedCredentials, ...]
    time: datetime

    def still_holds(
        self, config: TenantConfig, changes: Sequence[ConfigChange], cipher: KeyCipher
    ) -> bool:
        """Whether ``changes`` applied now would store the tested credentials
        (another writer may have changed, say, the endpoint meanwhile)."""
        return tuple(to_test(config, changes, cipher)) == self.tested

    def time_for(self, provider: str) -> datetime | None:
        return self.time if any(c.provider == provider for c in self.tested) else None


async def verify(
    probe: CredentialsProbe | None,
    tenant_id: str,
    request_id: str,
    tested: Sequence[TestedCredentials],
    *,
    deadline: float | None,
    clock: Callable[[], datetime],
) -> Verified:
    """Test each of ``tested`` in turn; the first failure is raised as is.
    The time recorded is when the last call succeeded."""
    if tested and probe is None:
        raise RuntimeError("verify asked for, but no credentials probe is wired in")
    for credentials in tested:
        await probe(tenant_id, request_id, credentials, deadline=deadline)  # type: ignore[misc]
    return Verified(tuple(tested), clock())


async def reset_health(
    repo: HealthRepository,
    tenant_id: str,
    changed: Sequence[str],
    *,
    version: int,
    now: datetime,
    verified: Verified | None,
) -> None:
    """Start the health of every provider whose credentials ``changed``: ``ok``
    if a verify just tested them, else ``unknown``."""
    for provider in credential_providers(changed):
        await repo.reset(
            tenant_id,
            provider,
            credentials_version=version,
            key_set_time=now,
            verified_time=verified.time_for(provider) if verified else None,
        )
