"""Routing rules of DESIGN.md: which provider serves a call, with which model.

- Precedence when several providers are available: Azure, Anthropic, OpenAI.
- Model: ``overrides[intent]``; else the strategy's choice; else the serving
  provider's default model (Azure: its deployment).
- A model goes to the highest-precedence available provider able to serve it:
  Claude models to Anthropic; other models to Azure (as a deployment name) or
  else OpenAI. None able: BYOK_MODEL_NOT_FOUND. Never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from liya_engine.config.model import MODE_BYOK, PROVIDER_ORDER, ModelPrice, TenantConfig
from liya_engine.providers import facts
from liya_engine.routing.catalog import Catalog, ModelInfo
from liya_engine.routing.prices import resolve

LatencyOf = Callable[[str, str], float | None]  # (provider, model) -> seconds or None


def available_providers(cfg: TenantConfig, managed_providers: Sequence[str]) -> list[str]:
    """Providers the tenant's mode can use, highest precedence first."""
    if cfg.mode == MODE_BYOK:
        return cfg.configured_providers()
    return [p for p in PROVIDER_ORDER if p in managed_providers]


def serving_provider(cfg: TenantConfig, managed_providers: Sequence[str]) -> str | None:
    available = available_providers(cfg, managed_providers)
    return available[0] if available else None


def is_claude(model: str) -> bool:
    return model.lower().startswith("claude")


def provider_for_model(model: str, available: Sequence[str]) -> str | None:
    """The highest-precedence available provider that can serve ``model``."""
    if is_claude(model):
        return facts.ANTHROPIC if facts.ANTHROPIC in available else None
    # Azure serves OpenAI's models under deployment names; precedence decides.
    return next((p for p in PROVIDER_ORDER if p != facts.ANTHROPIC and p in available), None)


def choose_model(
    *,
    intent: str,
    strategy: str,
    overrides: dict[str, str],
    serving: str,
    default_model: str,
    catalog: Catalog,
    latency_of: LatencyOf,
    prices: Mapping[str, ModelPrice] | None = None,
) -> tuple[str, str]:
    """Return (model, chosen_by) for a call; the caller maps it to a provider.
    Strategies compare models at the tenant's ``prices`` where it set them."""
    if intent in overrides:
        return overrides[intent], "override"
    if strategy and strategy != "default":
        picked = _by_strategy(
            strategy, catalog.intents.get(intent, 1), serving, catalog, latency_of, prices or {}
        )
        if picked is not None:
            return picked.name, strategy
    return default_model, "default"


def _by_strategy(
    strategy: str,
    tier: int,
    serving: str,
    catalog: Catalog,
    latency_of: LatencyOf,
    prices: Mapping[str, ModelPrice],
) -> ModelInfo | None:
    # Azure serves OpenAI models under deployment names we cannot enumerate, so
    # strategies pick among the serving provider's own catalog models.
    if serving == facts.AZURE:
        return None
    candidates = catalog.models_for(serving)
    good = [m for m in candidates if m.tier >= tier]

    def cost(m: ModelInfo) -> float:
        price = resolve(m.name, prices, catalog)
        assert price is not None  # a catalog model always has a price
        return price.per_million

    if strategy == "cost-optimised":
        # No model at the intent's tier: the default model, never a weaker one.
        return min(good, key=lambda m: (cost(m), m.name), default=None)
    if strategy == "quality-optimised":
        return max(candidates, key=lambda m: (m.tier, -cost(m), m.name), default=None)
    if strategy == "latency-optimised":
        measured = [(latency_of(serving, m.name), m) for m in good]
        known = [(lat, m) for lat, m in measured if lat is not None]
        if known:
            return min(known, key=lambda x: (x[0], x[1].name))[1]
        # Nothing observed yet: the cheapest acceptable model is usually the fastest.
        return min(good, key=lambda m: (cost(m), m.name), default=None)
    return None
