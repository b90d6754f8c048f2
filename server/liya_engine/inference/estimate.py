"""The one token estimate, for prompts and for generated text.

Used before a call to bound its cost, and after a stream whose provider sent
no usage (Azure API versions before 2024-08-01) to report one. One token per
three characters, plus four per message and three for the reply primer: real
tokenisers give about four characters per token for English, so the estimate
errs high, which is the safe side for a cost limit. Pure functions on plain
values: any layer may import this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4
REPLY_PRIMER_TOKENS = 3


class _HasContent(Protocol):
    @property
    def content(self) -> str: ...


def estimate_text_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters of text, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: Iterable[_HasContent]) -> int:
    """Tokens a prompt of these messages is estimated to take."""
    return REPLY_PRIMER_TOKENS + sum(
        estimate_text_tokens(len(m.content)) + TOKENS_PER_MESSAGE for m in messages
    )
