"""Scrubbing of key-like text, for anything that may reach a caller or a log.

Providers echo partial keys in their error messages ("Incorrect API key
provided: sk-proj-****abcd"); callers sometimes paste keys into the wrong
field. ``scrub`` removes both the exact secrets it is given and anything that
looks like a provider key or a long token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from liya_engine.secret import Secret

REDACTED = "[REDACTED]"

# Key-shaped runs: provider key prefixes, bearer tokens, JWTs, and opaque runs
# of 32+ characters (Azure keys are 32 hex characters). "/" is not part of a
# run so file paths in tracebacks survive; keys the caller is known to hold are
# removed, with every fragment of them, by ``scrub``.
_PATTERNS = re.compile(
    r"""
    (?:sk|rk|pk)-[A-Za-z0-9_\-*.]{4,}           # OpenAI / Anthropic style keys, masked too
    | \*{3,}[A-Za-z0-9_\-]{0,8}                 # the masked middle and tail of a key
    | (?i:bearer)\s+[A-Za-z0-9_\-.=+/]{8,}     # bearer credentials
    | eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-.]+  # JWTs
    | (?<![A-Za-z0-9+_\-])(?!LIYA_[A-Z0-9_]+(?![A-Za-z0-9+_\-]))[A-Za-z0-9+_\-]{32,}={0,2}
                                                 # long opaque tokens, but not the
                                                 # service's own setting names
    """,
    re.VERBOSE,
)


# A value with a provider key prefix, or a long run with no separator, is a
# key pasted into the wrong field (a name, an intent, a mask path).
_KEY_SHAPED = re.compile(r"^(?i:sk|rk|pk)-|^[A-Za-z0-9+/=]{32,}$")

NOT_SHOWN = "(not shown)"


def looks_like_key(value: str) -> bool:
    """Whether ``value``, meant as a name, looks like an API key: the one rule
    every check of caller-named fields uses."""
    return bool(_KEY_SHAPED.search(value))


def safe_to_echo(value: str, shape: re.Pattern[str]) -> bool:
    """Whether caller input may be repeated back in a message: it has the
    expected ``shape``, does not look like a key, and scrubbing leaves it as is."""
    return bool(shape.fullmatch(value)) and not looks_like_key(value) and scrub(value) == value


def shown(value: str, shape: re.Pattern[str], placeholder: str = NOT_SHOWN) -> str:
    """``repr(value)`` when it is safe to echo, else ``placeholder``."""
    return repr(value) if safe_to_echo(value, shape) else placeholder


FRAGMENT = 6  # shortest run of a known secret that counts as showing it


def scrub(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Return ``text`` with every key-shaped token, and every run of 6 or more
    characters taken from one of ``secrets`` (start, middle or end), replaced
    by ``[REDACTED]``."""
    text = _PATTERNS.sub(REDACTED, text)
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = _remove_fragments(text, value)
    return _PATTERNS.sub(REDACTED, text)


def _remove_fragments(text: str, value: str) -> str:
    if len(value) < FRAGMENT:
        return text.replace(value, REDACTED)
    grams = {value[i : i + FRAGMENT] for i in range(len(value) - FRAGMENT + 1)}
    covered = [False] * len(text)
    for i in range(len(text) - FRAGMENT + 1):
        if text[i : i + FRAGMENT] in grams:
            covered[i : i + FRAGMENT] = [True] * FRAGMENT
    if not any(covered):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if covered[i]:
            out.append(REDACTED)
            while i < len(text) and covered[i]:
                i += 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
