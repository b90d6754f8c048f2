"""The Python client (``liya_engine_client``) against the real server: the
guide's bodies as dicts, reads, audit pages, completions and streams, every
error reason of the contract as a typed exception, and the retry policy.

The sync client runs in a worker thread (``asyncio.to_thread``) because the
server under test runs on the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import liya_engine_client as lc
from guide_bodies import ANTHROPIC_BODY, AZURE_BODY, MODEL_CONFIG_BODY, OPENAI_BODY
from helpers import token
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import config_service_pb2_grpc as cpb_grpc
from liya.engine.v1 import inference_service_pb2 as ipb
from liya.engine.v1 import inference_service_pb2_grpc as ipb_grpc
from liya.engine.v1.error_reason_pb2 import ErrorReason
from liya_engine.fakes import bind_refused_port

OPENAI_KEY = "sk-" + "c" * 44 + "OPEN"
AZURE_KEY = "0123456789abcdef" * 2
MESSAGES = [
    ("system", "You are helpful."),
    {"role": "user", "content": "Tell me about interviews"},
]

# Every reason of the contract's error table, which ErrorReason lists.
CONTRACT_REASONS = {
    "BYOK_AUTH_FAILED": lc.ByokAuthFailed,
    "BYOK_QUOTA_EXCEEDED": lc.ByokQuotaExceeded,
    "BYOK_MODEL_NOT_FOUND": lc.ByokModelNotFound,
    "BYOK_ENDPOINT_UNREACHABLE": lc.ByokEndpointUnreachable,
    "PROVIDER_UNAVAILABLE": lc.ProviderUnavailable,
    "PROVIDER_REJECTED_REQUEST": lc.ProviderRejectedRequest,
    "COST_LIMIT_EXCEEDED": lc.CostLimitExceeded,
    "BYOK_NOT_CONFIGURED": lc.ByokNotConfigured,
    "INVALID_CONFIG": lc.InvalidConfig,
    "INVALID_REQUEST": lc.InvalidRequest,
    "ETAG_MISMATCH": lc.EtagMismatch,
    "INVALID_TOKEN": lc.InvalidToken,
    "KEY_DECRYPTION_FAILED": lc.KeyDecryptionFailed,
    "STORAGE_UNAVAILABLE": lc.StorageUnavailable,
    "BUDGET_EXCEEDED": lc.BudgetExceeded,
    "CONCURRENCY_LIMIT_EXCEEDED": lc.ConcurrencyLimitExceeded,
    "SERVER_OVERLOADED": lc.ServerOverloaded,
    "DEADLINE_EXCEEDED": lc.DeadlineExceeded,
    "INTERNAL": lc.Internal,
}

# The service's request ids: 16 random bytes in hex.
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


class Threaded:
    """The sync client behind awaitable methods: each call runs in a worker thread."""

    def __init__(self, client: lc.LiyaClient) -> None:
        self.sync = client

    def __getattr__(self, name: str) -> Callable:
        method = getattr(self.sync, name)

        async def call(*args, **kwargs):
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


Client = lc.AsyncLiyaClient | Threaded


async def stream(client: Client, *args, **kwargs) -> list[ipb.CompleteStreamResponse]:
    """All pieces of a complete_stream call, through either client."""
    if isinstance(client, Threaded):
        return await asyncio.to_thread(lambda: list(client.sync.complete_stream(*args, **kwargs)))
    return [piece async for piece in client.complete_stream(*args, **kwargs)]


async def all_entries(client: Client, page_size: int) -> list[cpb.AuditEntry]:
    """Every audit entry through the client's page iterator."""
    if isinstance(client, Threaded):
        return await asyncio.to_thread(lambda: list(client.sync.iter_audit_entries(page_size)))
    return [e async for e in client.iter_audit_entries(page_size)]


async def all_pages(client: Client, page_size: int) -> list[cpb.ListAuditEntriesResponse]:
    if isinstance(client, Threaded):
        return await asyncio.to_thread(lambda: list(client.sync.iter_audit_pages(page_size)))
    return [p async for p in client.iter_audit_pages(page_size)]


