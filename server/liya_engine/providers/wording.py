"""What a provider failure's message tells the tenant: the shared sentences.

``Wording.message`` turns a ``failures.Failure`` into the message of its
error. The sentences are the same for every provider; what to fix differs,
and those parts are methods a provider's own wording overrides (Azure's, in
``providers.azure_wording``: its endpoint is the tenant's, so most fixes are
in the Azure portal). This base class speaks for a provider reached at the
operator's base URL, which OpenAI and Anthropic both are: only the key and
the account are the tenant's to fix.

A message never holds a secret: ``Call.detail`` (what the provider said) is
scrubbed before it gets here, and ``Call.host`` is only host and port.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from liya_engine.providers import facts
from liya_engine.providers.failures import Failure, Kind


@dataclass(frozen=True, slots=True)
class Call:
    """What a message may say about the call that failed."""

    model: str = ""
    timeout: float | None = None  # the budget that ran out, in seconds
    host: str = ""  # host[:port] of the endpoint called
    api_version: str | None = None
    detail: str = ""  # the provider's own message, scrubbed and shortened
    # The provider's message held key material: it is withheld as a whole and
    # a generic sentence naming ``status`` stands in its place.
    withheld: bool = False
    status: int | None = None  # the upstream HTTP status, for that sentence


UNREACHABLE_REASONS: Mapping[Kind, str] = {
    Kind.FORBIDDEN_ADDRESS: (
        "its host name resolves only to private or reserved addresses, which this "
        "service does not connect to (an operator can allow them for Azure Private "
        "Link with LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES)"
    ),
    Kind.TLS_FAILED: "the TLS handshake failed",
    Kind.DNS_FAILED: "the host name does not resolve",
    Kind.REFUSED: "the connection was refused",
    Kind.BAD_URL: "the endpoint URL is not a valid http(s) URL",
    Kind.NO_ANSWER: "the server closed the connection without answering",
    Kind.CONNECT_FAILED: "the connection failed",
}


class Wording:
    """The messages of one provider's failures; see the module docstring."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.label = facts.TITLES.get(provider, provider)
        self.dashboard = facts.DASHBOARDS.get(provider, f"your {self.label} account")

    def message(self, failure: Failure, call: Call) -> str:
        """The message of ``failure``'s error."""
        reason = UNREACHABLE_REASONS.get(failure.kind)
        if reason is not None:
            return f"Could not reach {self.label}{_at(call)}: {reason}. {self.unreachable_fix()}."
        return _MESSAGES[failure.kind](self, failure, call)

    # -- what to fix: a provider's own wording overrides these ----------------

    def key_fix(self) -> str:
        """What to do about a refused key."""
        return f"check the key in {self.dashboard} and update it"

    def model_not_found(self, failure: Failure, call: Call) -> str:
        """The message for a model (or deployment) the provider does not have."""
        return (
            f"{self.label} has no model '{call.model}' available to this key "
            f"({failure.status or 'in-stream'}): check default_model and overrides in the "
            f"model config.{self.said(call)}"
        )

    def redirect_fix(self) -> str:
        """What to do about an endpoint that redirects."""
        return f"the service's {self.label} base URL setting must point at the API itself"

    def timeout_fix(self) -> str:
        """What to do when the provider did not answer in time."""
        return "retry later"

    def connect_timeout_fix(self) -> str:
        """What to do when connecting took too long."""
        return "Retry later."

    def unreachable_fix(self) -> str:
        """What to do when the endpoint could not be reached."""
        return (
            "Retry later; if it persists, the service's outbound network access "
            "to it needs checking"
        )

    # -- the sentences ----------------------------------------------------------

    def said(self, call: Call) -> str:
        """The provider's own words, quoted, or nothing (or, when they held key
        material, a sentence saying they are withheld)."""
        if call.withheld:
            status = f"{call.status} answer" if call.status else "in-stream error"
            return (
                f" The message of {self.label}'s {status} is not shown: it contained key material."
            )
        return f' {self.label} said: "{call.detail}"' if call.detail else ""

    def region_fix(self) -> str:
        """What to do when the provider refuses the service's region."""
        return (
            f"the key itself may be fine; the service's operator must call {self.label} "
            "from a region it supports"
        )

    def _redirect(self, failure: Failure, call: Call) -> str:
        return (
            f"{self.label} endpoint{_at(call)} answered with a redirect "
            f"({failure.effective_status}), which is never followed: {self.redirect_fix()}."
        )

    def _auth(self, failure: Failure, call: Call) -> str:
        if failure.status == 403:
            head = f"{self.label} refused access with the stored API key (403)"
        else:
            head = f"{self.label} rejected the stored API key ({failure.status or 'in-stream'})"
        return f"{head}: {self.key_fix()}.{self.said(call)}"

    def _region(self, failure: Failure, call: Call) -> str:
        return (
            f"{self.label} refuses requests from the region this service runs in "
            f"({failure.status or 'in-stream'}): {self.region_fix()}.{self.said(call)}"
        )

    def _over_limit(self, failure: Failure, call: Call) -> str:
        return (
            f"{self.label} refused a request larger than the account's per-minute token "
            f"limit ({failure.status or 'in-stream'}): waiting does not help; shorten the "
            f"messages or lower max_tokens, or raise the limit in {self.dashboard}."
            f"{self.said(call)}"
        )

    def _billing(self, failure: Failure, call: Call) -> str:
        return (
            f"{self.label} account is out of quota or credit ({failure.status or 'in-stream'}): "
            f"check plan and billing in {self.dashboard}.{self.said(call)}"
        )

    def _rate_limit(self, failure: Failure, call: Call) -> str:
        wait = (
            f"retry after {failure.retry_after:g} s"
            if failure.retry_after is not None
            else "retry later"
        )
        return (
            f"{self.label} rate limit reached ({failure.status or 'in-stream'}): {wait}, "
            f"or raise the rate limits of the account in {self.dashboard}.{self.said(call)}"
        )

    def _unavailable(self, failure: Failure, call: Call) -> str:
        return (
            f"{self.label} is unavailable or overloaded "
            f"({failure.status or 'in-stream error'}): retry later.{self.said(call)}"
        )

    def _rejected(self, failure: Failure, call: Call) -> str:
        return f"{self.label} rejected the request ({failure.effective_status}).{self.said(call)}"

    def _too_long(self, failure: Failure, call: Call) -> str:
        return self._rejected(failure, call) + " Shorten the messages or lower max_tokens."

    def _incomplete(self, failure: Failure, call: Call) -> str:
        return f"The answer from {self.label} ended before it was complete: retry the call."

    def _malformed(self, failure: Failure, call: Call) -> str:
        return f"{self.label} answered with something that is not a completion: retry later."

    def _invalid_data(self, failure: Failure, call: Call) -> str:
        return f"{self.label} answered with data that is not a valid completion: retry later."

    def _unexpected(self, failure: Failure, call: Call) -> str:
        return f"{self.label} call failed unexpectedly: retry later."

    def _pool_busy(self, failure: Failure, call: Call) -> str:
        return (
            f"The service had no free connection to {self.label} in time (it is busy): "
            "retry the call; another replica may serve it."
        )

    def _connect_timed_out(self, failure: Failure, call: Call) -> str:
        return f"Could not connect to {self.label}{_at(call)} in time. {self.connect_timeout_fix()}"

    def _timed_out(self, failure: Failure, call: Call) -> str:
        budget = f" within {call.timeout:g} s" if call.timeout else " in time"
        return f"{self.label} did not answer{budget}: {self.timeout_fix()}."

    def _cut_short(self, failure: Failure, call: Call) -> str:
        return (
            f"The connection to {self.label} dropped in the middle of the answer: retry the call."
        )


