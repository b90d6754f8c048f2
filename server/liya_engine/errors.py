"""The service's one documented exception tree: every error it raises is here.

Each error a caller can see carries its ``reason`` (a value name of ``enum
ErrorReason`` in ``protos/liya/engine/v1/error_reason.proto``, checked when the
class is defined) and its gRPC ``code`` (a ``google.rpc.code_pb2`` value). They
are turned into a ``google.rpc.Status`` in exactly one place
(``liya_engine.api.status``), which reads both from the class; domain code
never imports grpc.

    LiyaError                       base; ``reason``, ``code``, ``message``, ``metadata``
    +-- InvalidToken                INVALID_TOKEN              UNAUTHENTICATED
    +-- InvalidArgument             base for bad input, carries field violations
    |   +-- InvalidConfig           INVALID_CONFIG             INVALID_ARGUMENT
    |   +-- InvalidRequest          INVALID_REQUEST            INVALID_ARGUMENT
    +-- EtagMismatch                ETAG_MISMATCH              ABORTED
    +-- NotConfigured               BYOK_NOT_CONFIGURED        FAILED_PRECONDITION
    +-- CostLimitExceeded           COST_LIMIT_EXCEEDED        FAILED_PRECONDITION
    +-- BudgetExceeded              BUDGET_EXCEEDED            RESOURCE_EXHAUSTED
    +-- ConcurrencyLimitExceeded    CONCURRENCY_LIMIT_EXCEEDED RESOURCE_EXHAUSTED
    +-- ServerOverloaded            SERVER_OVERLOADED          UNAVAILABLE
    +-- KeyDecryptionFailed         KEY_DECRYPTION_FAILED      INTERNAL
    +-- StorageUnavailable          STORAGE_UNAVAILABLE        UNAVAILABLE
    +-- InternalError               INTERNAL                   INTERNAL (anything unexpected)
    +-- ProviderError               base for failures of an upstream provider call
        +-- ProviderAuthFailed      BYOK_AUTH_FAILED           FAILED_PRECONDITION (401/403)
        +-- ProviderQuotaExceeded   BYOK_QUOTA_EXCEEDED        RESOURCE_EXHAUSTED (429, quota)
        +-- ProviderModelNotFound   BYOK_MODEL_NOT_FOUND       FAILED_PRECONDITION (404)
        +-- ProviderUnreachable     BYOK_ENDPOINT_UNREACHABLE  UNAVAILABLE (DNS/connect/TLS)
        |   +-- ProviderTimedOut    the same, raised for a timeout so the caller's
        |                           deadline can be told apart from our own budget
        +-- ProviderUnavailable     PROVIDER_UNAVAILABLE       UNAVAILABLE (5xx, overloaded)
        +-- ProviderRejectedRequest PROVIDER_REJECTED_REQUEST  INVALID_ARGUMENT (400)
        +-- UpstreamPoolBusy        SERVER_OVERLOADED          UNAVAILABLE (no pooled connection
                                    in time; also a ServerOverloaded)
    DeadlineExceeded                DEADLINE_EXCEEDED          DEADLINE_EXCEEDED
                                    the caller's own deadline ran out; not a
                                    LiyaError, so ``except LiyaError`` (a provider
                                    or domain failure) does not catch it

A class that declares no ``reason`` of its own (``InvalidArgument``,
``ProviderError``, ``ProviderTimedOut``, ``UpstreamPoolBusy``) answers with its
parent's; ``LiyaError`` itself answers INTERNAL. Every reason of the enum has exactly one class that
declares it (``tests/test_error_reasons.py`` checks both directions).

Internal exceptions never reach a caller as such; each is caught where it is
turned into one of the above (or into a start-up failure):

    Conflict                        storage: an optimistic write lost
                                    (the config service retries, or ETAG_MISMATCH)
    SettingsError                   settings: a setting is missing or malformed
                                    (start-up stops with one line naming it)
    MalformedAnswer                 adapters: a 2xx answer that is no completion
    +-- IncompleteAnswer            a stream that ended before its final event
                                    (both -> PROVIDER_UNAVAILABLE, by the
                                    classification in ``liya_engine.providers``)
    ForbiddenAddress (OSError)      transport: a host resolved only to addresses the
                                    service must not connect to
                                    (-> BYOK_ENDPOINT_UNREACHABLE)

Anything else that escapes a call is a bug: the caller gets ``InternalError``'s
answer (INTERNAL, no detail) and the log gets the traceback.

Messages must be safe to show the caller: they never contain a key. Provider
text goes through ``liya_engine.redact.scrub`` before it gets here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from google.rpc import code_pb2

from liya.engine.v1.error_reason_pb2 import ErrorReason

#: Every reason a caller can receive: the value names of ``ErrorReason``.
REASONS: frozenset[str] = frozenset(ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}


def _checked(cls: type, reason: str) -> None:
    if reason not in REASONS:
        raise TypeError(f"{cls.__name__}.reason {reason!r} is not a value of ErrorReason")


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request and what is wrong with it."""

    field: str
    description: str


class LiyaError(Exception):
    """Base of every error the service reports to a caller.

    ``reason`` and ``code`` are class attributes: the ErrorInfo reason and the
    gRPC status code (``google.rpc.code_pb2``) of every instance.
    """

    reason: ClassVar[str] = "INTERNAL"
    code: ClassVar[int] = code_pb2.INTERNAL
    #: Seconds after which a retry may succeed (sent as RetryInfo), when known.
    retry_after: float | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _checked(cls, cls.reason)

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidToken(LiyaError):
    """The bearer token is missing, malformed, expired or wrongly signed."""

    reason = "INVALID_TOKEN"
    code = code_pb2.UNAUTHENTICATED


