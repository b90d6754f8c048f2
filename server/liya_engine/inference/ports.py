"""What the inference plane needs from a provider, owned by the domain.

The values of one provider call (``Credentials``, ``Message``,
``ProviderRequest``, ``ProviderResult``, ``StreamDelta``, ``StreamEnd``) and
the ``ProviderAdapter`` Protocol that ``liya_engine.providers`` implements,
and the ``UsageRecorder`` Protocol that ``liya_engine.usage`` implements.
Pure data and a Protocol: this module imports no SDK, HTTP client or grpc.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from liya_engine.secret import Secret

ProviderName = Literal["openai", "anthropic", "azure"]
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where and with which key to call a provider.

    ``base_url`` is the OpenAI/Anthropic base URL from settings, or the tenant's
    Azure endpoint. ``api_version`` is Azure's only.
    """

    provider: ProviderName
    api_key: Secret
    base_url: str
    api_version: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message of a completion call."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One completion call. For Azure, ``model`` is the deployment name.

    ``timeout`` is the upstream budget in seconds; when it runs out the adapter
    raises ``ProviderTimedOut``.
    """

    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    timeout: float
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """A whole answer: its text, why it ended, and the provider's usage."""

    text: str
    finish_reason: str  # "stop" | "length" | "content_filter"
    input_tokens: int
    output_tokens: int
    model: str


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of a streamed answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a stream: why it ended, and the usage."""

    finish_reason: str
    input_tokens: int
    output_tokens: int
    model: str


StreamEvent = StreamDelta | StreamEnd


class ProviderAdapter(Protocol):
    """What the inference service needs from a provider."""

    name: ProviderName

    async def complete(self, creds: Credentials, request: ProviderRequest) -> ProviderResult:
        """Run one completion; raise a ``ProviderError`` subclass on failure."""
        ...

    def stream(self, creds: Credentials, request: ProviderRequest) -> AsyncIterator[StreamEvent]:
        """Yield deltas then exactly one ``StreamEnd``; raise a ``ProviderError``
        (also mid-stream, e.g. when the connection is cut). Closing the iterator
        early closes the upstream response."""
        ...

    async def aclose(self) -> None:
        """Close pooled connections."""
        ...


class UsageRecorder(Protocol):
    """Where every call that reached a provider is counted, and what a
    monthly budget is checked against (``liya_engine.usage.ledger``)."""

    def record(
        self,
        tenant_id: str,
        provider: str,
        model: str,
        intent: str,
        mode: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        failed: bool,
        reserved_usd: float = 0.0,
    ) -> None:
        """Count one call; release the ``reserved_usd`` its budget check held.
        In memory only: no I/O, no await."""
        ...

    def reserve(self, tenant_id: str, amount_usd: float) -> None:
        """Hold a call's worst case against the tenant's budget until recorded."""
        ...

    async def spent(self, tenant_id: str) -> float:
        """The tenant's month-to-date cost, held worst cases included."""
        ...
