"""The service's exception tree. Domain code raises these; nothing else.

Each class carries the ``reason`` of DESIGN.md's error table. They are turned
into a ``google.rpc.Status`` in exactly one place (``liya_engine.api.status``);
domain code never imports grpc.

    LiyaError                       base; ``reason``, ``message``, ``metadata``
    +-- InvalidToken                INVALID_TOKEN         missing/bad/expired JWT
    +-- InvalidArgument             base for bad input, carries field violations
    |   +-- InvalidConfig           INVALID_CONFIG        bad UpdateConfig input
    |   +-- InvalidRequest          INVALID_REQUEST       bad Complete input
    +-- EtagMismatch                ETAG_MISMATCH         stale etag
    +-- NotConfigured               BYOK_NOT_CONFIGURED   nothing to route to
    +-- CostLimitExceeded           COST_LIMIT_EXCEEDED   estimate above the limit
    +-- KeyDecryptionFailed         KEY_DECRYPTION_FAILED stored ciphertext unusable
    +-- StorageUnavailable          STORAGE_UNAVAILABLE   database unreachable or busy
    +-- ProviderError               base for failures of an upstream provider call
        +-- ProviderAuthFailed      BYOK_AUTH_FAILED          401/403
        +-- ProviderQuotaExceeded   BYOK_QUOTA_EXCEEDED       429, quota/billing
        +-- ProviderModelNotFound   BYOK_MODEL_NOT_FOUND      404 model/deployment
        +-- ProviderUnreachable     BYOK_ENDPOINT_UNREACHABLE DNS/connect/TLS/timeout
        |   +-- ProviderTimedOut    the same, raised for a timeout so the caller's
        |                           deadline can be told apart from our own budget
        +-- ProviderUnavailable     PROVIDER_UNAVAILABLE      5xx, overloaded
        +-- ProviderRejectedRequest PROVIDER_REJECTED_REQUEST 400 for the request
    DeadlineExceeded                the caller's own deadline ran out (no reason)

Internal exceptions never reach a caller as such; each is caught where it is
turned into one of the above (or into a start-up failure):

    Conflict                        an optimistic write lost (storage -> retry or ETAG_MISMATCH)
    SettingsError                   a setting is missing or malformed (start-up stops)

Messages must be safe to show the caller: they never contain a key. Provider
text goes through ``liya_engine.redact.scrub`` before it gets here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request and what is wrong with it."""

    field: str
    description: str


class LiyaError(Exception):
    """Base of every error the service reports to a caller."""

    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidToken(LiyaError):
    """The bearer token is missing, malformed, expired or wrongly signed."""

    reason = "INVALID_TOKEN"


class InvalidArgument(LiyaError):
    """Base for bad caller input; carries per-field violations."""

    def __init__(
        self,
        message: str,
        violations: list[FieldViolation] | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.violations = list(violations or [])


class InvalidConfig(InvalidArgument):
    """An UpdateConfig request that cannot be applied as sent."""

    reason = "INVALID_CONFIG"


class InvalidRequest(InvalidArgument):
    """A completion or listing request that is malformed."""

    reason = "INVALID_REQUEST"


class EtagMismatch(LiyaError):
    """The caller's etag names a version that is no longer current."""

    reason = "ETAG_MISMATCH"


class NotConfigured(LiyaError):
    """No provider credentials are available for the tenant's mode."""

    reason = "BYOK_NOT_CONFIGURED"


class CostLimitExceeded(LiyaError):
    """The worst-case cost estimate is above the tenant's per-request limit."""

    reason = "COST_LIMIT_EXCEEDED"


class KeyDecryptionFailed(LiyaError):
    """A stored key could not be decrypted (tampered, or master key missing)."""

    reason = "KEY_DECRYPTION_FAILED"


class StorageUnavailable(LiyaError):
    """The database did not answer or is busy; the call can be retried."""

    reason = "STORAGE_UNAVAILABLE"


class ProviderError(LiyaError):
    """Base for a failed upstream provider call.

    ``provider`` is ``openai``/``anthropic``/``azure``; ``upstream_status`` is the
    HTTP status the provider answered with, when it answered at all;
    ``retry_after`` is seconds the provider asked us to wait, when it did.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str = "",
        upstream_status: int | None = None,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        meta = {"provider": provider}
        if model:
            meta["model"] = model
        if upstream_status is not None:
            meta["upstream_status"] = str(upstream_status)
        meta.update(metadata or {})
        super().__init__(message, metadata=meta)
        self.provider = provider
        self.model = model
        self.upstream_status = upstream_status
        self.retry_after = retry_after


class ProviderAuthFailed(ProviderError):
    """The provider refused the key (401/403): it is invalid or expired."""

    reason = "BYOK_AUTH_FAILED"


class ProviderQuotaExceeded(ProviderError):
    """The provider account hit a rate limit or its quota/billing limit."""

    reason = "BYOK_QUOTA_EXCEEDED"


class ProviderModelNotFound(ProviderError):
    """The model or deployment does not exist for this account, or no
    configured provider can serve the model."""

    reason = "BYOK_MODEL_NOT_FOUND"


class ProviderUnreachable(ProviderError):
    """DNS, connect or TLS failure, or a timeout within the service's own budget."""

    reason = "BYOK_ENDPOINT_UNREACHABLE"


class ProviderTimedOut(ProviderUnreachable):
    """The provider did not answer within the timeout the adapter was given."""


class ProviderUnavailable(ProviderError):
    """The provider answered 5xx or said it is overloaded."""

    reason = "PROVIDER_UNAVAILABLE"


class ProviderRejectedRequest(ProviderError):
    """The provider answered 400 for the request itself (e.g. context too long)."""

    reason = "PROVIDER_REJECTED_REQUEST"


class DeadlineExceeded(Exception):
    """The caller's deadline ran out before the provider answered.

    Not a ``LiyaError`` (no provider is at fault): it maps to DEADLINE_EXCEEDED,
    with an ErrorInfo whose reason is ``DEADLINE_EXCEEDED``.
    """


class Conflict(Exception):
    """The row changed (or appeared) since it was read: an optimistic write lost.

    Raised by storage; the config service re-reads and re-applies, or answers
    ETAG_MISMATCH when the caller sent an etag.
    """


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""