@pytest.fixture(params=["async", "sync"])
async def connect(request, servers) -> AsyncIterator[Callable[..., Client]]:
    """Makes clients of one kind (async, or sync in a thread) to the last started server."""
    made: list[Client] = []

    def make(tok: lc.TokenProvider | None = None, *, tenant: str = "t", **kwargs) -> Client:
        target = f"127.0.0.1:{servers.running[-1][0].port}"
        tok = token(tenant, "alice@example") if tok is None else tok
        if request.param == "async":
            client: Client = lc.AsyncLiyaClient(target, token=tok, **kwargs)
        else:
            client = Threaded(lc.LiyaClient(target, token=tok, **kwargs))
        made.append(client)
        return client

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for client in made:
        if isinstance(client, Threaded):
            client.sync.close()
        else:
            await client.close()


async def configure_openai(client: Client, **model_config) -> cpb.UpdateConfigResponse:
    body: dict = {
        "provider_config": {
            "mode": "byok",
            "openai": {"api_key": OPENAI_KEY, "default_model": "gpt-4o"},
        }
    }
    if model_config:
        body["model_config"] = model_config
    return await client.update_config(body)


async def raises(cls: type[lc.LiyaError], coro) -> lc.LiyaError:
    with pytest.raises(lc.LiyaError) as caught:
        await coro
    err = caught.value
    assert type(err) is cls, repr(err)
    assert not isinstance(err, grpc.RpcError)
    return err


# ------------------------------------------------------------------ happy path


async def test_client_walks_the_guide(servers, fake, connect):
    await servers.start()
    client = connect()

    first = await client.update_config(json.loads(OPENAI_BODY))
    assert first.config.serving_provider == "openai"
    assert first.config.openai.api_key_preview == "sk-..."
    assert list(first.warnings) == [
        "provider_config.openai.api_key looks like a placeholder, not a real key: calls fail "
        "with BYOK_AUTH_FAILED until a real key is set"
    ]
    await client.update_config(json.loads(ANTHROPIC_BODY))
    azure = json.loads(AZURE_BODY)
    azure["provider_config"]["azure"]["endpoint"] = fake.azure_endpoint
    await client.update_config(azure)
    # The camelCase body of the guide's step 4, as a dict and as its JSON text.
    await client.update_config(json.loads(MODEL_CONFIG_BODY), validate_only=True)
    updated = await client.update_config(MODEL_CONFIG_BODY)

    cfg = await client.get_masked_config()
    assert cfg == updated.config
    assert (cfg.mode, cfg.serving_provider) == ("byok", "azure")
    assert cfg.openai.configured and cfg.anthropic.configured and cfg.azure.configured
    assert cfg.azure.endpoint == fake.azure_endpoint
    assert cfg.model_config.strategy == "cost-optimised"
    assert dict(cfg.model_config.overrides)["mock_interview"] == "claude-sonnet-4-6"
    assert cfg.etag == "v4"  # four writes; the validate_only one wrote nothing
    written = cfg.update_time.ToDatetime(tzinfo=UTC)
    assert datetime.now(UTC) - timedelta(minutes=1) < written <= datetime.now(UTC)
    assert "your-azure-key" not in json_format.MessageToJson(cfg)

    err = await raises(
        lc.EtagMismatch,
        client.update_config({"model_config": {"strategy": "default"}}, etag=first.config.etag),
    )
    assert err.code == grpc.StatusCode.ABORTED
    assert (await client.get_masked_config()).etag == cfg.etag  # nothing written

    page = await client.list_audit_entries(page_size=2)
    assert len(page.audit_entries) == 2 and page.next_page_token
    entries = await all_entries(client, page_size=1)
    assert len(entries) == 4  # four writes; validate_only and the refused one leave none
    assert [e.id for e in entries[:2]] == [e.id for e in page.audit_entries]
    assert {e.actor for e in entries} == {"alice@example"}
    assert "provider_config.openai.api_key" in entries[-1].changed_paths
    assert (entries[-1].mode_before, entries[-1].mode_after) == ("managed", "byok")
    assert "your-azure-key" not in repr(entries)
    pages = await all_pages(client, page_size=3)
    assert [len(p.audit_entries) for p in pages] == [3, 1]

    reply = await client.complete("general_chat", MESSAGES, max_tokens=50, temperature=0.2)
    assert (reply.usage.provider, reply.usage.model, reply.usage.mode) == (
        "azure",
        "gpt-4o-mini",
        "byok",
    )
    assert reply.message.role == "assistant" and reply.finish_reason == "stop"
    assert REQUEST_ID.fullmatch(reply.usage.request_id)
    assert fake.last_request.body["temperature"] == pytest.approx(0.2)
    reply = await client.complete("mock_interview", MESSAGES)
    assert (reply.usage.provider, reply.usage.model) == ("anthropic", "claude-sonnet-4-6")

    pieces = await stream(client, "mock_interview", MESSAGES)
    assert len(pieces) >= 3
    assert not any(p.HasField("usage") for p in pieces[:-1])
    assert pieces[-1].usage.provider == "anthropic" and pieces[-1].finish_reason == "stop"
    assert "".join(p.delta for p in pieces) == reply.message.content

    verified = await client.verify_config("resume_analysis")
    assert (verified.provider, verified.model, verified.mode) == ("azure", "gpt-4o", "byok")
    verified = await client.verify_config()
    assert verified.provider == "azure"


