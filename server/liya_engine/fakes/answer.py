"""The fake's deterministic answer, shared by every wire format.

The reply echoes the start of the last user message, one "token" per word, so
``max_tokens`` truncation and usage numbers are easy to predict. Prompt tokens
are ``3 + sum(4 + len(text) // 4)`` over the messages (and the system prompt).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_ANSWER_PREFIX = "Fake answer to:"
_MAX_ECHO_WORDS = 40


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]], system: Any = None) -> int:
    """The fake's prompt token count: 3 + (4 + len(text) // 4) per message."""
    total = 3
    if system:
        total += 4 + len(_text_of(system)) // 4
    for message in messages:
        total += 4 + len(_text_of(message.get("content"))) // 4
    return total


def answer_words(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The words of the fake's full answer (one output token per word)."""
    last_user = ""
    for message in messages:
        if message.get("role") == "user":
            last_user = _text_of(message.get("content"))
    echo = last_user.split()[:_MAX_ECHO_WORDS]
    return [*_ANSWER_PREFIX.split(), *(echo or ["(nothing)"])]


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, Mapping):
                parts.append(str(block.get("text", "")))
            else:
                parts.append(str(block))
        return " ".join(parts)
    return str(content)


@dataclass
class Answer:
    """What the fake answers to one request, before a wire format shapes it."""

    model: str
    words: list[str]
    prompt_tokens: int
    finish: str  # "stop" | "length"
    id: str

    @classmethod
    def build(cls, body: Mapping[str, Any], model: str, id_prefix: str) -> Answer:
        """The answer to a request ``body`` (``max_tokens`` truncates it)."""
        messages = body.get("messages") or []
        words = answer_words(messages)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, finish = words[:limit], "length"
        return cls(
            model=model,
            words=words,
            prompt_tokens=count_prompt_tokens(messages, body.get("system")),
            finish=finish,
            id=id_prefix + uuid.uuid4().hex[:24],
        )

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def completion_tokens(self) -> int:
        return len(self.words)

    def word_pieces(self) -> list[str]:
        """The text as streamed: the first word, then `` word`` for each next one."""
        return [word if i == 0 else " " + word for i, word in enumerate(self.words)]


def sse(payload: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event with a compact JSON ``data`` line."""
    data = json.dumps(payload, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()
