"""The one small interface every provider adapter implements.

An adapter turns a provider-neutral ``ProviderRequest`` into one call of the
provider's official SDK and the answer back into a ``ProviderResult`` (or a
stream of ``StreamDelta`` ending in a ``StreamEnd``). It classifies every SDK
exception into the ``liya_engine.errors.ProviderError`` tree, with scrubbed
messages. It never retries (SDK retries are off; the service decides) and never
decides routing.

The types themselves are the inference plane's port
(``liya_engine.inference.ports``); they are re-exported here for the adapters.
"""

from __future__ import annotations

from liya_engine.inference.ports import (
    Credentials,
    Message,
    ProviderAdapter,
    ProviderName,
    ProviderRequest,
    ProviderResult,
    StreamDelta,
    StreamEnd,
    StreamEvent,
)

__all__ = [
    "Credentials",
    "Message",
    "ProviderAdapter",
    "ProviderName",
    "ProviderRequest",
    "ProviderResult",
    "StreamDelta",
    "StreamEnd",
    "StreamEvent",
]
