"""The pure readings of a provider's error answer (``providers.upstream``) and
the scrubbing rules (``redact``), without any network."""

from __future__ import annotations

import email.utils

import pytest

from liya_engine.providers.upstream import (
    MAX_WAIT,
    is_markup,
    parse_duration,
    plain_text,
    request_id,
    stated_wait,
    wait_hint,
)
from liya_engine.redact import REDACTED, holds_secret, scrub, scrub_line, scrub_shapes

NOW = 1_800_000_000.0  # a fixed clock: 2027-01-15T08:00:00Z


def rfc3339(offset: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW + offset, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("17.28s", 17.28),
        ("7", 7.0),
        ("0.5", 0.5),
        ("", None),
        ("soon", None),
        ("6 minutes", None),
    ],
)
def test_durations_as_openai_writes_them(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("Limit 30000, Used 29996, Requested 44. Please try again in 6ms. Visit", 0.006),
        ("Please try again in 1.2s.", 1.2),
        ("Please try again in 6m0s.", 360.0),
        ("Rate limit reached. Try again in 20s.", 20.0),
        ("Please retry after 20 seconds.", 20.0),
        ("Please retry after 1 second.", 1.0),
        ("try again in 250 milliseconds", 0.25),
        ("retry after 2 minutes", 120.0),
        ("please try again later", None),
        ("Retry-After header", None),
    ],
)
def test_waits_stated_in_words(message, seconds):
    assert stated_wait(message) == (pytest.approx(seconds) if seconds is not None else None)


def test_the_order_of_the_hints():
    full = {
        "retry-after-ms": "1500",
        "x-ms-retry-after-ms": "2500",
        "retry-after": "3",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "4s",
    }
    message = "Please try again in 5s."
    assert wait_hint(full, message, now=NOW) == 1.5
    del full["retry-after-ms"]
    assert wait_hint(full, message, now=NOW) == 2.5
    del full["x-ms-retry-after-ms"]
    assert wait_hint(full, message, now=NOW) == 3.0
    del full["retry-after"]
    assert wait_hint(full, message, now=NOW) == 4.0
    del full["x-ratelimit-reset-tokens"]
    assert wait_hint(full, message, now=NOW) == 5.0
    assert wait_hint({}, "", now=NOW) is None


def test_header_names_are_case_insensitive_and_an_http_date_counts():
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert wait_hint({"Retry-After": date}, now=NOW) == pytest.approx(30)
    assert wait_hint({"Retry-After-Ms": "250"}, now=NOW) == 0.25
    assert wait_hint({"retry-after": "soon"}, now=NOW) is None
    # A date in the past, a negative or NaN wait: no hint. Absurd waits are capped.
    assert wait_hint({"retry-after": email.utils.formatdate(NOW - 5)}, now=NOW) is None
    assert wait_hint({"retry-after": "-1"}, now=NOW) is None
    assert wait_hint({"retry-after-ms": "nan"}, now=NOW) is None
    assert wait_hint({"retry-after": "99999999"}, now=NOW) == MAX_WAIT


