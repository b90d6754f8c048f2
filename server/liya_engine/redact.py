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

# Key-shaped runs: provider key prefixes, bearer tokens, JWTs, and long opaque
# runs of 40+ characters. Shorter runs are left alone so request ids (32 hex)
# stay readable, and "/" is not part of a run so file paths in tracebacks
# survive; keys the caller is known to hold are removed exactly by ``scrub``.
_PATTERNS = re.compile(
    r"""
    (?:sk|rk|pk)-[A-Za-z0-9_\-*.]{4,}           # OpenAI / Anthropic style keys, masked too
    | \*{3,}[A-Za-z0-9_\-]{0,8}                 # the masked middle and tail of a key
    | (?i:bearer)\s+[A-Za-z0-9_\-.=+/]{8,}     # bearer credentials
    | eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-.]+  # JWTs
    | (?<![A-Za-z0-9+_\-])[A-Za-z0-9+_\-]{40,}={0,2}  # long opaque tokens
    """,
    re.VERBOSE,
)


def scrub(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Return ``text`` with the given secrets, any 6+ character fragment of their
    ends, and every key-shaped token replaced by ``[REDACTED]``."""
    text = _PATTERNS.sub(REDACTED, text)
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if not value:
            continue
        text = text.replace(value, REDACTED)
        # Providers show the first or last few characters of a key they refuse.
        if len(value) >= 12:
            for fragment in (value[:8], value[-6:]):
                text = text.replace(fragment, REDACTED)
    return _PATTERNS.sub(REDACTED, text)
