"""Turning SDK and transport failures into the ``ProviderError`` tree.

One function, ``classify_error``, is shared by all adapters, in three steps:

1. facts: the SDK or transport exception becomes plain facts (here, the only
   step that knows the SDKs' and httpx2's exception types): a
   ``failures.Answer`` when the provider answered with an error, a
   ``failures.Transport`` when no whole answer came;
2. decision: ``failures.classify_answer`` / ``classify_transport``, pure
   tables, give the failure's kind and its error class (so its reason);
3. wording: the provider's ``Wording`` (``providers.wording``,
   ``providers.azure_wording``) says what the tenant should do.

A connection that drops after the provider started answering (a cut stream, or
a body cut short) is ``ProviderUnavailable``: the endpoint was reachable, the
provider failed mid-answer, and a retry is the fix. ``ProviderUnreachable``
stays for an endpoint that could not be reached at all, which is what the
guide's troubleshooting for BYOK_ENDPOINT_UNREACHABLE tells users to check.

Every piece of provider text that ends up in a message or in metadata goes
through ``liya_engine.redact.scrub`` with the key: providers echo partial keys.
"""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anthropic
import anyio
import httpx2
import openai

from liya_engine.errors import ForbiddenAddress, IncompleteAnswer, MalformedAnswer, ProviderError
from liya_engine.providers import facts, upstream
from liya_engine.providers.azure_wording import AzureWording
from liya_engine.providers.failures import (
    Answer,
    Failure,
    Kind,
    Sign,
    Transport,
    classify_answer,
    classify_transport,
)
from liya_engine.providers.wording import Call, Wording
from liya_engine.redact import REDACTED, Needles, note_call_secrets, scrub_shapes
from liya_engine.secret import Secret

_MAX_DETAIL = 300
_MAX_METADATA = 120

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
_TIMEOUTS: tuple[type[BaseException], ...] = (
    openai.APITimeoutError,
    anthropic.APITimeoutError,
    TimeoutError,
    httpx2.TimeoutException,
)
# What each exception in a transport failure's chain tells.
_SIGNS: tuple[tuple[type[BaseException], Sign], ...] = (
    (TimeoutError, Sign.TIMEOUT),
    (httpx2.TimeoutException, Sign.TIMEOUT),
    (httpx2.PoolTimeout, Sign.POOL_TIMEOUT),
    (httpx2.ConnectTimeout, Sign.CONNECT_TIMEOUT),
    (ForbiddenAddress, Sign.FORBIDDEN_ADDRESS),
    (ssl.SSLError, Sign.TLS_ERROR),
    (httpx2.ConnectError, Sign.CONNECT_ERROR),
    (httpx2.RemoteProtocolError, Sign.PROTOCOL_ERROR),
    (httpx2.ReadError, Sign.READ_ERROR),
    (httpx2.UnsupportedProtocol, Sign.BAD_URL),
    (httpx2.InvalidURL, Sign.BAD_URL),
)

WORDINGS: Mapping[str, Wording] = {
    facts.OPENAI: Wording(facts.OPENAI),
    facts.ANTHROPIC: Wording(facts.ANTHROPIC),
    facts.AZURE: AzureWording(),
}
"""Each provider's wording; OpenAI and Anthropic speak as the base ``Wording``."""


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
    failure = failure_of(exc, mid_stream=mid_stream)
    if failure is None:
        return None
    # Log lines of this call's task are scrubbed of its key from now on.
    known = note_call_secrets(secrets)
    detail = _clean(failure.said, known, _MAX_DETAIL) if failure.said else ""
    call = Call(
        model=model,
        timeout=timeout,
        host=_host(endpoint),
        api_version=api_version,
        detail=detail or "",
        withheld=detail is None,
        status=failure.status,
    )
    wording = WORDINGS.get(provider) or Wording(provider)
    return failure.error_class(
        wording.message(failure, call),
        provider=provider,
        model=model,
        upstream_status=failure.status,
        retry_after=failure.retry_after,
        metadata={k: _clean_value(v, known) for k, v in failure.metadata.items() if v},
    )


