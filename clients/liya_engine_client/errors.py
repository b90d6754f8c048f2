"""Typed exceptions for the Liya Engine API, built from the rich gRPC status.

The service answers every failure with a ``google.rpc.Status`` carrying exactly
one ``ErrorInfo`` (domain ``liyaengine.ai``) whose ``reason`` says what went
wrong, plus ``BadRequest``, ``RetryInfo`` or ``QuotaFailure`` where they fit.
``error_from_rpc`` turns a failed call into one exception class per reason.

The reasons are the values of ``enum ErrorReason`` (``liya.engine.v1.error_reason_pb2``,
generated from ``protos/liya/engine/v1/error_reason.proto``, where each one is
documented). Naming rule: a reason's class is the reason in CamelCase, with no
suffix (``BYOK_AUTH_FAILED`` -> ``ByokAuthFailed``, ``INTERNAL`` -> ``Internal``);
``class_name`` applies it, and defining a class whose ``REASON`` is not in the
enum or does not follow the rule fails at import::

    LiyaError                         base: code, reason, message, metadata, ...
    +-- InvalidToken                  INVALID_TOKEN
    +-- InvalidArgument               base for bad input (carries violations)
    |   +-- InvalidConfig             INVALID_CONFIG
    |   +-- InvalidRequest            INVALID_REQUEST
    +-- EtagMismatch                  ETAG_MISMATCH
    +-- ByokNotConfigured             BYOK_NOT_CONFIGURED
    +-- CostLimitExceeded             COST_LIMIT_EXCEEDED
    +-- BudgetExceeded                BUDGET_EXCEEDED
    +-- ConcurrencyLimitExceeded      CONCURRENCY_LIMIT_EXCEEDED
    +-- KeyDecryptionFailed           KEY_DECRYPTION_FAILED
    +-- ProviderError                 base for a failed upstream provider call
    |   +-- ByokAuthFailed            BYOK_AUTH_FAILED
    |   +-- ByokQuotaExceeded         BYOK_QUOTA_EXCEEDED
    |   +-- ByokModelNotFound         BYOK_MODEL_NOT_FOUND
    |   +-- ByokEndpointUnreachable   BYOK_ENDPOINT_UNREACHABLE
    |   +-- ProviderUnavailable       PROVIDER_UNAVAILABLE
    |   +-- ProviderRejectedRequest   PROVIDER_REJECTED_REQUEST
    +-- DeadlineExceeded              DEADLINE_EXCEEDED, with or without a reason
    +-- Unavailable                   UNAVAILABLE without a known reason
    |   +-- StorageUnavailable        STORAGE_UNAVAILABLE (the service's database)
    |   +-- ServerOverloaded          SERVER_OVERLOADED (this replica is full)
    +-- Internal                      INTERNAL/UNKNOWN/DATA_LOSS/UNIMPLEMENTED
                                      without a known reason (and reason INTERNAL)

A status with any other code and no known reason (for example CANCELLED, or
RESOURCE_EXHAUSTED from a message-size limit) becomes a plain ``LiyaError``.
"""

from __future__ import annotations

import grpc

from liya_engine_client._base import (
    REASONS,
    LiyaError,
    class_name,
    parse_float,
    parse_int,
    reason_classes,
)
from liya_engine_client._status import DOMAIN, FieldViolation, QuotaViolation, status_parts

__all__ = [
    "DOMAIN",
    "REASONS",
    "BudgetExceeded",
    "ByokAuthFailed",
    "ByokEndpointUnreachable",
    "ByokModelNotFound",
    "ByokNotConfigured",
    "ByokQuotaExceeded",
    "ConcurrencyLimitExceeded",
    "CostLimitExceeded",
    "DeadlineExceeded",
    "EtagMismatch",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "InvalidConfig",
    "InvalidRequest",
    "InvalidToken",
    "KeyDecryptionFailed",
    "LiyaError",
    "ProviderError",
    "ProviderRejectedRequest",
    "ProviderUnavailable",
    "QuotaViolation",
    "ServerOverloaded",
    "StorageUnavailable",
    "Unavailable",
    "class_name",
    "error_from_rpc",
    "reason_classes",
]


class InvalidToken(LiyaError):
    """The bearer token is missing, malformed, expired or wrongly signed."""

    REASON = "INVALID_TOKEN"


class InvalidArgument(LiyaError):
    """Base for bad caller input; ``violations`` names the fields."""


class InvalidConfig(InvalidArgument):
    """An UpdateConfig request that cannot be applied as sent."""

    REASON = "INVALID_CONFIG"


class InvalidRequest(InvalidArgument):
    """A completion or listing request that is malformed."""

    REASON = "INVALID_REQUEST"


class EtagMismatch(LiyaError):
    """The etag sent to UpdateConfig is stale: re-read, re-apply, retry."""

    REASON = "ETAG_MISMATCH"


class ByokNotConfigured(LiyaError):
    """No provider key in ``byok`` mode, or no platform credentials in ``managed`` mode."""

    REASON = "BYOK_NOT_CONFIGURED"


