"""Domain objects of a tenant's configuration, free of protobuf and SQL.

Keys appear here only as ciphertext plus the preview computed when they were
written, so a read never needs to decrypt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from liya_engine.providers import facts

MODE_BYOK: Final = "byok"
MODE_MANAGED: Final = "managed"
MODES: Final = (MODE_BYOK, MODE_MANAGED)
DEFAULT_MODE: Final = MODE_MANAGED

STRATEGIES: Final = ("default", "cost-optimised", "quality-optimised", "latency-optimised")
PROVIDER_FIELDS: Final = {
    "openai": ("api_key", "default_model"),
    "anthropic": ("api_key", "default_model"),
    "azure": ("api_key", "endpoint", "deployment_name", "api_version"),
}
PROVIDER_ORDER: Final = facts.PRECEDENCE  # precedence, highest first


@dataclass(frozen=True, slots=True)
class StoredProvider:
    """One provider's settings as stored: ciphertext, never the key."""

    api_key_ciphertext: bytes | None = field(default=None, repr=False)
    api_key_preview: str = ""
    default_model: str = ""
    endpoint: str = ""
    deployment_name: str = ""
    api_version: str = ""

    @property
    def configured(self) -> bool:
        return self.api_key_ciphertext is not None

    @property
    def empty(self) -> bool:
        return self == StoredProvider()


@dataclass(frozen=True, slots=True)
class ModelSettings:
    strategy: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    cost_limit_usd_per_request: float | None = None


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """A tenant's whole configuration at one version."""

    tenant_id: str
    version: int = 0
    mode: str = DEFAULT_MODE
    providers: dict[str, StoredProvider] = field(default_factory=dict)
    model: ModelSettings = field(default_factory=ModelSettings)
    update_time: datetime | None = None

    @property
    def etag(self) -> str:
        return f"v{self.version}"

    def provider(self, name: str) -> StoredProvider:
        return self.providers.get(name, StoredProvider())

    def configured_providers(self) -> list[str]:
        """Providers with a stored key, highest precedence first."""
        return [p for p in PROVIDER_ORDER if self.provider(p).configured]

    def with_provider(self, name: str, stored: StoredProvider) -> TenantConfig:
        providers = dict(self.providers)
        if stored.empty:
            providers.pop(name, None)
        else:
            providers[name] = stored
        return replace(self, providers=providers)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to a tenant's configuration. Holds no key and no preview."""

    id: int
    tenant_id: str
    actor: str
    request_id: str
    create_time: datetime
    changed_paths: tuple[str, ...]
    mode_before: str
    mode_after: str


CLEAR: Final = object()
"""Marks a patch value that removes the field (a masked path with no value)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One field of an update: a path such as ``provider_config.openai.api_key``
    and the new value, or ``CLEAR``. Values of ``api_key`` paths are ``Secret``."""

    path: str
    value: object
