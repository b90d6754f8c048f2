"""The private-address rule at its edges: IPv6 forms that embed an IPv4
address, site-local IPv6, and what the development setting lets through."""

from __future__ import annotations

import pytest

from helpers import auth, details_of, hello
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.config.endpoints import EndpointPolicy, is_loopback_address, is_public_address

# Each form embeds (or is) a non-public address; every one must be refused.
EMBEDDING_PRIVATE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a00:1",  # IPv4-compatible 10.0.0.1
    # Teredo: server 65.54.227.120, client stored inverted (~ 127.0.0.1).
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "fec0::1",  # site-local
    "fec0:1234::5",
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix
]
# The same forms embedding a public address are judged public.
EMBEDDING_PUBLIC = [
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, client 8.8.8.8
    "2606:4700:4700::1111",  # plain global IPv6
    "8.8.8.8",
]


@pytest.mark.parametrize("address", EMBEDDING_PRIVATE)
def test_ipv6_forms_embedding_a_private_address_are_not_public(address):
    assert is_public_address(address) is False
    assert EndpointPolicy().allows_address(address) is False


@pytest.mark.parametrize("address", EMBEDDING_PUBLIC)
def test_ipv6_forms_embedding_a_public_address_are_public(address):
    assert is_public_address(address) is True
    assert EndpointPolicy().allows_address(address) is True


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("64:ff9b::7f00:1", True),  # NAT64 of loopback is loopback
        ("10.0.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("fd00::2", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("2002:a00:1::1", False),
        ("0.0.0.0", False),
        ("8.8.8.8", True),
    ],
)
def test_the_development_setting_lets_loopback_through_and_nothing_else(address, allowed):
    policy = EndpointPolicy(allow_insecure=True)
    assert policy.allows_address(address) is allowed
    assert is_loopback_address(address) is (allowed and address != "8.8.8.8")
    # Its URL rule: loopback http only; any other http host still needs https.
    assert policy.check("e", "http://127.0.0.1:8080") == []
    assert policy.check("e", "http://localhost:8080") == []
    assert policy.check("e", "http://10.0.0.1:8080")[0].description == "must use https"
    assert policy.check("e", "http://internal.corp.example")[0].description == "must use https"


def test_private_link_allows_every_address():
    policy = EndpointPolicy(allow_private_addresses=True)
    assert all(policy.allows_address(a) for a in EMBEDDING_PRIVATE)
    assert policy.checks_addresses is False
    assert EndpointPolicy(allow_insecure=True).checks_addresses is True


async def _managed_azure_call(servers, endpoint: str, **env: str):
    _, s = await servers.start(
        LIYA_MANAGED_AZURE_API_KEY="platform-azure-key-" + "k" * 20,
        LIYA_MANAGED_AZURE_ENDPOINT=endpoint,
        LIYA_MANAGED_AZURE_DEPLOYMENT="gpt-4o",
        LIYA_UPSTREAM_TIMEOUT_SECONDS="3",
        **env,
    )
    await s.config.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="managed")),
        metadata=auth("t6"),
    )
    with pytest.raises(Exception) as caught:
        await s.inference.Complete(hello(), metadata=auth("t6"), timeout=10)
    return details_of(caught.value)


@pytest.mark.parametrize(
    "host", ["[64:ff9b::7f00:1]", "[2002:7f00:1::1]", "[::7f00:1]", "[fec0::1]"]
)
async def test_the_service_never_connects_to_an_ipv6_form_of_a_private_address(servers, fake, host):
    # The Azure pool refuses the address before any connection attempt: the
    # answer is immediate and says why, rather than a connect failure.
    d = await _managed_azure_call(
        servers, f"https://{host}:{fake.port}", LIYA_ALLOW_INSECURE_ENDPOINTS="false"
    )
    assert d.reason == "BYOK_ENDPOINT_UNREACHABLE"
    assert "private or reserved" in d.message
    assert fake.requests == []


async def test_the_development_setting_does_not_open_private_addresses(servers, fake):
    # 10.255.255.1 is not loopback: with the development setting on it is still
    # refused at once (before, it was connected to and timed out).
    d = await _managed_azure_call(
        servers, "http://10.255.255.1:9", LIYA_ALLOW_INSECURE_ENDPOINTS="true"
    )
    assert d.reason == "BYOK_ENDPOINT_UNREACHABLE"
    assert "private or reserved" in d.message
