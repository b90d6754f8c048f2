"""Turning SDK and transport failures into the ``ProviderError`` tree.

One function, ``classify_error``, is shared by all adapters. It reads the HTTP
status, the provider's error ``type``/``code`` and its message, and picks the
class of DESIGN.md's error table:

    401, 403                        ProviderAuthFailed
    429, and quota/billing errors   ProviderQuotaExceeded (retry_after only for a
      also when sent as 400/402/403   rate limit, from retry-after-ms/retry-after)
    404, model_not_found,           ProviderModelNotFound
      DeploymentNotFound
    timeouts (ours or the SDK's)    ProviderTimedOut
    DNS/connect/TLS, redirects      ProviderUnreachable
    5xx, 529, in-stream errors,     ProviderUnavailable
      connection dropped mid-answer
    other 4xx                       ProviderRejectedRequest

A connection that drops after the provider started answering (a cut stream, or
a body cut short) is ``ProviderUnavailable``: the endpoint was reachable, the
provider failed mid-answer, and a retry is the fix. ``ProviderUnreachable``
stays for an endpoint that could not be reached at all, which is what the
guide's troubleshooting for BYOK_ENDPOINT_UNREACHABLE tells users to check.

Every piece of provider text that ends up in a message or in metadata goes
through ``liya_engine.redact.scrub`` with the key: providers echo partial keys.
"""

from __future__ import annotations

import email.utils
import re
import socket
import ssl
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anthropic
import anyio
import httpx2
import openai

from liya_engine.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRejectedRequest,
    ProviderTimedOut,
    ProviderUnavailable,
    ProviderUnreachable,
)
from liya_engine.providers import facts
from liya_engine.providers.transport import ForbiddenAddress
from liya_engine.redact import REDACTED, scrub
from liya_engine.secret import Secret

PROVIDER_LABELS: dict[str, str] = facts.TITLES
_DASHBOARDS: dict[str, str] = {
    "openai": "your OpenAI dashboard",
    "anthropic": "the Anthropic Console",
    "azure": "the Azure portal",
}

_MAX_DETAIL = 300
_MAX_RETRY_AFTER = 24 * 3600.0

_BILLING_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "quota_exceeded",
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_billing_unavailable",
        "linked_organization_spend_limit_reached",
    }
)
_RATE_LIMIT_CODES = frozenset(
    {"rate_limit_exceeded", "rate_limit_error", "ramp_limit_exceeded", "tokens", "requests"}
)
# Wording that means billing even on a 429 without a telling code. Weaker words
# ("billing", "payment", "quota") also appear in rate-limit advice, e.g. "you
# can increase your rate limit by adding a payment method", so they only count
# on statuses that are not rate limits.
_STRONG_BILLING = re.compile(
    r"current quota|credit balance|spend limit|insufficient (?:funds|quota)|billing hard limit",
    re.IGNORECASE,
)
_BILLING_PHRASES = re.compile(
    _STRONG_BILLING.pattern + r"|billing|payment|out of (?:call volume )?quota",
    re.IGNORECASE,
)
_QUOTA_WORD = re.compile(r"\bquota\b", re.IGNORECASE)
_NOT_FOUND_CODES = frozenset({"model_not_found", "deploymentnotfound", "not_found_error"})
_DNS_HINTS = re.compile(
    r"name or service not known|nodename nor servname|getaddrinfo|name resolution|"
    r"no address associated|could not resolve|\[errno -[235]\]",
    re.IGNORECASE,
)
_TLS_HINTS = re.compile(r"ssl|tls|certificate", re.IGNORECASE)
_REFUSED_HINTS = re.compile(r"refused|errno 111|errno 61\b", re.IGNORECASE)
_PLAIN_CODE = re.compile(r"^[A-Za-z_.]{1,64}$")
_INCOMPLETE_BODY = re.compile(r"complete message body|incomplete chunked read", re.IGNORECASE)

_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.TransportError,
    httpx2.DecodingError,
    ssl.SSLError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    ConnectionError,
    socket.gaierror,
)


class MalformedAnswer(Exception):
    """A 2xx answer that lacks what a completion needs (raised by adapters)."""


class IncompleteAnswer(MalformedAnswer):
    """A stream that ended without the provider's final event (raised by adapters)."""


