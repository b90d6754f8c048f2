"""Domain objects of a tenant's configuration, free of protobuf and SQL.

Stored keys appear here only as ciphertext plus the preview computed when they
were written, so a read never needs to decrypt. While an update is being
applied, a key it sets waits as ``StoredProvider.pending_key`` until the
service seals it (only when it writes).

The field tables below (``PROVIDER_FIELDS``, ``MODEL_FIELDS``, ``MODEL_MAPS``)
name the fields of the API's config messages: the one list the request
conversion, the path grammar, the change types and the masked view derive
theirs from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from liya_engine.providers import facts
from liya_engine.secret import Secret

MODE_BYOK: Final = "byok"
MODE_MANAGED: Final = "managed"
MODES: Final = (MODE_BYOK, MODE_MANAGED)
DEFAULT_MODE: Final = MODE_MANAGED

STRATEGIES: Final = ("default", "cost-optimised", "quality-optimised", "latency-optimised")
KEY_FIELD: Final = "api_key"
"""The one secret field of each provider message; stored only sealed."""
PROVIDER_FIELDS: Final = {
    "openai": (KEY_FIELD, "default_model"),
    "anthropic": (KEY_FIELD, "default_model"),
    "azure": (KEY_FIELD, "endpoint", "deployment_name", "api_version", "model"),
}
"""Each provider message's fields, in proto order. Every field but the key is a
``StoredProvider`` attribute of the same name."""
MODEL_FIELDS: Final = (
    "strategy",
    "overrides",
    "cost_limit_usd_per_request",
    "prices",
    "monthly_budget_usd",
)
"""``ModelConfig``'s fields, in proto order; each a ``ModelSettings`` attribute."""
MODEL_MAPS: Final = {"overrides": "intent", "prices": "model"}
"""The map fields of ``ModelConfig`` and what their keys name. Without a mask,
entries merge one by one into the stored map."""
PROVIDER_ORDER: Final = facts.PRECEDENCE  # precedence, highest first


@dataclass(frozen=True, slots=True)
class StoredProvider:
    """One provider's settings as stored: ciphertext, never the key.

    ``pending_key`` exists only inside an update: the key it sets, not yet
    sealed. The service seals it before anything is written, so a config read
    from storage or cached never has one.
    """

    api_key_ciphertext: bytes | None = field(default=None, repr=False)
    api_key_preview: str = ""
    default_model: str = ""
    endpoint: str = ""
    deployment_name: str = ""
    api_version: str = ""
    model: str = ""  # Azure: the model the deployment runs, when the tenant says
    pending_key: Secret | None = field(
        default=None, repr=False, hash=False, metadata={"stored": False}
    )

    @property
    def configured(self) -> bool:
        return self.api_key_ciphertext is not None or self.pending_key is not None

    @property
    def empty(self) -> bool:
        return self == StoredProvider()


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A tenant's price of one model, USD per million tokens. Both are set in
    a stored price; an update may carry one missing, which its check refuses."""

    input_usd_per_million: float | None = None
    output_usd_per_million: float | None = None


@dataclass(frozen=True, slots=True)
class ModelSettings:
    strategy: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    cost_limit_usd_per_request: float | None = None
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    monthly_budget_usd: float | None = None


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
        """Providers with a key (stored, or set by the update being applied),
        highest precedence first."""
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
"""Marks a ``Change`` value that removes the field (a masked path with no value)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One field of an update written as its path, such as
    ``provider_config.openai.api_key``, and the new value, or ``CLEAR``.
    Values of ``api_key`` paths are ``Secret``.

    A convenience for scripts and tests: ``ConfigService.update`` turns each
    into the typed change of ``liya_engine.config.changes`` through the one
    path grammar (``liya_engine.config.patch.change_at``)."""

    path: str
    value: object
