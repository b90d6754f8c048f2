from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    BYOK_AUTH_FAILED: _ClassVar[ErrorReason]
    BYOK_QUOTA_EXCEEDED: _ClassVar[ErrorReason]
    BYOK_MODEL_NOT_FOUND: _ClassVar[ErrorReason]
    BYOK_ENDPOINT_UNREACHABLE: _ClassVar[ErrorReason]
    PROVIDER_UNAVAILABLE: _ClassVar[ErrorReason]
    PROVIDER_REJECTED_REQUEST: _ClassVar[ErrorReason]
    COST_LIMIT_EXCEEDED: _ClassVar[ErrorReason]
    BYOK_NOT_CONFIGURED: _ClassVar[ErrorReason]
    INVALID_CONFIG: _ClassVar[ErrorReason]
    INVALID_REQUEST: _ClassVar[ErrorReason]
    ETAG_MISMATCH: _ClassVar[ErrorReason]
    INVALID_TOKEN: _ClassVar[ErrorReason]
    KEY_DECRYPTION_FAILED: _ClassVar[ErrorReason]
    STORAGE_UNAVAILABLE: _ClassVar[ErrorReason]
    BUDGET_EXCEEDED: _ClassVar[ErrorReason]
    CONCURRENCY_LIMIT_EXCEEDED: _ClassVar[ErrorReason]
    SERVER_OVERLOADED: _ClassVar[ErrorReason]
    DEADLINE_EXCEEDED: _ClassVar[ErrorReason]
    INTERNAL: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
BYOK_AUTH_FAILED: ErrorReason
BYOK_QUOTA_EXCEEDED: ErrorReason
BYOK_MODEL_NOT_FOUND: ErrorReason
BYOK_ENDPOINT_UNREACHABLE: ErrorReason
PROVIDER_UNAVAILABLE: ErrorReason
PROVIDER_REJECTED_REQUEST: ErrorReason
COST_LIMIT_EXCEEDED: ErrorReason
BYOK_NOT_CONFIGURED: ErrorReason
INVALID_CONFIG: ErrorReason
INVALID_REQUEST: ErrorReason
ETAG_MISMATCH: ErrorReason
INVALID_TOKEN: ErrorReason
KEY_DECRYPTION_FAILED: ErrorReason
STORAGE_UNAVAILABLE: ErrorReason
BUDGET_EXCEEDED: ErrorReason
CONCURRENCY_LIMIT_EXCEEDED: ErrorReason
SERVER_OVERLOADED: ErrorReason
DEADLINE_EXCEEDED: ErrorReason
INTERNAL: ErrorReason
