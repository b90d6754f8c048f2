"""The adapter for each provider name, built once per process."""

from __future__ import annotations

from liya_engine.providers.anthropic_adapter import AnthropicAdapter
from liya_engine.providers.azure_adapter import AzureOpenAIAdapter
from liya_engine.providers.base import ProviderAdapter
from liya_engine.providers.openai_adapter import OpenAIAdapter


def build_adapters() -> dict[str, ProviderAdapter]:
    """One adapter per provider; base URLs and keys travel in ``Credentials``."""
    return {
        "openai": OpenAIAdapter(),
        "anthropic": AnthropicAdapter(),
        "azure": AzureOpenAIAdapter(),
    }
