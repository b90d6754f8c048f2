"""``model_config.prices`` and ``provider_config.azure.model`` through the real
server: PATCH semantics (entries merge; the map or one entry by mask, model
names quoted in backticks as AIP-161 says), BadRequest for bad prices, the
masked view, audit entries, the guide-style JSON body; and the counter of
unpriced calls."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from test_metrics_conventions import read_metrics, series

from helpers import auth, byok_openai, details_of, free_port, hello
from liya.engine.v1 import config_service_pb2 as cpb
from liya_engine.config import paths

OPENAI_KEY = "sk-" + "R" * 40
AZURE_KEY = "azkey" + "9" * 27


def price(i: float, o: float) -> cpb.ModelPrice:
    return cpb.ModelPrice(input_usd_per_million=i, output_usd_per_million=o)


def prices_request(entries: dict, *mask: str) -> cpb.UpdateConfigRequest:
    request = cpb.UpdateConfigRequest(model_config=cpb.ModelConfig(prices=entries))
    if mask:
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(mask)))
    return request


async def shown_prices(stubs) -> dict[str, tuple[float, float]]:
    reply = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    return {
        k: (v.input_usd_per_million, v.output_usd_per_million)
        for k, v in reply.config.model_config.prices.items()
    }


async def last_audit_paths(stubs) -> list[str]:
    reply = await stubs.config.ListAuditEntries(
        cpb.ListAuditEntriesRequest(page_size=1), metadata=auth("t")
    )
    return list(reply.audit_entries[0].changed_paths)


def test_paths_quote_keys_that_are_not_plain_identifiers():
    assert paths.map_entry_path("prices", "gpt_4") == "model_config.prices.gpt_4"
    assert paths.map_entry_path("prices", "gpt-4.1") == "model_config.prices.`gpt-4.1`"
    assert paths.map_entry_path("prices", "a`b") == "model_config.prices.`a``b`"
    for key in ("gpt-4.1", "a`b", "ft:gpt-4o-mini-2024-07-18:org::id", "gpt_4"):
        parsed = paths.parse(paths.map_entry_path("prices", key))
        assert (parsed.kind, parsed.name, parsed.key) == (paths.Kind.MAP_ENTRY, "prices", key)
    # Unquoted, a key without dots reads as itself; one with dots cannot.
    assert paths.parse("model_config.prices.gpt-4o").key == "gpt-4o"
    for bad in (
        "model_config.prices.gpt-4.1",
        "model_config.prices.`gpt-4.1",
        "model_config.prices.`gpt`x",
        "model_config.prices.g`pt",
    ):
        assert paths.parse(bad) is None, bad
    hint = paths.unknown_path("model_config.prices.gpt-4.1").description
    assert hint.endswith(
        "quote a model name with dots in backticks, as in model_config.prices.`gpt-4.1`"
    )


async def test_prices_merge_per_model_and_masks_replace_or_clear(stubs):
    await stubs.config.UpdateConfig(byok_openai(OPENAI_KEY), metadata=auth("t"))
    await stubs.config.UpdateConfig(
        prices_request({"gpt-4o": price(2, 8), "gpt-4.1": price(1.5, 6)}), metadata=auth("t")
    )
    assert await last_audit_paths(stubs) == [
        "model_config.prices.`gpt-4.1`",
        "model_config.prices.`gpt-4o`",
    ]
    # Without a mask, a sent entry merges: the others stay.
    await stubs.config.UpdateConfig(prices_request({"gpt-4o": price(2.5, 9)}), metadata=auth("t"))
    assert await shown_prices(stubs) == {"gpt-4o": (2.5, 9.0), "gpt-4.1": (1.5, 6.0)}
    assert await last_audit_paths(stubs) == ["model_config.prices.`gpt-4o`"]

    # One entry by its quoted path, absent from the request: cleared.
    await stubs.config.UpdateConfig(
        prices_request({}, "model_config.prices.`gpt-4.1`"), metadata=auth("t")
    )
    assert await shown_prices(stubs) == {"gpt-4o": (2.5, 9.0)}
    assert await last_audit_paths(stubs) == ["model_config.prices.`gpt-4.1`"]

    # The map's path: replaced by what the request holds.
    await stubs.config.UpdateConfig(
        prices_request({"o1": price(10, 40)}, "model_config.prices"), metadata=auth("t")
    )
    assert await shown_prices(stubs) == {"o1": (10.0, 40.0)}
    assert await last_audit_paths(stubs) == ["model_config.prices"]

    # One entry set by its path; unquoted works for a name without dots.
    await stubs.config.UpdateConfig(
        prices_request({"gpt-4o": price(1, 1), "o1": price(0, 0)}, "model_config.prices.gpt-4o"),
        metadata=auth("t"),
    )
    assert await shown_prices(stubs) == {"o1": (10.0, 40.0), "gpt-4o": (1.0, 1.0)}


async def test_the_guide_style_json_body_sets_prices(stubs):
    body = (
        '{"modelConfig": {"prices": {"gpt-4o": '
        '{"input_usd_per_million": 2.0, "output_usd_per_million": 8.0}}}}'
    )
    request = json_format.Parse(body, cpb.UpdateConfigRequest())
    reply = await stubs.config.UpdateConfig(request, metadata=auth("t"))
    assert dict(reply.config.model_config.prices) == {"gpt-4o": price(2.0, 8.0)}
    await stubs.config.UpdateConfig(prices_request({"gpt-4.1": price(1, 4)}), metadata=auth("t"))
    assert await shown_prices(stubs) == {"gpt-4o": (2.0, 8.0), "gpt-4.1": (1.0, 4.0)}
    # The README's grpcurl mask, as JSON: camelCase, the model name in backticks.
    clear = json_format.Parse(
        '{"updateMask": "modelConfig.prices.`gpt-4.1`"}', cpb.UpdateConfigRequest()
    )
    await stubs.config.UpdateConfig(clear, metadata=auth("t"))
    assert await shown_prices(stubs) == {"gpt-4o": (2.0, 8.0)}


async def test_bad_prices_are_bad_request_with_field_paths_and_nothing_is_written(stubs):
    await stubs.config.UpdateConfig(prices_request({"gpt-4o": price(2, 8)}), metadata=auth("t"))
    bad = {
        "gpt-4.1": cpb.ModelPrice(input_usd_per_million=2.0),  # output missing
        "gpt-4o": price(-1, float("nan")),
        "o1": price(10_000.5, float("inf")),
        "not a model": price(1, 1),
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.config.UpdateConfig(prices_request(bad), metadata=auth("t"))
    d = details_of(err.value)
    assert (d.code, d.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG")
    range_rule = "must be a finite number from 0 to 10,000 (USD per million tokens)"
    assert sorted(d.violations) == sorted(
        [
            (
                "model_config.prices.`gpt-4.1`.output_usd_per_million",
                "is required (USD per million tokens)",
            ),
            ("model_config.prices.`gpt-4o`.input_usd_per_million", range_rule),
            ("model_config.prices.`gpt-4o`.output_usd_per_million", range_rule),
            ("model_config.prices.o1.input_usd_per_million", range_rule),
            ("model_config.prices.o1.output_usd_per_million", range_rule),
            (
                "model_config.prices",
                "must be a model name such as 'gpt-4o' (1-128 of letters, digits and . _ : / @ -)",
            ),
        ]
    )
    assert await shown_prices(stubs) == {"gpt-4o": (2.0, 8.0)}


async def test_the_azure_model_is_stored_shown_and_leaves_the_key_alone(stubs, fake):
    azure = cpb.AzureOpenAIConfig(
        api_key=AZURE_KEY,
        endpoint=fake.azure_endpoint,
        deployment_name="prod-chat",
        api_version="2024-10-21",
    )
    request = cpb.UpdateConfigRequest(provider_config=cpb.ProviderConfig(mode="byok", azure=azure))
    first = await stubs.config.UpdateConfig(request, metadata=auth("t"))
    assert first.config.azure.model == ""
    set_model = cpb.UpdateConfigRequest(
        provider_config=cpb.ProviderConfig(azure=cpb.AzureOpenAIConfig(model="gpt-4o"))
    )
    reply = await stubs.config.UpdateConfig(set_model, metadata=auth("t"))
    shown = reply.config.azure
    assert (shown.model, shown.deployment_name, shown.configured) == ("gpt-4o", "prod-chat", True)
    assert shown.api_key_preview == first.config.azure.api_key_preview
    assert await last_audit_paths(stubs) == ["provider_config.azure.model"]
    got = await stubs.config.GetMaskedConfig(cpb.GetMaskedConfigRequest(), metadata=auth("t"))
    assert got.config.azure.model == "gpt-4o"
    # The stored key still works: the call goes through with it.
    await stubs.inference.Complete(hello(), metadata=auth("t"))
    assert fake.last_request.api_key == AZURE_KEY

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stubs.config.UpdateConfig(
            cpb.UpdateConfigRequest(
                provider_config=cpb.ProviderConfig(azure=cpb.AzureOpenAIConfig(model="gpt 4o!"))
            ),
            metadata=auth("t"),
        )
    assert [f for f, _ in details_of(err.value).violations] == ["provider_config.azure.model"]
    # Cleared by its path.
    cleared = await stubs.config.UpdateConfig(
        cpb.UpdateConfigRequest(
            update_mask=field_mask_pb2.FieldMask(paths=["provider_config.azure.model"])
        ),
        metadata=auth("t"),
    )
    assert (cleared.config.azure.model, cleared.config.azure.configured) == ("", True)


async def test_unpriced_calls_are_counted_by_provider(servers, fake):
    port = free_port()
    _, s = await servers.start(LIYA_METRICS_ADDRESS=f"127.0.0.1:{port}")
    request = byok_openai(OPENAI_KEY)
    request.model_config.overrides["general_chat"] = "my-own-model"
    await s.config.UpdateConfig(request, metadata=auth("t"))
    unpriced = [(await s.inference.Complete(hello(), metadata=auth("t"))).usage for _ in range(2)]
    priced = (await s.inference.Complete(hello("summarization"), metadata=auth("t"))).usage
    families = await read_metrics(port)
    assert series(families, "liya_unpriced_calls_total") == {(("provider", "openai"),): 2.0}
    tokens = series(families, "liya_tokens_total")
    own = (("direction", "output"), ("model", "my-own-model"), ("provider", "openai"))
    assert tokens[own] == sum(u.output_tokens for u in unpriced)
    cost = series(families, "liya_cost_usd_total")
    assert cost[(("model", "my-own-model"), ("provider", "openai"))] == 0.0
    assert (priced.model, priced.cost_source) == ("gpt-4o", "catalog")
    assert cost[(("model", "gpt-4o"), ("provider", "openai"))] == pytest.approx(priced.cost_usd)
