"""The one Azure endpoint policy: its URL rules, its address rule, and that
config validation and inference apply the same object's rules."""

from __future__ import annotations

import pytest

from liya_engine.config.endpoints import EndpointPolicy, is_public_address
from liya_engine.inference.estimate import estimate_prompt_tokens, estimate_text_tokens
from liya_engine.inference.ports import Message
from liya_engine.settings import Settings

PATH = "provider_config.azure.endpoint"
URLS = [
    ("https://r.openai.azure.com", ""),
    ("https://r.openai.azure.com/", ""),
    ("https://r.cognitiveservices.azure.com", ""),
    ("http://r.openai.azure.com", "must use https"),
    ("https://r.openai.azure.com/openai/deployments/x", "must be the resource's base URL"),
    ("https://user:pw@r.openai.azure.com", "must not contain user information"),
    ("https://r.openai.azure.com?x=1", "must not have a query or fragment"),
    ("https://r.openai.azure.com:8443", "must not name a port other than 443"),
    ("https://20.1.2.3", "must be a host name, not an IP address"),
    ("https://evil.example.com", "must be an Azure OpenAI host"),
    ("https://r.openai.azure.com\t.evil", "must not contain spaces"),
    ("http://127.0.0.1:8080", "must use https"),
    ("not a url", "must not contain spaces"),
    ("https://" + "a" * 600, "must be at most 512 characters"),
]


@pytest.mark.parametrize(("url", "problem"), URLS)
def test_url_rules(url, problem):
    found = EndpointPolicy().check(PATH, url)
    if problem:
        assert [v.field for v in found] == [PATH]
        assert found[0].description.startswith(problem)
    else:
        assert found == []


def test_the_allowlist_and_the_development_setting():
    allowing = EndpointPolicy(allowlist=(".corp.example", "gw.example.net"))
    assert allowing.check(PATH, "https://ai.corp.example") == []
    assert allowing.check(PATH, "https://gw.example.net") == []
    assert allowing.check(PATH, "https://other.example.net") != []
    dev = EndpointPolicy(allow_insecure=True)
    assert dev.check(PATH, "http://127.0.0.1:8080") == []
    assert dev.check(PATH, "http://localhost:8080") == []
    # Development lets loopback through, nothing else.
    assert dev.check(PATH, "http://10.0.0.1:8080")[0].description == "must use https"


def test_built_from_settings():
    settings = Settings.from_env(
        {
            "LIYA_JWT_HS256_SECRET": "s" * 32,
            "LIYA_AZURE_ENDPOINT_ALLOWLIST": ".corp.example",
            "LIYA_AZURE_ALLOW_PRIVATE_ADDRESSES": "true",
        }
    )
    assert EndpointPolicy.from_settings(settings) == EndpointPolicy(
        allowlist=(".corp.example",), allow_insecure=False, allow_private_addresses=True
    )


@pytest.mark.parametrize(
    ("policy", "loopback", "private", "public"),
    [
        (EndpointPolicy(), False, False, True),
        (EndpointPolicy(allow_private_addresses=True), True, True, True),
        # Development lets loopback through and nothing else.
        (EndpointPolicy(allow_insecure=True), True, False, True),
    ],
)
def test_address_rule(policy, loopback, private, public):
    assert policy.allows_address("127.0.0.1") is loopback
    assert policy.allows_address("10.1.2.3") is private
    assert policy.allows_address("20.1.2.3") is public
    assert policy.public_peers_only is not loopback


def test_is_public_address_is_the_rule_the_policy_applies():
    for address in ("8.8.8.8", "10.0.0.1", "::ffff:10.0.0.1", "not-an-ip"):
        assert EndpointPolicy().allows_address(address) is is_public_address(address)


def test_one_token_estimate():
    # One token per three characters (rounded up), four per message, three for the reply.
    assert [estimate_text_tokens(n) for n in (0, 1, 3, 4, 300)] == [0, 1, 1, 2, 100]
    messages = [Message("system", "x" * 16), Message("user", "y" * 24)]
    assert estimate_prompt_tokens(messages) == (6 + 4) + (8 + 4) + 3
    assert estimate_prompt_tokens([]) == 3
