"""Which kind of failure a provider call ended in: pure decision tables.

The adapters turn an SDK or transport exception into plain facts first
(``providers.classify``): an ``Answer`` when the provider answered with an
error (HTTP status, its error codes and message), a ``Transport`` when no
whole answer came (what the exception chain showed, its text). The tables
here map those facts to a ``Kind``, and each kind to its class of the
``liya_engine.errors.ProviderError`` tree (so to its reason and gRPC code).
Nothing here does I/O or knows an SDK type; the words of each message are the
providers' own (``providers.wording`` and ``providers.azure_wording``).

Each table entry names the provider(s) known to send it. The rules run in
order; the first that matches decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from liya_engine.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRejectedRequest,
    ProviderTimedOut,
    ProviderUnavailable,
    ProviderUnreachable,
    UpstreamPoolBusy,
)


class Kind(StrEnum):
    """What went wrong, finely enough to say what to do about it."""

    # The provider answered with an error status (or an error event in a stream).
    REDIRECT = "redirect"  # a 3xx, never followed
    AUTH = "auth"  # the key was refused
    FORBIDDEN = "forbidden"  # the key may not do this (403)
    REGION = "region"  # the provider refuses this service's region (403); the key may be fine
    BILLING = "billing"  # out of quota, credit or spend limit
    RATE_LIMIT = "rate_limit"  # too many requests or tokens for now
    OVER_LIMIT = "over_limit"  # one request larger than a per-minute limit: waiting cannot help
    NOT_FOUND = "not_found"  # no such model or deployment
    UNAVAILABLE = "unavailable"  # 5xx, overloaded, an error event without a type
    TOO_LONG = "too_long"  # a 4xx for a request too long for the model
    REJECTED = "rejected"  # any other 4xx: the request itself
    # The provider answered 2xx with something that is not a completion.
    INCOMPLETE = "incomplete"  # a stream that ended without its final event
    MALFORMED = "malformed"  # not JSON, or lacking what a completion has
    INVALID_DATA = "invalid_data"  # the SDK's own validation refused the answer
    UNEXPECTED = "unexpected"  # any other SDK error
    # No whole answer came.
    POOL_BUSY = "pool_busy"  # this service's own connection pool was full
    CONNECT_TIMED_OUT = "connect_timed_out"  # connecting took longer than its own budget
    TIMED_OUT = "timed_out"  # no answer within the call's budget
    CUT_SHORT = "cut_short"  # the connection dropped in the middle of the answer
    FORBIDDEN_ADDRESS = "forbidden_address"  # the endpoint resolves to private addresses only
    TLS_FAILED = "tls_failed"
    DNS_FAILED = "dns_failed"
    REFUSED = "refused"
    BAD_URL = "bad_url"  # not an http(s) URL
    NO_ANSWER = "no_answer"  # the server closed the connection without answering
    CONNECT_FAILED = "connect_failed"  # any other connection failure


ERROR_CLASS: Mapping[Kind, type[ProviderError]] = {
    Kind.REDIRECT: ProviderUnreachable,
    Kind.AUTH: ProviderAuthFailed,
    Kind.FORBIDDEN: ProviderAuthFailed,
    Kind.REGION: ProviderAuthFailed,
    Kind.BILLING: ProviderQuotaExceeded,
    Kind.RATE_LIMIT: ProviderQuotaExceeded,
    Kind.OVER_LIMIT: ProviderQuotaExceeded,
    Kind.NOT_FOUND: ProviderModelNotFound,
    Kind.UNAVAILABLE: ProviderUnavailable,
    Kind.TOO_LONG: ProviderRejectedRequest,
    Kind.REJECTED: ProviderRejectedRequest,
    Kind.INCOMPLETE: ProviderUnavailable,
    Kind.MALFORMED: ProviderUnavailable,
    Kind.INVALID_DATA: ProviderUnavailable,
    Kind.UNEXPECTED: ProviderUnavailable,
    # Our own pool being full (no connection within the pool timeout) is neither
    # the provider's fault nor the endpoint's: this replica is overloaded.
    Kind.POOL_BUSY: UpstreamPoolBusy,
    # The connect timeout is our own budget, shorter than the call's.
    Kind.CONNECT_TIMED_OUT: ProviderUnreachable,
    Kind.TIMED_OUT: ProviderTimedOut,
    # The endpoint was reachable and the provider failed mid-answer: a retry is the fix.
    Kind.CUT_SHORT: ProviderUnavailable,
    Kind.FORBIDDEN_ADDRESS: ProviderUnreachable,
    Kind.TLS_FAILED: ProviderUnreachable,
    Kind.DNS_FAILED: ProviderUnreachable,
    Kind.REFUSED: ProviderUnreachable,
    Kind.BAD_URL: ProviderUnreachable,
    Kind.NO_ANSWER: ProviderUnreachable,
    Kind.CONNECT_FAILED: ProviderUnreachable,
}

QUOTA_KIND: Mapping[Kind, str] = {
    Kind.BILLING: "billing",
    Kind.RATE_LIMIT: "rate_limit",
    Kind.OVER_LIMIT: "rate_limit",
}
"""ErrorInfo metadata ``quota_kind`` of the quota failures."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's error answer, as plain facts.

    ``status`` is the HTTP status (None for an error event inside a 200
    stream); ``codes`` the error's ``code``, ``details.error_code`` and
    ``type`` as sent, in that order; ``retry_after`` the wait the provider
    asked for, in seconds; ``error_code`` and ``request_id`` go into metadata.
    """

    status: int | None
    codes: tuple[str, ...] = ()
    message: str = ""
    retry_after: float | None = None
    error_code: str = ""
    request_id: str = ""


class Sign(StrEnum):
    """What the chain of a transport exception showed."""

    TIMEOUT = "timeout"
    POOL_TIMEOUT = "pool_timeout"
    CONNECT_TIMEOUT = "connect_timeout"
    FORBIDDEN_ADDRESS = "forbidden_address"
    TLS_ERROR = "tls_error"
    CONNECT_ERROR = "connect_error"
    PROTOCOL_ERROR = "protocol_error"
    READ_ERROR = "read_error"
    BAD_URL = "bad_url"


@dataclass(frozen=True, slots=True)
class Transport:
    """A call that got no whole answer, as plain facts: the ``signs`` of its
    exception chain, the chain's ``text``, and whether the answer had started."""

    signs: frozenset[Sign]
    text: str = ""
    mid_stream: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """The decision: the kind, and what the error reports.

    ``status`` is the upstream status to report (None when the provider sent
    none of its own); ``effective_status`` the one the decision used (also
    implied by an in-stream error's type); ``said`` the provider's own message,
    not yet scrubbed; ``metadata`` unscrubbed ErrorInfo metadata.
    """

    kind: Kind
    status: int | None = None
    effective_status: int | None = None
    retry_after: float | None = None
    said: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def error_class(self) -> type[ProviderError]:
        return ERROR_CLASS[self.kind]

    @property
    def reason(self) -> str:
        return self.error_class.reason


