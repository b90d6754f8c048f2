"""Config plane use cases: read the masked config, apply a patch, list audit.

Plain async code: it never imports grpc. The servicer hands it ``Change``
lists; it validates, encrypts keys, writes config and audit entry in one
transaction with optimistic concurrency, and tells listeners what changed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from liya_engine.config import validation as v
from liya_engine.config.model import (
    CLEAR,
    DEFAULT_MODE,
    PROVIDER_FIELDS,
    AuditEntry,
    Change,
    ModelSettings,
    StoredProvider,
    TenantConfig,
)
from liya_engine.config.ports import ConfigStore
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.errors import Conflict, EtagMismatch, FieldViolation, InvalidConfig, InvalidRequest
from liya_engine.identity import Identity
from liya_engine.providers import facts
from liya_engine.redact import safe_to_echo
from liya_engine.routing.catalog import Catalog
from liya_engine.secret import Secret
from liya_engine.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
_OVERRIDE_PREFIX = "model_config.overrides."
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
_MAX_ID = 2**63 - 1


def key_preview(key: Secret) -> str:
    """A known prefix and at most the last four characters: ``sk-...a1b2``.

    Short keys show no tail, so a preview never reveals a meaningful share.
    """
    value = key.reveal()
    prefix = next((p for p in facts.KEY_PREFIXES if value.startswith(p)), "")
    prefix = prefix.rstrip("-") + "-" if prefix else ""
    tail = value[-4:] if len(value) >= 20 else ""
    return f"{prefix}...{tail}"


@dataclass(frozen=True, slots=True)
class UpdateResult:
    config: TenantConfig
    warnings: list[str]


class ConfigService:
    """Reads and changes tenant configurations."""

    def __init__(
        self,
        db: ConfigStore,
        cipher: KeyCipher,
        catalog: Catalog,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._catalog = catalog
        self._settings = settings
        self._clock = clock
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(tenant_id)`` after each committed change."""
        self._listeners.append(listener)

    def _changed(self, tenant_id: str) -> None:
        for listener in self._listeners:
            listener(tenant_id)

    async def get(self, tenant_id: str) -> TenantConfig:
        """The tenant's config; the empty default state if it never set one."""
        found = await self._db.read_config(tenant_id)
        return found or TenantConfig(tenant_id=tenant_id)

    async def update(
        self,
        who: Identity,
        request_id: str,
        changes: Sequence[Change],
        *,
        etag: str = "",
        validate_only: bool = False,
    ) -> UpdateResult:
        """Apply ``changes`` as one PATCH; see the module docstring."""
        violations = self._check_fields(changes)
        if violations:
            raise InvalidConfig(_summary(violations), violations)
        for _attempt in range(MAX_ATTEMPTS):
            async with self._db.unit_of_work(write=not validate_only) as uow:
                current = await uow.configs.get(
                    who.tenant_id, for_update=not validate_only
                ) or TenantConfig(who.tenant_id)
                if etag and etag != current.etag:
                    self._changed(who.tenant_id)  # a stale local copy is why the etag was old
                    raise _etag_mismatch(etag, current.etag)
                new, changed, key_ids = self._apply(current, changes)
                violations = v.check_complete(new)
                if violations:
                    raise InvalidConfig(_summary(violations), violations)
                warnings = v.warnings_for(new, self._catalog) + self._key_warnings(changes)
                if validate_only or not changed:
                    return UpdateResult(current if not changed else new, warnings)
                now = self._clock()
                new = replace(new, version=current.version + 1, update_time=now)
                try:
                    await uow.configs.save(new, previous=current, key_ids=key_ids)
                    await uow.audit.add(
                        tenant_id=who.tenant_id,
                        actor=who.actor,
                        request_id=request_id,
                        create_time=now,
                        changed_paths=changed,
                        mode_before=current.mode,
                        mode_after=new.mode,
                    )
                    await uow.announce_change(who.tenant_id)
                    try:
                        await uow.commit()
                    finally:
                        # Also when cancelled mid-commit: the write may have landed.
                        self._changed(who.tenant_id)
                except Conflict:
                    if etag:
                        self._changed(who.tenant_id)
                        raise _etag_mismatch(etag, "a newer version") from None
                    continue  # no etag: re-read and re-apply, so nothing is lost
            log.info("config updated: %s", ", ".join(changed))
            return UpdateResult(new, warnings)
        raise EtagMismatch(
            "the configuration kept changing during the update; retry",
            metadata={"attempts": str(MAX_ATTEMPTS)},
        )

    async def list_audit(
        self, tenant_id: str, page_size: int, page_token: str
    ) -> tuple[list[AuditEntry], str]:
        if page_size < 0:
            raise InvalidRequest(
                "page_size must not be negative",
                [FieldViolation("page_size", "must be 0 (default) to 100")],
            )
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        before = _decode_token(page_token) if page_token else None
        async with self._db.unit_of_work() as uow:
            entries = await uow.audit.list(tenant_id, limit=size + 1, before_id=before)
        more = len(entries) > size
        entries = entries[:size]
        token = _encode_token(entries[-1].id) if more and entries else ""
        return entries, token

    # -- helpers -------------------------------------------------------------

    def _check_fields(self, changes: Sequence[Change]) -> list[FieldViolation]:
        s = self._settings
        out: list[FieldViolation] = []
        for ch in changes:
            if ch.value is CLEAR:
                continue
            parts = ch.path.split(".")
            path, val = ch.path, ch.value
            if path == "provider_config.mode":
                out += v.check_mode(path, val)
            elif parts[0] == "provider_config" and len(parts) == 3:
                provider, fld = parts[1], parts[2]
                if fld == "api_key":
                    out += v.check_api_key(provider, path, val)
                elif fld == "default_model":
                    out += v.check_model(path, val)
                elif fld == "endpoint":
                    out += v.check_endpoint(
                        path,
                        val,
                        allowlist=s.azure_endpoint_allowlist,
                        allow_insecure=s.allow_insecure_endpoints,
                    )
                elif fld == "deployment_name":
                    out += v.check_deployment(path, val)
                elif fld == "api_version":
                    out += v.check_api_version(path, val)
            elif path == "model_config.strategy":
                out += v.check_strategy(path, val)
            elif path == "model_config.cost_limit_usd_per_request":
                out += v.check_cost_limit(path, val)
            elif path == "model_config.overrides":
                for intent, model in val.items():
                    out += v.check_intent(v.override_path(intent), intent, self._catalog)
                    out += v.check_model(v.override_path(intent), model)
            elif path.startswith(_OVERRIDE_PREFIX):
                intent = path.removeprefix(_OVERRIDE_PREFIX)
                out += v.check_intent(v.override_path(intent), intent, self._catalog)
                out += v.check_model(v.override_path(intent), val)
        return out

    def _key_warnings(self, changes: Sequence[Change]) -> list[str]:
        return [
            f"{ch.path} looks like a placeholder, not a real key: calls fail with "
            "BYOK_AUTH_FAILED until a real key is set"
            for ch in changes
            if ch.path.endswith(".api_key")
            and isinstance(ch.value, Secret)
            and v.looks_like_placeholder(ch.value)
        ]

    def _apply(
        self, current: TenantConfig, changes: Sequence[Change]
    ) -> tuple[TenantConfig, list[str], dict[str, str]]:
        """Return the patched config, the leaf paths that changed, and the
        master key id of each provider's ciphertext."""
        cfg = current
        changed: list[str] = []

        def mark(path: str) -> None:
            if path not in changed:
                changed.append(path)

        for ch in changes:
            parts = ch.path.split(".")
            if ch.path == "provider_config.mode":
                mode = DEFAULT_MODE if ch.value is CLEAR else ch.value
                if mode != cfg.mode:
                    cfg = replace(cfg, mode=mode)
                    mark(ch.path)
            elif parts[0] == "provider_config" and len(parts) == 2:
                if not cfg.provider(parts[1]).empty:
                    for fld in PROVIDER_FIELDS[parts[1]]:
                        if (fld == "api_key" and cfg.provider(parts[1]).configured) or (
                            fld != "api_key" and getattr(cfg.provider(parts[1]), fld)
                        ):
                            mark(f"{ch.path}.{fld}")
                    cfg = cfg.with_provider(parts[1], StoredProvider())
            elif parts[0] == "provider_config":
                provider, fld = parts[1], parts[2]
                old = cfg.provider(provider)
                if fld == "api_key":
                    if ch.value is CLEAR:
                        if not old.configured:
                            continue
                        new = replace(old, api_key_ciphertext=None, api_key_preview="")
                    else:
                        blob = self._cipher.encrypt(
                            ch.value, tenant_id=cfg.tenant_id, provider=provider, field="api_key"
                        )
                        new = replace(
                            old, api_key_ciphertext=blob, api_key_preview=key_preview(ch.value)
                        )
                else:
                    value = "" if ch.value is CLEAR else ch.value
                    if getattr(old, fld) == value:
                        continue
                    new = replace(old, **{fld: value})
                cfg = cfg.with_provider(provider, new)
                mark(ch.path)
            elif ch.path == "model_config":
                if cfg.model != ModelSettings():
                    cfg = replace(cfg, model=ModelSettings())
                    mark(ch.path)
            elif ch.path == "model_config.strategy":
                value = "" if ch.value is CLEAR else v.normalise_strategy(ch.value)
                if value != cfg.model.strategy:
                    cfg = replace(cfg, model=replace(cfg.model, strategy=value))
                    mark(ch.path)
            elif ch.path == "model_config.cost_limit_usd_per_request":
                value = None if ch.value is CLEAR else float(ch.value)
                if value != cfg.model.cost_limit_usd_per_request:
                    cfg = replace(cfg, model=replace(cfg.model, cost_limit_usd_per_request=value))
                    mark(ch.path)
            elif ch.path == "model_config.overrides":
                value = {} if ch.value is CLEAR else dict(ch.value)
                if value != cfg.model.overrides:
                    cfg = replace(cfg, model=replace(cfg.model, overrides=value))
                    mark(ch.path)
            elif ch.path.startswith(_OVERRIDE_PREFIX):
                intent = ch.path.removeprefix(_OVERRIDE_PREFIX)
                overrides = dict(cfg.model.overrides)
                if ch.value is CLEAR:
                    if overrides.pop(intent, None) is None:
                        continue
                elif overrides.get(intent) == ch.value:
                    continue
                else:
                    overrides[intent] = ch.value
                cfg = replace(cfg, model=replace(cfg.model, overrides=overrides))
                mark(ch.path)
            else:  # the servicer only builds the paths above
                raise InvalidConfig(
                    f"unsupported field path {ch.path}",
                    [FieldViolation("update_mask", f"unknown path {ch.path}")],
                )
        key_ids = {
            name: KeyCipher.key_id_of(p.api_key_ciphertext) or ""
            for name, p in cfg.providers.items()
            if p.api_key_ciphertext is not None
        }
        return cfg, changed, key_ids


_ETAG_SHAPE = re.compile(r"^v\d{1,12}$")


def _etag_mismatch(sent: str, current: str) -> EtagMismatch:
    # Echo the caller's etag only when it looks like one of ours: whatever else
    # was pasted there (a key, say) must not come back in an error.
    shown = sent if safe_to_echo(sent, _ETAG_SHAPE) else "(not an etag of this service)"
    return EtagMismatch(
        f"etag {shown} is stale (current: {current}): read the config again with "
        "GetMaskedConfig and re-apply your change",
        metadata={"etag": shown, "current_etag": current},
    )


def _summary(violations: Sequence[FieldViolation]) -> str:
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return f"invalid configuration: {first.field} {first.description}{more}"


def _encode_token(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"a1:{before_id}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, _, num = raw.partition(":")
        # ASCII digits only, and within the id column's range: anything else
        # would reach the database and fail there as an internal error.
        if tag != "a1" or not num.isascii() or not num.isdigit() or int(num) > _MAX_ID:
            raise ValueError
        return int(num)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "page_token is not valid",
            [
                FieldViolation(
                    "page_token", "must be a next_page_token from an earlier ListAuditEntries call"
                )
            ],
        ) from None
