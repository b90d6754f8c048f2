"""Which changes an UpdateConfig asks for: the PATCH rules of AIP-134.

Without a mask, every populated field is one change; each map entry is one, so
sent entries merge into the stored map (protobuf merge semantics). With a
mask, exactly the listed paths: a listed path whose value the request does not
hold clears it; a path naming a message (a provider, ``provider_config``,
``model_config``) replaces it whole with what the request holds; ``*``
replaces the whole config.

The request arrives here as a ``PatchBody`` of plain values (the API layer
converts the proto), so these rules are read and tested without protobuf.
Paths are read by ``liya_engine.config.paths``, the one grammar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from liya_engine.config import paths
from liya_engine.config.changes import (
    ClearModelConfig,
    ClearProvider,
    ConfigChange,
    ReplaceMap,
    SetApiKey,
    SetMapEntry,
    SetMode,
    SetModelField,
    SetProviderField,
)
from liya_engine.config.model import CLEAR, KEY_FIELD, MODEL_FIELDS, MODEL_MAPS, PROVIDER_FIELDS
from liya_engine.config.paths import FieldPath, Kind
from liya_engine.errors import InvalidConfig


@dataclass(frozen=True, slots=True)
class PatchBody:
    """What a request holds, as plain values; absent fields are left out.

    ``providers`` maps a provider to its present fields (the key as a
    ``Secret``); ``model`` holds the present scalar fields of the model config
    and each map that has entries.
    """

    mode: str | None = None
    providers: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    model: Mapping[str, object] = field(default_factory=dict)


def changes_for(body: PatchBody, mask: Sequence[str] = ()) -> list[ConfigChange]:
    """The ordered changes the request asks for; ``InvalidConfig`` naming
    ``update_mask`` for every mask path that names no field."""
    if not mask:
        return _populated(body)
    listed = [paths.PROVIDER_CONFIG, paths.MODEL_CONFIG] if paths.WHOLE in mask else mask
    out: list[ConfigChange] = []
    bad = []
    for path in listed:
        parsed = paths.parse(path)
        if parsed is None:
            bad.append(paths.unknown_path(path))
        else:
            out += _masked(parsed, body)
    if bad:
        raise InvalidConfig(f"invalid update_mask: {bad[0].description}", bad)
    return out


def changes_at(path: str, value: object) -> list[ConfigChange]:
    """The changes that set the field at ``path`` to ``value``, as a mask
    naming ``path`` with ``value`` in the request would: ``CLEAR`` clears it.
    A path naming a message (a provider, ``model_config``) takes only ``CLEAR``.
    ``InvalidConfig`` if ``path`` names no field."""
    parsed = paths.parse(path)
    if parsed is None:
        bad = paths.unknown_path(path)
        raise InvalidConfig(f"invalid update_mask: {bad.description}", [bad])
    return _masked(parsed, PatchBody() if value is CLEAR else _holding(parsed, value))


def _holding(path: FieldPath, value: object) -> PatchBody:
    """A request that holds ``value`` at ``path`` and nothing else."""
    match path.kind:
        case Kind.MODE:
            return PatchBody(mode=value)
        case Kind.PROVIDER_FIELD:
            return PatchBody(providers={path.name: {path.key: value}})
        case Kind.MODEL_FIELD | Kind.MAP:
            return PatchBody(model={path.name: value})
        case Kind.MAP_ENTRY:
            return PatchBody(model={path.name: {path.key: value}})
    raise ValueError(f"{path.kind.value} paths can only be cleared")


def _provider_field(provider: str, name: str, value: object) -> ConfigChange:
    if name == KEY_FIELD:
        return SetApiKey(provider, value)
    return SetProviderField(provider, name, value)


def _provider_fields(body: PatchBody, provider: str) -> list[ConfigChange]:
    sent = body.providers.get(provider, {})
    return [_provider_field(provider, f, sent[f]) for f in PROVIDER_FIELDS[provider] if f in sent]


def _model_fields(body: PatchBody) -> list[ConfigChange]:
    out: list[ConfigChange] = []
    for name in MODEL_FIELDS:
        if name in MODEL_MAPS:
            entries: Mapping[str, object] = body.model.get(name, {})
            out += [SetMapEntry(name, k, v) for k, v in sorted(entries.items())]
        elif name in body.model:
            out.append(SetModelField(name, body.model[name]))
    return out


def _populated(body: PatchBody) -> list[ConfigChange]:
    out: list[ConfigChange] = [] if body.mode is None else [SetMode(body.mode)]
    for provider in PROVIDER_FIELDS:
        out += _provider_fields(body, provider)
    return out + _model_fields(body)


def _replaced_provider(body: PatchBody, provider: str) -> list[ConfigChange]:
    return [ClearProvider(provider), *_provider_fields(body, provider)]


def _masked(path: FieldPath, body: PatchBody) -> list[ConfigChange]:
    """The changes for one mask path."""
    match path.kind:
        case Kind.PROVIDER_CONFIG:
            out: list[ConfigChange] = [SetMode(body.mode)]
            for provider in PROVIDER_FIELDS:
                out += _replaced_provider(body, provider)
            return out
        case Kind.MODE:
            return [SetMode(body.mode)]
        case Kind.PROVIDER:
            return _replaced_provider(body, path.name)
        case Kind.PROVIDER_FIELD:
            sent = body.providers.get(path.name, {})
            return [_provider_field(path.name, path.key, sent.get(path.key))]
        case Kind.MODEL_CONFIG:
            return [ClearModelConfig(), *_model_fields(body)]
        case Kind.MODEL_FIELD:
            return [SetModelField(path.name, body.model.get(path.name))]
        case Kind.MAP:
            return [ReplaceMap(path.name, body.model.get(path.name, {}))]
        case Kind.MAP_ENTRY:
            entries: Mapping[str, object] = body.model.get(path.name, {})
            return [SetMapEntry(path.name, path.key, entries.get(path.key))]
    raise AssertionError(path)  # every Kind is matched above