# ------------------------------------------------------------ error answers

BILLING_CODES = frozenset(
    {
        "insufficient_quota",  # OpenAI, Azure: 429 insufficient_quota
        "billing_hard_limit_reached",  # OpenAI: 400 billing_hard_limit_reached
        "billing_not_active",  # OpenAI: 429 billing_not_active
        "quota_exceeded",  # OpenAI, Azure: quota_exceeded
        "enforced_spend_limit_reached",  # OpenAI: project spend limit
        "contract_spend_limit_reached",  # OpenAI: contract spend limit
        "linked_organization_billing_unavailable",  # OpenAI: linked organisations
        "linked_organization_spend_limit_reached",  # OpenAI: linked organisations
    }
)
RATE_LIMIT_CODES = frozenset(
    {
        "rate_limit_exceeded",  # OpenAI, Azure: 429 rate_limit_exceeded
        "rate_limit_error",  # Anthropic: 429 rate_limit_error
        "ramp_limit_exceeded",  # OpenAI: 429 while a new limit ramps up
        "tokens",  # OpenAI: 429 type "tokens" (tokens per minute)
        "requests",  # OpenAI: 429 type "requests" (requests per minute)
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "model_not_found",  # OpenAI: 404 model_not_found
        "deploymentnotfound",  # Azure: 404 DeploymentNotFound
        "not_found_error",  # Anthropic: 404 not_found_error
    }
)
IMPLIED_STATUS: Mapping[str, int] = {
    # An error event inside a 200 stream has no status of its own: its type says one.
    "authentication_error": 401,  # Anthropic
    "invalid_api_key": 401,  # OpenAI
    "permission_error": 403,  # Anthropic
    "not_found_error": 404,  # Anthropic
    "model_not_found": 404,  # OpenAI
    "rate_limit_error": 429,  # Anthropic
    "rate_limit_exceeded": 429,  # OpenAI, Azure
    "insufficient_quota": 429,  # OpenAI, Azure
    "invalid_request_error": 400,  # OpenAI, Anthropic
    "request_too_large": 413,  # Anthropic
    "overloaded_error": 529,  # Anthropic
    "api_error": 500,  # Anthropic
    "server_error": 500,  # OpenAI, Azure
}
# Wording that means billing even on a 429 without a telling code. Weaker words
# ("billing", "payment", "quota") also appear in rate-limit advice, e.g. "you
# can increase your rate limit by adding a payment method", so they only count
# on statuses that are not rate limits.
STRONG_BILLING = re.compile(
    # OpenAI: "You exceeded your current quota"; Anthropic: "Your credit balance
    # is too low"; Anthropic: "reached its monthly spend limit".
    r"current quota|credit balance|spend limit|insufficient (?:funds|quota)|billing hard limit",
    re.IGNORECASE,
)
BILLING_PHRASES = re.compile(
    # Azure: "Out of call volume quota for OpenAI API".
    STRONG_BILLING.pattern + r"|billing|payment|out of (?:call volume )?quota",
    re.IGNORECASE,
)
REGION_CODES = frozenset(
    {
        "unsupported_country_region_territory",  # OpenAI: 403, type request_forbidden
        "forbidden",  # Anthropic: 403 {"type": "forbidden", "message": "Request not allowed"}
    }
)
# OpenAI, Azure: 429 rate_limit_exceeded "Request too large for gpt-4o in
# organization org-... on tokens per min (TPM): Limit 30000, Requested 36000."
# The request alone is over the limit: no wait makes it fit.
OVER_LIMIT_WORDS = re.compile(r"request too large for\b.*\bper (?:min|minute|day)\b", re.I | re.S)
QUOTA_WORD = re.compile(r"\bquota\b", re.IGNORECASE)  # Azure: 403 "Out of call volume quota"
TOO_LONG_CODE = "context_length"  # OpenAI, Azure: 400 context_length_exceeded
TOO_LONG_WORDS = "too long"  # Anthropic: 400 "prompt is too long"


