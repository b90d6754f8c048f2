"""Scrubbing of key material, for anything that may reach a caller or a log.

Two rules, in this order:

1. Known keys (the tenant's key of the failed call, the platform's managed
   keys): a text that shows any 6-character run of a key's secret part (what
   follows a public prefix such as ``sk-proj-``) in any form a provider or a
   library might echo it (split by whitespace or line breaks, JSON ``\\u``
   escapes, HTML entities, URL or base64 encoding, other letter case,
   reversed) is replaced as a whole (``holds_secret``): a text that quotes a
   key in pieces cannot be trusted in pieces.
2. Key shapes, for keys nobody told us about: provider key prefixes, bearer
   credentials, JWTs, and long random runs (letters mixed with digits, or
   letters of random case) become ``[REDACTED]`` in place. Request ids
   (``req_`` + hex, Anthropic's ``req_011C...``, UUIDs) and names (Python's
   ``asyncpg.exceptions.ConnectionDoesNotExistError``, the service's own
   ``LIYA_...`` settings) are not key material and stay.

Scrubbing runs where text may carry provider words or caller input: on
failures and on log lines, never on a successful call's answer.
"""

from __future__ import annotations

import base64
import contextvars
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from liya_engine.providers.facts import KEY_PREFIXES
from liya_engine.secret import Secret

REDACTED = "[REDACTED]"
WITHHELD_LINE = "[REDACTED: this line held key material]"
"""What a log line that held a known key becomes."""

FRAGMENT = 6  # shortest run of a known secret that counts as showing it

# Key-shaped runs. A key prefix run never ends in "." so that a sentence's
# full stop after an echoed key survives ("... sk-proj-****abcd.").
_PATTERNS = re.compile(
    r"""
    (?<![A-Za-z0-9])(?:sk|rk|pk)-[A-Za-z0-9_\-*.]{3,}[A-Za-z0-9_\-*]  # keys, masked too
    | \*{3,}[A-Za-z0-9_\-]{0,8}                        # the masked middle and tail of a key
    | (?i:bearer)\s+[A-Za-z0-9_\-.=+/]{8,}             # bearer credentials
    | eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-.]+          # JWTs
    """,
    re.VERBOSE,
)
# Long runs with no separator: keys (Azure's are 32 hex characters) or not,
# which ``_is_random`` decides. "/" and "." end a run, so that paths and
# dotted names are judged part by part.
_LONG_RUN = re.compile(r"(?<![A-Za-z0-9+_\-])[A-Za-z0-9+_\-]{32,}={0,2}")
# Ids providers send for their support desks: OpenAI ``req_`` + 32 hex,
# Anthropic ``req_011C...``, Azure UUIDs, completion and message ids.
_ID_SHAPES = re.compile(
    r"""
    (?:req|msg|chatcmpl|resp|run|file|batch|cmpl)[_-][A-Za-z0-9]{8,64}
    | [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}
    """,
    re.VERBOSE,
)
_SETTING_NAME = re.compile(r"LIYA_[A-Z0-9_]+")
_DIGIT = re.compile(r"\d")
_CASE_CHANGE = re.compile(r"[a-z](?=[A-Z])|[A-Z](?=[a-z])")


# A value with a provider key prefix, or a long run with no separator, is a
# key pasted into the wrong field (a name, an intent, a mask path).
_KEY_SHAPED = re.compile(r"^(?i:sk|rk|pk)-|^[A-Za-z0-9+/=]{32,}$")

NOT_SHOWN = "(not shown)"

# The keys of the call being served (set when a provider call fails), for the
# log lines that follow in the same task; the platform's keys are ``remember``ed.
_call_needles: contextvars.ContextVar[Needles | None] = contextvars.ContextVar(
    "call_needles", default=None
)
_remembered: list[str] = []


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


def scrub(
    text: str, secrets: Iterable[Secret | str | None] = (), *, withheld: str = REDACTED
) -> str:
    """``text`` with key shapes replaced by ``[REDACTED]``; ``withheld`` as a
    whole when it shows any of ``secrets`` in any form (see the module docstring)."""
    if holds_secret(text, secrets):
        return withheld
    return scrub_shapes(text)


def scrub_shapes(text: str) -> str:
    """``text`` with every key-shaped run (rule 2) replaced by ``[REDACTED]``."""
    return _LONG_RUN.sub(_long_run, _PATTERNS.sub(REDACTED, text))


def scrub_line(text: str) -> str:
    """A log line: withheld as a whole when it shows a remembered key or the
    current call's key, else with key shapes replaced."""
    needles = _call_needles.get()
    needles = _remembered_needles if needles is None else needles | _remembered_needles
    if needles and needles.found_in(text):
        return WITHHELD_LINE
    return scrub_shapes(text)


def remember(secrets: Iterable[Secret | str | None]) -> None:
    """Scrub these keys (the platform's own) from every log line from now on."""
    global _remembered_needles
    for secret in secrets:
        value = _reveal(secret)
        if value:  # once per server that remembers it: ``forget`` takes one away
            _remembered.append(value)
    _remembered_needles = Needles.of(set(_remembered))


def forget(secrets: Iterable[Secret | str | None]) -> None:
    """Stop scrubbing these remembered keys (their server stopped)."""
    global _remembered_needles
    for secret in secrets:
        value = _reveal(secret)
        if value in _remembered:
            _remembered.remove(value)
    _remembered_needles = Needles.of(set(_remembered))


def note_call_secrets(secrets: Iterable[Secret | str | None]) -> Needles:
    """Scrub these keys from the log lines of the current task (a failed
    call); return their ``Needles`` for the call's own texts."""
    needles = Needles.of(secrets)
    if needles:
        _call_needles.set(needles)
    return needles


