"""Both clients for ``liya.engine.v1``: ``AsyncLiyaClient`` (``grpc.aio``, in
``async_client``) and the blocking ``LiyaClient`` (in ``sync_client``).

Kept as the import path callers used before the two were split; new code
imports them from ``liya_engine_client``."""

from liya_engine_client.async_client import AsyncLiyaClient
from liya_engine_client.sync_client import LiyaClient

__all__ = ["AsyncLiyaClient", "LiyaClient"]