class InvalidArgument(LiyaError):
    """Base for bad caller input; carries per-field violations."""

    code = code_pb2.INVALID_ARGUMENT

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
    code = code_pb2.ABORTED


class NotConfigured(LiyaError):
    """No provider credentials are available for the tenant's mode."""

    reason = "BYOK_NOT_CONFIGURED"
    code = code_pb2.FAILED_PRECONDITION


class CostLimitExceeded(LiyaError):
    """The worst-case cost estimate is above the tenant's per-request limit."""

    reason = "COST_LIMIT_EXCEEDED"
    code = code_pb2.FAILED_PRECONDITION


class BudgetExceeded(LiyaError):
    """Month-to-date cost plus the call's worst case is above ``monthly_budget_usd``.

    Metadata: ``spent_usd``, ``budget_usd``, ``resets_at`` (RFC 3339).
    """

    reason = "BUDGET_EXCEEDED"
    code = code_pb2.RESOURCE_EXHAUSTED


class ConcurrencyLimitExceeded(LiyaError):
    """The tenant already has ``LIYA_TENANT_MAX_IN_FLIGHT`` calls in flight here.

    ``retry_after`` (seconds) becomes the answer's RetryInfo.
    """

    reason = "CONCURRENCY_LIMIT_EXCEEDED"
    code = code_pb2.RESOURCE_EXHAUSTED

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.retry_after = retry_after


class ServerOverloaded(LiyaError):
    """This replica is at ``LIYA_MAX_IN_FLIGHT``, its calls are queueing
    (``LIYA_QUEUE_DELAY_TARGET_MS``), or it got no upstream connection in time.

    Admission sets ``retry_after`` (the answer's RetryInfo) on the instances it
    raises; no ``__init__`` of its own, so that ``UpstreamPoolBusy`` keeps
    ``ProviderError``'s.
    """

    reason = "SERVER_OVERLOADED"
    code = code_pb2.UNAVAILABLE


class KeyDecryptionFailed(LiyaError):
    """A stored key could not be decrypted (tampered, or master key missing)."""

    reason = "KEY_DECRYPTION_FAILED"
    code = code_pb2.INTERNAL


class StorageUnavailable(LiyaError):
    """The database did not answer or is busy; the call can be retried."""

    reason = "STORAGE_UNAVAILABLE"
    code = code_pb2.UNAVAILABLE


class InternalError(LiyaError):
    """The answer for anything unexpected: no detail of the failure reaches the caller.

    Not raised by domain code; ``liya_engine.api.status.internal_status`` answers
    with it when a call fails with an exception outside this tree.
    """

    reason = "INTERNAL"
    code = code_pb2.INTERNAL


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
    code = code_pb2.FAILED_PRECONDITION


class ProviderQuotaExceeded(ProviderError):
    """The provider account hit a rate limit or its quota/billing limit."""

    reason = "BYOK_QUOTA_EXCEEDED"
    code = code_pb2.RESOURCE_EXHAUSTED


class ProviderModelNotFound(ProviderError):
    """The model or deployment does not exist for this account, or no
    configured provider can serve the model."""

    reason = "BYOK_MODEL_NOT_FOUND"
    code = code_pb2.FAILED_PRECONDITION


class ProviderUnreachable(ProviderError):
    """DNS, connect or TLS failure, or a timeout within the service's own budget."""

    reason = "BYOK_ENDPOINT_UNREACHABLE"
    code = code_pb2.UNAVAILABLE


class ProviderTimedOut(ProviderUnreachable):
    """The provider did not answer within the timeout the adapter was given."""


class ProviderUnavailable(ProviderError):
    """The provider answered 5xx or said it is overloaded."""

    reason = "PROVIDER_UNAVAILABLE"
    code = code_pb2.UNAVAILABLE


class ProviderRejectedRequest(ProviderError):
    """The provider answered 400 for the request itself (e.g. context too long)."""

    reason = "PROVIDER_REJECTED_REQUEST"
    code = code_pb2.INVALID_ARGUMENT


class UpstreamPoolBusy(ServerOverloaded, ProviderError):
    """No connection of this service's own pool to the provider became free
    within ``LIYA_UPSTREAM_POOL_TIMEOUT_SECONDS``: the replica is overloaded
    (SERVER_OVERLOADED), not the provider. A ``ProviderError`` too, so it is
    raised, accounted and traced where provider failures are, with ``provider``
    in its metadata."""


class DeadlineExceeded(Exception):
    """The caller's deadline ran out before the provider answered.

    Not a ``LiyaError`` (no provider is at fault, and callers that catch
    ``LiyaError`` must not catch it): it answers with ``code`` and an ErrorInfo
    whose reason is ``reason``, the same class attributes a ``LiyaError`` has.
    """

    reason: ClassVar[str] = "DEADLINE_EXCEEDED"
    code: ClassVar[int] = code_pb2.DEADLINE_EXCEEDED
    message: ClassVar[str] = "the call's deadline ran out before the provider answered"


_checked(DeadlineExceeded, DeadlineExceeded.reason)


class Conflict(Exception):
    """The row changed (or appeared) since it was read: an optimistic write lost.

    Raised by storage; the config service re-reads and re-applies, or answers
    ETAG_MISMATCH when the caller sent an etag.
    """


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class MalformedAnswer(Exception):
    """A 2xx answer that lacks what a completion needs (raised by adapters,
    classified as PROVIDER_UNAVAILABLE)."""


class IncompleteAnswer(MalformedAnswer):
    """A stream that ended without the provider's final event (raised by adapters)."""


class ForbiddenAddress(OSError):
    """A host name resolved only to addresses this service must not connect to.

    An ``OSError`` so that aiohttp treats it as a connection failure; the
    classification makes it BYOK_ENDPOINT_UNREACHABLE saying why."""