def failure_of(exc: BaseException, *, mid_stream: bool = False) -> Failure | None:
    """The ``Failure`` an SDK or transport exception means (None: not one)."""
    if isinstance(exc, IncompleteAnswer):
        return Failure(Kind.INCOMPLETE)
    if isinstance(exc, MalformedAnswer):
        return Failure(Kind.MALFORMED)
    if isinstance(exc, (*_TIMEOUTS, *_legacy("TimeoutException"))):
        return classify_transport(_transport(exc, timed_out=True))
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        cause = exc.__cause__ or exc.__context__ or exc
        return classify_transport(_transport(cause, mid_stream=mid_stream))
    if isinstance(exc, (*_TRANSPORT_ERRORS, *_legacy("TransportError"))):
        return classify_transport(_transport(exc, mid_stream=mid_stream))
    if isinstance(exc, openai.APIResponseValidationError | anthropic.APIResponseValidationError):
        return Failure(Kind.INVALID_DATA, status=exc.status_code)
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return classify_answer(
            _answer(exc.status_code, exc.response.headers, exc.body, exc.message)
        )
    if isinstance(exc, openai.APIError | anthropic.APIError):
        # An error event inside a 200 stream: no HTTP status of its own.
        return classify_answer(_answer(None, {}, exc.body, exc.message))
    if isinstance(exc, openai.OpenAIError | anthropic.AnthropicError):
        return Failure(Kind.UNEXPECTED)
    return None


def _legacy(name: str) -> tuple[type[BaseException], ...]:
    # Plain httpx may be in the process (other libraries); its errors can
    # surface through an SDK that was handed an httpx client.
    module = sys.modules.get("httpx")
    return (getattr(module, name),) if module is not None else ()


def _walk(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _transport(
    exc: BaseException, *, timed_out: bool = False, mid_stream: bool = False
) -> Transport:
    chain = list(_walk(exc))
    signs = {sign for e in chain for cls, sign in _SIGNS if isinstance(e, cls)}
    if timed_out:
        signs.add(Sign.TIMEOUT)
    return Transport(frozenset(signs), " ".join(str(e) for e in chain), mid_stream)


def _answer(
    status: int | None, headers: Mapping[str, str], body: object, sdk_message: str
) -> Answer:
    err = _error_object(body)
    message = _text(err.get("message")) or (body if isinstance(body, str) else "")
    if not message and not err:
        message = sdk_message
    # A proxy's or gateway's HTML page (Cloudflare, Azure API Management) says
    # what it is in its title; the markup is no message.
    message = upstream.plain_text(message)
    type_ = _text(err.get("type"))
    code = _text(err.get("code"))
    details = err.get("details")
    detail_code = _text(details.get("error_code")) if isinstance(details, Mapping) else ""
    return Answer(
        status,
        codes=(code, detail_code, type_),
        message=message,
        retry_after=upstream.wait_hint(headers, message),
        error_code=code or detail_code or type_,
        # Anthropic also puts the id in the body, where a proxy cannot strip it.
        request_id=upstream.request_id(headers) or _text(_body_field(body, "request_id")),
    )


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


def _host(endpoint: str) -> str:
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    # Only host and port: a URL's user-info or query could carry secrets.
    return f"{host}:{port}" if host and port else host


def _body_field(body: object, name: str) -> object:
    return body.get(name) if isinstance(body, Mapping) else None


def _clean(text: object, known: Needles, limit: int) -> str | None:
    """Provider text as shown: one line, at most ``limit`` characters, key
    shapes replaced; None when what would be shown holds one of the ``known``
    keys in any form (the caller then withholds the whole text)."""
    flat = " ".join(str(text).split())
    shown = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    # What is shown is what must be clean; the cut can split an encoding, so
    # the check also looks a little past it.
    if known.found_in(flat[: limit + 64]):
        return None
    return scrub_shapes(shown)


def _clean_value(value: str, known: Needles) -> str:
    # Every value (the provider's error code and request id included) is kept
    # verbatim unless it holds key material: ids and codes are what a tenant
    # quotes to the provider's support.
    cleaned = _clean(value, known, _MAX_METADATA)
    return REDACTED if cleaned is None else cleaned