def test_only_an_exhausted_limit_resets_count_and_the_latest_wins():
    headers = {
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-remaining-tokens": "12",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert wait_hint(headers, now=NOW) is None
    headers["x-ratelimit-remaining-requests"] = "0"
    assert wait_hint(headers, now=NOW) == pytest.approx(0.12)
    headers["x-ratelimit-remaining-tokens"] = "0"
    assert wait_hint(headers, now=NOW) == 360.0


def test_anthropic_reset_times():
    headers = {
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": rfc3339(1),
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": rfc3339(20),
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": rfc3339(8),
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "not a time",
    }
    assert wait_hint(headers, now=NOW) == pytest.approx(20)
    headers["anthropic-ratelimit-input-tokens-remaining"] = "1000"
    assert wait_hint(headers, now=NOW) == pytest.approx(8)


def test_request_ids_in_the_documented_order():
    openai_id = "req_5f0c2a4b9e8d4c7fa1b2c3d4e5f60718"
    azure_id = "9a2c1b3e-7f4d-4e8a-b5c6-0d1e2f3a4b5c"
    assert request_id({"X-Request-Id": openai_id, "apim-request-id": azure_id}) == openai_id
    assert request_id({"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"}) == (
        "req_011CSHoEeqs5C35K2UUqR7Fy"
    )
    assert request_id({"apim-request-id": azure_id, "x-ms-request-id": "other"}) == azure_id
    assert request_id({"x-ms-request-id": azure_id}) == azure_id
    assert request_id({"x-request-id": "  "}) == ""


def test_html_pages_become_their_title():
    cloudflare = (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    assert is_markup(cloudflare)
    assert plain_text(cloudflare) == "502 Bad Gateway"
    apim = '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Service &amp; more</title>'
    assert plain_text(apim + "</head><body></body></html>") == "Service & more"
    no_title = "<html><body><h1>Access denied</h1><p>Error 1020</p></body></html>"
    assert plain_text(no_title) == "Access denied"
    bare = "<html><body><p>Something went wrong</p><script>x()</script></body></html>"
    assert plain_text(bare) == "Something went wrong"
    commented = "<!-- edge 17 --><div><p>Upstream <b>timed out</b></p></div>"
    assert is_markup(commented)
    assert plain_text(commented) == "Upstream timed out"
    # A message that merely mentions < or > is no page.
    assert not is_markup("<nil> is not a valid model")
    assert plain_text("prompt is too long: 210000 tokens > 200000 maximum") == (
        "prompt is too long: 210000 tokens > 200000 maximum"
    )


# ---------------------------------------------------------------- scrubbing


def test_ids_and_python_names_survive_the_generic_rule():
    kept = [
        "asyncpg.exceptions.ConnectionDoesNotExistError: connection was closed",
        "asyncpg.exceptions.InvalidAuthorizationSpecificationError",
        "asyncpg.exceptions.IdleInTransactionSessionTimeoutError",
        "asyncpg.exceptions.ObjectNotInPrerequisiteStateError: database not accepting",
        "in test_the_platforms_managed_key_in_any_form_is_withheld",
        "upstream_error_code=unsupported_country_region_territory",
        "req_5f0c2a4b9e8d4c7fa1b2c3d4e5f60718",
        "req_011CSHoEeqs5C35K2UUqR7Fy",
        "apim-request-id 9a2c1b3e-7f4d-4e8a-b5c6-0d1e2f3a4b5c",
        "chatcmpl-AbCdEf0123456789GhIjKlMnOpQrStUv",
        "LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES=true",
        "File /srv/app/.venv/lib/python3.11/site-packages/sqlalchemy/ext/asyncio/engine.py",
    ]
    for line in kept:
        assert scrub_shapes(line) == line


@pytest.mark.parametrize(
    "key",
    [
        "0ddba11cafe5eed0ddba11cafe5eed42",  # Azure: 32 hex
        "sk-proj-Qz7Xw9Lk2Vb8Nm4Rt6Yp1Cs3Df5Gh0JkWu2Ea",
        "sk-ant-api03-Hb5Tn8Pq1Zr4Lc7Vx2Md9Ks6Wf3Jg0Ye-AbCdEfGh",
        "sk-svcacct-AbCdEfGh0123456789",
        "QmFzZTY0S2V5V2l0aE5vRGlnaXRzQXRBbGxIZXJlUXVpdGVMb25n",
        "XkQpLmWzRtYvBnHgFdSaQwErTyUiOpLkJhGfDsAz",  # random letters, no digit
    ],
)
def test_keys_nobody_named_are_still_blanked(key):
    assert scrub_shapes(f"saw {key} here") == f"saw {REDACTED} here"


def test_a_key_echo_keeps_the_sentence_full_stop():
    said = "Incorrect API key provided: sk-proj-****abcd. You can find your API key at"
    assert (
        scrub_shapes(said)
        == f"Incorrect API key provided: {REDACTED}. You can find your API key at"
    )


def test_a_known_key_withholds_the_whole_text_but_its_public_prefix_does_not():
    key = "sk-proj-Qz7Xw9Lk2Vb8Nm4Rt6Yp1Cs3Df5Gh0JkWu2Ea"
    assert scrub("the key sk-proj-Qz7X was refused", [key]) == "the key [REDACTED] was refused"
    assert scrub("prefix Qz7Xw9 echoed", [key], withheld="gone") == "gone"
    assert not holds_secret("sk-proj-...2Ea sk-proj- is public", [key])
    assert holds_secret("run 9Lk2Vb in the middle", [key])


def test_log_lines_are_scrubbed_of_remembered_keys(monkeypatch):
    from liya_engine import redact

    monkeypatch.setattr(redact, "_remembered", [])
    monkeypatch.setattr(redact, "_remembered_needles", redact.Needles.of(()))
    managed = "sk-ant-api03-Mn8Bv5Cx2Zl9Kj6Hg3Fd0Sa7"
    line = "upstream said: key " + " ".join(managed[13:][i : i + 4] for i in range(0, 20, 4))
    assert scrub_line(line) == line  # nobody named this key yet
    redact.remember([managed, None])
    redact.remember([managed])  # a second server with the same key
    assert scrub_line(line) == redact.WITHHELD_LINE
    assert scrub_line("an ordinary line") == "an ordinary line"
    redact.forget([managed])  # one of them stopped
    assert scrub_line(line) == redact.WITHHELD_LINE
    redact.forget([managed])
    assert scrub_line(line) == line
