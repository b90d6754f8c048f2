"""Error answers exactly as the real APIs send them: status, headers and body.

Each kind here is a shape recorded from the real OpenAI, Anthropic and Azure
OpenAI APIs (or the proxies in front of them), with every header a client
would read: the request id, the rate-limit headers, the content type. A
test asks for one with ``fail(provider, kind, **options)``; options common to
all: ``omit_headers`` (names to leave out, to test the next hint in line),
``headers`` (extra or changed headers), ``message``.

    real_rate_limit  429 with the provider's own wait hints:
                     OpenAI   x-ratelimit-* (tokens exhausted, reset ``6ms``),
                              "Please try again in 6ms." in the message, no retry-after;
                     Azure    retry-after, retry-after-ms, x-ms-retry-after-ms, apim-request-id;
                     Anthropic anthropic-ratelimit-* (input tokens exhausted, reset in
                              ``reset_in`` seconds, default 20), retry-after, request-id
    region           403 for a region the provider does not serve (OpenAI
                     unsupported_country_region_territory, Anthropic forbidden;
                     Azure answers as OpenAI does)
    html_502         502 HTML page of the proxy in front (Cloudflare for OpenAI and
                     Anthropic, Azure Application Gateway for Azure)
    tpm_too_large    429 "Request too large for ... tokens per min (TPM)" (OpenAI, Azure)
    real_quota       429 insufficient_quota (OpenAI, Azure); 400 credit balance (Anthropic)
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

REAL_KINDS: tuple[str, ...] = (
    "real_rate_limit",
    "region",
    "html_502",
    "tpm_too_large",
    "real_quota",
)

JSON = "application/json"
HTML = "text/html"

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def openai_request_id() -> str:
    """OpenAI's ``x-request-id``: ``req_`` and 32 hex digits."""
    return "req_" + uuid.uuid4().hex


def anthropic_request_id() -> str:
    """Anthropic's ``request-id``: ``req_011C`` and 20 base62 characters."""
    return "req_011C" + "".join(secrets.choice(_BASE62) for _ in range(20))


def azure_request_id() -> str:
    """Azure's ``apim-request-id``: a UUID."""
    return str(uuid.uuid4())


REQUEST_IDS = {
    "openai": ("x-request-id", openai_request_id),
    "anthropic": ("request-id", anthropic_request_id),
    "azure": ("apim-request-id", azure_request_id),
}
"""Each provider's request id header and how its ids look."""


