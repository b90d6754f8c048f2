"""Azure OpenAI chat completions through the official SDK (``openai.AsyncAzureOpenAI``).

The tenant's endpoint is ``creds.base_url``, its API version
``creds.api_version``, and the deployment is ``request.model``. Endpoint
validation (https, Azure hosts or an allowlist, no IP literals) happens when
the config is saved and again before each call; here the shared pool refuses
to follow redirects (the SDK strips the ``api-key`` header from a redirected
request as well) and, built with the Azure endpoint policy (``endpoints``),
connects only to the peer addresses it allows.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
import openai

from liya_engine.providers.base import Credentials, ProviderRequest
from liya_engine.providers.openai_adapter import OpenAIAdapter, _forget_ambient_account
from liya_engine.providers.sdk_clients import NO_TENANT_KEY

# API versions from which Azure accepts stream usage and max_completion_tokens.
_STREAM_USAGE_SINCE = "2024-08-01"
_MAX_COMPLETION_TOKENS_SINCE = "2024-09-01"
_VERSION_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _version_at_least(api_version: str | None, since: str) -> bool:
    match = _VERSION_DATE.match(api_version or "")
    # Date-named versions compare as strings; anything else (e.g. "v1",
    # "latest") is a newer scheme that supports both features.
    return match.group(0) >= since if match else bool(api_version)


class AzureOpenAIAdapter(OpenAIAdapter):
    """``ProviderAdapter`` for Azure OpenAI.

    ``AzureOpenAIAdapter(max_clients=1024, http_client=None, connect_timeout=10.0)``.
    With API versions older than 2024-08-01 Azure sends no usage in streams, so
    the final ``StreamEnd`` carries estimated token counts.
    """

    name = "azure"

    def _new_client(
        self, base_url: str, api_version: str | None, http_client: httpx2.AsyncClient
    ) -> openai.AsyncOpenAI:
        if not api_version:
            raise ValueError("Azure credentials need an api_version")
        client = openai.AsyncAzureOpenAI(
            api_key=NO_TENANT_KEY,
            azure_endpoint=base_url,
            api_version=api_version,
            max_retries=0,
            http_client=http_client,
        )
        _forget_ambient_account(client)
        return client

    def key_headers(self, creds: Credentials) -> dict[str, str]:
        return {"api-key": creds.api_key.reveal()}

    def _token_limit(self, creds: Credentials, request: ProviderRequest) -> dict[str, int]:
        if _version_at_least(creds.api_version, _MAX_COMPLETION_TOKENS_SINCE):
            return {"max_completion_tokens": request.max_tokens}
        return {"max_tokens": request.max_tokens}

    def _stream_options(self, creds: Credentials) -> dict[str, Any] | None:
        if _version_at_least(creds.api_version, _STREAM_USAGE_SINCE):
            return {"include_usage": True}
        return None
