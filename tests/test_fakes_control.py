"""The fake providers' control API over HTTP, as the README's curl examples use it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from liya_engine.fakes.failures import FAILURE_KINDS
from liya_engine.fakes.malformed import SHAPES

KINDS = list(FAILURE_KINDS)
PROVIDERS = ["openai", "anthropic", "azure", "all"]


@pytest.fixture
async def http(fake):
    async with aiohttp.ClientSession(fake.base_url) as session:
        yield session


async def _refusal(response: aiohttp.ClientResponse) -> str:
    """The error of a 400 answer, after checking it lists the kinds and providers."""
    assert response.status == 400
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["kinds"] == KINDS
    assert body["providers"] == PROVIDERS
    assert body["malformed_shapes"] == list(SHAPES)
    assert set(body) == {"error", "kinds", "providers", "malformed_shapes"}
    return body["error"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (None, "the body is empty: send a JSON object"),
        (b"  ", "the body is empty: send a JSON object"),
        (b"[]", "the body must be a JSON object"),
        (b'"auth"', "the body must be a JSON object"),
        (b"{}", "kind is required: one of " + ", ".join(KINDS)),
        (b'{"provider": "openai"}', "kind is required: one of " + ", ".join(KINDS)),
        (b'{"kind": 3}', "kind is required: one of " + ", ".join(KINDS)),
        (b'{"kind": "nope"}', f"unknown failure kind 'nope'; expected one of {FAILURE_KINDS}"),
        (
            b'{"kind": "auth", "provider": "cohere"}',
            "unknown provider 'cohere'; expected one of ('openai', 'anthropic', 'azure')",
        ),
        (
            b'{"kind": "auth", "times": "2"}',
            "times must be a whole number of requests, or null for until reset",
        ),
        (b'{"kind": "auth", "times": 0}', "times must be at least 1, or None for until reset"),
        (b'{"kind": "slow", "delay": "soon"}', "delay must be a number"),
        (b'{"kind": "malformed"}', "malformed needs a shape, one of " + ", ".join(SHAPES)),
        (
            b'{"kind": "malformed", "shape": "odd"}',
            "malformed needs a shape, one of " + ", ".join(SHAPES),
        ),
        (
            b'{"kind": "auth", "headers": ["x"]}',
            "headers must be an object of header names to values",
        ),
    ],
)
async def test_a_fail_request_it_cannot_act_on_is_a_400_listing_the_kinds(http, fake, body, error):
    async with http.post("/_control/fail", data=body) as response:
        assert await _refusal(response) == error
    async with http.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": []},
        headers={"Authorization": "Bearer sk-test"},
    ) as response:
        assert response.status == 200  # nothing was queued


async def test_malformed_json_is_a_400_naming_the_parse_error(http):
    async with http.post("/_control/fail", data=b'{"kind": "auth",') as response:
        error = await _refusal(response)
    assert error.startswith(
        "the body is not JSON: Expecting property name enclosed in double quotes"
    )


@pytest.mark.parametrize("route", ["/_control/keys", "/_control/models"])
async def test_keys_and_models_refuse_a_bodiless_or_malformed_post(http, route):
    async with http.post(route) as response:
        assert await _refusal(response) == "the body is empty: send a JSON object"
    field = route.rsplit("/", 1)[1]
    async with http.post(route, json={"provider": "openai", field: "gpt-4o"}) as response:
        assert await _refusal(response) == f"{field} must be a list of strings or null"


async def test_a_queued_failure_is_served_then_used_up(http, fake):
    async with http.post(
        "/_control/fail", json={"provider": "openai", "kind": "rate_limit", "retry_after": 7}
    ) as response:
        assert (response.status, await response.json()) == (200, {"ok": True})
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer sk-test"}
    async with http.post("/v1/chat/completions", json=request, headers=headers) as response:
        assert response.status == 429
        assert response.headers["retry-after"] == "7"
    async with http.post("/v1/chat/completions", json=request, headers=headers) as response:
        assert response.status == 200
    async with http.get("/_control/requests", params={"provider": "openai"}) as response:
        recorded = await response.json()
    assert [r["failure"] for r in recorded] == ["rate_limit", None]


async def test_deployments_say_what_each_azure_deployment_reports_running(http, fake):
    request = {"messages": [{"role": "user", "content": "hi"}]}
    route = "/openai/deployments/{}/chat/completions"
    headers = {"api-key": "azure-test-key"}
    params = {"api-version": "2024-10-21"}

    async def served(deployment: str) -> str:
        async with http.post(
            route.format(deployment), json=request, headers=headers, params=params
        ) as response:
            assert response.status == 200
            return (await response.json())["model"]

    # Unmapped: named like a model, its snapshot; any other name, gpt-4o's.
    assert await served("gpt-4o-mini") == "gpt-4o-mini-2024-07-18"
    assert await served("prod-chat") == "gpt-4o-2024-08-06"
    mapping = {"deployments": {"prod-chat": "gpt-4.1-2025-04-14"}}
    async with http.post("/_control/deployments", json=mapping) as response:
        assert (response.status, await response.json()) == (200, {"ok": True})
    assert await served("prod-chat") == "gpt-4.1-2025-04-14"
    async with http.post("/_control/deployments", json={"deployments": ["prod-chat"]}) as response:
        assert await _refusal(response) == (
            "deployments must be an object of deployment -> model names, or null"
        )
    async with http.post("/_control/reset") as response:
        assert response.status == 200
    assert await served("prod-chat") == "gpt-4o-2024-08-06"


async def test_a_slow_stream_sends_its_first_after_events_at_once(http):
    # A minute between chunks, except among the first two events (the role
    # chunk and the first delta): both arrive, the stream is then closed.
    async with http.post(
        "/_control/fail",
        json={"provider": "openai", "kind": "slow_stream", "chunk_delay": 60, "after": 2},
    ) as response:
        assert response.status == 200
    request = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream": True,
    }
    headers = {"Authorization": "Bearer sk-test"}
    async with http.post("/v1/chat/completions", json=request, headers=headers) as response:
        assert response.status == 200
        events = [await asyncio.wait_for(response.content.readuntil(b"\n\n"), 10) for _ in "ab"]
    chunks = [json.loads(event.removeprefix(b"data: ")) for event in events]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Fake"]
