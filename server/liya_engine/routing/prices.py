"""What a model costs a tenant: the one place a model name becomes a price.

In order, the first that applies:

1. the tenant's own price for the name (``model_config.prices``);
2. for a dated snapshot (``gpt-4o-2024-08-06``, ``claude-sonnet-4-6-20260101``),
   the tenant's price for its base model (``gpt-4o``);
3. the catalog's list price of the name, else of its base model;
4. for an OpenAI fine-tuned name (``ft:gpt-4o-mini-2024-07-18:org::id``), which
   the tenant did not price itself, the catalog's fine-tuned rates of its base
   model (fine-tuned inference costs more than the base model's);
5. none: the call is unpriced.

An Azure deployment is priced as the model it runs (``azure_model``). Cost
limits, budgets, usage and the strategies all price through here, so a
tenant's negotiated rates change every one of them alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from liya_engine.config.model import ModelPrice
from liya_engine.routing.catalog import Catalog, ModelInfo

TENANT_PRICES: Final = "tenant_prices"
CATALOG: Final = "catalog"
UNPRICED: Final = "unpriced"
"""The values of ``Usage.cost_source``."""

# OpenAI dates its snapshots -YYYY-MM-DD, Anthropic -YYYYMMDD.
_SNAPSHOT = re.compile(r"(.+?)-(?:\d{4}-\d{2}-\d{2}|\d{8})")
_FINE_TUNED_PREFIX: Final = "ft:"


def base_model(name: str) -> str:
    """``name`` without a snapshot date: ``gpt-4o-2024-08-06`` -> ``gpt-4o``."""
    found = _SNAPSHOT.fullmatch(name)
    return found.group(1) if found else name


def fine_tuned_base(name: str) -> str | None:
    """The model an OpenAI fine-tuned name was tuned from
    (``ft:gpt-4o-mini-2024-07-18:org::id`` -> ``gpt-4o-mini-2024-07-18``), or
    None for a name that is not fine-tuned."""
    if not name.startswith(_FINE_TUNED_PREFIX):
        return None
    return name[len(_FINE_TUNED_PREFIX) :].split(":", 1)[0] or None


@dataclass(frozen=True, slots=True)
class Price:
    """The resolved price of one model for one tenant, USD per million tokens,
    with where it came from and the catalog model it belongs to (its tier and
    output limit), if any."""

    input_per_million: float
    output_per_million: float
    source: str  # TENANT_PRICES or CATALOG
    info: ModelInfo | None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for these tokens."""
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000

    @property
    def per_million(self) -> float:
        """Input plus output price: what the strategies compare."""
        return self.input_per_million + self.output_per_million


def _tenant(price: ModelPrice, info: ModelInfo | None) -> Price:
    return Price(price.input_usd_per_million, price.output_usd_per_million, TENANT_PRICES, info)  # type: ignore[arg-type]


def resolve(name: str, prices: Mapping[str, ModelPrice], catalog: Catalog) -> Price | None:
    """The price of ``name`` for a tenant whose own prices are ``prices``;
    None when nothing prices it (see the module docstring for the order)."""
    tuned_from = fine_tuned_base(name)
    if tuned_from is not None:
        info = catalog.model(tuned_from) or catalog.model(base_model(tuned_from))
        own = prices.get(name)
        if own is not None:
            return _tenant(own, info)
        if info is None or info.fine_tuned_per_million is None:
            return None
        return Price(*info.fine_tuned_per_million, CATALOG, info)
    own = prices.get(name)
    info = catalog.model(name)
    if own is None or info is None:
        base = base_model(name)
        if own is None and prices:
            own = prices.get(base)
        if info is None:
            info = catalog.model(base)
    if own is not None:
        return _tenant(own, info)
    if info is None:
        return None
    return Price(info.input_per_million, info.output_per_million, CATALOG, info)


def azure_model(
    deployment: str,
    configured: str,
    learned: str | None,
    prices: Mapping[str, ModelPrice],
    catalog: Catalog,
) -> str:
    """The name an Azure deployment is priced as: the model the tenant says it
    runs (``provider_config.azure.model``); else the deployment's own name when
    that prices (a deployment named ``gpt-4o``, or one the tenant priced);
    else the model Azure reported for it in an earlier answer (``learned``);
    else the deployment's name (unpriced)."""
    if configured:
        return configured
    if learned and resolve(deployment, prices, catalog) is None:
        return learned
    return deployment
