"""The usage ledger through the real server, the official SDKs and the fakes:
every call that reached a provider is in ``ListDailyUsage`` within the flush
interval, on SQLite and on two replicas sharing PostgreSQL; graceful stop
flushes; a database outage loses nothing; the aggregate is bounded."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime

import grpc
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from test_metrics_conventions import read_metrics, value

from helpers import auth, details_of, free_port
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya.engine.v1 import usage_service_pb2 as upb
from liya.engine.v1 import usage_service_pb2_grpc as upb_grpc
from liya_engine.fakes import bind_refused_port
from liya_engine.fakes.answer import answer_words, count_prompt_tokens
from liya_engine.inference.estimate import estimate_prompt_tokens, estimate_text_tokens
from liya_engine.inference.ports import Message
from liya_engine.routing.catalog import Catalog

CATALOG = Catalog.load()
KEY = "sk-" + "u" * 44 + "USAG"
FLUSH = 0.2
MODE = "byok"


def usage_stub(stubs) -> upb_grpc.UsageServiceStub:
    return upb_grpc.UsageServiceStub(stubs.channel)


def msgs(text: str = "Tell me about interviews and offers") -> list[ipb.ChatMessage]:
    return [
        ipb.ChatMessage(role="system", content="You are helpful."),
        ipb.ChatMessage(role="user", content=text),
    ]


def prompt_estimate(messages) -> int:
    return estimate_prompt_tokens([Message(m.role, m.content) for m in messages])


def price(model: str, input_tokens: int, output_tokens: int) -> float:
    return round(CATALOG.model(model).cost(input_tokens, output_tokens), 10)


async def configure(stubs, tenant: str, **model_config) -> None:
    req = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(
            mode=MODE, openai=cpb.OpenAIConfig(api_key=KEY, default_model="gpt-4o")
        ),
        model_config=cpb.ModelConfig(**model_config),
    )
    await stubs.config.UpdateConfig(req, metadata=auth(tenant))


class Expected:
    """What the calls reported (or, where they reported nothing, what the
    provider produced, estimated as the service does), per rollup row."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, str], list] = defaultdict(lambda: [0, 0, 0, 0, 0.0])

    def add(self, intent, model, i, o, cost, *, failed=False, provider="openai") -> None:
        row = self.rows[(provider, model, intent, MODE)]
        row[0] += 1
        row[1] += int(failed)
        row[2] += i
        row[3] += o
        row[4] += cost

    def total_cost(self) -> float:
        return sum(r[4] for r in self.rows.values())


async def scripted_mix(s, fake, tenant: str, expected: Expected) -> None:
    """Successes, a provider refusal, a cancelled stream, a cut stream, a verify."""
    for _ in range(2):
        r = await s.inference.Complete(
            ipb.CompleteRequest(intent="general_chat", messages=msgs()), metadata=auth(tenant)
        )
        u = r.usage
        expected.add("general_chat", u.model, u.input_tokens, u.output_tokens, u.cost_usd)

    fake.fail("openai", "auth")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await s.inference.Complete(
            ipb.CompleteRequest(intent="general_chat", messages=msgs()), metadata=auth(tenant)
        )
    assert details_of(err.value).reason == "BYOK_AUTH_FAILED"
    expected.add("general_chat", "gpt-4o", 0, 0, 0.0, failed=True)

    # A stream the caller cancels after the first piece: not a failure; the
    # prompt and the text produced so far count, estimated.
    fake.fail("openai", "slow_stream", chunk_delay=0.5)
    started = len(fake.requests)
    call = s.inference.CompleteStream(
        ipb.CompleteStreamRequest(intent="resume_analysis", messages=msgs("a b c d e f g h")),
        metadata=auth(tenant),
    )
    first = await call.read()
    call.cancel()
    await fake.wait_for(
        lambda f: len(f.requests) > started and f.last_request.client_disconnected, 5
    )
    i, o = prompt_estimate(msgs("a b c d e f g h")), estimate_text_tokens(len(first.delta))
    expected.add("resume_analysis", "gpt-4o", i, o, price("gpt-4o", i, o))

    # A stream the provider cuts mid-way: a failure, with what it produced.
    fake.fail("openai", "stream_cut", after=3)
    got = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for piece in s.inference.CompleteStream(
            ipb.CompleteStreamRequest(intent="mock_interview", messages=msgs()),
            metadata=auth(tenant),
        ):
            got.append(piece.delta)
    produced = len("".join(got))
    assert produced > 0
    i, o = prompt_estimate(msgs()), estimate_text_tokens(produced)
    expected.add("mock_interview", "gpt-4o", i, o, price("gpt-4o", i, o), failed=True)

    await s.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth(tenant))
    body = fake.last_request.body
    i = count_prompt_tokens(body["messages"])
    o = min(len(answer_words(body["messages"])), body.get("max_completion_tokens") or 1)
    expected.add("verify", "gpt-4o", i, o, price("gpt-4o", i, o))


def as_rows(reply: upb.ListDailyUsageResponse) -> dict[tuple[str, str, str, str], list]:
    today = datetime.now(UTC).date().isoformat()
    out = {}
    for d in reply.daily_usage:
        assert d.date == today
        out[(d.provider, d.model, d.intent, d.mode)] = [
            d.calls,
            d.failed_calls,
            d.input_tokens,
            d.output_tokens,
            d.cost_usd,
        ]
    return out


def same(got: dict, expected: Expected) -> bool:
    if got.keys() != expected.rows.keys():
        return False
    for key, want in expected.rows.items():
        if got[key][:4] != want[:4] or got[key][4] != pytest.approx(want[4], rel=1e-9, abs=1e-12):
            return False
    return True


