"""Both clients for ``liya.engine.v1``: ``AsyncLiyaClient`` (``grpc.aio``, in
``async_client``) and the blocking ``LiyaClient`` (in ``sync_client``)."""

from liya_engine_client.async_client import AsyncLiyaClient
from liya_engine_client.sync_client import LiyaClient

__all__ = ["AsyncLiyaClient", "LiyaClient"]
