"""The values of the completion use cases: what a caller asks, what it gets."""

from __future__ import annotations

from dataclasses import dataclass

from liya_engine.inference.ports import Message


@dataclass(frozen=True, slots=True)
class CompletionInput:
    """One completion call as the caller asked for it (not yet validated)."""

    intent: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens, cost and routing of one finished call."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    provider: str
    model: str
    mode: str
    request_id: str
    served_model: str = ""  # the model name the provider reported
    cost_source: str = ""  # tenant_prices, catalog or unpriced (routing.prices)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer with its usage."""

    text: str
    finish_reason: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamPiece:
    """One message of a streamed answer; the last carries the usage."""

    delta: str = ""
    finish_reason: str = ""
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What a verify call reached, and how long it took."""

    provider: str
    model: str
    mode: str
    latency_seconds: float
    usage: Usage | None = None
