"""The HTTP/JSON surface (LIYA_HTTP_LISTEN_ADDRESS): a real server, a real
HTTP client, the fake providers. Routes come from the google.api.http
annotations; calls run the gRPC surface's guard, servicers and error mapping."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from google.protobuf import descriptor_pool
from test_tracing import (  # noqa: F401 - fixtures
    attributes_of,
    otel_env,
    receiver,
    stopped,
    traceparent,
)

from guide_bodies import BODIES
from helpers import auth, byok_openai, token
from liya_engine import cli
from liya_engine.app import SERVICE_NAMES
from liya_engine.http.routes import route_for

CONFIG = "/dashboard/account/config"
COMPLETIONS = "/v1/completions"
HELLO = json.dumps({"intent": "general_chat", "messages": [{"role": "user", "content": "hi"}]})
KEY = "sk-proj-" + "H" * 40 + "t9u8"

# DESIGN.md "Every caller": the surface routes each from its annotation.
DESIGN_ROUTES = {
    "/liya.engine.v1.ConfigService/UpdateConfig": ("PATCH", CONFIG),
    "/liya.engine.v1.ConfigService/GetMaskedConfig": ("GET", CONFIG),
    "/liya.engine.v1.ConfigService/VerifyConfig": ("POST", CONFIG + ":verify"),
    "/liya.engine.v1.ConfigService/ListAuditEntries": ("GET", CONFIG + "/audit-entries"),
    "/liya.engine.v1.InferenceService/Complete": ("POST", COMPLETIONS),
    "/liya.engine.v1.InferenceService/CompleteStream": ("POST", COMPLETIONS + ":stream"),
    "/liya.engine.v1.UsageService/ListDailyUsage": ("GET", "/dashboard/account/usage"),
}


class Http:
    """A client of one server's HTTP surface, for one tenant."""

    def __init__(self, session: aiohttp.ClientSession, port: int, tenant: str) -> None:
        self.session, self.base, self.tenant = session, f"http://127.0.0.1:{port}", tenant

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.tenant)}", **extra}

    async def call(self, verb: str, path: str, body: str | None = None, **headers: str):
        async with self.session.request(
            verb, self.base + path, data=body, headers=self.headers(**headers)
        ) as r:
            return r.status, r.headers, await r.text()


