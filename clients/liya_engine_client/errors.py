"""Typed exceptions for the Liya Engine API, built from the rich gRPC status.

The service answers every failure with a ``google.rpc.Status`` carrying exactly
one ``ErrorInfo`` (domain ``liyaengine.ai``) whose ``reason`` says what went
wrong, plus ``BadRequest``, ``RetryInfo`` or ``QuotaFailure`` where they fit.
``error_from_rpc`` turns a failed call into one exception class per reason::

    LiyaError                         base: code, reason, message, metadata, ...
    +-- InvalidToken                  INVALID_TOKEN
    +-- InvalidArgument               base for bad input (carries violations)
    |   +-- InvalidConfig             INVALID_CONFIG
    |   +-- InvalidRequest            INVALID_REQUEST
    +-- EtagMismatch                  ETAG_MISMATCH
    +-- ByokNotConfigured             BYOK_NOT_CONFIGURED
    +-- CostLimitExceeded             COST_LIMIT_EXCEEDED
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
    +-- Internal                      INTERNAL/UNKNOWN/DATA_LOSS/UNIMPLEMENTED
                                      without a known reason (and reason INTERNAL)

A status with any other code and no known reason (for example CANCELLED, or
RESOURCE_EXHAUSTED from a message-size limit) becomes a plain ``LiyaError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "liyaengine.ai"

__all__ = [
    "DOMAIN",
    "ByokAuthFailed",
    "ByokEndpointUnreachable",
    "ByokModelNotFound",
    "ByokNotConfigured",
    "ByokQuotaExceeded",
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
    "StorageUnavailable",
    "Unavailable",
    "error_from_rpc",
]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request (from ``google.rpc.BadRequest``)."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One exhausted quota (from ``google.rpc.QuotaFailure``)."""

    subject: str
    description: str


class LiyaError(Exception):
    """Base of every error a Liya Engine client method raises.

    Attributes:
        code: the gRPC status code of the failed call.
        reason: the ``ErrorInfo`` reason (e.g. ``BYOK_AUTH_FAILED``); empty when
            the status carried none (a transport failure, a proxy, an old server).
        message: the status message; safe to show, the service never puts a
            key in it.
        metadata: the ``ErrorInfo`` metadata, such as ``provider``, ``model``,
            ``upstream_status`` and ``request_id``.
        request_id: the id to quote to the operator (from the ``ErrorInfo`` or
            the ``x-request-id`` trailer); empty when the call never reached
            the service.
        violations: field violations from ``BadRequest``, if any.
        retry_delay: seconds the provider asked to wait (``RetryInfo``), if any.
    """

    #: The reason this class stands for; subclasses of one reason set it.
    REASON: ClassVar[str] = ""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
        violations: Sequence[FieldViolation] = (),
        *,
        retry_delay: float | None = None,
        quota_violations: Sequence[QuotaViolation] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.request_id = request_id
        self.violations: list[FieldViolation] = list(violations)
        self.retry_delay = retry_delay
        self.quota_violations: list[QuotaViolation] = list(quota_violations)

    def __str__(self) -> str:
        head = f"{self.reason or self.code.name}: {self.message}"
        if self.violations:
            head += " (" + "; ".join(f"{v.field}: {v.description}" for v in self.violations) + ")"
        if self.request_id:
            head += f" [request_id={self.request_id}]"
        return head

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


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
        return _float(self.metadata.get("estimate_usd"))

    @property
    def limit_usd(self) -> float | None:
        """The tenant's ``cost_limit_usd_per_request``."""
        return _float(self.metadata.get("limit_usd"))

    @property
    def max_tokens_that_fit(self) -> int | None:
        """The largest ``max_tokens`` that would stay within the limit."""
        return _int(self.metadata.get("max_tokens_that_fit"))


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
        return _int(self.metadata.get("upstream_status"))


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


class Internal(LiyaError):
    """An unexpected failure in the service (reason ``INTERNAL``) or with no reason.

    Quote ``request_id`` to the operator.
    """

    REASON = "INTERNAL"


_BY_REASON: dict[str, type[LiyaError]] = {
    cls.REASON: cls
    for cls in (
        InvalidToken,
        InvalidConfig,
        InvalidRequest,
        EtagMismatch,
        ByokNotConfigured,
        CostLimitExceeded,
        KeyDecryptionFailed,
        ByokAuthFailed,
        ByokQuotaExceeded,
        ByokModelNotFound,
        ByokEndpointUnreachable,
        ProviderUnavailable,
        ProviderRejectedRequest,
        DeadlineExceeded,
        StorageUnavailable,
        Internal,
    )
}

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
    code = _call_attr(err, "code") or grpc.StatusCode.UNKNOWN
    message = _call_attr(err, "details") or ""
    trailers = _trailers(err)
    status = _rich_status(err)

    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    quota: list[QuotaViolation] = []
    retry_delay: float | None = None
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                # Another domain's reason (a proxy, a sidecar) is not ours to interpret.
                if info.domain == DOMAIN and not reason:
                    reason = info.reason
                    metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info_retry = error_details_pb2.RetryInfo()
                detail.Unpack(info_retry)
                delay = info_retry.retry_delay
                retry_delay = delay.seconds + delay.nanos / 1e9
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                failure = error_details_pb2.QuotaFailure()
                detail.Unpack(failure)
                quota.extend(QuotaViolation(v.subject, v.description) for v in failure.violations)

    request_id = metadata.get("request_id") or trailers.get("x-request-id", "")
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, LiyaError)
    return cls(
        code,
        reason,
        message,
        metadata,
        request_id,
        violations,
        retry_delay=retry_delay,
        quota_violations=quota,
    )


def _call_attr(err: grpc.RpcError, name: str):
    # Not every RpcError is a Call (e.g. one raised before the call started).
    getter = getattr(err, name, None)
    if not callable(getter):
        return None
    try:
        return getter()
    except Exception:
        return None


def _trailers(err: grpc.RpcError) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in _call_attr(err, "trailing_metadata") or ():
        if isinstance(value, str):
            out.setdefault(key, value)
    return out


def _rich_status(err: grpc.RpcError) -> status_pb2.Status | None:
    if _call_attr(err, "trailing_metadata") is None:
        return None
    try:
        return rpc_status.from_call(err)
    except Exception:
        # A status detail that contradicts the call's code, or one that does not
        # parse, is ignored: the code and message still classify the error.
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
