"""The base exception and the reason registry the error classes are built on.

``REASONS`` is read from the generated ``ErrorReason`` enum; each class of
``liya_engine_client.errors`` that declares a ``REASON`` is checked against it
and against the naming rule (``class_name``) when it is defined, and
registered for ``error_from_rpc``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import grpc

from liya.engine.v1.error_reason_pb2 import ErrorReason
from liya_engine_client._status import FieldViolation, QuotaViolation

#: Every reason the service can send: the value names of ``ErrorReason``.
REASONS: frozenset[str] = frozenset(ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}

_BY_REASON: dict[str, type[LiyaError]] = {}


def class_name(reason: str) -> str:
    """The exception class name for a reason: ``BYOK_AUTH_FAILED`` -> ``ByokAuthFailed``."""
    return "".join(word.capitalize() for word in reason.split("_"))


def reason_classes() -> Mapping[str, type[LiyaError]]:
    """The exception class of each reason (read-only)."""
    return MappingProxyType(_BY_REASON)


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
        retry_delay: seconds to wait before retrying (``RetryInfo``), if the
            service or the provider said.
    """

    #: The reason this class stands for; the class of each reason sets it.
    REASON: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        reason = cls.__dict__.get("REASON")
        if reason is None:
            return  # a base class, or a caller's subclass of a reason's class
        if reason not in REASONS or cls.__name__ != class_name(reason):
            raise TypeError(
                f"{cls.__name__}.REASON {reason!r}: must be a value of ErrorReason, "
                f"in a class named {class_name(reason)}"
            )
        if reason in _BY_REASON:
            raise TypeError(f"{reason} already has the class {_BY_REASON[reason].__name__}")
        _BY_REASON[reason] = cls

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


def parse_float(value: str | None) -> float | None:
    """A metadata value as a float, or None when absent or malformed."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_int(value: str | None) -> int | None:
    """A metadata value as an int, or None when absent or malformed."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
