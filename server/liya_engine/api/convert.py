"""Protos to domain objects and back, for the config plane.

``changes_from_request`` reads an ``UpdateConfigRequest`` into the typed
changes it asks for: this module only copies the request's present fields into
a ``PatchBody``; the PATCH rules (AIP-134: without a mask, every populated
field, each override entry being one, so entries merge into the stored map;
with a mask, exactly the listed paths, where a listed path absent from the
request clears it) live in ``liya_engine.config.patch``.
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from liya.engine.v1 import config_service_pb2 as pb
from liya_engine.config import patch
from liya_engine.config.changes import ConfigChange
from liya_engine.config.model import (
    KEY_FIELD,
    MODEL_FIELDS,
    MODEL_MAPS,
    PROVIDER_FIELDS,
    AuditEntry,
    ModelPrice,
    ModelSettings,
    TenantConfig,
)
from liya_engine.routing.router import serving_provider
from liya_engine.secret import Secret


def _present(msg, names) -> dict[str, object]:
    return {name: getattr(msg, name) for name in names if msg.HasField(name)}


_PRICE_FIELDS = ("input_usd_per_million", "output_usd_per_million")


def _price_in(msg: pb.ModelPrice) -> ModelPrice:
    # Presence kept: an unset price is missing (refused), 0 is a price.
    return ModelPrice(**_present(msg, _PRICE_FIELDS))


def _prices_out(prices: dict[str, ModelPrice], out) -> None:
    for model, price in prices.items():
        for name in _PRICE_FIELDS:
            setattr(out[model], name, getattr(price, name))


def _copy_entries(value: dict, out) -> None:
    out.update(value)


# How each map of ModelConfig reads an entry from its proto (message values
# need one) and writes its entries into a proto map.
_MAP_IN = {"overrides": str, "prices": _price_in}
_MAP_OUT = {
    "overrides": _copy_entries,
    "prices": _prices_out,
}


def patch_body(req: pb.UpdateConfigRequest) -> patch.PatchBody:
    """The fields present in ``req``, as plain values (the key as a ``Secret``)."""
    pc, mc = req.provider_config, req.model_config
    providers: dict[str, dict[str, object]] = {}
    for provider, fields in PROVIDER_FIELDS.items():
        if pc.HasField(provider):
            sent = _present(getattr(pc, provider), fields)
            if KEY_FIELD in sent:
                sent[KEY_FIELD] = Secret(sent[KEY_FIELD])
            providers[provider] = sent
    model = _present(mc, [f for f in MODEL_FIELDS if f not in MODEL_MAPS])
    for name in MODEL_MAPS:
        if entries := getattr(mc, name):
            model[name] = {key: _MAP_IN[name](value) for key, value in entries.items()}
    return patch.PatchBody(
        mode=pc.mode if pc.HasField("mode") else None, providers=providers, model=model
    )


def changes_from_request(req: pb.UpdateConfigRequest) -> list[ConfigChange]:
    """The ordered changes the request asks for; ``InvalidConfig`` for a mask
    path that names no field."""
    return patch.changes_for(patch_body(req), list(req.update_mask.paths))


def _timestamp(value) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def masked_config(cfg: TenantConfig, *, managed_providers: tuple[str, ...]) -> pb.MaskedConfig:
    """The shown form of a config: previews, never keys."""
    out = pb.MaskedConfig(
        mode=cfg.mode,
        serving_provider=serving_provider(cfg, managed_providers) or "",
        etag=cfg.etag,
    )
    for provider, fields in PROVIDER_FIELDS.items():
        stored, shown = cfg.provider(provider), getattr(out, provider)
        shown.SetInParent()  # present even when empty, as every provider is
        shown.configured = stored.configured
        shown.api_key_preview = stored.api_key_preview
        for name in fields:
            if name != KEY_FIELD:
                setattr(shown, name, getattr(stored, name))
    unset = ModelSettings()
    out.model_config.SetInParent()
    for name in MODEL_FIELDS:
        value = getattr(cfg.model, name)
        if name in MODEL_MAPS:
            _MAP_OUT[name](value, getattr(out.model_config, name))
        elif value != getattr(unset, name):  # optional fields: unset stays unset
            setattr(out.model_config, name, value)
    if cfg.update_time is not None:
        out.update_time.CopyFrom(_timestamp(cfg.update_time))
    return out


def audit_entry(entry: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        id=str(entry.id),
        create_time=_timestamp(entry.create_time),
        actor=entry.actor,
        request_id=entry.request_id,
        changed_paths=list(entry.changed_paths),
        mode_before=entry.mode_before,
        mode_after=entry.mode_after,
    )
