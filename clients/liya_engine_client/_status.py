"""Reading the rich ``google.rpc.Status`` of a failed call into plain parts.

``liya_engine_client.errors`` picks the exception class from these parts; this
module knows only gRPC and the standard error details, not the classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "liyaengine.ai"


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


@dataclass(slots=True)
class StatusParts:
    """What a failed call said: its code and message, and the decoded details."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    violations: list[FieldViolation] = field(default_factory=list)
    quota_violations: list[QuotaViolation] = field(default_factory=list)
    retry_delay: float | None = None


def status_parts(err: grpc.RpcError) -> StatusParts:
    """Decode a failed gRPC call (sync or ``grpc.aio``).

    Only an ``ErrorInfo`` of the ``liyaengine.ai`` domain gives the reason;
    another domain's reason (a proxy, a sidecar) is not ours to interpret.
    """
    parts = StatusParts(
        code=_call_attr(err, "code") or grpc.StatusCode.UNKNOWN,
        message=_call_attr(err, "details") or "",
    )
    status = _rich_status(err)
    if status is not None:
        parts.message = status.message or parts.message
        for detail in status.details:
            _read_detail(detail, parts)
    parts.request_id = parts.metadata.get("request_id") or _trailers(err).get("x-request-id", "")
    return parts


def _read_detail(detail, parts: StatusParts) -> None:
    if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        if info.domain == DOMAIN and not parts.reason:
            parts.reason = info.reason
            parts.metadata = dict(info.metadata)
    elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
        bad = error_details_pb2.BadRequest()
        detail.Unpack(bad)
        parts.violations.extend(
            FieldViolation(v.field, v.description) for v in bad.field_violations
        )
    elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
        retry = error_details_pb2.RetryInfo()
        detail.Unpack(retry)
        parts.retry_delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
        failure = error_details_pb2.QuotaFailure()
        detail.Unpack(failure)
        parts.quota_violations.extend(
            QuotaViolation(v.subject, v.description) for v in failure.violations
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
