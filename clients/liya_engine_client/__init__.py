"""Python client for the Liya Engine BYOK service (``liya.engine.v1``).

    from liya_engine_client import AsyncLiyaClient, ByokQuotaExceeded

    async with AsyncLiyaClient("localhost:50051", token=get_token) as client:
        await client.update_config({"provider_config": {"mode": "byok", ...}})
        reply = await client.complete("general_chat", [{"role": "user", "content": "Hi"}])

``LiyaClient`` is the blocking equivalent. Every method raises a subclass of
``LiyaError`` (one per error reason of the API), never a raw gRPC error.
"""

from liya_engine_client import errors as _errors
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
from liya_engine_client.errors import *  # noqa: F403 - every error class is public API

__all__ = [
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_TIME_MS",
    "SERVICE_CONFIG",
    "AsyncLiyaClient",
    "LiyaClient",
    "MessageLike",
    "TokenProvider",
    "UpdateBody",
    "channel_options",
    *_errors.__all__,
]