async def test_token_callable_is_asked_on_every_call(servers, fake, connect):
    await servers.start()
    asked = 0

    def fresh() -> str:
        nonlocal asked
        asked += 1
        return token("t", f"caller-{asked}")

    async def fresh_async() -> str:
        return fresh()

    client = connect(fresh_async if connect.kind == "async" else fresh)
    await configure_openai(client)
    await client.update_config({"model_config": {"strategy": "default"}})
    await client.get_masked_config()
    assert asked == 3
    actors = [e.actor for e in await all_entries(client, page_size=10)]
    assert actors == ["caller-2", "caller-1"]  # each write carried its own fresh token


async def test_closed_client_refuses_calls(servers, connect):
    await servers.start()
    client = connect()
    if isinstance(client, Threaded):
        client.sync.close()
    else:
        await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_masked_config()


# ------------------------------------------------- every reason, round-tripped


async def test_invalid_token(servers, connect):
    await servers.start()
    err = await raises(lc.InvalidToken, connect("not-a-jwt").get_masked_config())
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert (err.reason, err.message) == ("INVALID_TOKEN", "token is malformed")
    assert REQUEST_ID.fullmatch(err.request_id)


async def test_invalid_config_carries_field_violations(servers, connect):
    await servers.start()
    client = connect()
    err = await raises(
        lc.InvalidConfig, client.update_config({"provider_config": {"mode": "wizard"}})
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.violations] == ["provider_config.mode"]
    assert isinstance(err, lc.InvalidArgument)


async def test_invalid_request_carries_field_violations(servers, fake, connect):
    await servers.start()
    client = connect()
    await configure_openai(client)
    err = await raises(lc.InvalidRequest, client.complete("astrology", MESSAGES))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.violations] == ["intent"]
    err = await raises(lc.InvalidRequest, client.list_audit_entries(page_token="garbage"))
    assert err.violations == [
        lc.FieldViolation(
            "page_token", "must be a next_page_token from an earlier ListAuditEntries call"
        )
    ]
    assert not fake.requests


async def test_byok_not_configured(servers, fake, connect):
    await servers.start()
    err = await raises(
        lc.ByokNotConfigured, connect(tenant="fresh").complete("general_chat", MESSAGES)
    )
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.metadata == {"mode": "managed", "request_id": err.request_id}


async def test_cost_limit_exceeded_tells_what_fits(servers, fake, connect):
    await servers.start()
    client = connect()
    await configure_openai(client, cost_limit_usd_per_request=0.001)
    err = await raises(
        lc.CostLimitExceeded, client.complete("general_chat", MESSAGES, max_tokens=4000)
    )
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.limit_usd == pytest.approx(0.001)
    assert err.estimate_usd > err.limit_usd
    assert 0 < err.max_tokens_that_fit < 100
    assert not fake.requests
    ok = await client.complete("general_chat", MESSAGES, max_tokens=err.max_tokens_that_fit)
    assert ok.usage.cost_usd <= 0.001


