"""Protos to domain objects and back, for the config plane.

``changes_from_request`` implements the PATCH rules of ``UpdateConfigRequest``
(AIP-134): without a mask, every populated field (each override entry is one,
so entries merge into the stored map); with a mask, exactly the listed paths,
where a listed path absent from the request clears it.
"""

from __future__ import annotations

import re

from google.protobuf import timestamp_pb2

from liya.engine.v1 import config_service_pb2 as pb
from liya_engine.config.model import (
    CLEAR,
    PROVIDER_FIELDS,
    AuditEntry,
    Change,
    TenantConfig,
)
from liya_engine.errors import FieldViolation, InvalidConfig
from liya_engine.redact import shown
from liya_engine.routing.router import serving_provider
from liya_engine.secret import Secret

# Mask paths are echoed back only when plainly field-shaped: a caller who
# pasted a key into the mask must not get it back in the error.
_SHOWABLE_PATH = re.compile(r"[a-z_]{1,40}(\.[a-z_]{1,40}){0,3}")


def _leaf(path: str, msg, name: str) -> Change:
    if not msg.HasField(name):
        return Change(path, CLEAR)
    value = getattr(msg, name)
    return Change(path, Secret(value) if name == "api_key" else value)


def _provider_changes(req: pb.UpdateConfigRequest, provider: str, *, whole: bool) -> list[Change]:
    base = f"provider_config.{provider}"
    present = req.HasField("provider_config") and req.provider_config.HasField(provider)
    if whole:
        # Replace the whole provider: clear it, then set what the request has.
        out = [Change(base, CLEAR)]
        if present:
            msg = getattr(req.provider_config, provider)
            out += [
                _leaf(f"{base}.{f}", msg, f) for f in PROVIDER_FIELDS[provider] if msg.HasField(f)
            ]
        return out
    if not present:
        return []
    msg = getattr(req.provider_config, provider)
    return [_leaf(f"{base}.{f}", msg, f) for f in PROVIDER_FIELDS[provider] if msg.HasField(f)]


def _implicit_changes(req: pb.UpdateConfigRequest) -> list[Change]:
    out: list[Change] = []
    if req.HasField("provider_config"):
        pc = req.provider_config
        if pc.HasField("mode"):
            out.append(Change("provider_config.mode", pc.mode))
        for provider in PROVIDER_FIELDS:
            out += _provider_changes(req, provider, whole=False)
    if req.HasField("model_config"):
        mc = req.model_config
        if mc.HasField("strategy"):
            out.append(Change("model_config.strategy", mc.strategy))
        # Like every other populated field, each override entry is one field:
        # sending one intent leaves the others (protobuf merge semantics).
        out += [
            Change(f"model_config.overrides.{intent}", model)
            for intent, model in sorted(mc.overrides.items())
        ]
        if mc.HasField("cost_limit_usd_per_request"):
            out.append(
                Change("model_config.cost_limit_usd_per_request", mc.cost_limit_usd_per_request)
            )
    return out


def _masked_changes(req: pb.UpdateConfigRequest) -> list[Change]:
    out: list[Change] = []
    bad: list[FieldViolation] = []
    mc = req.model_config
    paths = list(req.update_mask.paths)
    if "*" in paths:
        # AIP-134: "*" replaces the whole resource with what the request holds.
        paths = ["provider_config", "model_config"]
    for path in paths:
        parts = path.split(".")
        if path == "provider_config":
            out.append(
                Change(
                    "provider_config.mode",
                    req.provider_config.mode if req.provider_config.HasField("mode") else CLEAR,
                )
            )
            for provider in PROVIDER_FIELDS:
                out += _provider_changes(req, provider, whole=True)
        elif path == "provider_config.mode":
            out.append(_leaf(path, req.provider_config, "mode"))
        elif parts[0] == "provider_config" and len(parts) == 2 and parts[1] in PROVIDER_FIELDS:
            out += _provider_changes(req, parts[1], whole=True)
        elif (
            parts[0] == "provider_config"
            and len(parts) == 3
            and parts[1] in PROVIDER_FIELDS
            and parts[2] in PROVIDER_FIELDS[parts[1]]
        ):
            out.append(_leaf(path, getattr(req.provider_config, parts[1]), parts[2]))
        elif path == "model_config":
            out.append(Change("model_config", CLEAR))
            out += [c for c in _implicit_changes(pb.UpdateConfigRequest(model_config=mc))]
        elif path in ("model_config.strategy", "model_config.cost_limit_usd_per_request"):
            out.append(_leaf(path, mc, parts[1]))
        elif path == "model_config.overrides":
            out.append(Change(path, dict(mc.overrides) if mc.overrides else CLEAR))
        elif parts[:2] == ["model_config", "overrides"] and len(parts) == 3 and parts[2]:
            out.append(Change(path, mc.overrides[parts[2]] if parts[2] in mc.overrides else CLEAR))
        else:
            shown_path = shown(path, _SHOWABLE_PATH)
            bad.append(
                FieldViolation(
                    "update_mask",
                    f"unknown path {shown_path}; paths are "
                    "provider_config[.mode|.openai|.anthropic|.azure[.field]] "
                    "or model_config[.strategy|.overrides[.intent]|"
                    ".cost_limit_usd_per_request]",
                )
            )
    if bad:
        raise InvalidConfig(f"invalid update_mask: {bad[0].description}", bad)
    return out


def changes_from_request(req: pb.UpdateConfigRequest) -> list[Change]:
    """The ordered list of field changes the request asks for."""
    if req.HasField("update_mask") and req.update_mask.paths:
        return _masked_changes(req)
    return _implicit_changes(req)


def _timestamp(value) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def masked_config(cfg: TenantConfig, *, managed_providers: tuple[str, ...]) -> pb.MaskedConfig:
    """The shown form of a config: previews, never keys."""
    oa, an, az = cfg.provider("openai"), cfg.provider("anthropic"), cfg.provider("azure")
    model = pb.ModelConfig(overrides=cfg.model.overrides)
    if cfg.model.strategy:
        model.strategy = cfg.model.strategy
    if cfg.model.cost_limit_usd_per_request is not None:
        model.cost_limit_usd_per_request = cfg.model.cost_limit_usd_per_request
    out = pb.MaskedConfig(
        mode=cfg.mode,
        serving_provider=serving_provider(cfg, managed_providers) or "",
        openai=pb.MaskedOpenAIConfig(
            configured=oa.configured,
            api_key_preview=oa.api_key_preview,
            default_model=oa.default_model,
        ),
        anthropic=pb.MaskedAnthropicConfig(
            configured=an.configured,
            api_key_preview=an.api_key_preview,
            default_model=an.default_model,
        ),
        azure=pb.MaskedAzureOpenAIConfig(
            configured=az.configured,
            api_key_preview=az.api_key_preview,
            endpoint=az.endpoint,
            deployment_name=az.deployment_name,
            api_version=az.api_version,
        ),
        model_config=model,
        etag=cfg.etag,
    )
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
