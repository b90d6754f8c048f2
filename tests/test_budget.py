"""``model_config.monthly_budget_usd`` through the real server and the fakes:
set, shown, cleared and audited like the cost limit; checked before each call
(after the cost limit) against month-to-date cost plus the call's worst case."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from test_usage_ledger import configure, msgs

from helpers import auth, details_of, token
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya.engine.v1 import usage_service_pb2 as upb
from liya.engine.v1 import usage_service_pb2_grpc as upb_grpc
from liya_engine.inference.estimate import estimate_prompt_tokens
from liya_engine.inference.ports import Message
from liya_engine_client import AsyncLiyaClient
from liya_engine_client.errors import BudgetExceeded

FIELD = "model_config.monthly_budget_usd"


def next_month_start() -> str:
    now = datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00Z"


def worst_case(messages, max_tokens: int) -> float:
    prompt = estimate_prompt_tokens([Message(m.role, m.content) for m in messages])
    return (prompt * 2.50 + max_tokens * 10.00) / 1e6  # gpt-4o list prices


async def budget_update(stubs, tenant: str, budget: float | None) -> cpb.UpdateConfigResponse:
    if budget is None:
        req = cpb.UpdateConfigRequest(update_mask=field_mask_pb2.FieldMask(paths=[FIELD]))
    else:
        req = cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(monthly_budget_usd=budget))
    return await stubs.config.UpdateConfig(req, metadata=auth(tenant))


async def complete(stubs, tenant: str, max_tokens: int = 10) -> ipb.CompleteResponse:
    return await stubs.inference.Complete(
        ipb.CompleteRequest(intent="general_chat", messages=msgs(), max_tokens=max_tokens),
        metadata=auth(tenant),
    )


async def test_the_budget_is_set_shown_cleared_and_audited(stubs):
    await configure(stubs, "t")
    reply = await budget_update(stubs, "t", 25.0)
    assert reply.config.model_config.monthly_budget_usd == 25.0
    shown = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    assert shown.config.model_config.monthly_budget_usd == 25.0
    zero = await budget_update(stubs, "t", 0.0)  # 0 is a budget (nothing may be spent)
    assert zero.config.model_config.HasField("monthly_budget_usd")
    cleared = await budget_update(stubs, "t", None)
    assert not cleared.config.model_config.HasField("monthly_budget_usd")
    audit = await stubs.config.ListAuditEntries(cpb.ListAuditEntriesRequest(), metadata=auth("t"))
    assert [list(e.changed_paths) for e in audit.audit_entries[:3]] == [[FIELD]] * 3


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf])
async def test_a_bad_budget_is_invalid_config(stubs, bad):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await budget_update(stubs, "t", bad)
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG")
    assert [v[0] for v in d.violations] == [FIELD]


async def test_over_budget_is_refused_before_the_call_with_the_metadata(stubs, fake):
    await configure(stubs, "t", monthly_budget_usd=0.001)
    before = len(fake.requests)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete(stubs, "t", max_tokens=200)  # worst case about $0.002
    assert len(fake.requests) == before  # refused before the provider was called
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED")
    assert d.metadata["spent_usd"] == "0.000000"
    assert d.metadata["budget_usd"] == "0.001000"
    assert d.metadata["resets_at"] == next_month_start()
    assert d.metadata["estimate_usd"] == f"{worst_case(msgs(), 200):.6f}"
    status = rpc_status.from_call(err.value)
    quota = [x for x in status.details if x.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)]
    assert len(quota) == 1
    failure = error_details_pb2.QuotaFailure()
    quota[0].Unpack(failure)
    assert [v.subject for v in failure.violations] == [FIELD]
    assert "monthly budget" in failure.violations[0].description


async def test_the_cost_limit_wins_over_the_budget(stubs, fake):
    await configure(stubs, "t", monthly_budget_usd=0.0, cost_limit_usd_per_request=0.0001)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete(stubs, "t", max_tokens=200)
    assert details_of(err.value).reason == "COST_LIMIT_EXCEEDED"


async def test_the_client_raises_budget_exceeded_with_its_figures(servers, fake):
    running, s = await servers.start()
    await configure(s, "t", monthly_budget_usd=0.0)
    async with AsyncLiyaClient(f"127.0.0.1:{running.port}", token=token("t")) as client:
        with pytest.raises(BudgetExceeded) as err:
            await client.complete("general_chat", [("user", "hi")], max_tokens=5)
    assert err.value.budget_usd == 0.0
    assert err.value.spent_usd == 0.0
    assert err.value.resets_at == next_month_start()


async def spend_until_refused(stubs, tenant: str, *, concurrent: int) -> float:
    """Calls (``concurrent`` at a time) until the budget refuses; their total cost."""
    spent = 0.0
    while True:
        results = await asyncio.gather(
            *(complete(stubs, tenant) for _ in range(concurrent)), return_exceptions=True
        )
        refused = False
        for r in results:
            if isinstance(r, grpc.aio.AioRpcError):
                assert details_of(r).reason == "BUDGET_EXCEEDED"
                refused = True
            else:
                spent += r.usage.cost_usd
        if refused:
            return spent


@pytest.mark.parametrize("concurrent", [1, 8])
async def test_calls_never_take_the_month_above_the_budget(servers, fake, concurrent):
    # Nothing is written while the calls run: the unwritten part counts too.
    _, s = await servers.start(LIYA_USAGE_FLUSH_SECONDS="3600")
    budget = 0.002  # about 14 calls of 10 output tokens on gpt-4o
    await configure(s, "t", monthly_budget_usd=budget)
    spent = await spend_until_refused(s, "t", concurrent=concurrent)
    assert budget - worst_case(msgs(), 10) < spent <= budget
    usage = upb_grpc.UsageServiceStub(s.channel)
    listed = await usage.ListDailyUsage(upb.ListDailyUsageRequest(), metadata=auth("t"))
    assert listed.month_to_date_cost_usd == pytest.approx(spent, rel=1e-9)
    assert listed.monthly_budget_usd == budget
    # Raising the budget lets calls through again.
    await budget_update(s, "t", budget * 2)
    r = await complete(s, "t")
    assert r.usage.cost_usd > 0


async def test_the_budget_counts_what_another_replica_wrote(servers, fake):
    servers.base_env["LIYA_USAGE_FLUSH_SECONDS"] = "0.1"
    _, a = await servers.start()
    _, b = await servers.start()
    await configure(a, "t", monthly_budget_usd=0.002)
    spent = await spend_until_refused(a, "t", concurrent=1)
    await asyncio.sleep(0.5)  # a's usage written; b reads the stored total
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete(b, "t")
    d = details_of(err.value)
    assert d.reason == "BUDGET_EXCEEDED"
    assert float(d.metadata["spent_usd"]) == pytest.approx(spent, abs=1e-6)


async def test_an_unpriced_model_under_a_budget_says_what_to_set(stubs, fake):
    await configure(stubs, "t", monthly_budget_usd=5.0, overrides={"general_chat": "my-model"})
    before = len(fake.requests)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await complete(stubs, "t")
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "COST_LIMIT_EXCEEDED")
    assert "'my-model' has no price" in d.message
    assert "model_config.prices" in d.message and FIELD in d.message
    assert len(fake.requests) == before