def _at(call: Call) -> str:
    return f" at {call.host}" if call.host else ""


_MESSAGES: Mapping[Kind, Callable[[Wording, Failure, Call], str]] = {
    Kind.REDIRECT: Wording._redirect,
    Kind.AUTH: Wording._auth,
    Kind.FORBIDDEN: Wording._auth,
    Kind.REGION: Wording._region,
    Kind.BILLING: Wording._billing,
    Kind.RATE_LIMIT: Wording._rate_limit,
    Kind.OVER_LIMIT: Wording._over_limit,
    Kind.NOT_FOUND: lambda w, f, c: w.model_not_found(f, c),
    Kind.UNAVAILABLE: Wording._unavailable,
    Kind.TOO_LONG: Wording._too_long,
    Kind.REJECTED: Wording._rejected,
    Kind.INCOMPLETE: Wording._incomplete,
    Kind.MALFORMED: Wording._malformed,
    Kind.INVALID_DATA: Wording._invalid_data,
    Kind.UNEXPECTED: Wording._unexpected,
    Kind.POOL_BUSY: Wording._pool_busy,
    Kind.CONNECT_TIMED_OUT: Wording._connect_timed_out,
    Kind.TIMED_OUT: Wording._timed_out,
    Kind.CUT_SHORT: Wording._cut_short,
}
"""The sentence of each kind (the unreachable kinds share one, in ``message``)."""
