"""The pure failure tables and each provider's wording, without any network.

The adapters' tests (``test_provider_adapters.py``) check the same decisions
end to end, through the SDKs and the fake providers; these pin each table
entry and the split: decisions know no SDK, wording knows no exception.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from liya_engine.errors import (
    ProviderAuthFailed,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRejectedRequest,
    ProviderTimedOut,
    ProviderUnavailable,
    ProviderUnreachable,
    UpstreamPoolBusy,
)
from liya_engine.providers.azure_wording import AzureWording
from liya_engine.providers.classify import WORDINGS
from liya_engine.providers.failures import (
    ERROR_CLASS,
    Answer,
    Failure,
    Kind,
    Sign,
    Transport,
    classify_answer,
    classify_transport,
)
from liya_engine.providers.wording import Call, Wording

ANSWERS = [
    # (status, codes, message) -> kind, as each provider sends it
    ((401, ("invalid_api_key", "", "invalid_request_error"), "Incorrect API key"), Kind.AUTH),
    ((401, ("", "", "authentication_error"), "invalid x-api-key"), Kind.AUTH),
    ((429, ("insufficient_quota", "", "insufficient_quota"), "current quota"), Kind.BILLING),
    ((400, ("billing_hard_limit_reached", "", ""), "Billing hard limit"), Kind.BILLING),
    ((400, ("", "", "invalid_request_error"), "Your credit balance is too low"), Kind.BILLING),
    ((403, ("", "", "permission_error"), "reached its monthly spend limit"), Kind.BILLING),
    ((403, ("", "", ""), "Out of call volume quota for OpenAI API"), Kind.BILLING),
    ((402, ("", "", ""), ""), Kind.BILLING),
    ((429, ("rate_limit_exceeded", "", "requests"), "Rate limit reached"), Kind.RATE_LIMIT),
    ((429, ("rate_limit_exceeded", "", ""), "add a payment method"), Kind.RATE_LIMIT),
    ((429, ("", "", "rate_limit_error"), "Number of request tokens has exceeded"), Kind.RATE_LIMIT),
    # OpenAI, Azure: one request over the tokens-per-minute limit.
    (
        (
            429,
            ("rate_limit_exceeded", "", "tokens"),
            "Request too large for gpt-4o in organization org-x on tokens per min (TPM): "
            "Limit 30000, Requested 36018.",
        ),
        Kind.OVER_LIMIT,
    ),
    ((404, ("model_not_found", "", "invalid_request_error"), "does not exist"), Kind.NOT_FOUND),
    ((404, ("DeploymentNotFound", "", ""), "deployment does not exist"), Kind.NOT_FOUND),
    ((400, ("DeploymentNotFound", "", ""), ""), Kind.NOT_FOUND),
    ((404, ("", "", "not_found_error"), "model: claude-x"), Kind.NOT_FOUND),
    # A region the provider does not serve: the key may be fine.
    ((403, ("unsupported_country_region_territory", "", ""), "not supported"), Kind.REGION),
    ((403, ("", "", "forbidden"), "Request not allowed"), Kind.REGION),
    ((403, ("", "", "permission_error"), "not allowed"), Kind.FORBIDDEN),
    ((307, (), ""), Kind.REDIRECT),
    ((500, ("", "", "server_error"), "oops"), Kind.UNAVAILABLE),
    ((529, ("", "", "overloaded_error"), "Overloaded"), Kind.UNAVAILABLE),
    ((408, (), ""), Kind.UNAVAILABLE),
    ((499, (), ""), Kind.UNAVAILABLE),
    ((400, ("context_length_exceeded", "", "invalid_request_error"), "too many"), Kind.TOO_LONG),
    ((400, ("", "", "invalid_request_error"), "prompt is too long"), Kind.TOO_LONG),
    ((422, ("", "", ""), "bad field"), Kind.REJECTED),
    # An error event inside a 200 stream: its type implies the status.
    ((None, ("", "", "overloaded_error"), "Overloaded"), Kind.UNAVAILABLE),
    ((None, ("", "", "rate_limit_error"), "slow down"), Kind.RATE_LIMIT),
    ((None, ("", "", "authentication_error"), ""), Kind.AUTH),
    ((None, ("", "", "invalid_request_error"), "prompt is too long"), Kind.TOO_LONG),
    ((None, (), "something broke"), Kind.UNAVAILABLE),
]


@pytest.mark.parametrize(("facts", "kind"), ANSWERS)
def test_each_answer_entry_decides_its_kind(facts, kind):
    status, codes, message = facts
    failure = classify_answer(Answer(status, codes=codes, message=message))
    assert failure.kind is kind
    assert failure.status == (status if status is not None and status >= 300 else None)


def test_in_stream_errors_report_no_status_but_decide_by_the_implied_one():
    failure = classify_answer(Answer(None, codes=("", "", "overloaded_error")))
    assert (failure.status, failure.effective_status) == (None, 529)


def test_only_a_rate_limit_carries_the_wait():
    limited = classify_answer(Answer(429, codes=("rate_limit_exceeded",), retry_after=7.0))
    assert (limited.retry_after, limited.metadata["quota_kind"]) == (7.0, "rate_limit")
    empty = classify_answer(Answer(429, codes=("insufficient_quota",), retry_after=7.0))
    assert (empty.retry_after, empty.metadata["quota_kind"]) == (None, "billing")
    too_large = classify_answer(
        Answer(
            429,
            codes=("rate_limit_exceeded",),
            message="Request too large for o1 on tokens per min (TPM)",
            retry_after=7.0,
        )
    )
    assert (too_large.kind, too_large.retry_after) == (Kind.OVER_LIMIT, None)
    assert too_large.metadata["quota_kind"] == "rate_limit"
    other = classify_answer(Answer(500, retry_after=7.0))
    assert other.retry_after is None
    assert "quota_kind" not in other.metadata


def test_answer_metadata_is_the_providers_code_and_request_id():
    failure = classify_answer(
        Answer(404, codes=("DeploymentNotFound",), error_code="DeploymentNotFound", request_id="r1")
    )
    assert dict(failure.metadata) == {
        "upstream_error_code": "DeploymentNotFound",
        "upstream_request_id": "r1",
    }


TRANSPORTS = [
    ({Sign.TIMEOUT, Sign.POOL_TIMEOUT}, "", False, Kind.POOL_BUSY),
    ({Sign.TIMEOUT, Sign.CONNECT_TIMEOUT}, "", False, Kind.CONNECT_TIMED_OUT),
    ({Sign.TIMEOUT}, "", True, Kind.TIMED_OUT),  # a timeout wins over mid-stream
    (set(), "", True, Kind.CUT_SHORT),
    ({Sign.PROTOCOL_ERROR}, "without sending complete message body", False, Kind.CUT_SHORT),
    ({Sign.READ_ERROR}, "incomplete chunked read", False, Kind.CUT_SHORT),
    ({Sign.CONNECT_ERROR, Sign.FORBIDDEN_ADDRESS}, "private", False, Kind.FORBIDDEN_ADDRESS),
    ({Sign.TLS_ERROR}, "", False, Kind.TLS_FAILED),
    ({Sign.CONNECT_ERROR}, "[SSL: CERTIFICATE_VERIFY_FAILED]", False, Kind.TLS_FAILED),
    ({Sign.CONNECT_ERROR}, "[Errno -2] Name or service not known", False, Kind.DNS_FAILED),
    ({Sign.CONNECT_ERROR}, "[Errno 111] Connection refused", False, Kind.REFUSED),
    ({Sign.BAD_URL}, "", False, Kind.BAD_URL),
    ({Sign.PROTOCOL_ERROR}, "Server disconnected", False, Kind.NO_ANSWER),
    ({Sign.CONNECT_ERROR}, "reset", False, Kind.CONNECT_FAILED),
]


@pytest.mark.parametrize(("signs", "text", "mid_stream", "kind"), TRANSPORTS)
def test_each_transport_entry_decides_its_kind(signs, text, mid_stream, kind):
    failure = classify_transport(Transport(frozenset(signs), text, mid_stream))
    assert failure.kind is kind
    assert (failure.status, failure.retry_after) == (None, None)


@pytest.mark.parametrize(
    ("kind", "error_class"),
    [
        (Kind.AUTH, ProviderAuthFailed),
        (Kind.FORBIDDEN, ProviderAuthFailed),
        (Kind.BILLING, ProviderQuotaExceeded),
        (Kind.RATE_LIMIT, ProviderQuotaExceeded),
        (Kind.NOT_FOUND, ProviderModelNotFound),
        (Kind.TOO_LONG, ProviderRejectedRequest),
        (Kind.REJECTED, ProviderRejectedRequest),
        (Kind.TIMED_OUT, ProviderTimedOut),
        (Kind.CONNECT_TIMED_OUT, ProviderUnreachable),
        (Kind.REDIRECT, ProviderUnreachable),
        (Kind.POOL_BUSY, UpstreamPoolBusy),
        (Kind.CUT_SHORT, ProviderUnavailable),
        (Kind.UNAVAILABLE, ProviderUnavailable),
    ],
)
def test_kinds_map_to_the_error_tree(kind, error_class):
    assert ERROR_CLASS[kind] is error_class


def test_every_kind_has_an_error_class_and_a_message_from_every_wording():
    assert set(ERROR_CLASS) == set(Kind)
    call = Call(model="m", timeout=2.0, host="h.example", api_version="2024-10-21", detail="d")
    for wording in WORDINGS.values():
        for kind in Kind:
            text = wording.message(Failure(kind, status=400, effective_status=400), call)
            assert text and wording.label in text, (wording.provider, kind)


def test_azure_says_what_to_fix_in_the_portal_the_others_in_their_settings():
    call = Call(model="prod-chat", host="r.openai.azure.com", api_version="2024-10-21")
    missing = classify_answer(Answer(404, codes=("DeploymentNotFound",)))
    azure, openai = WORDINGS["azure"], WORDINGS["openai"]
    assert isinstance(azure, AzureWording) and type(openai) is Wording
    assert azure.message(missing, call) == (
        "Azure OpenAI has no deployment 'prod-chat' at r.openai.azure.com (404): check that "
        "deployment_name matches the deployment in the Azure portal exactly and that "
        "api_version '2024-10-21' exists."
    )
    assert openai.message(missing, call) == (
        "OpenAI has no model 'prod-chat' available to this key (404): check default_model "
        "and overrides in the model config."
    )
    refused = classify_answer(Answer(401, message="no"))
    assert WORDINGS["anthropic"].message(refused, Call(detail="no")) == (
        "Anthropic rejected the stored API key (401): check the key in the Anthropic Console "
        'and update it. Anthropic said: "no"'
    )


_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
banned = {"openai", "anthropic", "httpx", "httpx2", "aiohttp", "grpc", "sqlalchemy"}
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & banned)))
"""


def test_the_tables_and_the_wording_import_no_sdk_or_http_client():
    modules = [
        "liya_engine.providers.failures",
        "liya_engine.providers.wording",
        "liya_engine.providers.azure_wording",
    ]
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout) == []
