"""Which model the fake reports having served, as the providers do.

OpenAI and Anthropic answer a call to an alias such as ``gpt-4o`` with the
dated snapshot that served it (``gpt-4o-2024-08-06``); a dated or fine-tuned
name comes back as sent. Azure OpenAI reports the model behind the deployment,
whatever the deployment is called: a deployment mapped with
``FakeProviders.set_deployments`` reports its mapped model; one named like a
model reports that model's snapshot; any other runs ``AZURE_DEFAULT_MODEL``.
"""

from __future__ import annotations

from collections.abc import Mapping

SNAPSHOTS: dict[str, str] = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "o1": "o1-2024-12-17",
    "o3-mini": "o3-mini-2025-01-31",
    "claude-sonnet-4-6": "claude-sonnet-4-6-20260101",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-5": "claude-sonnet-5-20261101",
}
AZURE_DEFAULT_MODEL = "gpt-4o-2024-08-06"


def served_model(provider: str, requested: str, deployments: Mapping[str, str]) -> str:
    """The model name the provider's answer carries for ``requested`` (for
    Azure, the deployment)."""
    if provider == "azure":
        return deployments.get(requested) or SNAPSHOTS.get(requested) or AZURE_DEFAULT_MODEL
    return SNAPSHOTS.get(requested, requested)
