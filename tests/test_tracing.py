"""Traces: the real SDK and OTLP/HTTP exporter, exporting to an in-process receiver.

The receiver is an aiohttp server on a free loopback port that decodes each
``ExportTraceServiceRequest`` with the protobuf classes of opentelemetry-proto;
the server under test is the real one, configured only by ``OTEL_*`` variables.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GenAiProviderNameValues,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import (
    RPC_METHOD,
    RPC_RESPONSE_STATUS_CODE,
    RPC_SYSTEM_NAME,
    RpcSystemNameValues,
)
from test_layering import _PROBE

import liya_engine.tracing as tracing
from helpers import auth, details_of
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.errors import SettingsError
from liya_engine.logs import TEXT_FORMAT, ContextAndRedactionFilter, JsonFormatter
from liya_engine.tracing import provider as provider_spans
from liya_engine.tracing import setup

PROMPT_WORD = "Zanzibarquokka"  # echoed by the fake's answer, so it is in the answer too
OPENAI_KEY = "sk-proj-" + "Tq7" * 14 + "QZXW"
ANTHROPIC_KEY = "sk-ant-api03-" + "Hm4" * 14 + "KJVY"
AZURE_KEY = "9f8e7d6c5b4a" * 3
COMPLETE = "liya.engine.v1.InferenceService/Complete"
STREAM = "liya.engine.v1.InferenceService/CompleteStream"


@dataclass
class Receiver:
    """What the OTLP receiver was sent: decoded spans with their resource."""

    url: str
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def spans(self) -> list[tuple[dict, Span]]:
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = attributes_of(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    out.extend((resource, span) for span in scope_spans.spans)
        return out

    def in_trace(self, trace_id: str) -> list[Span]:
        return [span for _, span in self.spans() if span.trace_id.hex() == trace_id]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    # Asked for before ``servers``, so it still answers when they stop at teardown.
    async def export(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        found.requests.append(message)
        found.headers.append(dict(request.headers))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found = Receiver(f"http://127.0.0.1:{port}")
    yield found
    await runner.cleanup()


@pytest.fixture
def otel_env(monkeypatch):
    """No OTEL_* variable but those a test sets."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


def attributes_of(pairs) -> dict:
    return {kv.key: value_of(kv.value) for kv in pairs}


def value_of(value: AnyValue):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


def every_value(spans: list[Span]) -> list[str]:
    """Every attribute and event value and every name, as text."""
    out = []
    for span in spans:
        out.append(span.name)
        out.extend(str(v) for v in attributes_of(span.attributes).values())
        for event in span.events:
            out.append(event.name)
            out.extend(str(v) for v in attributes_of(event.attributes).values())
    return out


def traceparent(n: int) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    trace_id, span_id = f"{n:032x}".replace("0", "a", 8), f"{n:016x}".replace("0", "b", 4)
    return trace_id, span_id, (("traceparent", f"00-{trace_id}-{span_id}-01"),)


async def configure(stubs, tenant: str, fake, provider: str) -> str:
    """One BYOK provider for ``tenant``; returns the key's preview."""
    pc = cpb.ProviderConfig(mode="byok")
    if provider == "openai":
        pc.openai.CopyFrom(cpb.OpenAIConfig(api_key=OPENAI_KEY, default_model="gpt-4o"))
    elif provider == "anthropic":
        pc.anthropic.CopyFrom(
            cpb.AnthropicConfig(api_key=ANTHROPIC_KEY, default_model="claude-sonnet-4-6")
        )
    else:
        pc.azure.CopyFrom(
            cpb.AzureOpenAIConfig(
                api_key=AZURE_KEY,
                endpoint=fake.azure_endpoint,
                deployment_name="gpt-4o",
                api_version="2024-02-15-preview",
            )
        )
    reply = await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(provider_config=pc), metadata=auth(tenant)
    )
    return getattr(reply.config, provider).api_key_preview


def request(kind=ipb.CompleteRequest, text: str = f"Tell me about {PROMPT_WORD} please"):
    return kind(intent="general_chat", messages=[ipb.ChatMessage(role="user", content=text)])


async def traced_server(servers, receiver, otel_env):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    otel_env.setenv("OTEL_SERVICE_NAME", "liya-test")
    return await servers.start()


async def stopped(running) -> None:
    """Stop the server: shutting the tracer provider down exports every span."""
    await running.stop(0)
    assert tracing.TRACER is None


def one(spans: list[Span], name: str) -> Span:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, [span.name for span in spans]
    return named[0]