@pytest.fixture
async def http(servers):
    running, _ = await servers.start(LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0")
    async with aiohttp.ClientSession() as session:
        yield Http(session, running.http.port, "acme")


def error_of(text: str) -> dict:
    """The AIP-193 error, with its ErrorInfo (exactly one) pulled out."""
    error = json.loads(text)["error"]
    assert set(error) == {"code", "message", "status", "details"}
    infos = [d for d in error["details"] if d["@type"].endswith("/google.rpc.ErrorInfo")]
    assert len(infos) == 1, error
    assert infos[0]["domain"] == "liyaengine.ai"
    error["info"] = infos[0]
    return error


def detail(error: dict, name: str) -> dict:
    (found,) = [d for d in error["details"] if d["@type"] == f"type.googleapis.com/{name}"]
    return found


async def test_the_routes_are_the_annotations_of_every_served_method(servers):
    running, _ = await servers.start(LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0")
    routes = {r.method: (r.http_method, r.template) for r in running.http.routes}
    assert routes == DESIGN_ROUTES
    # Generic: every annotated method of every served service, nothing else.
    pool = descriptor_pool.Default()
    annotated = {
        f"/{service}/{m.name}"
        for service in SERVICE_NAMES
        for m in pool.FindServiceByName(service).methods
        if route_for(f"/{service}/{m.name}") is not None
    }
    assert annotated == set(routes)


async def test_off_unless_the_setting_is_set(servers):
    running, _ = await servers.start()
    assert running.http is None


async def test_the_guides_bodies_verbatim_then_the_masked_config(http):
    for name in ("openai", "anthropic", "azure", "model_config"):
        status, headers, text = await http.call("PATCH", CONFIG, BODIES[name])
        assert status == 200, text
        assert json.loads(text)["config"]["mode"] == "byok"
        assert len(headers["X-Request-Id"]) == 32
    status, _, text = await http.call("GET", CONFIG)
    config = json.loads(text)["config"]
    assert status == 200
    assert config["servingProvider"] == "azure"
    assert config["openai"]["apiKeyPreview"] == "sk-..."
    assert config["azure"]["endpoint"] == "https://your-resource.openai.azure.com"
    # The guide's mixed-case body: modelConfig (JSON name) and
    # cost_limit_usd_per_request (proto name) both landed.
    assert config["modelConfig"] == {
        "strategy": "cost-optimised",
        "overrides": {
            "resume_analysis": "gpt-4o",
            "general_chat": "gpt-4o-mini",
            "mock_interview": "claude-sonnet-4-6",
        },
        "costLimitUsdPerRequest": 0.05,
    }
    status, _, text = await http.call("PATCH", CONFIG, BODIES["managed"])
    assert json.loads(text)["config"]["mode"] == "managed"
    assert json.loads(text)["config"]["openai"]["configured"] is True


async def test_an_unknown_field_is_a_400_naming_it_and_nothing_is_written(http):
    await http.call("PATCH", CONFIG, BODIES["openai"])
    _, _, before = await http.call("GET", CONFIG)
    body = '{"modelConfig": {"strategy": "default", "cost_limit_per_request": 0.05}}'
    status, _, text = await http.call("PATCH", CONFIG, body)
    assert status == 400
    error = error_of(text)
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["info"]["reason"] == "INVALID_REQUEST"
    violations = detail(error, "google.rpc.BadRequest")["fieldViolations"]
    assert [v["field"] for v in violations] == ["modelConfig.cost_limit_per_request"]
    assert violations[0]["description"].startswith("unknown field")
    _, _, after = await http.call("GET", CONFIG)
    assert json.loads(after) == json.loads(before)


async def test_a_key_in_a_field_of_another_type_is_never_echoed(http):
    body = json.dumps({"model_config": {"cost_limit_usd_per_request": KEY}})
    status, _, text = await http.call("PATCH", CONFIG, body)
    assert status == 400
    assert "HHHHHH" not in text and "t9u8" not in text
    violations = detail(error_of(text), "google.rpc.BadRequest")["fieldViolations"]
    assert violations == [
        {
            "field": "model_config.cost_limit_usd_per_request",
            "description": "not a valid value for this field's type",
        }
    ]
    status, _, text = await http.call("PATCH", CONFIG, "{not json")
    assert status == 400
    assert detail(error_of(text), "google.rpc.BadRequest")["fieldViolations"][0] == {
        "field": "body",
        "description": "not valid JSON",
    }


async def test_without_a_token_401_and_the_aip_193_body(http):
    async with http.session.get(http.base + CONFIG) as r:
        status, text, request_id = r.status, await r.text(), r.headers["X-Request-Id"]
    assert status == 401
    error = error_of(text)
    assert (error["code"], error["status"]) == (401, "UNAUTHENTICATED")
    assert error["info"]["reason"] == "INVALID_TOKEN"
    assert error["info"]["metadata"]["request_id"] == request_id


async def test_a_stale_etag_is_409(http):
    _, _, text = await http.call("PATCH", CONFIG, BODIES["openai"])
    etag = json.loads(text)["config"]["etag"]
    await http.call("PATCH", CONFIG, BODIES["model_config"])
    stale = json.dumps({"etag": etag, "provider_config": {"mode": "managed"}})
    status, _, text = await http.call("PATCH", CONFIG, stale)
    error = error_of(text)
    assert (status, error["status"], error["info"]["reason"]) == (409, "ABORTED", "ETAG_MISMATCH")


async def test_query_parameters_in_both_spellings_and_unknown_ones_refused(http):
    for name in ("openai", "anthropic", "model_config"):
        await http.call("PATCH", CONFIG, BODIES[name])
    status, _, text = await http.call("GET", CONFIG + "/audit-entries?pageSize=2")
    page = json.loads(text)
    assert status == 200 and len(page["auditEntries"]) == 2
    status, _, text = await http.call(
        "GET", f"{CONFIG}/audit-entries?page_size=2&page_token={page['nextPageToken']}"
    )
    assert [e["id"] for e in json.loads(text)["auditEntries"]] == ["1"]
    status, _, text = await http.call("GET", CONFIG + "/audit-entries?pagesize=2")
    assert status == 400
    violations = detail(error_of(text), "google.rpc.BadRequest")["fieldViolations"]
    assert violations == [{"field": "pagesize", "description": "unknown field"}]
    status, _, text = await http.call("POST", COMPLETIONS + "?intent=general_chat", HELLO)
    assert status == 400 and error_of(text)["info"]["reason"] == "INVALID_REQUEST"


async def test_complete_and_a_rate_limit_with_retry_after(http, fake):
    await http.call("PATCH", CONFIG, json.dumps({"provider_config": {
        "mode": "byok", "openai": {"api_key": KEY}}}))  # fmt: skip
    status, _, text = await http.call("POST", COMPLETIONS, HELLO)
    reply = json.loads(text)
    assert status == 200
    assert reply["usage"]["provider"] == "openai" and int(reply["usage"]["totalTokens"]) > 0
    fake.fail("openai", "rate_limit", retry_after_ms=1200)
    status, headers, text = await http.call("POST", COMPLETIONS, HELLO)
    error = error_of(text)
    assert (status, error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["info"]["reason"] == "BYOK_QUOTA_EXCEEDED"
    assert detail(error, "google.rpc.RetryInfo")["retryDelay"] == "1.200s"
    assert headers["Retry-After"] == "2"  # whole seconds, rounded up
    fake.fail("openai", "auth")
    status, headers, text = await http.call("POST", COMPLETIONS, HELLO)
    assert (status, error_of(text)["info"]["reason"]) == (400, "BYOK_AUTH_FAILED")
    assert "Retry-After" not in headers
    assert "HHHHHH" not in text


async def test_complete_stream_as_server_sent_events(http, fake):
    await http.call("PATCH", CONFIG, byok_json())
    status, headers, text = await http.call("POST", COMPLETIONS + ":stream", HELLO)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    messages = [json.loads(e.removeprefix("data: ")) for e in events]
    assert "".join(m.get("delta", "") for m in messages) == "Fake answer to: hi"
    assert messages[-1]["finishReason"] == "stop"
    assert messages[-1]["usage"]["provider"] == "openai"
    assert all("usage" not in m for m in messages[:-1])


async def test_a_stream_failing_before_its_first_message_is_an_ordinary_error(http, fake):
    await http.call("PATCH", CONFIG, byok_json())
    fake.fail("openai", "not_found")
    status, headers, text = await http.call("POST", COMPLETIONS + ":stream", HELLO)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert error_of(text)["info"]["reason"] == "BYOK_MODEL_NOT_FOUND"


async def test_a_stream_failing_midway_ends_with_an_error_event(http, fake):
    await http.call("PATCH", CONFIG, byok_json())
    fake.fail("openai", "stream_error", after=2)
    status, _, text = await http.call("POST", COMPLETIONS + ":stream", HELLO)
    assert status == 200
    events = [e for e in text.split("\n\n") if e]
    assert events[0].startswith("data: ")
    last = events[-1].split("\n")
    assert last[0] == "event: error"
    error = error_of(last[1].removeprefix("data: "))
    assert (error["code"], error["info"]["reason"]) == (503, "PROVIDER_UNAVAILABLE")


async def test_a_body_over_the_limit_is_a_400_with_a_reason(servers):
    running, _ = await servers.start(
        LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0", LIYA_MAX_RECEIVE_MESSAGE_BYTES="4096"
    )
    message = {"role": "user", "content": "x" * 5000}
    big = json.dumps({"intent": "general_chat", "messages": [message]})
    async with aiohttp.ClientSession() as session:
        client = Http(session, running.http.port, "acme")
        status, _, text = await client.call("POST", COMPLETIONS, big)
    assert status == 400
    error = error_of(text)
    assert error["info"]["reason"] == "INVALID_REQUEST"
    (violation,) = detail(error, "google.rpc.BadRequest")["fieldViolations"]
    assert violation == {
        "field": "body",
        "description": "larger than 4096 bytes (LIYA_MAX_RECEIVE_MESSAGE_BYTES)",
    }


async def test_the_callers_timeout_header_bounds_the_call(http, fake):
    await http.call("PATCH", CONFIG, byok_json())
    fake.fail("openai", "slow", delay=5)
    started = asyncio.get_running_loop().time()
    status, _, text = await http.call("POST", COMPLETIONS, HELLO, **{"X-Server-Timeout": "0.5"})
    assert asyncio.get_running_loop().time() - started < 3
    error = error_of(text)
    assert (status, error["status"], error["info"]["reason"]) == (
        504,
        "DEADLINE_EXCEEDED",
        "DEADLINE_EXCEEDED",
    )
    status, _, text = await http.call("POST", COMPLETIONS, HELLO, **{"X-Server-Timeout": "soon"})
    assert status == 400
    assert detail(error_of(text), "google.rpc.BadRequest")["fieldViolations"][0]["field"] == (
        "X-Server-Timeout"
    )


async def test_unknown_paths_404_and_wrong_methods_405(http):
    status, _, text = await http.call("GET", "/v1/nothing-here")
    assert (status, json.loads(text)["error"]["status"]) == (404, "NOT_FOUND")
    status, headers, text = await http.call("DELETE", CONFIG)
    assert status == 405 and headers["Allow"] == "GET, PATCH"
    assert json.loads(text)["error"]["code"] == 405


async def test_http_calls_count_in_the_same_metrics(servers):
    running, _ = await servers.start(LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0")
    async with aiohttp.ClientSession() as session:
        client = Http(session, running.http.port, "acme")
        await client.call("GET", CONFIG)
        async with session.get(client.base + CONFIG) as r:
            assert r.status == 401
    registry = running.services.metrics.registry
    labels = {"grpc_type": "unary", "grpc_service": "liya.engine.v1.ConfigService"}
    labels["grpc_method"] = "GetMaskedConfig"
    ok = {**labels, "grpc_code": "OK", "reason": "OK"}
    assert registry.get_sample_value("grpc_server_handled_total", ok) == 1
    failed = {**labels, "grpc_code": "UNAUTHENTICATED", "reason": "INVALID_TOKEN"}
    assert registry.get_sample_value("grpc_server_handled_total", failed) == 1


async def test_a_server_span_continues_the_http_callers_traceparent(
    receiver,  # noqa: F811 - the fixture
    otel_env,  # noqa: F811 - the fixture
    servers,
):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    running, _ = await servers.start(LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0")
    trace_id, parent, metadata = traceparent(7)
    async with aiohttp.ClientSession() as session:
        client = Http(session, running.http.port, "acme")
        status, _, _ = await client.call("GET", CONFIG, **dict(metadata))
    assert status == 200
    await stopped(running)
    (span,) = receiver.in_trace(trace_id)
    assert span.parent_span_id.hex() == parent
    assert span.name == "liya.engine.v1.ConfigService/GetMaskedConfig"
    attributes = attributes_of(span.attributes)
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.route"] == CONFIG
    assert attributes["rpc.response.status_code"] == "OK"


async def test_graceful_stop_finishes_an_http_call_in_flight_then_closes(servers, fake):
    running, stubs = await servers.start(
        LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0", LIYA_SHUTDOWN_GRACE_SECONDS="10"
    )
    await stubs.config.UpdateConfig(byok_openai(KEY), metadata=auth("acme"))
    fake.fail("openai", "slow", delay=1)
    async with aiohttp.ClientSession() as session:
        client = Http(session, running.http.port, "acme")
        call = asyncio.create_task(client.call("POST", COMPLETIONS, HELLO))
        await fake.wait_for(lambda f: len(f.requests_for("openai")) == 1)
        await running.stop()
        status, _, text = await call
        assert status == 200, text
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.call("GET", CONFIG)


def byok_json() -> str:
    return json.dumps({"provider_config": {"mode": "byok", "openai": {"api_key": KEY}}})


async def test_http_calls_write_the_same_access_line(servers, caplog):
    running, _ = await servers.start(LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0", LIYA_ACCESS_LOG="true")
    caplog.set_level(logging.INFO, logger="liya_engine.access")
    async with aiohttp.ClientSession() as session:
        client = Http(session, running.http.port, "acme")
        await client.call("GET", CONFIG, **{"X-Request-Id": "http-access-0001"})
        await client.call("PATCH", CONFIG, '{"nope": 1}', **{"X-Request-Id": "http-access-0002"})
    records = [r for r in caplog.records if r.name == "liya_engine.access"]
    assert [(r.method, r.code, r.reason, r.tenant, r.request_id) for r in records] == [
        ("/liya.engine.v1.ConfigService/GetMaskedConfig", "OK", "-", "acme", "http-access-0001"),
        (
            "/liya.engine.v1.ConfigService/UpdateConfig",
            "INVALID_ARGUMENT",
            "INVALID_REQUEST",
            "acme",
            "http-access-0002",
        ),
    ]


def test_serve_http_listen_overrides_the_variable(monkeypatch):
    monkeypatch.setenv("LIYA_HTTP_LISTEN_ADDRESS", "127.0.0.1:1")
    args = cli.build_parser().parse_args(["serve", "--http-listen", "0.0.0.0:8081"])
    assert cli._settings(args).http_listen_address == "0.0.0.0:8081"


async def test_a_caller_that_goes_away_cancels_the_call_and_the_provider_request(servers, fake):
    running, _ = await servers.start(LIYA_HTTP_LISTEN_ADDRESS="127.0.0.1:0")
    metrics = running.services.metrics
    async with aiohttp.ClientSession() as session:
        client = Http(session, running.http.port, "acme")
        await client.call("PATCH", CONFIG, byok_json())
        fake.fail("openai", "slow", delay=5)
        call = asyncio.create_task(client.call("POST", COMPLETIONS, HELLO))
        await fake.wait_for(lambda f: len(f.requests_for("openai")) == 1)
        call.cancel()
        await fake.wait_for(lambda f: f.last_request.client_disconnected, 3)
        fake.fail("openai", "slow_stream", chunk_delay=1)
        async with session.post(
            client.base + COMPLETIONS + ":stream", data=HELLO, headers=client.headers()
        ) as r:
            assert (await r.content.readuntil(b"\n\n")).startswith(b"data: ")
            r.close()  # gone mid-stream
        await fake.wait_for(lambda f: f.last_request.client_disconnected, 3)
    for _ in range(50):  # the guard records the end once the handler is cancelled
        if metrics.calls_in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert metrics.calls_in_flight == 0
    registry = metrics.registry
    for method, kind in (("Complete", "unary"), ("CompleteStream", "server_stream")):
        labels = {
            "grpc_type": kind,
            "grpc_service": "liya.engine.v1.InferenceService",
            "grpc_method": method,
            "grpc_code": "CANCELLED",
            "reason": "CANCELLED",
        }
        assert registry.get_sample_value("grpc_server_handled_total", labels) == 1, method
