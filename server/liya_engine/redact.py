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
import binascii
import contextvars
import html
import re
from collections.abc import Iterable
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
_call_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "call_secrets", default=()
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
    known = _call_secrets.get()
    if (_remembered or known) and holds_secret(text, (*_remembered, *known)):
        return WITHHELD_LINE
    return scrub_shapes(text)


def remember(secrets: Iterable[Secret | str | None]) -> None:
    """Scrub these keys (the platform's own) from every log line from now on."""
    for secret in secrets:
        value = _reveal(secret)
        if value and value not in _remembered:
            _remembered.append(value)


def forget_all() -> None:
    """Forget the remembered keys (a server that stops, tests)."""
    _remembered.clear()


def note_call_secrets(secrets: Iterable[Secret | str | None]) -> None:
    """Scrub these keys from the log lines of the current task (a failed call)."""
    values = tuple(v for v in (_reveal(s) for s in secrets) if v)
    if values:
        _call_secrets.set(values)


def secret_part(value: str) -> str:
    """What follows a key's public prefix (``sk-proj-``, ``sk-ant-api03-``...)."""
    prefix = next((p for p in KEY_PREFIXES if value.startswith(p)), "")
    return value[len(prefix) :] or value


def holds_secret(text: str, secrets: Iterable[Secret | str | None]) -> bool:
    """Whether ``text`` shows a run of ``FRAGMENT`` characters of any secret's
    secret part, in any of the forms the module docstring lists."""
    grams = _grams(secrets)
    if not grams or not text:
        return False
    size = min(len(g) for g in grams)
    return any(_shows(view, grams, size) for view in _views(text))


def _reveal(secret: Secret | str | None) -> str:
    if secret is None:
        return ""
    return secret.reveal() if isinstance(secret, Secret) else secret


def _grams(secrets: Iterable[Secret | str | None]) -> set[str]:
    grams: set[str] = set()
    for secret in secrets:
        value = _reveal(secret)
        if not value:
            continue
        part = "".join(secret_part(value).split()).lower()
        size = min(FRAGMENT, len(part))
        for text in (part, part[::-1]):  # reversed echoes too
            grams.update(text[i : i + size] for i in range(len(text) - size + 1))
    return grams


def _shows(view: str, grams: set[str], size: int) -> bool:
    return any(view[i : i + size] in grams for i in range(len(view) - size + 1))


_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([nrtbf\"\\/])")
_JSON_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_\-]{8,}={0,2}")


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


def _base64_texts(text: str) -> list[str]:
    out = []
    for run in _BASE64_RUN.findall(text):
        body = run.rstrip("=")
        for alphabet in (None, b"-_"):
            try:
                raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=alphabet)
            except (binascii.Error, ValueError):
                continue
            out.append(raw.decode("latin-1"))
    return out


def _views(text: str) -> list[str]:
    """The text as a reader would see each hidden form of it: lower case, with
    no whitespace (pieces of a key split over words or lines join up)."""
    decoded = _decoded(text)
    texts = [text] if decoded == text else [text, decoded]
    texts += _base64_texts(decoded)
    return ["".join(t.split()).lower() for t in texts]


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
    # boundaries; random letters change case about every other character.
    letters = sum(c.isalpha() for c in run)
    return len(_CASE_CHANGE.findall(run)) * 4 > letters
