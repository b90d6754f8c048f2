"""The one place where domain errors become gRPC statuses.

Every error answer is a ``google.rpc.Status`` with exactly one ``ErrorInfo``
(domain ``liyaengine.ai``), plus ``BadRequest`` for field violations,
``RetryInfo`` when a provider said when to retry, and ``QuotaFailure`` for
provider quota errors.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from liya_engine import errors

DOMAIN = "liyaengine.ai"

_CODES: tuple[tuple[type[errors.LiyaError], int], ...] = (
    (errors.InvalidToken, code_pb2.UNAUTHENTICATED),
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.EtagMismatch, code_pb2.ABORTED),
    (errors.NotConfigured, code_pb2.FAILED_PRECONDITION),
    (errors.CostLimitExceeded, code_pb2.FAILED_PRECONDITION),
    (errors.KeyDecryptionFailed, code_pb2.INTERNAL),
    (errors.StorageUnavailable, code_pb2.UNAVAILABLE),
    (errors.ProviderAuthFailed, code_pb2.FAILED_PRECONDITION),
    (errors.ProviderQuotaExceeded, code_pb2.RESOURCE_EXHAUSTED),
    (errors.ProviderModelNotFound, code_pb2.FAILED_PRECONDITION),
    (errors.ProviderUnreachable, code_pb2.UNAVAILABLE),
    (errors.ProviderUnavailable, code_pb2.UNAVAILABLE),
    (errors.ProviderRejectedRequest, code_pb2.INVALID_ARGUMENT),
)


def code_for(exc: errors.LiyaError) -> int:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return code_pb2.INTERNAL


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def error_status(exc: errors.LiyaError, request_id: str) -> grpc.Status:
    """Build the status for a domain error."""
    metadata = dict(exc.metadata)
    metadata["request_id"] = request_id
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=metadata))
    ]
    if isinstance(exc, errors.InvalidArgument) and exc.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in exc.violations
                    ]
                )
            )
        )
    if isinstance(exc, errors.ProviderError) and exc.retry_after is not None:
        seconds = max(0.0, exc.retry_after)
        whole = math.floor(seconds)
        details.append(
            _pack(
                error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(
                        seconds=whole, nanos=int((seconds - whole) * 1e9)
                    )
                )
            )
        )
    if isinstance(exc, errors.ProviderQuotaExceeded):
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=f"provider:{exc.provider}", description=exc.message
                        )
                    ]
                )
            )
        )
    return rpc_status.to_status(
        status_pb2.Status(code=code_for(exc), message=exc.message, details=details)
    )


def _bare_status(code: int, reason: str, message: str, request_id: str) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={"request_id": request_id}
    )
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=message, details=[_pack(info)])
    )


def internal_status(request_id: str) -> grpc.Status:
    """The answer for anything unexpected: no detail of the failure, only where to look."""
    return _bare_status(
        code_pb2.INTERNAL,
        "INTERNAL",
        f"internal error; quote request id {request_id} to the operator",
        request_id,
    )


def deadline_status(request_id: str) -> grpc.Status:
    """The caller's own deadline cut the provider call short."""
    return _bare_status(
        code_pb2.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
        "the call's deadline ran out before the provider answered",
        request_id,
    )
