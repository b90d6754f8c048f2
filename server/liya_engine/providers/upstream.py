"""What a provider's error answer says beyond its status: pure parsing.

Three readings, shared by every adapter and used only when a call failed:

- ``wait_hint``: how long the provider asked the caller to wait, from every
  hint it sends, in this order (the first that gives a wait wins):
  ``retry-after-ms`` or ``x-ms-retry-after-ms`` (Azure), ``retry-after``
  (seconds or an HTTP date), the reset of an exhausted limit (OpenAI's and
  Azure's ``x-ratelimit-reset-requests`` / ``-tokens`` durations such as
  ``6m0s`` when the matching ``x-ratelimit-remaining-*`` is 0; Anthropic's
  ``anthropic-ratelimit-*-reset`` RFC 3339 times when the matching
  ``-remaining`` is 0), else a wait the message states ("Please try again in
  6ms", "Please retry after 20 seconds").
- ``request_id``: the provider's id of the request, for its support desk.
- ``plain_text``: an HTML error page (a proxy's or a gateway's) as its title.

Nothing here does I/O or knows an SDK; ``now`` is a parameter so tests can
pin the clock.
"""

from __future__ import annotations

import email.utils
import html
import re
import time
from collections.abc import Mapping
from datetime import datetime

MAX_WAIT = 24 * 3600.0
"""Longest wait reported: a hint beyond a day is a misreading, not advice."""

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "apim-request-id", "x-ms-request-id")
"""Where providers put their request id: OpenAI ``x-request-id``, Anthropic
``request-id``, Azure's API Management ``apim-request-id`` and ``x-ms-request-id``."""

# OpenAI (and Azure) limits: requests and tokens per minute or day.
_OPENAI_LIMITS = ("requests", "tokens")
# Anthropic limits: requests, all tokens, input and output tokens per minute.
_ANTHROPIC_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")

# A Go-style duration as OpenAI writes it: "6m0s", "1s", "20ms", "1h2m3.5s", "17.28s".
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

# A wait stated in words: OpenAI "Please try again in 6ms" / "in 1.2s" /
# "in 6m0s", Azure "Please retry after 20 seconds", "Try again in 59 seconds".
_WORD_UNITS = {
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "ms": 1e-3,
    "second": 1.0,
    "seconds": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "minutes": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "m": 60.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "h": 3600.0,
}
_STATED_WAIT = re.compile(
    r"(?:try\s+again|retry)\s+(?:in|after)\s+(?:"
    r"(?P<go>(?:\d+(?:\.\d+)?(?:ms|s|m|h))+)\b"
    r"|(?P<n>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b)",
    re.IGNORECASE,
)

_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"<h1[^>]*>(.*?)</h1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_MARKUP = re.compile(r"^\s*(?:<!doctype\s+html|<html\b|<\?xml|<head\b|<body\b)", re.IGNORECASE)
# Any text that opens with a tag and closes one (a page without <html>, a
# fragment after a comment) is markup too.
_OPENS_WITH_TAG = re.compile(r"^\s*<[!A-Za-z/]")
_CLOSING_TAG = re.compile(r"</[A-Za-z][A-Za-z0-9]*\s*>")
_MAX_PAGE_TEXT = 120


def wait_hint(
    headers: Mapping[str, str], message: str = "", *, now: float | None = None
) -> float | None:
    """Seconds to wait before retrying, from the first hint that gives one
    (see the module docstring), or None when the provider gave none."""
    lowered = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    for seconds in (
        _millis(lowered.get("retry-after-ms")),
        _millis(lowered.get("x-ms-retry-after-ms")),
        _retry_after(lowered.get("retry-after"), now),
        _exhausted_reset(lowered, now),
    ):
        if seconds is not None:
            return seconds
    return stated_wait(message)


def stated_wait(message: str) -> float | None:
    """The wait a message states ("try again in 6ms"), in seconds, or None."""
    found = _STATED_WAIT.search(message or "")
    if found is None:
        return None
    if found.group("go"):
        return _bounded(parse_duration(found.group("go")))
    return _bounded(float(found.group("n")) * _WORD_UNITS[found.group("unit").lower()])


def parse_duration(text: str | None) -> float | None:
    """A Go-style duration (``6m0s``, ``20ms``, ``1h2m3.5s``) or plain
    seconds (``"7"``, ``"0.5"``) in seconds; None when it is neither."""
    if not text:
        return None
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def request_id(headers: Mapping[str, str]) -> str:
    """The first request id present among ``REQUEST_ID_HEADERS``, verbatim."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    return next((lowered[h].strip() for h in REQUEST_ID_HEADERS if lowered.get(h, "").strip()), "")


def is_markup(text: str) -> bool:
    """Whether ``text`` is an HTML (or XML) page rather than a message."""
    text = text or ""
    return bool(_MARKUP.match(text)) or (
        bool(_OPENS_WITH_TAG.match(text)) and bool(_CLOSING_TAG.search(text))
    )


def plain_text(text: str) -> str:
    """``text`` itself, or for an HTML page its title (else its first heading,
    else its visible text), unescaped, in one line and short."""
    if not is_markup(text) and not _TITLE.search(text or ""):
        return text
    for pattern in (_TITLE, _HEADING):
        found = pattern.search(text)
        if found:
            words = _words(found.group(1))
            if words:
                return words
    return _words(_COMMENT.sub(" ", _HIDDEN.sub(" ", text)))[:_MAX_PAGE_TEXT]


def _words(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub(" ", fragment)).split())


def _millis(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return _bounded(float(raw) / 1000.0)
    except ValueError:
        return None


def _retry_after(raw: str | None, now: float | None) -> float | None:
    if not raw:
        return None
    try:
        return _bounded(float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return _bounded(when.timestamp() - _now(now))


def _exhausted_reset(headers: Mapping[str, str], now: float | None) -> float | None:
    # Only an exhausted limit's reset is a wait: the other limit's reset says
    # nothing about when this request may succeed. Of several exhausted
    # limits, the one that resets last is the wait.
    waits: list[float] = []
    for limit in _OPENAI_LIMITS:
        if _is_zero(headers.get(f"x-ratelimit-remaining-{limit}")):
            seconds = parse_duration(headers.get(f"x-ratelimit-reset-{limit}"))
            if seconds is not None:
                waits.append(seconds)
    for limit in _ANTHROPIC_LIMITS:
        prefix = f"anthropic-ratelimit-{limit}"
        if _is_zero(headers.get(f"{prefix}-remaining")):
            seconds = _until(headers.get(f"{prefix}-reset"), now)
            if seconds is not None:
                waits.append(seconds)
    bounded = [w for w in (_bounded(w) for w in waits) if w is not None]
    return max(bounded) if bounded else None


def _is_zero(raw: str | None) -> bool:
    try:
        return raw is not None and float(raw) <= 0
    except ValueError:
        return False


def _until(raw: str | None, now: float | None) -> float | None:
    """Seconds from ``now`` until an RFC 3339 time such as ``2026-12-02T07:00:06Z``."""
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - _now(now))


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _bounded(seconds: float | None) -> float | None:
    if seconds is None or seconds != seconds or seconds < 0:  # None, NaN or in the past
        return None
    return min(seconds, MAX_WAIT)
