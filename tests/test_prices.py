"""Prices that resolve, through the real server and the fake providers: the
Azure deployment named by the tenant (``prod-chat``), priced by the model it
runs, set or learned from Azure's answers and shared by replicas; dated
snapshots; fine-tuned models; the tenant's negotiated prices in usage, cost
limits and ``cost-optimised``; ``served_model`` and ``cost_source`` in every
answer."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import auth, byok_openai, details_of, hello
from liya.engine.v1 import config_service_pb2 as cpb
from liya.engine.v1 import inference_service_pb2 as ipb
from liya_engine.config.model import ModelPrice, TenantConfig
from liya_engine.fakes import bind_refused_port
from liya_engine.inference.learned import LearnedModels
from liya_engine.inference.tenants import ResolvedTenant
from liya_engine.routing import prices
from liya_engine.routing.catalog import Catalog
from liya_engine.storage.database import Database
from liya_engine.storage.deployment_models import DeploymentModelTable

AZURE_KEY = "azkey" + "7" * 27
OPENAI_KEY = "sk-" + "P" * 40
FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme::A1b2C3d4"
CATALOG = Catalog.load()


def list_cost(usage, input_per_million: float, output_per_million: float) -> float:
    return (
        usage.input_tokens * input_per_million + usage.output_tokens * output_per_million
    ) / 1_000_000


def azure_tenant(fake, *, model: str | None = None, limit: float | None = None):
    azure = cpb.AzureOpenAIConfig(
        api_key=AZURE_KEY,
        endpoint=fake.azure_endpoint,
        deployment_name="prod-chat",
        api_version="2024-10-21",
    )
    if model is not None:
        azure.model = model
    request = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    if limit is not None:
        request.model_config.cost_limit_usd_per_request = limit
    return request


def openai_with(**model_config) -> cpb.UpdateConfigRequest:
    request = byok_openai(OPENAI_KEY)
    request.model_config.CopyFrom(cpb.ModelConfig(**model_config))
    return request


async def refused(call) -> object:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return details_of(err.value)


# -- resolution, by itself -------------------------------------------------------------


def test_snapshots_price_as_their_base_model():
    for name in ("gpt-4o", "gpt-4o-2024-08-06"):
        price = prices.resolve(name, {}, CATALOG)
        assert (price.input_per_million, price.output_per_million, price.source) == (
            2.50,
            10.00,
            "catalog",
        )
    claude = prices.resolve("claude-sonnet-4-6-20260101", {}, CATALOG)
    assert (claude.input_per_million, claude.output_per_million) == (3.00, 15.00)
    assert claude.info.tier == 3
    assert prices.resolve("gpt-4o-2024-08", {}, CATALOG) is None  # not a date
    assert prices.resolve("prod-chat", {}, CATALOG) is None


def test_a_tenant_price_covers_snapshots_unless_the_snapshot_has_its_own():
    own = {"gpt-4o": ModelPrice(2.0, 8.0)}
    snap = prices.resolve("gpt-4o-2024-08-06", own, CATALOG)
    assert (snap.input_per_million, snap.output_per_million, snap.source) == (
        2.0,
        8.0,
        "tenant_prices",
    )
    own["gpt-4o-2024-08-06"] = ModelPrice(1.0, 4.0)
    snap = prices.resolve("gpt-4o-2024-08-06", own, CATALOG)
    assert (snap.input_per_million, snap.output_per_million) == (1.0, 4.0)
    assert prices.resolve("gpt-4o-2024-11-20", own, CATALOG).input_per_million == 2.0


def test_fine_tuned_names_price_at_the_catalogs_fine_tuned_rates():
    tuned = prices.resolve(FINE_TUNED, {}, CATALOG)
    assert (tuned.input_per_million, tuned.output_per_million, tuned.source) == (
        0.30,
        1.20,
        "catalog",
    )
    assert prices.resolve("ft:gpt-4o-2024-08-06:acme:support:Zz9", {}, CATALOG).per_million == (
        3.75 + 15.00
    )
    # The base model's tenant price does not cover a model tuned from it...
    assert prices.resolve(FINE_TUNED, {"gpt-4o-mini": ModelPrice(0.1, 0.2)}, CATALOG).source == (
        "catalog"
    )
    # ...its own entry does; a base the catalog cannot tune prices nothing.
    own = prices.resolve(FINE_TUNED, {FINE_TUNED: ModelPrice(0.5, 2.0)}, CATALOG)
    assert (own.input_per_million, own.source) == (0.5, "tenant_prices")
    assert prices.resolve("ft:o1-2024-12-17:acme::x", {}, CATALOG) is None


# -- Azure: the deployment's model -------------------------------------------------------


async def test_prod_chat_with_its_model_set_costs_list_price_and_keeps_its_limit(stubs, fake):
    fake.set_deployments({"prod-chat": "gpt-4o-2024-08-06"})
    await stubs.config.UpdateConfig(azure_tenant(fake, model="gpt-4o"), metadata=auth("t"))
    reply = await stubs.inference.Complete(hello(), metadata=auth("t"))
    u = reply.usage
    assert (u.provider, u.model, u.served_model, u.cost_source) == (
        "azure",
        "prod-chat",
        "gpt-4o-2024-08-06",
        "catalog",
    )
    assert u.input_tokens > 0 and u.output_tokens > 0
    assert u.cost_usd == pytest.approx(list_cost(u, 2.50, 10.00), abs=1e-10)

    await stubs.config.UpdateConfig(
        azure_tenant(fake, model="gpt-4o", limit=0.001), metadata=auth("t")
    )
    d = await refused(
        stubs.inference.Complete(
            ipb.CompleteRequest(
                intent="general_chat",
                messages=[ipb.ChatMessage(role="user", content="hi")],
                max_tokens=1000,
            ),
            metadata=auth("t"),
        )
    )
    assert d.reason == "COST_LIMIT_EXCEEDED"
    # At gpt-4o's $10 per million output tokens, $0.001 buys under 100.
    assert 90 < int(d.metadata["max_tokens_that_fit"]) < 100
    ok = await stubs.inference.Complete(hello(), metadata=auth("t"))  # max_tokens lowered
    assert fake.last_request.body["max_completion_tokens"] == int(d.metadata["max_tokens_that_fit"])
    assert ok.usage.cost_usd <= 0.001


async def test_prod_chat_without_a_model_and_a_limit_is_told_what_to_set(stubs, fake):
    await stubs.config.UpdateConfig(azure_tenant(fake, limit=0.01), metadata=auth("t"))
    d = await refused(stubs.inference.Complete(hello(), metadata=auth("t")))
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "COST_LIMIT_EXCEEDED")
    assert d.message == (
        "Azure deployment 'prod-chat' has no price (not in model_config.prices, not in the "
        "catalog), so a call cannot be kept under the cost limit of $0.01: set "
        "provider_config.azure.model to the model deployment 'prod-chat' runs (such as "
        "gpt-4o), or its prices in model_config.prices"
    )
    assert fake.requests == []  # refused before any provider call


async def learned_rows(url: str, tenant: str) -> dict[str, str]:
    db = Database(url)
    try:
        return await DeploymentModelTable(lambda: db.engine).read(tenant)
    finally:
        await db.dispose()


async def wait_learned(url: str, tenant: str, expected: dict[str, str]) -> None:
    for _ in range(100):
        if await learned_rows(url, tenant) == expected:
            return
        await asyncio.sleep(0.05)
    assert await learned_rows(url, tenant) == expected


async def check_learning_is_shared(servers, fake) -> None:
    fake.set_deployments({"prod-chat": "gpt-4o-mini-2024-07-18"})
    _, first = await servers.start()
    await first.config.UpdateConfig(azure_tenant(fake), metadata=auth("t"))
    one = (await first.inference.Complete(hello(), metadata=auth("t"))).usage
    # The answer itself says what ran: priced from it at once.
    assert (one.served_model, one.cost_source) == ("gpt-4o-mini-2024-07-18", "catalog")
    assert one.cost_usd == pytest.approx(list_cost(one, 0.15, 0.60), abs=1e-10)
    await wait_learned(servers.db_url, "t", {"prod-chat": "gpt-4o-mini-2024-07-18"})

    # Now a limit: the estimate before the call needs the learned model, on
    # this replica and on another that shares the database.
    await first.config.UpdateConfig(azure_tenant(fake, limit=0.001), metadata=auth("t"))
    _, second = await servers.start()
    for stubs in (first, second):
        two = (await stubs.inference.Complete(hello(), metadata=auth("t"))).usage
        assert (two.model, two.cost_source) == ("prod-chat", "catalog")
        assert two.cost_usd == pytest.approx(list_cost(two, 0.15, 0.60), abs=1e-10)
    # gpt-4o-mini's $0.60 per million output tokens: $0.001 buys 1024 (the default).
    assert fake.last_request.body["max_completion_tokens"] == 1024

    # The deployment is moved to another model: its next answer re-prices it.
    fake.set_deployments({"prod-chat": "gpt-4o-2024-08-06"})
    moved = (await second.inference.Complete(hello(), metadata=auth("t"))).usage
    assert moved.cost_usd == pytest.approx(list_cost(moved, 2.50, 10.00), abs=1e-10)
    await wait_learned(servers.db_url, "t", {"prod-chat": "gpt-4o-2024-08-06"})


async def test_without_a_model_the_deployment_is_priced_from_azures_answers(servers, fake):
    await check_learning_is_shared(servers, fake)


@pytest.mark.postgres
async def test_learned_models_are_shared_by_replicas_on_postgres(servers, fake, postgres_url):
    servers.db_url = postgres_url
    servers.base_env["LIYA_DATABASE_URL"] = postgres_url
    await check_learning_is_shared(servers, fake)


async def test_a_learned_model_written_at_stop(servers, fake):
    fake.set_deployments({"prod-chat": "gpt-4o-2024-08-06"})
    running, s = await servers.start()
    await s.config.UpdateConfig(azure_tenant(fake), metadata=auth("t"))
    await s.inference.Complete(hello(), metadata=auth("t"))
    await running.stop(1)
    assert await learned_rows(servers.db_url, "t") == {"prod-chat": "gpt-4o-2024-08-06"}


# -- OpenAI: snapshots, fine-tuned, negotiated prices --------------------------------


async def test_a_fine_tuned_model_costs_more_than_its_base(stubs, fake):
    await stubs.config.UpdateConfig(
        openai_with(overrides={"summarization": FINE_TUNED}), metadata=auth("t")
    )
    tuned = (await stubs.inference.Complete(hello("summarization"), metadata=auth("t"))).usage
    assert fake.last_request.model == FINE_TUNED
    assert (tuned.model, tuned.served_model, tuned.cost_source) == (
        FINE_TUNED,
        FINE_TUNED,
        "catalog",
    )
    await stubs.config.UpdateConfig(
        openai_with(overrides={"summarization": "gpt-4o-mini"}), metadata=auth("t")
    )
    base = (await stubs.inference.Complete(hello("summarization"), metadata=auth("t"))).usage
    assert base.served_model == "gpt-4o-mini-2024-07-18"
    assert (tuned.input_tokens, tuned.output_tokens) == (base.input_tokens, base.output_tokens)
    assert tuned.cost_usd == pytest.approx(list_cost(tuned, 0.30, 1.20), abs=1e-10)
    assert base.cost_usd == pytest.approx(list_cost(base, 0.15, 0.60), abs=1e-10)
    assert tuned.cost_usd == pytest.approx(2 * base.cost_usd, abs=1e-10)


async def test_negotiated_prices_change_usage_limits_and_cost_optimised(stubs, fake):
    await stubs.config.UpdateConfig(
        openai_with(cost_limit_usd_per_request=0.001), metadata=auth("t")
    )
    listed = await stubs.inference.Complete(hello(), metadata=auth("t"))
    assert (listed.usage.model, listed.usage.cost_source) == ("gpt-4o", "catalog")
    list_fit = fake.last_request.body["max_completion_tokens"]

    negotiated = cpb.UpdateConfigRequest(
        model_config=cpb.ModelConfig(
            prices={"gpt-4o": cpb.ModelPrice(input_usd_per_million=2.0, output_usd_per_million=4.0)}
        )
    )
    await stubs.config.UpdateConfig(negotiated, metadata=auth("t"))
    u = (await stubs.inference.Complete(hello(), metadata=auth("t"))).usage
    assert (u.served_model, u.cost_source) == ("gpt-4o-2024-08-06", "tenant_prices")
    assert u.cost_usd == pytest.approx(list_cost(u, 2.0, 4.0), abs=1e-10)
    # The limit buys more at $4 per million output tokens than at $10.
    assert fake.last_request.body["max_completion_tokens"] > 2 * list_fit

    # cost-optimised: gpt-4o-mini is the cheapest at list prices for a tier-1
    # intent; priced below it by the tenant, gpt-4o is chosen.
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(strategy="cost-optimised")),
        metadata=auth("t"),
    )
    assert (await stubs.inference.Complete(hello(), metadata=auth("t"))).usage.model == (
        "gpt-4o-mini"
    )
    cheaper = cpb.ModelPrice(input_usd_per_million=0.05, output_usd_per_million=0.1)
    await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(prices={"gpt-4o": cheaper})),
        metadata=auth("t"),
    )
    chosen = (await stubs.inference.Complete(hello(), metadata=auth("t"))).usage
    assert (chosen.model, chosen.cost_source) == ("gpt-4o", "tenant_prices")
    assert chosen.cost_usd == pytest.approx(list_cost(chosen, 0.05, 0.1), abs=1e-10)


async def test_a_zero_price_is_a_price_after_a_restart(servers, fake):
    running, s = await servers.start()
    zero = cpb.ModelPrice(input_usd_per_million=0.0, output_usd_per_million=0.0)
    request = openai_with(prices={"gpt-4o": zero}, cost_limit_usd_per_request=0.0001)
    await s.config.UpdateConfig(request, metadata=auth("t"))
    await running.stop(0)
    _, again = await servers.start()
    shown = await again.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    price = shown.config.model_config.prices["gpt-4o"]
    assert price.HasField("input_usd_per_million") and price.HasField("output_usd_per_million")
    assert (price.input_usd_per_million, price.output_usd_per_million) == (0.0, 0.0)
    u = (await again.inference.Complete(hello(), metadata=auth("t"))).usage
    assert (u.cost_usd, u.cost_source) == (0.0, "tenant_prices")
    # Free output: the tiny limit still lets the default max_tokens through.
    assert fake.last_request.body["max_completion_tokens"] == 1024


# -- streams and verify ----------------------------------------------------------------


async def test_the_last_stream_message_and_verify_carry_served_model_and_cost_source(stubs, fake):
    await stubs.config.UpdateConfig(byok_openai(OPENAI_KEY), metadata=auth("t"))
    request = ipb.CompleteStreamRequest(
        intent="general_chat", messages=[ipb.ChatMessage(role="user", content="hi there")]
    )
    pieces = [p async for p in stubs.inference.CompleteStream(request, metadata=auth("t"))]
    last = pieces[-1].usage
    assert (last.served_model, last.cost_source) == ("gpt-4o-2024-08-06", "catalog")
    assert last.cost_usd == pytest.approx(list_cost(last, 2.50, 10.00), abs=1e-10)
    assert all(not p.HasField("usage") for p in pieces[:-1])

    verified = await stubs.config.VerifyConfig(cpb.VerifyConfigRequest(), metadata=auth("t"))
    v = verified.usage
    assert (v.provider, v.model, v.served_model, v.cost_source) == (
        "openai",
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "catalog",
    )
    assert (v.output_tokens, v.mode) == (1, "byok")  # verify asks for one token
    assert v.cost_usd == pytest.approx(list_cost(v, 2.50, 10.00), abs=1e-10)
    assert v.request_id


async def test_an_unpriced_call_says_so(stubs, fake):
    await stubs.config.UpdateConfig(
        openai_with(overrides={"general_chat": "my-own-model"}), metadata=auth("t")
    )
    u = (await stubs.inference.Complete(hello(), metadata=auth("t"))).usage
    assert (u.model, u.served_model, u.cost_usd, u.cost_source) == (
        "my-own-model",
        "my-own-model",
        0.0,
        "unpriced",
    )
    await stubs.config.UpdateConfig(
        openai_with(overrides={"general_chat": "my-own-model"}, cost_limit_usd_per_request=1.0),
        metadata=auth("t"),
    )
    d = await refused(stubs.inference.Complete(hello(), metadata=auth("t")))
    assert d.reason == "COST_LIMIT_EXCEEDED"
    assert d.message.endswith(
        "set the prices of 'my-own-model' in model_config.prices "
        "(input_usd_per_million and output_usd_per_million)"
    )


async def test_learned_models_wait_while_storage_is_down(tmp_path, caplog):
    url = f"sqlite+aiosqlite:///{tmp_path / 'learned.db'}"
    db = Database(url)
    await db.migrate()
    down = create_async_engine(f"postgresql+asyncpg://127.0.0.1:{bind_refused_port()}/none")
    engine = [down]
    learned = LearnedModels(DeploymentModelTable(lambda: engine[0]), retry_seconds=0.05)
    tenant = ResolvedTenant(TenantConfig("t"), cipher=None)
    await learned.load(tenant)  # unreadable: no map, so the next call reads again
    assert tenant.learned is None
    learned.learn(tenant, "prod-chat", "gpt-4o-2024-08-06")
    assert tenant.learned == {"prod-chat": "gpt-4o-2024-08-06"}  # priced from memory at once
    await asyncio.sleep(0.3)  # several attempts fail meanwhile
    assert "learned deployment models not written (StorageUnavailable)" in caplog.text
    assert await learned_rows(url, "t") == {}
    engine[0] = db.engine  # storage is back: the pending entry is written
    await wait_learned(url, "t", {"prod-chat": "gpt-4o-2024-08-06"})
    await learned.close()
    await down.dispose()
    await db.dispose()
