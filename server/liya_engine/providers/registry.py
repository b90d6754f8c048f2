"""The adapter for each provider name, built once per process."""

from __future__ import annotations

from liya_engine.providers.anthropic_adapter import AnthropicAdapter
from liya_engine.providers.azure_adapter import AzureOpenAIAdapter
from liya_engine.providers.base import ProviderAdapter
from liya_engine.providers.openai_adapter import OpenAIAdapter


def build_adapters(*, azure_public_peers_only: bool = True) -> dict[str, ProviderAdapter]:
    """One adapter per provider; base URLs and keys travel in ``Credentials``.

    Azure endpoints are the tenants' own, so by default its adapter connects
    only to public addresses (a name resolving to the internal network is
    refused); OpenAI's and Anthropic's base URLs are the operator's.
    """
    return {
        "openai": OpenAIAdapter(),
        "anthropic": AnthropicAdapter(),
        "azure": AzureOpenAIAdapter(public_peers_only=azure_public_peers_only),
    }
