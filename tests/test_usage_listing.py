"""``UsageService/ListDailyUsage`` through the real server and the Python
clients: date ranges, newest first, paging, and clear errors for bad input.
Rows are written through the real store, as a flush writes them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from helpers import details_of, token
from liya.engine.v1 import usage_service_pb2 as upb
from liya_engine.usage.listing import MAX_PAGE_SIZE, page_size
from liya_engine_client import AsyncLiyaClient, LiyaClient
from liya_engine_client.errors import InvalidRequest

TODAY = datetime.now(UTC).date()


def rows_for(tenant: str, days: int) -> dict:
    """Three rows a day for ``days`` days up to today, and one of another tenant."""
    out = {}
    for n in range(days):
        day = TODAY - timedelta(days=n)
        for model, intent in (("gpt-4o", "general_chat"), ("gpt-4o", "verify"), ("o1", "x")):
            out[(tenant, day, "openai", model, intent, "byok")] = [n + 1, n % 2, 10, 20, 0.5]
    out[("someone-else", TODAY, "openai", "gpt-4o", "general_chat", "byok")] = [9, 0, 1, 1, 9.0]
    return out


@pytest.fixture
async def seeded(servers, db_url):
    """A server whose ledger holds ``rows_for("acme", 40)``, on SQLite and PostgreSQL."""
    servers.base_env["LIYA_DATABASE_URL"] = db_url
    running, _ = await servers.start()
    await running.services.db.add_usage(rows_for("acme", 40))
    return running


def listed_keys(pages) -> list[tuple[str, str, str]]:
    return [(d.date, d.model, d.intent) for page in pages for d in page.daily_usage]


async def test_pages_cover_the_range_newest_first(seeded):
    start, end = (TODAY - timedelta(days=29)).isoformat(), TODAY.isoformat()
    async with AsyncLiyaClient(f"127.0.0.1:{seeded.port}", token=token("acme")) as client:
        pages, page_token = [], ""
        while True:
            page = await client.list_daily_usage(start, end, 7, page_token)
            pages.append(page)
            page_token = page.next_page_token
            if not page_token:
                break
        whole = await client.list_daily_usage(start, end, 1000)
    assert [len(p.daily_usage) for p in pages] == [7] * 12 + [6]  # 30 days x 3 rows
    expected = [
        ((TODAY - timedelta(days=n)).isoformat(), model, intent)
        for n in range(30)
        for model, intent in (("gpt-4o", "general_chat"), ("gpt-4o", "verify"), ("o1", "x"))
    ]
    assert listed_keys(pages) == expected == listed_keys([whole])
    first = whole.daily_usage[0]
    assert (first.provider, first.mode, first.calls, first.failed_calls) == ("openai", "byok", 1, 0)
    assert (first.input_tokens, first.output_tokens, first.cost_usd) == (10, 20, 0.5)


async def test_the_default_range_is_this_month_to_today(seeded):
    with LiyaClient(f"127.0.0.1:{seeded.port}", token=token("acme")) as client:
        page = await asyncio.to_thread(client.list_daily_usage)
    days = {d.date for d in page.daily_usage}
    assert days == {(TODAY - timedelta(days=n)).isoformat() for n in range(TODAY.day)}
    # This month's stored cost, all of it: 3 rows a day at $0.5.
    assert page.month_to_date_cost_usd == pytest.approx(1.5 * TODAY.day)
    assert not page.HasField("monthly_budget_usd")


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"start_date": "2026-13-01"}, "start_date"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"end_date": "2026-1-5"}, "end_date"),
        ({"start_date": "2026-12-02", "end_date": "2026-12-01"}, "end_date"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
async def test_bad_requests_are_invalid_argument_with_the_field(seeded, request_fields, field):
    async with AsyncLiyaClient(f"127.0.0.1:{seeded.port}", token=token("acme")) as client:
        with pytest.raises(InvalidRequest) as err:
            await client.list_daily_usage(**request_fields)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.value.violations] == [field]


async def test_a_page_token_is_only_good_for_its_dates(seeded):
    start = TODAY - timedelta(days=10)
    async with AsyncLiyaClient(f"127.0.0.1:{seeded.port}", token=token("acme")) as client:
        page = await client.list_daily_usage(start.isoformat(), TODAY.isoformat(), 2)
        assert page.next_page_token
        with pytest.raises(InvalidRequest) as err:
            await client.list_daily_usage(
                (start - timedelta(days=1)).isoformat(), TODAY.isoformat(), 2, page.next_page_token
            )
    assert [v.field for v in err.value.violations] == ["page_token"]
    assert "other start_date and end_date" in err.value.violations[0].description


def test_page_sizes_default_to_100_and_stop_at_1000():
    assert (page_size(0), page_size(5), page_size(5000)) == (100, 5, MAX_PAGE_SIZE)
    assert MAX_PAGE_SIZE == 1000


async def test_the_service_is_in_health_and_reflection(servers):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, s = await servers.start()
    health = health_pb2_grpc.HealthStub(s.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="liya.engine.v1.UsageService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(s.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in stub.ServerReflectionInfo(iter([request])):
        names = {svc.name for svc in answer.list_services_response.service}
        assert "liya.engine.v1.UsageService" in names
        break


async def test_without_a_token_it_is_unauthenticated(seeded):
    from liya.engine.v1 import usage_service_pb2_grpc as upb_grpc

    stub = upb_grpc.UsageServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{seeded.port}"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListDailyUsage(upb.ListDailyUsageRequest())
    assert details_of(err.value).reason == "INVALID_TOKEN"