@dataclass(frozen=True, slots=True)
class _Seen:
    status: int | None  # the effective status
    codes: frozenset[str]  # lower case
    message: str
    billing: bool


def _is_billing(status: int | None, codes: frozenset[str], message: str) -> bool:
    if codes & BILLING_CODES:
        return True
    if status == 429:
        return not codes & RATE_LIMIT_CODES and bool(STRONG_BILLING.search(message))
    return bool(BILLING_PHRASES.search(message))


_ANSWER_RULES: tuple[tuple[Kind, Callable[[_Seen], bool]], ...] = (
    # Any provider: a redirect, never followed (it could take the key elsewhere).
    (Kind.REDIRECT, lambda s: s.status is not None and 300 <= s.status < 400),
    # OpenAI: 401 invalid_api_key. Anthropic: 401 authentication_error. Azure: 401.
    (Kind.AUTH, lambda s: s.status == 401),
    # OpenAI: 429 insufficient_quota, 400 billing_hard_limit_reached. Anthropic:
    # 400 "credit balance is too low", 403 "monthly spend limit". Azure: 429
    # insufficient_quota.
    (Kind.BILLING, lambda s: s.billing and s.status in (400, 402, 403, 429)),
    # Any provider: 402 Payment Required.
    (Kind.BILLING, lambda s: s.status == 402),
    # Azure: 403 "Out of call volume quota for OpenAI API".
    (Kind.BILLING, lambda s: s.status == 403 and bool(QUOTA_WORD.search(s.message))),
    # OpenAI, Azure: 429 "Request too large for ... tokens per min (TPM)".
    (Kind.OVER_LIMIT, lambda s: s.status == 429 and bool(OVER_LIMIT_WORDS.search(s.message))),
    # OpenAI, Azure: 429 rate_limit_exceeded. Anthropic: 429 rate_limit_error.
    (Kind.RATE_LIMIT, lambda s: s.status == 429),
    # OpenAI: 404 model_not_found. Anthropic: 404 not_found_error. Azure: 404
    # DeploymentNotFound (also when sent with another status).
    (Kind.NOT_FOUND, lambda s: s.status == 404 or bool(s.codes & NOT_FOUND_CODES)),
    # OpenAI: 403 unsupported_country_region_territory "Country, region, or
    # territory not supported". Anthropic: 403 forbidden "Request not allowed"
    # (its answer to calls from a region it does not serve).
    (Kind.REGION, lambda s: s.status == 403 and bool(s.codes & REGION_CODES)),
    # Anthropic: 403 permission_error. Azure: 403 for a key without access.
    (Kind.FORBIDDEN, lambda s: s.status == 403),
    # Any provider: 5xx. Anthropic: 529 overloaded_error. Any: 408, 499, and an
    # error event inside a stream whose type implies no status.
    (
        Kind.UNAVAILABLE,
        lambda s: s.status is None or s.status >= 500 or s.status in (408, 499),
    ),
    # OpenAI, Azure: 400 context_length_exceeded. Anthropic: 400 "prompt is too long".
    (
        Kind.TOO_LONG,
        lambda s: any(TOO_LONG_CODE in c for c in s.codes) or TOO_LONG_WORDS in s.message.lower(),
    ),
    # Any provider: any other 4xx is about the request itself.
    (Kind.REJECTED, lambda s: True),
)