def _rfc3339(seconds_from_now: float) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _openai_error(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _anthropic_error(type_: str, message: str, rid: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": rid}


def _openai_limits(model: str, remaining_tokens: int, reset_tokens: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-reset-tokens": reset_tokens,
        "openai-organization": "org-fake",
        "openai-processing-ms": "3",
    }


def _openai(kind: str, model: str, opts: Mapping[str, Any]) -> tuple[int, dict, Any, str]:
    rid = {"x-request-id": openai_request_id()}
    if kind == "real_rate_limit":
        message = (
            f"Rate limit reached for {model} in organization org-fake on tokens per min "
            "(TPM): Limit 30000, Used 29996, Requested 44. Please try again in 6ms. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = {**rid, **_openai_limits(model, 0, "6ms")}
        return 429, headers, _openai_error(message, "tokens", "rate_limit_exceeded"), JSON
    if kind == "tpm_too_large":
        message = (
            f"Request too large for {model} in organization org-fake on tokens per min (TPM): "
            "Limit 30000, Requested 36018. The input or output tokens must be reduced in order "
            "to run successfully. Visit https://platform.openai.com/account/rate-limits to "
            "learn more."
        )
        headers = {**rid, **_openai_limits(model, 30000, "0s")}
        return 429, headers, _openai_error(message, "tokens", "rate_limit_exceeded"), JSON
    if kind == "region":
        body = _openai_error(
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        )
        return 403, rid, body, JSON
    if kind == "real_quota":
        message = (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        )
        return 429, rid, _openai_error(message, "insufficient_quota", "insufficient_quota"), JSON
    return _cloudflare_502()


def _anthropic(kind: str, model: str, opts: Mapping[str, Any]) -> tuple[int, dict, Any, str]:
    rid = anthropic_request_id()
    headers = {"request-id": rid, "anthropic-organization-id": str(uuid.uuid4())}
    if kind == "real_rate_limit":
        reset_in = float(opts.get("reset_in", 20))
        headers.update(
            {
                "retry-after": str(int(reset_in)),
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "49",
                "anthropic-ratelimit-requests-reset": _rfc3339(1),
                "anthropic-ratelimit-input-tokens-limit": "30000",
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": _rfc3339(reset_in),
                "anthropic-ratelimit-output-tokens-limit": "8000",
                "anthropic-ratelimit-output-tokens-remaining": "8000",
                "anthropic-ratelimit-output-tokens-reset": _rfc3339(0),
                "anthropic-ratelimit-tokens-limit": "38000",
                "anthropic-ratelimit-tokens-remaining": "8000",
                "anthropic-ratelimit-tokens-reset": _rfc3339(reset_in),
            }
        )
        message = (
            "This request would exceed the rate limit for your organization "
            "(01234567-89ab-cdef-0123-456789abcdef) of 30,000 input tokens per minute. For "
            "details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
            "response headers for current usage. Please reduce the prompt length or the "
            "maximum tokens requested, or try again later. You may also contact sales at "
            "https://www.anthropic.com/contact-sales to discuss your options for a rate "
            "limit increase."
        )
        return 429, headers, _anthropic_error("rate_limit_error", message, rid), JSON
    if kind == "region":
        return 403, headers, _anthropic_error("forbidden", "Request not allowed", rid), JSON
    if kind == "real_quota":
        message = (
            "Your credit balance is too low to access the Anthropic API. Please go to Plans "
            "& Billing to upgrade or purchase credits."
        )
        return 400, headers, _anthropic_error("invalid_request_error", message, rid), JSON
    if kind == "tpm_too_large":
        raise ValueError("Anthropic sends no 'request too large for TPM' answer")
    return _cloudflare_502()


def _azure(kind: str, model: str, opts: Mapping[str, Any]) -> tuple[int, dict, Any, str]:
    headers = {"apim-request-id": azure_request_id(), "x-ms-region": "East US"}
    if kind == "real_rate_limit":
        headers.update(
            {"retry-after": "6", "retry-after-ms": "5400", "x-ms-retry-after-ms": "5400"}
        )
        body = {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI "
                "API version 2024-10-21 have exceeded token rate limit of your current OpenAI "
                "S0 pricing tier. Please retry after 6 seconds. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit.",
            }
        }
        return 429, headers, body, JSON
    if kind == "html_502":
        return 502, headers, _gateway_page("Microsoft-Azure-Application-Gateway/v2"), HTML
    status, _, body, ctype = _openai(kind, model, opts)
    return status, headers, body, ctype


def _gateway_page(server: str) -> str:
    return (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n"
        f"<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    )


def _cloudflare_502() -> tuple[int, dict, Any, str]:
    ray = uuid.uuid4().hex[:16] + "-IAD"
    headers = {"server": "cloudflare", "cf-ray": ray}
    return 502, headers, _gateway_page("cloudflare"), HTML


_BY_PROVIDER = {"openai": _openai, "anthropic": _anthropic, "azure": _azure}


def real_answer(
    provider: str, kind: str, model: str, opts: Mapping[str, Any]
) -> tuple[int, dict[str, str], bytes, str]:
    """Status, headers, body bytes and content type of ``kind`` from ``provider``."""
    status, headers, body, ctype = _BY_PROVIDER[provider](kind, model, opts)
    if opts.get("message") is not None and isinstance(body, dict):
        body["error"]["message"] = str(opts["message"])
    for name in opts.get("omit_headers") or ():
        headers.pop(str(name).lower(), None)
    headers.update({str(k): str(v) for k, v in (opts.get("headers") or {}).items()})
    headers.setdefault("date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return status, headers, raw, ctype


def check_options(provider: str | None, kind: str, opts: Mapping[str, Any]) -> None:
    """``ValueError`` when ``kind`` cannot come from ``provider`` or an option is wrong."""
    if kind == "tpm_too_large" and provider in (None, "anthropic"):
        raise ValueError("tpm_too_large is sent by openai and azure only")
    omit = opts.get("omit_headers")
    if omit is not None and not (isinstance(omit, list) and all(isinstance(h, str) for h in omit)):
        raise ValueError("omit_headers must be a list of header names")
