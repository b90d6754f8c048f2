"""The typed changes of an UpdateConfig, each able to check and apply itself.

A PATCH is a list of these, built once from the request by
``liya_engine.config.patch``. ``check`` looks at the change alone (before any
I/O); ``apply`` returns the patched config and the leaf paths whose value it
changed. ``apply`` never encrypts: a key it sets waits as
``StoredProvider.pending_key`` until the service seals it, and only when it
writes.

A ``None`` value clears the field (a masked path with no value in the request).

Adding a field is one entry in a table here (``PROVIDER_FIELD_CHECKS``,
``MODEL_FIELD_RULES`` or ``MAP_RULES``) next to its name in
``liya_engine.config.model``; no new change type is needed for a string,
number or map field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from liya_engine.config import paths
from liya_engine.config import validation as v
from liya_engine.config.keys import key_preview
from liya_engine.config.model import (
    DEFAULT_MODE,
    KEY_FIELD,
    PROVIDER_FIELDS,
    ModelSettings,
    StoredProvider,
    TenantConfig,
)
from liya_engine.errors import FieldViolation
from liya_engine.routing.catalog import Catalog
from liya_engine.secret import Secret

Violations = list[FieldViolation]
Applied = tuple[TenantConfig, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Rules:
    """What checks need beyond a value: the catalog's intents and the
    operator's rule for Azure endpoints, ``check_endpoint(path, value)``."""

    catalog: Catalog
    check_endpoint: Callable[[str, str], Violations]


class ConfigChange:
    """One change of a PATCH. Subclasses are frozen dataclasses."""

    __slots__ = ()

    def check(self, rules: Rules) -> Violations:
        """What is wrong with the change's value, looked at alone."""
        return []

    def warnings(self) -> list[str]:
        """Accepted, but probably not what the tenant wants."""
        return []

    def apply(self, config: TenantConfig) -> Applied:
        """The patched config and the leaf paths whose value changed."""
        raise NotImplementedError


# -- provider_config -------------------------------------------------------------------

PROVIDER_FIELD_CHECKS: Mapping[str, Callable[[str, str, Rules], Violations]] = {
    "default_model": lambda path, value, rules: v.check_model(path, value),
    "endpoint": lambda path, value, rules: rules.check_endpoint(path, value),
    "deployment_name": lambda path, value, rules: v.check_deployment(path, value),
    "api_version": lambda path, value, rules: v.check_api_version(path, value),
    # What the deployment runs: a price and tier, not a credential.
    "model": lambda path, value, rules: v.check_model(path, value),
}
"""The check of each provider field but the key, by proto field name."""


@dataclass(frozen=True, slots=True)
class SetMode(ConfigChange):
    """``provider_config.mode``; cleared, it is the default mode."""

    mode: str | None

    def check(self, rules: Rules) -> Violations:
        return [] if self.mode is None else v.check_mode(paths.MODE, self.mode)

    def apply(self, config: TenantConfig) -> Applied:
        mode = DEFAULT_MODE if self.mode is None else self.mode
        if mode == config.mode:
            return config, ()
        return replace(config, mode=mode), (paths.MODE,)


@dataclass(frozen=True, slots=True)
class ClearProvider(ConfigChange):
    """Removes all of a provider's settings (the first step of replacing it)."""

    provider: str

    def apply(self, config: TenantConfig) -> Applied:
        old = config.provider(self.provider)
        if old.empty:
            return config, ()
        changed = tuple(
            paths.provider_field_path(self.provider, name)
            for name in PROVIDER_FIELDS[self.provider]
            if (old.configured if name == KEY_FIELD else getattr(old, name))
        )
        return config.with_provider(self.provider, StoredProvider()), changed


@dataclass(frozen=True, slots=True)
class SetProviderField(ConfigChange):
    """One non-secret field of a provider, checked by ``PROVIDER_FIELD_CHECKS``."""

    provider: str
    name: str
    value: str | None

    @property
    def path(self) -> str:
        return paths.provider_field_path(self.provider, self.name)

    def check(self, rules: Rules) -> Violations:
        if self.value is None:
            return []
        return PROVIDER_FIELD_CHECKS[self.name](self.path, self.value, rules)

    def apply(self, config: TenantConfig) -> Applied:
        old = config.provider(self.provider)
        value = getattr(StoredProvider(), self.name) if self.value is None else self.value
        if getattr(old, self.name) == value:
            return config, ()
        return config.with_provider(self.provider, replace(old, **{self.name: value})), (self.path,)