def classify_answer(answer: Answer) -> Failure:
    """The failure an error answer means."""
    ordered = [c.lower() for c in answer.codes if c]
    reported = answer.status if answer.status is not None and answer.status >= 300 else None
    effective = reported
    if effective is None:
        effective = next((IMPLIED_STATUS[c] for c in ordered if c in IMPLIED_STATUS), None)
    codes = frozenset(ordered)
    seen = _Seen(effective, codes, answer.message, _is_billing(effective, codes, answer.message))
    kind = next(kind for kind, applies in _ANSWER_RULES if applies(seen))
    metadata = {"upstream_error_code": answer.error_code, "upstream_request_id": answer.request_id}
    if kind in QUOTA_KIND:
        metadata["quota_kind"] = QUOTA_KIND[kind]
    return Failure(
        kind,
        status=reported,
        effective_status=effective,
        # Waiting helps a rate limit; it does not help an empty account.
        retry_after=answer.retry_after if kind is Kind.RATE_LIMIT else None,
        said=answer.message,
        metadata=metadata,
    )


# ------------------------------------------------------- transport failures

DNS_HINTS = re.compile(
    r"name or service not known|nodename nor servname|getaddrinfo|name resolution|"
    r"no address associated|could not resolve|\[errno -[235]\]",
    re.IGNORECASE,
)
TLS_HINTS = re.compile(r"ssl|tls|certificate", re.IGNORECASE)
REFUSED_HINTS = re.compile(r"refused|errno 111|errno 61\b", re.IGNORECASE)
INCOMPLETE_BODY = re.compile(r"complete message body|incomplete chunked read", re.IGNORECASE)

_TIMEOUT_RULES: tuple[tuple[Kind, Callable[[Transport], bool]], ...] = (
    # This service's pool had no free connection in time.
    (Kind.POOL_BUSY, lambda t: Sign.POOL_TIMEOUT in t.signs),
    # Connecting took longer than the connect budget.
    (Kind.CONNECT_TIMED_OUT, lambda t: Sign.CONNECT_TIMEOUT in t.signs),
    # The provider did not answer within the call's budget.
    (Kind.TIMED_OUT, lambda t: True),
)
_TRANSPORT_RULES: tuple[tuple[Kind, Callable[[Transport], bool]], ...] = (
    # The answer had started (a cut stream), or its body was cut short.
    (
        Kind.CUT_SHORT,
        lambda t: (
            t.mid_stream
            or (
                bool(t.signs & {Sign.PROTOCOL_ERROR, Sign.READ_ERROR})
                and bool(INCOMPLETE_BODY.search(t.text))
            )
        ),
    ),
    # Azure: a tenant endpoint whose name resolves to private addresses only.
    (Kind.FORBIDDEN_ADDRESS, lambda t: Sign.FORBIDDEN_ADDRESS in t.signs),
    (
        Kind.TLS_FAILED,
        lambda t: (
            Sign.TLS_ERROR in t.signs
            or (Sign.CONNECT_ERROR in t.signs and bool(TLS_HINTS.search(t.text)))
        ),
    ),
    (Kind.DNS_FAILED, lambda t: bool(DNS_HINTS.search(t.text))),
    (Kind.REFUSED, lambda t: bool(REFUSED_HINTS.search(t.text))),
    (Kind.BAD_URL, lambda t: Sign.BAD_URL in t.signs),
    (Kind.NO_ANSWER, lambda t: Sign.PROTOCOL_ERROR in t.signs),
    (Kind.CONNECT_FAILED, lambda t: True),
)


def classify_transport(transport: Transport) -> Failure:
    """The failure a call without a whole answer means."""
    rules = _TIMEOUT_RULES if Sign.TIMEOUT in transport.signs else _TRANSPORT_RULES
    return Failure(next(kind for kind, applies in rules if applies(transport)))