async def wait_listed(
    s, tenant: str, expected: Expected, within: float
) -> upb.ListDailyUsageResponse:
    """Poll ListDailyUsage until it shows ``expected``; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        reply = await usage_stub(s).ListDailyUsage(
            upb.ListDailyUsageRequest(), metadata=auth(tenant)
        )
        if same(as_rows(reply), expected):
            return reply
        if time.monotonic() > deadline:
            assert as_rows(reply) == {k: list(v) for k, v in expected.rows.items()}
        await asyncio.sleep(0.05)


async def test_listed_usage_is_the_sum_of_what_the_calls_reported(servers, fake):
    _, s = await servers.start(LIYA_USAGE_FLUSH_SECONDS=str(FLUSH))
    await configure(s, "acme")
    expected = Expected()
    await scripted_mix(s, fake, "acme", expected)
    done = time.monotonic()
    reply = await wait_listed(s, "acme", expected, FLUSH + 1)
    assert time.monotonic() - done <= FLUSH + 1
    assert reply.month_to_date_cost_usd == pytest.approx(expected.total_cost(), rel=1e-9)
    assert not reply.HasField("monthly_budget_usd")
    assert reply.next_page_token == ""
    # Another tenant sees nothing of it.
    other = await usage_stub(s).ListDailyUsage(upb.ListDailyUsageRequest(), metadata=auth("b"))
    assert list(other.daily_usage) == [] and other.month_to_date_cost_usd == 0


@pytest.mark.postgres
async def test_two_replicas_sharing_postgres_list_the_same_sum(servers, fake, postgres_url):
    servers.base_env["LIYA_DATABASE_URL"] = postgres_url
    servers.base_env["LIYA_USAGE_FLUSH_SECONDS"] = str(FLUSH)
    _, a = await servers.start()
    _, b = await servers.start()
    await configure(a, "acme")
    expected = Expected()
    await scripted_mix(a, fake, "acme", expected)
    await scripted_mix(b, fake, "acme", expected)  # the same rows, added by both
    for replica in (a, b):
        reply = await wait_listed(replica, "acme", expected, FLUSH + 1)
        assert reply.month_to_date_cost_usd == pytest.approx(expected.total_cost(), rel=1e-9)


async def test_graceful_stop_writes_what_is_left(servers, fake):
    running, s = await servers.start(LIYA_USAGE_FLUSH_SECONDS="3600")
    await configure(s, "acme")
    r = await s.inference.Complete(
        ipb.CompleteRequest(intent="general_chat", messages=msgs()), metadata=auth("acme")
    )
    await running.stop(0)  # long before the next interval
    _, again = await servers.start()
    expected = Expected()
    u = r.usage
    expected.add("general_chat", u.model, u.input_tokens, u.output_tokens, u.cost_usd)
    await wait_listed(again, "acme", expected, 0)


async def point_at(db, url) -> None:
    await db.engine.dispose()
    db.engine = create_async_engine(url)
    db._sessions = async_sessionmaker(db.engine, expire_on_commit=False)


@pytest.mark.postgres
async def test_a_database_outage_keeps_the_counts_and_retries(servers, fake, postgres_url):
    servers.base_env["LIYA_DATABASE_URL"] = postgres_url
    port = free_port()
    running, s = await servers.start(
        LIYA_USAGE_FLUSH_SECONDS=str(FLUSH),
        LIYA_CONFIG_CACHE_TTL_SECONDS="60",
        LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}",
    )
    await configure(s, "acme")
    expected = Expected()
    metrics = running.services.metrics
    db = running.services.db
    good = db.engine.url
    for n in range(4):  # the tenant is cached: calls go on while the database is down
        if n == 1:
            await point_at(db, good.set(port=bind_refused_port()))
        r = await s.inference.Complete(
            ipb.CompleteRequest(intent="general_chat", messages=msgs()), metadata=auth("acme")
        )
        u = r.usage
        expected.add("general_chat", u.model, u.input_tokens, u.output_tokens, u.cost_usd)
    for _ in range(100):
        if metrics.usage_flush_failures._value.get() >= 2:
            break
        await asyncio.sleep(0.05)
    exported = await read_metrics(port)
    assert value(exported, "liya_usage_flush_failures_total") >= 2  # failed, kept, tried again
    assert value(exported, "liya_usage_dropped_calls_total") == 0
    lag = value(exported, "liya_usage_flush_lag_seconds")
    assert lag >= FLUSH  # the lag shows the outage
    await point_at(db, good)
    await wait_listed(s, "acme", expected, FLUSH + 1)
    await asyncio.sleep(FLUSH)
    assert value(await read_metrics(port), "liya_usage_flush_lag_seconds") < lag


async def test_a_full_aggregate_drops_new_rows_and_counts_them(servers, fake):
    running, s = await servers.start(
        LIYA_USAGE_FLUSH_SECONDS="3600", LIYA_USAGE_MAX_PENDING_KEYS="1"
    )
    await configure(s, "acme")
    expected = Expected()
    for intent in ("general_chat", "general_chat", "mock_interview"):
        r = await s.inference.Complete(
            ipb.CompleteRequest(intent=intent, messages=msgs()), metadata=auth("acme")
        )
        if intent == "general_chat":  # the key already waiting keeps adding up
            u = r.usage
            expected.add(intent, u.model, u.input_tokens, u.output_tokens, u.cost_usd)
    assert running.services.metrics.usage_dropped._value.get() == 1
    assert await running.services.ledger.flush()
    await wait_listed(s, "acme", expected, 0)
