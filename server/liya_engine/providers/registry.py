"""The adapter for each provider name, built once per process."""

from __future__ import annotations

from liya_engine.config.endpoints import EndpointPolicy
from liya_engine.providers import facts
from liya_engine.providers.anthropic_adapter import AnthropicAdapter
from liya_engine.providers.azure_adapter import AzureOpenAIAdapter
from liya_engine.providers.base import ProviderAdapter
from liya_engine.providers.openai_adapter import OpenAIAdapter
from liya_engine.providers.pool import PoolLimits


def build_adapters(
    *, azure_endpoints: EndpointPolicy | None = None, pool: PoolLimits | None = None
) -> dict[str, ProviderAdapter]:
    """One adapter per provider; base URLs and keys travel in ``Credentials``.

    Azure endpoints are the tenants' own, so its adapter connects only to the
    peer addresses the Azure endpoint policy allows (by default public ones: a
    name resolving to the internal network is refused); OpenAI's and
    Anthropic's base URLs are the operator's. ``pool`` sizes each adapter's
    own connection pool (``liya_engine.providers.pool``).
    """
    azure_endpoints = azure_endpoints or EndpointPolicy()
    return {
        facts.OPENAI: OpenAIAdapter(pool=pool),
        facts.ANTHROPIC: AnthropicAdapter(pool=pool),
        facts.AZURE: AzureOpenAIAdapter(endpoints=azure_endpoints, pool=pool),
    }