def secret_part(value: str) -> str:
    """What follows a key's public prefix (``sk-proj-``, ``sk-ant-api03-``...)."""
    prefix = next((p for p in KEY_PREFIXES if value.startswith(p)), "")
    return value[len(prefix) :] or value


def holds_secret(text: str, secrets: Iterable[Secret | str | None]) -> bool:
    """Whether ``text`` shows a run of ``FRAGMENT`` characters of any secret's
    secret part, in any of the forms the module docstring lists."""
    needles = Needles.of(secrets)
    return bool(needles) and needles.found_in(text)


def _reveal(secret: Secret | str | None) -> str:
    if secret is None:
        return ""
    return secret.reveal() if isinstance(secret, Secret) else secret


# A 6-byte run inside base64 always shows as at least 7 characters that depend
# on those bytes alone, whatever the run's offset in the encoded text.
_B64_RUN = 7
_B64_ALPHABETS = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class Needles:
    """What a text showing one of some secrets would contain: the 6-character
    runs of their secret parts in lower case, forward and reversed (``plain``),
    and the 7-character runs of their base64 encodings at each byte offset
    (``encoded``). Built once per set of secrets, searched in any text."""

    plain: frozenset[str]
    encoded: frozenset[str]
    # A 6-character run of text holds a 3-character piece at a position that
    # is a multiple of 3 (a 7-character run, a 4-character piece at a multiple
    # of 4): looking at those pieces first rules most texts out at a third of
    # the cost.
    plain_pieces: frozenset[str]
    encoded_pieces: frozenset[str]

    @classmethod
    def of(cls, secrets: Iterable[Secret | str | None]) -> Needles:
        plain: set[str] = set()
        encoded: set[str] = set()
        for secret in secrets:
            value = _reveal(secret)
            part = "".join(secret_part(value).split())
            if len(part) < FRAGMENT:
                continue  # never a key; nothing of it can be told from text
            lowered = part.lower()
            for text in (lowered, lowered[::-1]):  # reversed echoes too
                plain.update(text[i : i + FRAGMENT] for i in range(len(text) - FRAGMENT + 1))
            encoded.update(_base64_runs(part.encode()))
        return cls(
            frozenset(plain),
            frozenset(encoded),
            frozenset(r[i : i + 3] for r in plain for i in range(FRAGMENT - 2)),
            frozenset(r[i : i + 4] for r in encoded for i in range(_B64_RUN - 3)),
        )

    def __bool__(self) -> bool:
        return bool(self.plain)

    def __or__(self, other: Needles) -> Needles:
        return Needles(
            self.plain | other.plain,
            self.encoded | other.encoded,
            self.plain_pieces | other.plain_pieces,
            self.encoded_pieces | other.encoded_pieces,
        )

    def found_in(self, text: str) -> bool:
        """Whether ``text`` shows a secret in any form (see the module docstring)."""
        if not text or not self.plain:
            return False
        decoded = _decoded(text)
        for view in (text,) if decoded == text else (text, decoded):
            # Case and whitespace dropped: other letter case, and a key split
            # over words or lines, read as the key.
            flat = "".join(view.split())
            lowered = flat.lower()
            if not self.plain_pieces.isdisjoint(_runs(lowered, 3, 3)):
                if not self.plain.isdisjoint(_runs(lowered, FRAGMENT)):
                    return True
            b64 = flat.translate(_B64_ALPHABETS)
            if not self.encoded_pieces.isdisjoint(_runs(b64, 4, 4)):
                if not self.encoded.isdisjoint(_runs(b64, _B64_RUN)):
                    return True
        return False


def _runs(text: str, size: int, step: int = 1) -> set[str]:
    return {text[i : i + size] for i in range(0, len(text) - size + 1, step)}


def _base64_runs(data: bytes) -> set[str]:
    """The ``_B64_RUN``-character runs of base64 text that only ``data``'s bytes
    decide, with ``data`` starting at each of the three byte offsets."""
    runs: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        # Characters that also depend on the bytes before or after are out.
        start = (0, 2, 3)[offset]
        total = offset + len(data)
        end = 4 * (total // 3) + total % 3
        runs.update(_runs(encoded[start:end], _B64_RUN))
    return runs


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([nrtbf\"\\/])")
_JSON_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def _json_unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        return _JSON_SIMPLE.get(m.group(2), m.group(2))

    return _JSON_ESCAPE.sub(one, text) if "\\" in text else text


def _decoded(text: str) -> str:
    # Escapes nest in practice (an entity inside a JSON string inside a URL):
    # undo each layer until nothing changes, a few rounds at most.
    for _ in range(3):
        before = text
        text = _json_unescape(text)
        if "&" in text:
            text = html.unescape(text)
        if "%" in text:
            text = unquote(text)
        if text == before:
            break
    return text


def _long_run(match: re.Match[str]) -> str:
    run = match.group(0)
    return REDACTED if _is_random(run) else run


def _is_random(run: str) -> bool:
    """Whether a long run looks like a key rather than an id or a name."""
    if _SETTING_NAME.fullmatch(run) or _ID_SHAPES.fullmatch(run.rstrip("=")):
        return False
    if _DIGIT.search(run):
        return True  # letters mixed with digits: Azure's hex keys, base64, base62
    # Letters only: a name (CamelCase, snake_case) changes case at word
    # boundaries, twice a word; random letters change case about every other
    # character.
    letters = sum(c.isalpha() for c in run)
    return len(_CASE_CHANGE.findall(run)) * 3 > letters


_remembered_needles = Needles.of(())
