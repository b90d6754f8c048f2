"""Checks of tenant input. Violations name the field and what to fix; they
never quote a key (only its length or which rule it broke)."""

from __future__ import annotations

import math
import re

from liya_engine.config.model import MODE_BYOK, MODES, STRATEGIES, ModelPrice, TenantConfig
from liya_engine.config.paths import map_entry_path
from liya_engine.errors import FieldViolation
from liya_engine.redact import looks_like_key
from liya_engine.routing.catalog import Catalog
from liya_engine.routing.router import provider_for_model
from liya_engine.secret import Secret

KEY_MIN, KEY_MAX = 6, 512
_KEY_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_INTENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"(\.\.\.|your-|<|>|xxxx|example)", re.IGNORECASE)
MAX_COST_LIMIT_USD = 1000.0
MAX_PRICE_USD_PER_MILLION = 10_000.0
MAX_PRICES = 100
PRICE_FIELDS = ("input_usd_per_million", "output_usd_per_million")
STRATEGY_ALIASES = {
    "cost-optimized": "cost-optimised",
    "quality-optimized": "quality-optimised",
    "latency-optimized": "latency-optimised",
}


def check_api_key(provider: str, path: str, key: Secret) -> list[FieldViolation]:
    value = key.reveal()
    if not KEY_MIN <= len(value) <= KEY_MAX:
        return [
            FieldViolation(path, f"must be {KEY_MIN} to {KEY_MAX} characters (got {len(value)})")
        ]
    if not _KEY_CHARS.fullmatch(value):
        return [
            FieldViolation(
                path,
                "may only contain letters, digits and . _ ~ + / = - "
                "(no spaces, quotes or line breaks: check the copy)",
            )
        ]
    if provider == "anthropic" and not value.startswith("sk-ant-"):
        return [FieldViolation(path, "an Anthropic key starts with 'sk-ant-'")]
    if provider == "openai" and value.startswith("sk-ant-"):
        return [
            FieldViolation(
                path, "this is an Anthropic key; set it under provider_config.anthropic.api_key"
            )
        ]
    if provider == "openai" and not value.startswith("sk-"):
        return [FieldViolation(path, "an OpenAI key starts with 'sk-'")]
    if provider == "azure" and value.startswith("sk-"):
        return [
            FieldViolation(
                path,
                "this looks like an OpenAI or Anthropic key; an Azure "
                "OpenAI key comes from the Azure portal (Keys and Endpoint)",
            )
        ]
    return []


def looks_like_placeholder(key: Secret) -> bool:
    return bool(_PLACEHOLDER.search(key.reveal())) or len(key) < 20


def _key_in_name(path: str) -> list[FieldViolation]:
    return [
        FieldViolation(
            path, "looks like an API key, not a name; keys go in the provider's api_key field"
        )
    ]


def check_model(path: str, value: str) -> list[FieldViolation]:
    if looks_like_key(value):
        return _key_in_name(path)
    if not _MODEL.fullmatch(value):
        return [
            FieldViolation(
                path,
                "must be a model name such as 'gpt-4o' (1-128 of letters, digits and . _ : / @ -)",
            )
        ]
    return []


def check_deployment(path: str, value: str) -> list[FieldViolation]:
    if looks_like_key(value):
        return _key_in_name(path)
    if not _DEPLOYMENT.fullmatch(value):
        return [
            FieldViolation(
                path, "must be an Azure deployment name (1-64 of letters, digits and . _ -)"
            )
        ]
    return []


def check_api_version(path: str, value: str) -> list[FieldViolation]:
    if not _API_VERSION.fullmatch(value):
        return [FieldViolation(path, "must look like '2024-02-15-preview' or '2024-10-21'")]
    return []


def check_mode(path: str, value: str) -> list[FieldViolation]:
    if value not in MODES:
        return [FieldViolation(path, "must be 'byok' or 'managed'")]
    return []


def normalise_strategy(value: str) -> str:
    return STRATEGY_ALIASES.get(value, value)


