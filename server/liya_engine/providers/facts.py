"""What the service knows about each provider, in one place: pure data.

Precedence, the titles shown in messages, where a tenant manages each
provider account (for messages), and the public prefixes of their keys.
Domain code, adapters and the client all read these; this module imports
nothing, so any layer may use it.
"""

from __future__ import annotations

from typing import Final

OPENAI: Final = "openai"
ANTHROPIC: Final = "anthropic"
AZURE: Final = "azure"

PRECEDENCE: Final = (AZURE, ANTHROPIC, OPENAI)
"""When several providers are configured, the first of these serves a call."""

TITLES: Final = {OPENAI: "OpenAI", ANTHROPIC: "Anthropic", AZURE: "Azure OpenAI"}
"""How messages name each provider."""

KEY_PREFIXES: Final = ("sk-ant-api03-", "sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk-")
"""Public prefixes of provider keys, longest first: a preview may show them,
scrubbing treats what follows as the secret part."""


DASHBOARDS: Final = {
    OPENAI: "your OpenAI dashboard",
    ANTHROPIC: "the Anthropic Console",
    AZURE: "the Azure portal",
}
"""Where a tenant manages each provider's keys, plan and limits, as messages name it."""

GEN_AI_PROVIDER_NAMES: Final = {OPENAI: "openai", ANTHROPIC: "anthropic", AZURE: "azure.ai.openai"}
"""Each provider as OpenTelemetry's GenAI conventions name it (``gen_ai.provider.name``)."""
