"""What an answer must be before the service uses it: the checks on each value
an adapter reads from a provider's 2xx answer.

A provider (or a proxy, or a gateway in front of it) can send anything with a
200: token counts that are negative, fractional, ``1.5e300`` or beyond int64,
text that is a number or holds a lone UTF-16 surrogate (which no protobuf
string may carry), ``usage`` that is a list, no JSON at all, or JSON nested so
deep that parsing it overflows the stack. Any of these read as they come would
fail later, far from the cause, as INTERNAL (a negative count makes the
Prometheus counter raise, a surrogate makes the reply unserialisable). Each
check here raises ``MalformedAnswer`` instead, which the classification makes
PROVIDER_UNAVAILABLE ("not a completion": retry later).

An answer text larger than a caller can receive (``MAX_ANSWER_BYTES``) is
PROVIDER_UNAVAILABLE as well, saying so, rather than a reply the caller's
gRPC library refuses with RESOURCE_EXHAUSTED and no reason.

``reading(provider)`` wraps the code that parses an answer, turning the
parsers' own failures (``ValueError``, ``RecursionError``, wrong types) into
``MalformedAnswer``; ``decoding(provider)`` does so for JSON decoding alone,
around SDK calls that also build the request (whose failures are bugs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from liya_engine.errors import MalformedAnswer, ProviderUnavailable
from liya_engine.providers import facts

#: The largest token count believed: far above any context window (a few
#: million tokens), and exact as a float, so cost and metrics stay exact.
MAX_TOKEN_COUNT = 10**9

#: The largest answer text relayed in one reply message. gRPC clients refuse
#: messages above 4 MiB unless told otherwise (the Python, Go, Java and C++
#: defaults alike); 64 KiB are left for the rest of the reply (usage, ids).
MAX_ANSWER_BYTES = 4 * 1024 * 1024 - 64 * 1024

# What parsing an answer raises when the answer is not what the API promises:
# bad JSON (ValueError), absurd nesting (RecursionError), a value of the wrong
# type met by the code reading it.
_PARSE_FAILURES = (
    ValueError,
    RecursionError,
    UnicodeError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
)


@contextmanager
def decoding(provider: str) -> Iterator[None]:
    """JSON that does not decode (or nests too deep) becomes ``MalformedAnswer``."""
    try:
        yield
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedAnswer(provider) from exc


class reading:  # used as a function: ``with reading(provider):``
    """Parse failures inside the block become ``MalformedAnswer(provider)``.

    A class rather than a ``contextlib.contextmanager``: a stream enters it for
    every chunk, and one instance serves every block of a stream.
    """

    __slots__ = ("provider",)

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is not None and not isinstance(exc, MalformedAnswer):
            if isinstance(exc, _PARSE_FAILURES):
                raise MalformedAnswer(self.provider) from exc


def token_count(provider: str, value: Any) -> int | None:
    """A token count: a whole number from 0 to ``MAX_TOKEN_COUNT``, or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedAnswer(provider)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise MalformedAnswer(provider)
    if not 0 <= value <= MAX_TOKEN_COUNT:
        raise MalformedAnswer(provider)
    return int(value)


def text(provider: str, value: Any) -> str:
    """Answer text: a string any protobuf can carry (valid UTF-8), "" when absent."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedAnswer(provider)
    _utf8_size(provider, value)
    return value


def answer_text(provider: str, value: Any) -> str:
    """``text`` that also fits in one reply message (``MAX_ANSWER_BYTES``)."""
    value = text(provider, value)
    if len(value) > MAX_ANSWER_BYTES // 4:  # only then can its UTF-8 be too long
        size = _utf8_size(provider, value)
        if size > MAX_ANSWER_BYTES:
            label = facts.TITLES.get(provider, provider)
            raise ProviderUnavailable(
                f"{label} answered with {size:,} bytes of text, more than the "
                f"{MAX_ANSWER_BYTES:,} this service sends on in one reply (gRPC clients "
                "refuse larger messages by default): ask for fewer tokens with max_tokens, "
                "or use CompleteStream.",
                provider=provider,
            )
    return value


def _utf8_size(provider: str, value: str) -> int:
    if value.isascii():
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        raise MalformedAnswer(provider) from None


def name(provider: str, value: Any) -> str | None:
    """A short name the answer carries (model, finish reason): a string or None."""
    if value is None:
        return None
    return text(provider, value)


def mapping(provider: str, value: Any) -> Mapping[str, Any]:
    """An object of the answer (``usage``, a message): a mapping, {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedAnswer(provider)
    return value
