"""The field path grammar of a tenant's config, both ways.

Paths name fields as ``UpdateConfigRequest.update_mask`` and audit entries do:

    provider_config
    provider_config.mode
    provider_config.<provider>              openai, anthropic, azure
    provider_config.<provider>.<field>      a field of that provider's message
    model_config
    model_config.<field>                    strategy, cost_limit_usd_per_request,
                                            monthly_budget_usd
    model_config.<map>                      overrides
    model_config.<map>.<key>                one entry, such as overrides.general_chat
                                            or prices.`gpt-4.1`

A map key that is not a plain identifier is quoted in backticks, a literal
backtick doubled (AIP-161): ``model_config.prices.`gpt-4.1```. Reading, a key
without dots or backticks is also taken unquoted (``prices.gpt-4o``); writing,
every key that needs quotes gets them.

``parse`` reads a path into a ``FieldPath``; the ``*_path`` functions write one;
``leaf_values`` reads every leaf of a config by its path. All three derive the
names from the field tables of ``liya_engine.config.model``, so a field added
there is addressable everywhere at once.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from liya_engine.config.model import (
    KEY_FIELD,
    MODEL_FIELDS,
    MODEL_MAPS,
    PROVIDER_FIELDS,
    TenantConfig,
)
from liya_engine.errors import FieldViolation
from liya_engine.redact import shown

PROVIDER_CONFIG: Final = "provider_config"
MODEL_CONFIG: Final = "model_config"
MODE: Final = f"{PROVIDER_CONFIG}.mode"
WHOLE: Final = "*"
"""AIP-134's mask for "the whole resource"."""

# Mask paths are echoed back only when plainly field-shaped: a caller who
# pasted a key into the mask must not get it back in the error.
_SHOWABLE_PATH = re.compile(r"[a-z_]{1,40}(\.[a-z_]{1,40}){0,3}")


class Kind(enum.Enum):
    """What a path names."""

    PROVIDER_CONFIG = "provider_config"
    MODE = "mode"
    PROVIDER = "provider"
    PROVIDER_FIELD = "provider field"
    MODEL_CONFIG = "model_config"
    MODEL_FIELD = "model field"
    MAP = "map"
    MAP_ENTRY = "map entry"


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed path: its kind, the provider, model field or map it names
    (``name``), and the provider field or map key below that (``key``)."""

    kind: Kind
    name: str = ""
    key: str = ""


def provider_path(provider: str) -> str:
    return f"{PROVIDER_CONFIG}.{provider}"


def provider_field_path(provider: str, name: str) -> str:
    return f"{PROVIDER_CONFIG}.{provider}.{name}"


def model_field_path(name: str) -> str:
    return f"{MODEL_CONFIG}.{name}"


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_key(key: str) -> str:
    """``key`` as a path segment: as it is when a plain identifier, else in
    backticks with any backtick doubled (AIP-161)."""
    if _PLAIN_KEY.fullmatch(key):
        return key
    return "`" + key.replace("`", "``") + "`"


def map_entry_path(name: str, key: str) -> str:
    return f"{MODEL_CONFIG}.{name}.{quote_key(key)}"


def split(path: str) -> list[str] | None:
    """The segments of ``path``, backtick-quoted ones unquoted; None when a
    quote is left open or a quoted segment does not end at a dot."""
    parts: list[str] = []
    i, n = 0, len(path)
    while True:
        if i < n and path[i] == "`":
            segment: list[str] = []
            i += 1
            while True:
                end = path.find("`", i)
                if end < 0:
                    return None  # unterminated quote
                segment.append(path[i:end])
                if path.startswith("``", end):
                    segment.append("`")
                    i = end + 2
                    continue
                i = end + 1
                break
            parts.append("".join(segment))
        else:
            end = path.find(".", i)
            end = n if end < 0 else end
            if "`" in path[i:end]:
                return None
            parts.append(path[i:end])
            i = end
        if i == n:
            return parts
        if path[i] != ".":
            return None  # text after a closing quote
        i += 1


def parse(path: str) -> FieldPath | None:
    """The field ``path`` names, or None if it names none."""
    parts = split(path)
    if parts is None:
        return None
    head, rest = parts[0], parts[1:]
    if head == PROVIDER_CONFIG:
        return _provider_part(rest)
    if head == MODEL_CONFIG:
        return _model_part(rest)
    return None


def _provider_part(rest: list[str]) -> FieldPath | None:
    if not rest:
        return FieldPath(Kind.PROVIDER_CONFIG)
    if rest == ["mode"]:
        return FieldPath(Kind.MODE)
    fields = PROVIDER_FIELDS.get(rest[0])
    if fields is None:
        return None
    if len(rest) == 1:
        return FieldPath(Kind.PROVIDER, rest[0])
    if len(rest) == 2 and rest[1] in fields:
        return FieldPath(Kind.PROVIDER_FIELD, rest[0], rest[1])
    return None


def _model_part(rest: list[str]) -> FieldPath | None:
    if not rest:
        return FieldPath(Kind.MODEL_CONFIG)
    if rest[0] not in MODEL_FIELDS:
        return None
    if len(rest) == 1:
        return FieldPath(Kind.MAP if rest[0] in MODEL_MAPS else Kind.MODEL_FIELD, rest[0])
    if len(rest) == 2 and rest[0] in MODEL_MAPS and rest[1]:
        return FieldPath(Kind.MAP_ENTRY, rest[0], rest[1])
    return None


def _known_paths() -> str:
    providers = "|".join(f".{p}" for p in PROVIDER_FIELDS)
    model = "|".join(
        f".{f}[.{MODEL_MAPS[f]}]" if f in MODEL_MAPS else f".{f}" for f in MODEL_FIELDS
    )
    return f"{PROVIDER_CONFIG}[.mode|{providers}[.field]] or {MODEL_CONFIG}[{model}]"


def unknown_path(path: str) -> FieldViolation:
    """The violation for a mask path that names no field."""
    hint = ""
    if path.startswith(f"{MODEL_CONFIG}.prices.") and "`" not in path:
        hint = "; quote a model name with dots in backticks, as in model_config.prices.`gpt-4.1`"
    return FieldViolation(
        "update_mask",
        f"unknown path {shown(path, _SHOWABLE_PATH)}; paths are {_known_paths()}{hint}",
    )


def leaf_values(config: TenantConfig) -> dict[str, object]:
    """Every path an audit entry may name, with its value in ``config``.

    The key's value is its ciphertext and any pending key: two configs agree on
    it only if they hold the same sealed key (or the same key not yet sealed).
    """
    out: dict[str, object] = {MODE: config.mode}
    for provider, fields in PROVIDER_FIELDS.items():
        stored = config.provider(provider)
        for name in fields:
            out[provider_field_path(provider, name)] = (
                (stored.api_key_ciphertext, stored.pending_key)
                if name == KEY_FIELD
                else getattr(stored, name)
            )
    out[MODEL_CONFIG] = config.model
    for name in MODEL_FIELDS:
        value = getattr(config.model, name)
        out[model_field_path(name)] = value
        if name in MODEL_MAPS:
            out.update({map_entry_path(name, k): v for k, v in value.items()})
    return out