def classify_error(
    exc: BaseException,
    *,
    provider: str,
    model: str = "",
    secrets: Iterable[Secret | str | None] = (),
    timeout: float | None = None,
    endpoint: str = "",
    api_version: str | None = None,
    mid_stream: bool = False,
) -> ProviderError | None:
    """Return the ``ProviderError`` for a failed provider call, or ``None`` when
    ``exc`` is not a provider/transport failure (a bug: let it propagate).

    ``secrets`` are scrubbed from all provider text; ``timeout`` is the budget
    that ran out (for the message); ``endpoint`` is the base URL called (only its
    host is shown); ``mid_stream`` says the provider had already started
    answering, so a dropped connection is the provider failing mid-answer.
    """
    if isinstance(exc, ProviderError):
        return exc
    ctx = _Context(provider, model, list(secrets), timeout, endpoint, api_version)
    if isinstance(exc, IncompleteAnswer):
        return ctx.unavailable(
            None, f"The answer from {ctx.label} ended before it was complete: retry the call."
        )
    if isinstance(exc, MalformedAnswer):
        return ctx.unavailable(
            None, f"{ctx.label} answered with something that is not a completion: retry later."
        )
    if isinstance(exc, openai.APITimeoutError | anthropic.APITimeoutError):
        return ctx.timed_out(exc)
    if isinstance(exc, (TimeoutError, httpx2.TimeoutException, *_legacy_timeouts())):
        return ctx.timed_out(exc)
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        return ctx.transport(exc.__cause__ or exc.__context__ or exc, mid_stream)
    if isinstance(exc, (*_TRANSPORT_ERRORS, *_legacy_transport_errors())):
        return ctx.transport(exc, mid_stream)
    if isinstance(exc, openai.APIResponseValidationError | anthropic.APIResponseValidationError):
        return ctx.unavailable(
            exc.status_code,
            f"{ctx.label} answered with data that is not a valid completion: retry later.",
        )
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return ctx.status_error(exc.status_code, exc.response.headers, exc.body, exc.message)
    if isinstance(exc, openai.APIError | anthropic.APIError):
        # An error event inside a 200 stream: no HTTP status of its own.
        return ctx.status_error(None, {}, exc.body, exc.message)
    if isinstance(exc, openai.OpenAIError | anthropic.AnthropicError):
        return ctx.unavailable(None, f"{ctx.label} call failed unexpectedly: retry later.")
    return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return _bounded(float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return _bounded(float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return _bounded(when.timestamp() - time.time())


def _bounded(seconds: float) -> float | None:
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return None
    return min(seconds, _MAX_RETRY_AFTER)


def _legacy_timeouts() -> tuple[type[BaseException], ...]:
    # Plain httpx may be in the process (other libraries); its errors can
    # surface through an SDK that was handed an httpx client.
    module = sys.modules.get("httpx")
    return (module.TimeoutException,) if module is not None else ()


def _legacy_transport_errors() -> tuple[type[BaseException], ...]:
    module = sys.modules.get("httpx")
    return (module.TransportError,) if module is not None else ()


def _walk(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class _Context:
    """What the messages need to know about the call that failed."""

    def __init__(
        self,
        provider: str,
        model: str,
        secrets: list[Secret | str | None],
        timeout: float | None,
        endpoint: str,
        api_version: str | None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.secrets = secrets
        self.timeout = timeout
        self.endpoint = endpoint
        self.api_version = api_version
        self.label = PROVIDER_LABELS.get(provider, provider)
        self.dashboard = _DASHBOARDS.get(provider, f"your {self.label} account")

    # ------------------------------------------------------------ helpers

    def clean(self, text: object, limit: int = _MAX_DETAIL) -> str:
        flat = " ".join(scrub(str(text), self.secrets).split())
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"

    def clean_value(self, name: str, value: str) -> str:
        # Error codes such as "unsupported_country_region_territory" are long
        # enough to look like tokens to the generic scrubber; a code made only
        # of letters, underscores and dots cannot be a key, so only the known
        # secrets are removed from it.
        if name == "upstream_error_code" and _PLAIN_CODE.match(value):
            return REDACTED if self._holds_secret(value) else value
        return self.clean(value, 120)

    def _holds_secret(self, text: str) -> bool:
        for secret in self.secrets:
            value = secret.reveal() if isinstance(secret, Secret) else secret
            if not value:
                continue
            # The same pieces ``scrub`` removes: the key and its shown ends.
            pieces = [value, value[:8], value[-6:]] if len(value) >= 12 else [value]
            if any(piece in text for piece in pieces):
                return True
        return False

    def said(self, text: str) -> str:
        detail = self.clean(text) if text else ""
        return f' {self.label} said: "{detail}"' if detail else ""

    def host(self) -> str:
        try:
            parts = urlsplit(self.endpoint)
            host = parts.hostname or ""
            port = parts.port
        except ValueError:
            return ""
        # Only host and port: a URL's user-info or query could carry secrets.
        return f"{host}:{port}" if host and port else host

    def build(
        self,
        cls: type[ProviderError],
        message: str,
        status: int | None,
        *,
        retry_after: float | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> ProviderError:
        metadata = {k: self.clean_value(k, v) for k, v in (extra or {}).items() if v}
        return cls(
            message,
            provider=self.provider,
            model=self.model,
            upstream_status=status,
            retry_after=retry_after,
            metadata=metadata,
        )

    # ------------------------------------------------------------- kinds

    def timed_out(self, exc: BaseException | None = None) -> ProviderError:
        chain = list(_walk(exc)) if exc is not None else []
        if any(isinstance(e, httpx2.PoolTimeout) for e in chain):
            # Our own connection pool was full: not the provider's fault, nor the endpoint's.
            return self.unavailable(
                None,
                f"The service had no free connection to {self.label} in time (it is busy): "
                "retry the call.",
            )
        if any(isinstance(e, httpx2.ConnectTimeout) for e in chain):
            # The connect timeout is our own budget, shorter than the call's.
            where = f" at {self.host()}" if self.host() else ""
            return self.build(
                ProviderUnreachable,
                f"Could not connect to {self.label}{where} in time. "
                + (
                    "Verify the endpoint in the Azure portal and that the resource is running."
                    if self.provider == "azure"
                    else "Retry later."
                ),
                None,
            )
        budget = f" within {self.timeout:g} s" if self.timeout else " in time"
        if self.provider == "azure":
            advice = (
                "check that the endpoint is right and the Azure resource is running, then retry"
            )
        else:
            advice = "retry later"
        return self.build(ProviderTimedOut, f"{self.label} did not answer{budget}: {advice}.", None)

    def unavailable(self, status: int | None, message: str) -> ProviderError:
        return self.build(ProviderUnavailable, message, status)

    def transport(self, exc: BaseException, mid_stream: bool) -> ProviderError:
        chain = list(_walk(exc))
        if any(isinstance(e, TimeoutError | httpx2.TimeoutException) for e in chain):
            return self.timed_out(exc)
        text = " ".join(str(e) for e in chain)
        cut_short = any(
            isinstance(e, httpx2.RemoteProtocolError | httpx2.ReadError) for e in chain
        ) and _INCOMPLETE_BODY.search(text)
        if mid_stream or cut_short:
            return self.unavailable(
                None,
                f"The connection to {self.label} dropped in the middle of the answer: "
                "retry the call.",
            )
        where = f" at {self.host()}" if self.host() else ""
        if any(isinstance(e, ForbiddenAddress) for e in chain):
            reason = (
                "its host name resolves only to private or reserved addresses, which this "
                "service does not connect to (an operator can allow them for Azure Private "
                "Link with LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES)"
            )
        elif any(isinstance(e, ssl.SSLError) for e in chain) or (
            any(isinstance(e, httpx2.ConnectError) for e in chain) and _TLS_HINTS.search(text)
        ):
            reason = "the TLS handshake failed"
        elif _DNS_HINTS.search(text):
            reason = "the host name does not resolve"
        elif _REFUSED_HINTS.search(text):
            reason = "the connection was refused"
        elif any(isinstance(e, httpx2.UnsupportedProtocol | httpx2.InvalidURL) for e in chain):
            reason = "the endpoint URL is not a valid http(s) URL"
        elif any(isinstance(e, httpx2.RemoteProtocolError) for e in chain):
            reason = "the server closed the connection without answering"
        else:
            reason = "the connection failed"
        if self.provider == "azure":
            advice = (
                "Verify the endpoint in the Azure portal (Keys and Endpoint) and that the "
                "resource is running, then update it"
            )
        else:
            advice = (
                "Retry later; if it persists, the service's outbound network access "
                "to it needs checking"
            )
        return self.build(
            ProviderUnreachable, f"Could not reach {self.label}{where}: {reason}. {advice}.", None
        )

    def status_error(
        self,
        status: int | None,
        headers: Mapping[str, str],
        body: object,
        sdk_message: str,
    ) -> ProviderError:
        err = _error_object(body)
        message = _text(err.get("message")) or (body if isinstance(body, str) else "")
        if not message and not err:
            message = sdk_message
        type_ = _text(err.get("type"))
        code = _text(err.get("code"))
        details = err.get("details")
        detail_code = _text(details.get("error_code")) if isinstance(details, Mapping) else ""
        ordered = [c.lower() for c in (code, detail_code, type_) if c]
        codes = set(ordered)
        extra = {
            "upstream_error_code": code or detail_code or type_,
            "upstream_request_id": _header(
                headers, "x-request-id", "request-id", "apim-request-id"
            ),
        }

        effective = status if status is not None and status >= 300 else _status_of_type(ordered)
        reported = status if status is not None and status >= 300 else None
        if codes & _BILLING_CODES:
            billing = True
        elif effective == 429:
            billing = not codes & _RATE_LIMIT_CODES and bool(_STRONG_BILLING.search(message))
        else:
            billing = bool(_BILLING_PHRASES.search(message))

        if effective is not None and 300 <= effective < 400:
            if self.provider == "azure":
                fix = "set the endpoint to the resource's own URL (Keys and Endpoint in the portal)"
            else:
                fix = f"the service's {self.label} base URL setting must point at the API itself"
            return self.build(
                ProviderUnreachable,
                f"{self.label} endpoint{self._at()} answered with a redirect ({effective}), "
                f"which is never followed: {fix}.",
                reported,
                extra=extra,
            )
        if effective == 401:
            return self.auth(reported, message, extra)
        if effective in (402, 403, 429) or (effective == 400 and billing):
            if billing or effective == 402 or (effective == 403 and _QUOTA_WORD.search(message)):
                return self.build(
                    ProviderQuotaExceeded,
                    f"{self.label} account is out of quota or credit ({reported or 'in-stream'}): "
                    f"check plan and billing in {self.dashboard}.{self.said(message)}",
                    reported,
                    extra={**extra, "quota_kind": "billing"},
                )
            if effective == 429:
                retry_after = parse_retry_after(headers)
                wait = (
                    f"retry after {retry_after:g} s" if retry_after is not None else "retry later"
                )
                return self.build(
                    ProviderQuotaExceeded,
                    f"{self.label} rate limit reached ({reported or 'in-stream'}): {wait}, "
                    f"or raise the rate limits of the account in {self.dashboard}."
                    f"{self.said(message)}",
                    reported,
                    retry_after=retry_after,
                    extra={**extra, "quota_kind": "rate_limit"},
                )
        if effective == 404 or codes & _NOT_FOUND_CODES:
            return self.not_found(reported, message, extra)
        if effective == 403:
            return self.auth(reported, message, extra)
        if effective is None or effective >= 500 or effective in (408, 499):
            return self.build(
                ProviderUnavailable,
                f"{self.label} is unavailable or overloaded ({reported or 'in-stream error'}): "
                f"retry later.{self.said(message)}",
                reported,
                extra=extra,
            )
        fix = (
            " Shorten the messages or lower max_tokens."
            if "context_length" in " ".join(codes) or "too long" in message.lower()
            else ""
        )
        return self.build(
            ProviderRejectedRequest,
            f"{self.label} rejected the request ({effective}).{self.said(message)}{fix}",
            reported,
            extra=extra,
        )

    def _at(self) -> str:
        return f" at {self.host()}" if self.host() else ""

    def auth(self, status: int | None, message: str, extra: Mapping[str, str]) -> ProviderError:
        if status == 403:
            head = f"{self.label} refused access with the stored API key (403)"
        else:
            head = f"{self.label} rejected the stored API key ({status or 'in-stream'})"
        if self.provider == "azure":
            fix = (
                "check the key and the endpoint in the Azure portal (Keys and Endpoint) "
                "and update them"
            )
        else:
            fix = f"check the key in {self.dashboard} and update it"
        return self.build(
            ProviderAuthFailed, f"{head}: {fix}.{self.said(message)}", status, extra=extra
        )

    def not_found(
        self, status: int | None, message: str, extra: Mapping[str, str]
    ) -> ProviderError:
        if self.provider == "azure":
            version = (
                f" and that api_version '{self.api_version}' exists" if self.api_version else ""
            )
            text = (
                f"Azure OpenAI has no deployment '{self.model}'{self._at()} "
                f"({status or 'in-stream'}): "
                f"check that deployment_name matches the deployment in the Azure portal exactly"
                f"{version}."
            )
        else:
            text = (
                f"{self.label} has no model '{self.model}' available to this key "
                f"({status or 'in-stream'}): check default_model and overrides in the model config."
            )
        return self.build(ProviderModelNotFound, text + self.said(message), status, extra=extra)


def _error_object(body: object) -> Mapping[str, Any]:
    # OpenAI's SDK hands over the inner ``error`` object, Anthropic's the whole body.
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping):
            return inner
        return body
    return {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _header(headers: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = headers.get(name)
        if value:
            return str(value)
    return ""


_TYPE_STATUS = {
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "invalid_request_error": 400,
    "request_too_large": 413,
    "overloaded_error": 529,
    "api_error": 500,
    "server_error": 500,
}


def _status_of_type(codes: list[str]) -> int | None:
    for code in codes:
        if code in _TYPE_STATUS:
            return _TYPE_STATUS[code]
    return None