async def test_a_complete_yields_a_server_and_a_provider_span_in_the_callers_trace(
    receiver, otel_env, servers, fake
):
    running, stubs = await traced_server(servers, receiver, otel_env)
    previews = {}
    answers = {}
    usages = {}
    for n, provider in enumerate(("openai", "anthropic", "azure"), start=1):
        previews[provider] = await configure(stubs, f"t-{provider}", fake, provider)
        trace_id, caller_span, metadata = traceparent(n)
        reply = await stubs.inference.Complete(
            request(), metadata=auth(f"t-{provider}") + metadata, timeout=20
        )
        answers[provider], usages[provider] = reply.message.content, reply.usage
    await stopped(running)

    assert PROMPT_WORD in answers["openai"]  # so the text checks below mean something
    resources = {json.dumps(resource, sort_keys=True) for resource, _ in receiver.spans()}
    assert [json.loads(r)["service.name"] for r in resources] == ["liya-test"]
    semconv = {
        "openai": GenAiProviderNameValues.OPENAI.value,
        "anthropic": GenAiProviderNameValues.ANTHROPIC.value,
        "azure": GenAiProviderNameValues.AZURE_AI_OPENAI.value,
    }
    for n, provider in enumerate(("openai", "anthropic", "azure"), start=1):
        trace_id, caller_span, _ = traceparent(n)
        spans = receiver.in_trace(trace_id)
        assert len(spans) == 2
        server, client = one(spans, COMPLETE), one(spans, f"chat {usages[provider].model}")
        assert server.parent_span_id.hex() == caller_span
        assert client.parent_span_id == server.span_id
        assert (server.kind, client.kind) == (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT)
        assert attributes_of(server.attributes) == {
            RPC_SYSTEM_NAME: RpcSystemNameValues.GRPC.value,
            RPC_METHOD: COMPLETE,
            RPC_RESPONSE_STATUS_CODE: "OK",
        }
        usage = usages[provider]
        attributes = attributes_of(client.attributes)
        assert attributes == {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": semconv[provider],
            "gen_ai.request.model": usage.model,
            "gen_ai.response.model": attributes["gen_ai.response.model"],
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "liya.intent": "general_chat",
            "liya.mode": usage.mode,
            "liya.cost_usd": pytest.approx(usage.cost_usd),
        }
        assert usage.input_tokens > 0 and usage.output_tokens > 0 and usage.cost_usd > 0
        assert attributes["gen_ai.response.model"].startswith(usage.model)
        assert provider_spans.GEN_AI_PROVIDERS[usage.provider] == semconv[provider]
        assert client.status.code == client.status.STATUS_CODE_UNSET
        texts = every_value(spans)
        for secret in (PROMPT_WORD, answers[provider], *previews.values()):
            assert not [t for t in texts if secret in t], secret
        for key in (OPENAI_KEY, ANTHROPIC_KEY, AZURE_KEY):
            assert not [t for t in texts if key[-6:] in t]
    # The trace context went to nobody upstream.
    assert len(fake.requests) == 3
    for recorded in fake.requests:
        headers = {name.lower() for name in recorded.headers}
        assert not headers & {"traceparent", "tracestate", "baggage"}, (
            recorded.provider,
            recorded.headers,
        )


async def test_a_stream_has_the_usage_of_its_last_piece(receiver, otel_env, servers, fake):
    running, stubs = await traced_server(servers, receiver, otel_env)
    await configure(stubs, "t", fake, "openai")
    trace_id, caller_span, metadata = traceparent(7)
    pieces = [
        piece
        async for piece in stubs.inference.CompleteStream(
            request(ipb.CompleteStreamRequest), metadata=auth("t") + metadata, timeout=20
        )
    ]
    await stopped(running)
    usage = pieces[-1].usage
    spans = receiver.in_trace(trace_id)
    server, client = one(spans, STREAM), one(spans, "chat gpt-4o")
    assert server.parent_span_id.hex() == caller_span
    assert client.parent_span_id == server.span_id
    attributes = attributes_of(client.attributes)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    assert usage.output_tokens > 1
    assert not [t for t in every_value(spans) if PROMPT_WORD in t]