@pytest.mark.parametrize(
    ("kind", "cls", "code"),
    [
        ("auth", lc.ByokAuthFailed, grpc.StatusCode.FAILED_PRECONDITION),
        ("rate_limit", lc.ByokQuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("not_found", lc.ByokModelNotFound, grpc.StatusCode.FAILED_PRECONDITION),
        ("server_error", lc.ProviderUnavailable, grpc.StatusCode.UNAVAILABLE),
        ("bad_request", lc.ProviderRejectedRequest, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_provider_failures_become_typed_errors(servers, fake, connect, kind, cls, code):
    await servers.start()
    client = connect()
    await configure_openai(client)
    fake.fail("openai", kind, times=None, retry_after=7)
    err = await raises(cls, client.complete("general_chat", MESSAGES))
    assert (err.code, err.reason) == (code, cls.REASON)
    assert isinstance(err, lc.ProviderError)
    assert (err.provider, err.model) == ("openai", "gpt-4o")
    assert REQUEST_ID.fullmatch(err.request_id)
    assert OPENAI_KEY[-8:] not in str(err) + repr(err) + repr(err.metadata)
    # Only a rate limit carries the provider's wait (RetryInfo) and a QuotaFailure;
    # the other failures had the same retry-after header and carry neither.
    limited = kind == "rate_limit"
    assert err.retry_delay == (pytest.approx(7) if limited else None)
    assert err.quota_violations == (
        [lc.QuotaViolation("provider:openai", err.message)] if limited else []
    )
    # VerifyConfig answers with the same reasons.
    await raises(cls, client.verify_config())


async def test_quota_exhausted_has_no_retry_delay(servers, fake, connect):
    await servers.start()
    client = connect()
    await configure_openai(client)
    fake.fail("openai", "quota", times=None)
    err = await raises(lc.ByokQuotaExceeded, client.complete("general_chat", MESSAGES))
    assert err.retry_delay is None  # waiting does not fix a spent quota


async def test_model_no_provider_serves(servers, fake, connect):
    await servers.start()
    client = connect()
    await configure_openai(client, overrides={"mock_interview": "claude-sonnet-4-6"})
    err = await raises(lc.ByokModelNotFound, client.complete("mock_interview", MESSAGES))
    assert "claude-sonnet-4-6" in err.message


async def test_endpoint_unreachable(servers, fake, connect):
    await servers.start()
    client = connect()
    await client.update_config(
        {
            "provider_config": {
                "mode": "byok",
                "azure": {
                    "api_key": AZURE_KEY,
                    "endpoint": f"http://127.0.0.1:{bind_refused_port()}",
                    "deployment_name": "gpt-4o",
                    "api_version": "2024-02-15-preview",
                },
            }
        }
    )
    err = await raises(lc.ByokEndpointUnreachable, client.complete("general_chat", MESSAGES))
    assert (err.code, err.provider) == (grpc.StatusCode.UNAVAILABLE, "azure")


async def test_key_decryption_failed(servers, fake, connect):
    running, _ = await servers.start()
    client = connect()
    await configure_openai(client)
    await client.complete("general_chat", MESSAGES)  # warm: the key sits decrypted in the cache

    path = servers.db_url.split(":///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        (blob,) = db.execute(
            "SELECT api_key_ciphertext FROM provider_credentials "
            "WHERE tenant_id = 't' AND provider = 'openai'"
        ).fetchone()
        tampered = bytearray(blob)
        tampered[-1] ^= 0x01  # one bit of the GCM tag
        db.execute(
            "UPDATE provider_credentials SET api_key_ciphertext = ? "
            "WHERE tenant_id = 't' AND provider = 'openai'",
            (bytes(tampered),),
        )
    running.services.tenants.clear()

    err = await raises(lc.KeyDecryptionFailed, client.complete("general_chat", MESSAGES))
    assert err.code == grpc.StatusCode.INTERNAL
    assert err.metadata == {
        "provider": "openai",
        "master_key_id": "test-1",
        "request_id": err.request_id,
    }
    assert len(fake.requests) == 1  # only the warm-up call reached the provider


async def test_caller_deadline_is_deadline_exceeded(servers, fake, connect):
    await servers.start()
    client = connect()
    await configure_openai(client)
    fake.fail("openai", "slow", delay=5)
    started = time.monotonic()
    err = await raises(lc.DeadlineExceeded, client.complete("general_chat", MESSAGES, timeout=0.7))
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 3


async def test_stream_cut_mid_way_raises_typed_error(servers, fake, connect):
    await servers.start()
    client = connect()
    await configure_openai(client)
    fake.fail("openai", "stream_cut", after=3)
    # A connection that drops once the answer has started is the provider
    # failing mid-answer (PROVIDER_UNAVAILABLE), not an unreachable endpoint.
    err = await raises(lc.ProviderUnavailable, stream(client, "general_chat", MESSAGES))
    assert (err.code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
    assert (err.provider, err.model, err.upstream_status) == ("openai", "gpt-4o", None)
    assert "dropped in the middle of the answer" in err.message


def test_every_contract_reason_has_its_class():
    assert set(CONTRACT_REASONS) == set(ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    for reason, cls in CONTRACT_REASONS.items():
        assert cls.REASON == reason
        assert issubclass(cls, lc.LiyaError)
    assert len(set(CONTRACT_REASONS.values())) == len(CONTRACT_REASONS)


# ------------------------------------------------------------ error decoding


class FakeCall(grpc.RpcError):
    """A finished call as gRPC reports it: code, details, trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers=()) -> None:
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return self._trailers


def rich(code: int, message: str, reason: str, domain: str = lc.errors.DOMAIN) -> FakeCall:
    info = error_details_pb2.ErrorInfo(
        reason=reason, domain=domain, metadata={"request_id": "req-12345678"}
    )
    packed = status_pb2.Status(code=code, message=message)
    packed.details.add().Pack(info)
    st = rpc_status.to_status(packed)
    return FakeCall(st.code, st.details, st.trailing_metadata)


@pytest.mark.parametrize(
    ("call", "cls", "reason"),
    [
        (rich(code_pb2.INTERNAL, "boom", "INTERNAL"), lc.Internal, "INTERNAL"),
        (
            rich(code_pb2.DEADLINE_EXCEEDED, "late", "DEADLINE_EXCEEDED"),
            lc.DeadlineExceeded,
            "DEADLINE_EXCEEDED",
        ),
        (rich(code_pb2.UNAVAILABLE, "new", "SOMETHING_NEW"), lc.Unavailable, "SOMETHING_NEW"),
        # Another domain's reason is not ours: classified by code alone.
        (
            rich(code_pb2.UNAVAILABLE, "proxy", "BYOK_AUTH_FAILED", "proxy.example"),
            lc.Unavailable,
            "",
        ),
        (FakeCall(grpc.StatusCode.UNAVAILABLE, "connection refused"), lc.Unavailable, ""),
        (FakeCall(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), lc.DeadlineExceeded, ""),
        (FakeCall(grpc.StatusCode.UNKNOWN, "?"), lc.Internal, ""),
        (FakeCall(grpc.StatusCode.CANCELLED, "cancelled"), lc.LiyaError, ""),
    ],
)
def test_error_from_rpc_fallbacks(call, cls, reason):
    err = lc.error_from_rpc(call)
    assert type(err) is cls
    assert err.reason == reason
    assert err.code == call.code()
    assert err.message == call.details()


def test_error_from_rpc_ignores_a_status_that_contradicts_the_call():
    inner = rich(code_pb2.FAILED_PRECONDITION, "auth", "BYOK_AUTH_FAILED")
    call = FakeCall(grpc.StatusCode.UNAVAILABLE, "other", inner.trailing_metadata())
    err = lc.error_from_rpc(call)
    assert type(err) is lc.Unavailable and err.message == "other"


def test_error_from_rpc_takes_request_id_from_the_trailer():
    call = FakeCall(grpc.StatusCode.INTERNAL, "x", [("x-request-id", "abcdefgh1234")])
    assert lc.error_from_rpc(call).request_id == "abcdefgh1234"


# ----------------------------------------------------- channel and retry policy


def test_channel_options_match_the_server_keepalive():
    options = dict(lc.channel_options())
    # The server answers pings more often than every 10s with GOAWAY too_many_pings.
    assert options["grpc.keepalive_time_ms"] == lc.KEEPALIVE_TIME_MS == 30_000
    assert options["grpc.keepalive_time_ms"] >= 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.enable_retries"] == 1
    config = json.loads(options["grpc.service_config"])
    retried = {n["method"] for mc in config["methodConfig"] for n in mc["name"]}
    assert retried == {"GetMaskedConfig", "ListAuditEntries", "VerifyConfig", "ListDailyUsage"}
    assert dict(lc.channel_options({"grpc.enable_retries": 0}))["grpc.enable_retries"] == 0


class Calls:
    """What the flaky test server saw."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self.tokens: list[str] = []
        self.time_left: list[float | None] = []

    async def enter(self, name: str, context: grpc.aio.ServicerContext) -> None:
        self.count[name] = self.count.get(name, 0) + 1
        self.tokens.append(dict(context.invocation_metadata() or ()).get("authorization", ""))
        self.time_left.append(context.time_remaining())
        if self.count[name] == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")


class FlakyConfig(cpb_grpc.ConfigServiceServicer):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def UpdateConfig(self, request, context):
        await self.calls.enter("UpdateConfig", context)
        return cpb.UpdateConfigResponse()

    async def GetMaskedConfig(self, request, context):
        await self.calls.enter("GetMaskedConfig", context)
        return cpb.GetMaskedConfigResponse(config=cpb.MaskedConfig(mode="byok"))

    async def VerifyConfig(self, request, context):
        await self.calls.enter("VerifyConfig", context)
        return cpb.VerifyConfigResponse(provider="openai")

    async def ListAuditEntries(self, request, context):
        await self.calls.enter("ListAuditEntries", context)
        return cpb.ListAuditEntriesResponse()


class FlakyInference(ipb_grpc.InferenceServiceServicer):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def Complete(self, request, context):
        await self.calls.enter("Complete", context)
        return ipb.CompleteResponse()

    async def CompleteStream(self, request, context):
        await self.calls.enter("CompleteStream", context)
        yield ipb.CompleteStreamResponse(delta="hi")


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[int, Calls]]:
    """A server whose every method fails once with UNAVAILABLE, then answers."""
    calls = Calls()
    server = grpc.aio.server()
    cpb_grpc.add_ConfigServiceServicer_to_server(FlakyConfig(calls), server)
    ipb_grpc.add_InferenceServiceServicer_to_server(FlakyInference(calls), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port, calls
    await server.stop(0)


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_retries_reads_and_verify_but_never_writes_or_completions(flaky, kind):
    port, calls = flaky
    issued = 0

    def fresh() -> str:
        nonlocal issued
        issued += 1
        return f"tok-{issued}"

    target = f"127.0.0.1:{port}"
    if kind == "async":
        client: Client = lc.AsyncLiyaClient(target, token=fresh, default_timeout=5)
    else:
        client = Threaded(lc.LiyaClient(target, token=fresh, default_timeout=5))
    try:
        assert (await client.get_masked_config()).mode == "byok"
        assert (await client.verify_config()).provider == "openai"
        await client.list_audit_entries()
        assert calls.count == {"GetMaskedConfig": 2, "VerifyConfig": 2, "ListAuditEntries": 2}

        for coro in (
            client.complete("general_chat", MESSAGES),
            client.update_config({"provider_config": {"mode": "byok"}}),
            stream(client, "general_chat", MESSAGES),
        ):
            err = await raises(lc.Unavailable, coro)
            assert (err.code, err.reason, err.message) == (
                grpc.StatusCode.UNAVAILABLE,
                "",
                "try again",
            )
        assert calls.count["Complete"] == calls.count["UpdateConfig"] == 1
        assert calls.count["CompleteStream"] == 1
    finally:
        if isinstance(client, Threaded):
            client.sync.close()
        else:
            await client.close()

    # One token per client call, reused by gRPC's own retry of that call.
    assert calls.tokens[:2] == ["Bearer tok-1", "Bearer tok-1"]
    assert calls.tokens[2:4] == ["Bearer tok-2", "Bearer tok-2"]
    assert issued == 6
    # Every call carried the default deadline.
    assert all(t is not None and 3 < t < 5.1 for t in calls.time_left), calls.time_left


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_no_server_is_unavailable(kind):
    target = f"127.0.0.1:{bind_refused_port()}"
    if kind == "async":
        async with lc.AsyncLiyaClient(target, token="t0ken-value", default_timeout=5) as client:
            err = await raises(lc.Unavailable, client.get_masked_config())
    else:
        with lc.LiyaClient(target, token="t0ken-value", default_timeout=5) as sync:
            err = await raises(lc.Unavailable, Threaded(sync).complete("general_chat", MESSAGES))
    assert err.code == grpc.StatusCode.UNAVAILABLE and not err.request_id


async def test_async_client_built_outside_the_loop_works_in_it(servers):
    await servers.start()
    target = f"127.0.0.1:{servers.running[-1][0].port}"
    # Built in a thread with no event loop, as a sync factory or import-time code would.
    client = await asyncio.to_thread(lambda: lc.AsyncLiyaClient(target, token=token("t")))
    async with client:
        assert (await client.get_masked_config()).mode == "managed"