class CostLimitExceeded(LiyaError):
    """The worst-case estimate is above the tenant's per-request cost limit.

    ``estimate_usd``, ``limit_usd`` and ``max_tokens_that_fit`` are taken from
    the error metadata when the service sent them, else ``None``. Retrying with
    ``max_tokens=max_tokens_that_fit`` (or with ``max_tokens`` unset) fits.
    """

    REASON = "COST_LIMIT_EXCEEDED"

    @property
    def estimate_usd(self) -> float | None:
        """The service's worst-case cost estimate for the refused call."""
        return parse_float(self.metadata.get("estimate_usd"))

    @property
    def limit_usd(self) -> float | None:
        """The tenant's ``cost_limit_usd_per_request``."""
        return parse_float(self.metadata.get("limit_usd"))

    @property
    def max_tokens_that_fit(self) -> int | None:
        """The largest ``max_tokens`` that would stay within the limit."""
        return parse_int(self.metadata.get("max_tokens_that_fit"))


class BudgetExceeded(LiyaError):
    """Month-to-date cost plus this call's worst case is above the monthly budget.

    ``spent_usd``, ``budget_usd`` and ``resets_at`` (RFC 3339, the next month's
    start) come from the error metadata when the service sent them.
    """

    REASON = "BUDGET_EXCEEDED"

    @property
    def spent_usd(self) -> float | None:
        """Month-to-date cost of the tenant."""
        return parse_float(self.metadata.get("spent_usd"))

    @property
    def budget_usd(self) -> float | None:
        """The tenant's ``monthly_budget_usd``."""
        return parse_float(self.metadata.get("budget_usd"))

    @property
    def resets_at(self) -> str:
        """When the budget starts again (RFC 3339), or empty."""
        return self.metadata.get("resets_at", "")


class ConcurrencyLimitExceeded(LiyaError):
    """The tenant has as many calls in flight as one replica admits: retry after
    ``retry_delay`` seconds, or make fewer concurrent calls."""

    REASON = "CONCURRENCY_LIMIT_EXCEEDED"


class KeyDecryptionFailed(LiyaError):
    """A stored key could not be decrypted (tampered, or its master key is gone).

    Nothing the caller can fix: the operator must restore the master key, or
    the tenant must set the key again.
    """

    REASON = "KEY_DECRYPTION_FAILED"


class ProviderError(LiyaError):
    """Base for a failed call to the upstream provider.

    ``provider``, ``model`` and ``upstream_status`` come from the error
    metadata (empty / ``None`` when absent).
    """

    @property
    def provider(self) -> str:
        """``openai``, ``anthropic`` or ``azure``."""
        return self.metadata.get("provider", "")

    @property
    def model(self) -> str:
        """The model (for Azure, the deployment) the call was for."""
        return self.metadata.get("model", "")

    @property
    def upstream_status(self) -> int | None:
        """The provider's HTTP status, when it answered at all."""
        return parse_int(self.metadata.get("upstream_status"))


class ByokAuthFailed(ProviderError):
    """The provider refused the stored key (401/403): it is invalid or expired."""

    REASON = "BYOK_AUTH_FAILED"


class ByokQuotaExceeded(ProviderError):
    """The provider account hit a rate limit or its quota/billing limit.

    ``retry_delay`` is the provider's retry-after in seconds when it was a rate
    limit; ``None`` for quota or billing errors, which waiting will not fix.
    """

    REASON = "BYOK_QUOTA_EXCEEDED"


class ByokModelNotFound(ProviderError):
    """The model or Azure deployment does not exist, or no configured provider serves it."""

    REASON = "BYOK_MODEL_NOT_FOUND"


class ByokEndpointUnreachable(ProviderError):
    """DNS, connect or TLS failure, or a provider timeout within the service's budget."""

    REASON = "BYOK_ENDPOINT_UNREACHABLE"


class ProviderUnavailable(ProviderError):
    """The provider answered 5xx or said it is overloaded."""

    REASON = "PROVIDER_UNAVAILABLE"


class ProviderRejectedRequest(ProviderError):
    """The provider answered 400 for the request itself (e.g. context too long)."""

    REASON = "PROVIDER_REJECTED_REQUEST"


class DeadlineExceeded(LiyaError):
    """The call's deadline ran out (the service's own DEADLINE_EXCEEDED, or gRPC's)."""

    REASON = "DEADLINE_EXCEEDED"


class Unavailable(LiyaError):
    """UNAVAILABLE with no known reason: the service could not be reached."""


class StorageUnavailable(Unavailable):
    """The service's database did not answer; the call can be retried shortly."""

    REASON = "STORAGE_UNAVAILABLE"


class ServerOverloaded(Unavailable):
    """The replica that answered is at its limit of calls in flight; another may serve."""

    REASON = "SERVER_OVERLOADED"


class Internal(LiyaError):
    """An unexpected failure in the service (reason ``INTERNAL``) or with no reason.

    Quote ``request_id`` to the operator.
    """

    REASON = "INTERNAL"


_BY_CODE: dict[grpc.StatusCode, type[LiyaError]] = {
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
    grpc.StatusCode.UNIMPLEMENTED: Internal,
}


def error_from_rpc(err: grpc.RpcError) -> LiyaError:
    """Turn a failed gRPC call (sync or ``grpc.aio``) into a typed ``LiyaError``.

    The class is chosen by the ``ErrorInfo`` reason when the status carries one
    from the ``liyaengine.ai`` domain, else by the status code.
    """
    parts = status_parts(err)
    cls = reason_classes().get(parts.reason) or _BY_CODE.get(parts.code, LiyaError)
    return cls(
        parts.code,
        parts.reason,
        parts.message,
        parts.metadata,
        parts.request_id,
        parts.violations,
        retry_delay=parts.retry_delay,
        quota_violations=parts.quota_violations,
    )