async def test_a_failing_call_has_its_reason_as_error_type_and_nothing_secret(
    receiver, otel_env, servers, fake, caplog
):
    running, stubs = await traced_server(servers, receiver, otel_env)
    preview = await configure(stubs, "t", fake, "openai")
    fake.fail("openai", "auth")  # 401 echoing the masked key, as OpenAI does
    trace_id, _, metadata = traceparent(9)
    with caplog.at_level(logging.INFO, logger="liya_engine.rpc"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stubs.inference.Complete(request(), metadata=auth("t") + metadata, timeout=20)
    details = details_of(err.value)
    assert details.reason == "BYOK_AUTH_FAILED"
    await stopped(running)

    spans = receiver.in_trace(trace_id)
    server, client = one(spans, COMPLETE), one(spans, "chat gpt-4o")
    assert client.parent_span_id == server.span_id
    assert attributes_of(client.attributes)["error.type"] == "BYOK_AUTH_FAILED"
    assert client.status.code == client.status.STATUS_CODE_ERROR
    server_attributes = attributes_of(server.attributes)
    assert server_attributes["error.type"] == "BYOK_AUTH_FAILED"
    assert server_attributes == {
        RPC_SYSTEM_NAME: "grpc",
        RPC_METHOD: COMPLETE,
        RPC_RESPONSE_STATUS_CODE: details.code.name,
        "error.type": "BYOK_AUTH_FAILED",
    }
    assert details.code.name == "FAILED_PRECONDITION"
    # A caller's error, handled as it should be: not a server span in error.
    assert server.status.code == server.status.STATUS_CODE_UNSET
    # The failure is recorded as an exception event: its type and the message
    # the caller got, no stack trace.
    (event,) = client.events
    assert attributes_of(event.attributes) == {
        "exception.type": "liya_engine.errors.ProviderAuthFailed",
        "exception.message": details.message,
    }
    texts = every_value(spans)
    for secret in (PROMPT_WORD, preview, OPENAI_KEY[-6:], OPENAI_KEY[8:14]):
        assert not [t for t in texts if secret in t], secret
    # The log line of the traced call carries its trace id.
    (line,) = [r for r in caplog.records if "BYOK_AUTH_FAILED" in r.getMessage()]
    assert (line.trace_id, line.span_id) == (trace_id, server.span_id.hex())
    # ... and both formats show it.
    ContextAndRedactionFilter().filter(line)
    text = logging.Formatter(TEXT_FORMAT).format(line)
    assert f" trace={trace_id}] " in text
    entry = json.loads(JsonFormatter().format(line))
    assert (entry["trace_id"], entry["span_id"]) == (trace_id, server.span_id.hex())


async def test_without_otel_variables_nothing_is_traced(receiver, otel_env, servers, fake):
    running, stubs = await servers.start()
    assert running.tracing is None and tracing.TRACER is None
    # No tracer provider installed anywhere: the API's global one is its proxy.
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    await configure(stubs, "t", fake, "anthropic")
    _, _, metadata = traceparent(11)
    await stubs.inference.Complete(request(), metadata=auth("t") + metadata, timeout=20)
    # The caller's context is not even read, so the Anthropic SDK has none to send.
    assert "traceparent" not in {name.lower() for name in fake.last_request.headers}
    assert provider_spans.start("openai", "gpt-4o", intent="x", mode="byok") is None
    await running.stop(0)
    assert receiver.requests == []


@pytest.mark.parametrize(
    "variables",
    [
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_TRACES_EXPORTER": "none"},
    ],
)
async def test_the_standard_off_switches_win_over_an_endpoint(
    receiver, otel_env, servers, fake, variables
):
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    for name, value in variables.items():
        otel_env.setenv(name, value)
    running, stubs = await servers.start()
    assert running.tracing is None
    await configure(stubs, "t", fake, "openai")
    await stubs.inference.Complete(request(), metadata=auth("t"), timeout=20)
    await running.stop(0)
    assert receiver.requests == []


async def test_the_traces_endpoint_variable_alone_turns_tracing_on(
    receiver, otel_env, servers, fake
):
    otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/traces")
    running, stubs = await servers.start()
    await configure(stubs, "t", fake, "openai")
    trace_id, _, metadata = traceparent(13)
    await stubs.inference.Complete(request(), metadata=auth("t") + metadata, timeout=20)
    await stopped(running)
    assert [span.name for span in receiver.in_trace(trace_id)] == ["chat gpt-4o", COMPLETE]
    # No OTEL_SERVICE_NAME: the service names itself.
    assert {resource["service.name"] for resource, _ in receiver.spans()} == {"liya-engine"}


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_which_variables_turn_tracing_on(environ, on):
    assert setup.wanted(environ) is on


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER: jaeger is not available"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: traces are exported over http/protobuf only",
        ),
    ],
)
def test_an_exporter_the_service_does_not_ship_stops_the_start(environ, message):
    with pytest.raises(SettingsError) as err:
        setup.start(environ)
    assert str(err.value).startswith(message)
    assert tracing.TRACER is None


def test_the_domain_loads_the_opentelemetry_api_only():
    forbidden = ["opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "requests"]
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, "liya_engine.inference.service", json.dumps(forbidden)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout) == []


async def test_stop_does_not_block_the_loop_while_spans_are_flushed(
    receiver, otel_env, servers, fake
):
    # The receiver runs on this loop: a flush that blocked it would time out.
    otel_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # nothing exported before the stop
    running, stubs = await traced_server(servers, receiver, otel_env)
    await configure(stubs, "t", fake, "openai")
    started = asyncio.get_running_loop().time()
    await stopped(running)
    assert asyncio.get_running_loop().time() - started < 5
    assert [span.name for _, span in receiver.spans()] == [
        "liya.engine.v1.ConfigService/UpdateConfig"
    ]


def test_the_hashed_resource_is_the_sdks_resource_hashed_once():
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": "liya-test", "service.version": "1.2.3"})
    hashed = setup.HashedResource.of(resource)
    assert hashed == resource and resource == hashed
    assert hash(hashed) == hash(resource)
    assert dict(hashed.attributes) == dict(resource.attributes)
    assert hashed.schema_url == resource.schema_url
    # The encoder groups spans by resource: the SDK's and the hashed one are one group.
    assert {resource: 1, hashed: 2} == {resource: 2}