def check_strategy(path: str, value: str) -> list[FieldViolation]:
    if normalise_strategy(value) not in STRATEGIES:
        return [FieldViolation(path, "must be one of " + ", ".join(STRATEGIES))]
    return []


def override_path(intent: str) -> str:
    """The field path of one override, without quoting an intent that is not
    name-shaped (it may be a key pasted into the wrong place)."""
    if _INTENT.fullmatch(intent) and not looks_like_key(intent):
        return f"model_config.overrides.{intent}"
    return "model_config.overrides"


def check_intent(path: str, intent: str, catalog: Catalog) -> list[FieldViolation]:
    if intent not in catalog.intents:
        return [
            FieldViolation(
                path, "unknown intent; known intents: " + ", ".join(sorted(catalog.intents))
            )
        ]
    return []


def check_cost_limit(path: str, value: float) -> list[FieldViolation]:
    if not math.isfinite(value) or value < 0 or value > MAX_COST_LIMIT_USD:
        return [FieldViolation(path, f"must be a finite number from 0 to {MAX_COST_LIMIT_USD:g}")]
    return []


def price_path(model: str) -> str:
    """The field path of one price, without quoting a name that is not
    model-shaped (it may be a key pasted into the wrong place)."""
    if _MODEL.fullmatch(model) and not looks_like_key(model):
        return map_entry_path("prices", model)
    return "model_config.prices"


def check_price(model: str, price: object) -> list[FieldViolation]:
    """One entry of ``model_config.prices``: a model name and both prices,
    each finite and from 0 to ``MAX_PRICE_USD_PER_MILLION``."""
    path = price_path(model)
    out = check_model(path, model)
    if not isinstance(price, ModelPrice):
        return [*out, FieldViolation(path, "must be a ModelPrice")]
    for name in PRICE_FIELDS:
        value = getattr(price, name)
        if value is None:
            out.append(FieldViolation(f"{path}.{name}", "is required (USD per million tokens)"))
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_PRICE_USD_PER_MILLION
        ):
            out.append(
                FieldViolation(
                    f"{path}.{name}",
                    f"must be a finite number from 0 to {MAX_PRICE_USD_PER_MILLION:,.0f} "
                    "(USD per million tokens)",
                )
            )
    return out


def stored_price(price: ModelPrice) -> ModelPrice:
    """A checked price as stored: both values as floats (0 stays 0)."""
    return ModelPrice(float(price.input_usd_per_million), float(price.output_usd_per_million))  # type: ignore[arg-type]


def check_budget(path: str, value: float) -> list[FieldViolation]:
    if not math.isfinite(value) or value < 0:
        return [FieldViolation(path, "must be a finite number, 0 or more")]
    return []


def check_complete(config: TenantConfig) -> list[FieldViolation]:
    """Whole-config rules that single fields cannot check."""
    out: list[FieldViolation] = []
    if len(config.model.prices) > MAX_PRICES:
        out.append(
            FieldViolation(
                "model_config.prices",
                f"holds at most {MAX_PRICES} models (got {len(config.model.prices)}): "
                "remove prices of models no longer used",
            )
        )
    azure = config.provider("azure")
    if azure.configured:
        for name in ("endpoint", "deployment_name", "api_version"):
            if not getattr(azure, name):
                out.append(
                    FieldViolation(
                        f"provider_config.azure.{name}", "is required when an Azure key is set"
                    )
                )
    return out


def warnings_for(config: TenantConfig, catalog: Catalog) -> list[str]:
    """Accepted but probably not what the tenant wants."""
    out: list[str] = []
    if config.mode == MODE_BYOK and not config.configured_providers():
        out.append(
            "mode is byok but no provider key is set: calls fail with "
            "BYOK_NOT_CONFIGURED until one is"
        )
    if config.mode == MODE_BYOK:
        for intent, model in sorted(config.model.overrides.items()):
            if provider_for_model(model, config.configured_providers()) is None:
                out.append(
                    f"override {intent} -> {model}: no configured provider serves this "
                    "model; those calls fail with BYOK_MODEL_NOT_FOUND"
                )
    return out
