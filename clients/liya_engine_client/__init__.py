"""Python client for the Liya Engine BYOK service (``liya.engine.v1``).

    from liya_engine_client import AsyncLiyaClient, ByokQuotaExceeded

    async with AsyncLiyaClient("localhost:50051", token=get_token) as client:
        await client.update_config({"provider_config": {"mode": "byok", ...}})
        reply = await client.complete("general_chat", [{"role": "user", "content": "Hi"}])

``LiyaClient`` is the blocking equivalent. Every method raises a subclass of
``LiyaError`` (one per error reason of the API), never a raw gRPC error.
"""

from liya_engine_client._common import (
    DEFAULT_TIMEOUT,
    KEEPALIVE_TIME_MS,
    SERVICE_CONFIG,
    MessageLike,
    TokenProvider,
    UpdateBody,
    channel_options,
)
from liya_engine_client.client import AsyncLiyaClient, LiyaClient
from liya_engine_client.errors import (
    ByokAuthFailed,
    ByokEndpointUnreachable,
    ByokModelNotFound,
    ByokNotConfigured,
    ByokQuotaExceeded,
    CostLimitExceeded,
    DeadlineExceeded,
    EtagMismatch,
    FieldViolation,
    Internal,
    InvalidArgument,
    InvalidConfig,
    InvalidRequest,
    InvalidToken,
    KeyDecryptionFailed,
    LiyaError,
    ProviderError,
    ProviderRejectedRequest,
    ProviderUnavailable,
    QuotaViolation,
    StorageUnavailable,
    Unavailable,
    error_from_rpc,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_TIME_MS",
    "SERVICE_CONFIG",
    "AsyncLiyaClient",
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
    "LiyaClient",
    "LiyaError",
    "MessageLike",
    "ProviderError",
    "ProviderRejectedRequest",
    "ProviderUnavailable",
    "QuotaViolation",
    "StorageUnavailable",
    "TokenProvider",
    "Unavailable",
    "UpdateBody",
    "channel_options",
    "error_from_rpc",
]
