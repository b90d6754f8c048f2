"""Python client for the Liya Engine BYOK service (``liya.engine.v1``).

    from liya_engine_client import AsyncLiyaClient, ByokQuotaExceeded

    async with AsyncLiyaClient("localhost:50051", token=get_token) as client:
        await client.update_config({"provider_config": {"mode": "byok", ...}})
        reply = await client.complete("general_chat", [{"role": "user", "content": "Hi"}])

``LiyaClient`` is the blocking equivalent. Every method raises a subclass of
``LiyaError`` (one per value of the API's ``ErrorReason`` enum, named as the
reason in CamelCase), never a raw gRPC error.

What lives here: ``async_client`` and ``sync_client`` (the two clients),
``_common`` (channel options, retry policy, request building), ``errors``
(the exception classes and ``error_from_rpc``), ``_base`` (their base class and
the reason registry) and ``_status`` (decoding a rich status). The package
ships in the ``liya-engine-client`` distribution with the generated
``liya.engine.v1`` stubs, and imports only those, grpcio, grpcio-status,
protobuf and googleapis-common-protos; never the server (``liya_engine``).
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
from liya_engine_client.async_client import AsyncLiyaClient
from liya_engine_client.errors import *  # noqa: F403 - every error class is public API
from liya_engine_client.sync_client import LiyaClient

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