@dataclass(frozen=True, slots=True)
class SetApiKey(ConfigChange):
    """A provider's key. Setting one leaves it pending (unsealed) with its
    preview; the service seals it, or keeps the stored ciphertext when the
    stored key is the same."""

    provider: str
    key: Secret | None = field(repr=False)

    @property
    def path(self) -> str:
        return paths.provider_field_path(self.provider, KEY_FIELD)

    def check(self, rules: Rules) -> Violations:
        return [] if self.key is None else v.check_api_key(self.provider, self.path, self.key)

    def warnings(self) -> list[str]:
        if self.key is None or not v.looks_like_placeholder(self.key):
            return []
        return [
            f"{self.path} looks like a placeholder, not a real key: calls fail with "
            "BYOK_AUTH_FAILED until a real key is set"
        ]

    def apply(self, config: TenantConfig) -> Applied:
        old = config.provider(self.provider)
        if self.key is None:
            if not old.configured:
                return config, ()
            new = replace(old, api_key_ciphertext=None, api_key_preview="", pending_key=None)
        else:
            new = replace(
                old,
                api_key_ciphertext=None,
                api_key_preview=key_preview(self.key),
                pending_key=self.key,
            )
        return config.with_provider(self.provider, new), (self.path,)


# -- model_config ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelFieldRule:
    """How one scalar model field is checked, ``check(path, value)``, and
    stored, ``store(value)`` (e.g. the guide's spelling of a strategy)."""

    check: Callable[[str, Any], Violations]
    store: Callable[[Any], Any]


MODEL_FIELD_RULES: Mapping[str, ModelFieldRule] = {
    "strategy": ModelFieldRule(v.check_strategy, v.normalise_strategy),
    "cost_limit_usd_per_request": ModelFieldRule(v.check_cost_limit, float),
    "monthly_budget_usd": ModelFieldRule(v.check_budget, float),
}


def _check_override(intent: str, model: str, rules: Rules) -> Violations:
    path = v.override_path(intent)
    return v.check_intent(path, intent, rules.catalog) + v.check_model(path, model)


MAP_RULES: Mapping[str, Callable[[str, Any, Rules], Violations]] = {
    "overrides": _check_override,
    "prices": lambda model, price, rules: v.check_price(model, price),
}
"""The check of one entry, ``check(key, value, rules)``, of each model map."""

MAP_STORE: Mapping[str, Callable[[Any], Any]] = {
    "overrides": str,
    "prices": v.stored_price,
}
"""How one checked entry of each model map is stored."""


def _with_model(config: TenantConfig, **values: object) -> TenantConfig:
    return replace(config, model=replace(config.model, **values))


@dataclass(frozen=True, slots=True)
class ClearModelConfig(ConfigChange):
    """Resets all of the model config (the first step of replacing it)."""

    def apply(self, config: TenantConfig) -> Applied:
        if config.model == ModelSettings():
            return config, ()
        return replace(config, model=ModelSettings()), (paths.MODEL_CONFIG,)


@dataclass(frozen=True, slots=True)
class SetModelField(ConfigChange):
    """One scalar field of the model config, ruled by ``MODEL_FIELD_RULES``."""

    name: str
    value: object | None

    @property
    def path(self) -> str:
        return paths.model_field_path(self.name)

    def check(self, rules: Rules) -> Violations:
        if self.value is None:
            return []
        return MODEL_FIELD_RULES[self.name].check(self.path, self.value)

    def apply(self, config: TenantConfig) -> Applied:
        if self.value is None:
            value = getattr(ModelSettings(), self.name)
        else:
            value = MODEL_FIELD_RULES[self.name].store(self.value)
        if getattr(config.model, self.name) == value:
            return config, ()
        return _with_model(config, **{self.name: value}), (self.path,)


@dataclass(frozen=True, slots=True)
class ReplaceMap(ConfigChange):
    """A whole model map (``model_config.overrides`` in a mask)."""

    name: str
    entries: Mapping[str, object]

    def check(self, rules: Rules) -> Violations:
        check = MAP_RULES[self.name]
        return [x for key, value in self.entries.items() for x in check(key, value, rules)]

    def apply(self, config: TenantConfig) -> Applied:
        store = MAP_STORE[self.name]
        entries = {key: store(value) for key, value in self.entries.items()}
        if getattr(config.model, self.name) == entries:
            return config, ()
        return _with_model(config, **{self.name: entries}), (paths.model_field_path(self.name),)


@dataclass(frozen=True, slots=True)
class SetMapEntry(ConfigChange):
    """One entry of a model map; the other entries stay."""

    name: str
    key: str
    value: object | None

    def check(self, rules: Rules) -> Violations:
        return [] if self.value is None else MAP_RULES[self.name](self.key, self.value, rules)

    def apply(self, config: TenantConfig) -> Applied:
        entries = dict(getattr(config.model, self.name))
        value = None if self.value is None else MAP_STORE[self.name](self.value)
        if entries.get(self.key) == value:
            return config, ()
        if value is None:
            del entries[self.key]
        else:
            entries[self.key] = value
        path = paths.map_entry_path(self.name, self.key)
        return _with_model(config, **{self.name: entries}), (path,)
