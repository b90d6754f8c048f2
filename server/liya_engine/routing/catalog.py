"""The model catalog: models with provider, prices and quality tier; intents.

Loaded once from a JSON data file (the packaged default, or the operator's
``LIYA_CATALOG_FILE``) and shared read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from liya_engine.errors import SettingsError


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    provider: str
    input_per_million: float
    output_per_million: float
    tier: int
    context_tokens: int
    max_output_tokens: int
    # Inference prices of a model fine-tuned from this one; None: not offered.
    fine_tuned_per_million: tuple[float, float] | None = None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD at list price."""
        return (
            input_tokens * self.input_per_million + output_tokens * self.output_per_million
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class Catalog:
    models: dict[str, ModelInfo]
    intents: dict[str, int]  # intent -> minimum tier
    default_models: dict[str, str]
    default_max_output_tokens: int

    def model(self, name: str) -> ModelInfo | None:
        return self.models.get(name)

    def models_for(self, provider: str) -> list[ModelInfo]:
        return [m for m in self.models.values() if m.provider == provider]

    @classmethod
    def load(cls, path: str | None = None) -> Catalog:
        """Read the packaged catalog, or the operator's file at ``path``."""
        try:
            if path:
                raw = Path(path).read_text(encoding="utf-8")
            else:
                raw = (
                    resources.files("liya_engine.data")
                    .joinpath("catalog.json")
                    .read_text(encoding="utf-8")
                )
            data = json.loads(raw)
            models = {
                m["name"]: ModelInfo(
                    name=m["name"],
                    provider=m["provider"],
                    input_per_million=float(m["input_per_million"]),
                    output_per_million=float(m["output_per_million"]),
                    tier=int(m["tier"]),
                    context_tokens=int(m.get("context_tokens", 128000)),
                    max_output_tokens=int(m.get("max_output_tokens", 4096)),
                    fine_tuned_per_million=_fine_tuned(m.get("fine_tuned")),
                )
                for m in data["models"]
            }
            intents = {i["name"]: int(i["tier"]) for i in data["intents"]}
            defaults = dict(data.get("default_models", {}))
            default_max = int(data.get("default_max_output_tokens", 1024))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(f"model catalog {path or '(packaged)'} is invalid: {exc}") from None
        bad = [m.name for m in models.values() if m.provider not in ("openai", "anthropic")]
        if bad:
            raise SettingsError(f"model catalog: unknown provider for {', '.join(bad)}")
        return cls(models, intents, defaults, default_max)


def _fine_tuned(raw: dict | None) -> tuple[float, float] | None:
    if raw is None:
        return None
    return float(raw["input_per_million"]), float(raw["output_per_million"])
