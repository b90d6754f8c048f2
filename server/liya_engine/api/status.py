"""The one place where domain errors become gRPC statuses.

Every error answer is a ``google.rpc.Status`` with exactly one ``ErrorInfo``
(domain ``liyaengine.ai``), plus ``BadRequest`` for field violations (at most
``MAX_FIELD_VIOLATIONS``), ``RetryInfo`` when the error says when to retry, and
``QuotaFailure`` for provider quota errors and the monthly budget. The status
code and the reason come from the error's class (``liya_engine.errors``);
there is no table here.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from liya_engine import errors

DOMAIN = "liyaengine.ai"

# Every error must fit in the default metadata limit of any gRPC client (8 KiB
# of headers, which the base64 status details share with everything else):
# 20 violations of a few hundred bytes each stay well inside it.
MAX_FIELD_VIOLATIONS = 20


def code_for(exc: errors.LiyaError) -> int:
    """The ``google.rpc.Code`` an error answers with: its class says."""
    return exc.code


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def capped_violations(
    violations: list[errors.FieldViolation],
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """At most ``MAX_FIELD_VIOLATIONS``; when there were more, the last one shown
    also says how many were left out."""
    shown = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        for v in violations[:MAX_FIELD_VIOLATIONS]
    ]
    hidden = len(violations) - len(shown)
    if hidden > 0:
        plural = "violation" if hidden == 1 else "violations"
        shown[-1].description += f" (... and {hidden} more {plural} not shown)"
    return shown


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    # Rounded to whole nanoseconds: 1.2 s is 1.200s, not 1.199999999s.
    nanos = round(max(0.0, seconds) * 1e9)
    return error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=nanos // 10**9, nanos=nanos % 10**9)
    )


def _quota_subject(exc: errors.LiyaError) -> str | None:
    """What ran out, for the errors that carry a QuotaFailure."""
    if isinstance(exc, errors.ProviderQuotaExceeded):
        return f"provider:{exc.provider}"
    if isinstance(exc, errors.BudgetExceeded):
        return "model_config.monthly_budget_usd"
    return None


def error_status(exc: errors.LiyaError, request_id: str) -> grpc.Status:
    """Build the status for a domain error."""
    metadata = dict(exc.metadata)
    metadata["request_id"] = request_id
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=metadata))
    ]
    if isinstance(exc, errors.InvalidArgument) and exc.violations:
        details.append(
            _pack(error_details_pb2.BadRequest(field_violations=capped_violations(exc.violations)))
        )
    if exc.retry_after is not None:
        details.append(_pack(_retry_info(exc.retry_after)))
    subject = _quota_subject(exc)
    if subject is not None:
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=subject, description=exc.message
                        )
                    ]
                )
            )
        )
    return rpc_status.to_status(
        status_pb2.Status(code=code_for(exc), message=exc.message, details=details)
    )


def internal_status(request_id: str) -> grpc.Status:
    """The answer for anything unexpected: no detail of the failure, only where to look."""
    return error_status(
        errors.InternalError(f"internal error; quote request id {request_id} to the operator"),
        request_id,
    )


def deadline_status(request_id: str) -> grpc.Status:
    """The caller's own deadline cut the provider call short."""
    exc = errors.DeadlineExceeded
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason, domain=DOMAIN, metadata={"request_id": request_id}
    )
    return rpc_status.to_status(
        status_pb2.Status(code=exc.code, message=exc.message, details=[_pack(info)])
    )
