"""Config plane use cases: read the masked config, apply a patch, list audit.

Plain async code: it never imports grpc. The servicer hands it the typed
changes of ``liya_engine.config.changes`` (built once from the request by
``liya_engine.config.patch``). An update:

1. checks every change alone and reports all violations, before any I/O;
2. in one transaction, reads the stored config (locked for update), checks the
   etag, applies the changes and the whole-config rules;
3. keeps the stored ciphertext for a key sent again unchanged, and keeps only
   the changed paths whose value really differs from the stored one: a resend
   of identical values writes nothing, bumps no version and audits nothing;
4. unless ``validate_only``, seals the new keys (the only place that
   encrypts), writes config and audit entry with optimistic concurrency
   (and resets the key health of new credentials, ``config.verify``), and
   tells listeners what changed.

With ``verify``, the credentials the update sets are tested first, outside the
transaction (no lock is held across a provider call); a failure writes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from liya_engine.config import audit_pages, keys, patch, paths
from liya_engine.config import validation as v
from liya_engine.config import verify as checks
from liya_engine.config.changes import ConfigChange, Rules
from liya_engine.config.endpoints import EndpointPolicy
from liya_engine.config.model import AuditEntry, Change, TenantConfig
from liya_engine.config.ports import ConfigStore, UnitOfWork
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.errors import Conflict, EtagMismatch, FieldViolation, InvalidConfig
from liya_engine.identity import Identity
from liya_engine.redact import safe_to_echo
from liya_engine.routing.catalog import Catalog
from liya_engine.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """The config after the update and the warnings about it. Under
    ``validate_only`` the config is the one that would be written, its new
    keys still pending (unsealed)."""

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
        self._rules = Rules(catalog, EndpointPolicy.from_settings(settings).check)
        self._clock = clock
        self._listeners: list[Callable[[str], None]] = []
        #: Makes ``verify``'s calls; wired in once the inference plane exists.
        self.probe: checks.CredentialsProbe | None = None

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
        changes: Sequence[ConfigChange | Change],
        *,
        etag: str = "",
        validate_only: bool = False,
        verify: bool = False,
        deadline: float | None = None,
    ) -> UpdateResult:
        """Apply ``changes`` as one PATCH; see the module docstring.

        A ``Change`` (path and value) is read into typed changes first.
        ``deadline`` (seconds left to the caller) bounds ``verify``'s calls.
        """
        typed = _typed(changes)
        violations = [x for change in typed for x in change.check(self._rules)]
        if violations:
            raise InvalidConfig(_summary(violations), violations)
        for _attempt in range(MAX_ATTEMPTS):
            verified = None
            if verify:
                verified = await self._verify(who, request_id, typed, etag, deadline)
            async with self._db.unit_of_work(write=not validate_only) as uow:
                current = await uow.configs.get(
                    who.tenant_id, for_update=not validate_only
                ) or TenantConfig(who.tenant_id)
                if etag and etag != current.etag:
                    self._changed(who.tenant_id)  # a stale local copy is why the etag was old
                    raise _etag_mismatch(etag, current.etag)
                new, changed = self._patched(current, typed)
                violations = v.check_complete(new)
                if violations:
                    raise InvalidConfig(_summary(violations), violations)
                if verified is not None and not verified.still_holds(new, typed, self._cipher):
                    continue  # the credentials changed since they were tested: test again
                warnings = v.warnings_for(new, self._catalog)
                warnings += [w for change in typed for w in change.warnings()]
                if validate_only or not changed:
                    return UpdateResult(new if changed else current, warnings)
                try:
                    new = await self._write(uow, who, request_id, current, new, changed, verified)
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
        """One page of the tenant's audit entries, newest first, and the token
        of the next page ("" after the last)."""
        size = audit_pages.page_size(page_size)
        before = audit_pages.decode_token(page_token) if page_token else None
        async with self._db.unit_of_work() as uow:
            entries = await uow.audit.list(tenant_id, limit=size + 1, before_id=before)
        more = len(entries) > size
        entries = entries[:size]
        token = audit_pages.encode_token(entries[-1].id) if more and entries else ""
        return entries, token

    # -- helpers -------------------------------------------------------------

    async def _verify(
        self,
        who: Identity,
        request_id: str,
        typed: Sequence[ConfigChange],
        etag: str,
        deadline: float | None,
    ) -> checks.Verified:
        """Test the credentials ``typed`` sets on the config as stored now;
        the provider's error if one fails. A stale etag or an incomplete config
        fails first, with no call made."""
        current = await self.get(who.tenant_id)
        if etag and etag != current.etag:
            raise _etag_mismatch(etag, current.etag)
        new, _ = self._patched(current, typed)
        violations = v.check_complete(new)
        if violations:
            raise InvalidConfig(_summary(violations), violations)
        tested = checks.to_test(new, typed, self._cipher)
        return await checks.verify(
            self.probe, who.tenant_id, request_id, tested, deadline=deadline, clock=self._clock
        )

    def _patched(
        self, current: TenantConfig, changes: Sequence[ConfigChange]
    ) -> tuple[TenantConfig, list[str]]:
        """``current`` with ``changes`` applied and any resent key kept as
        stored, and the leaf paths whose value now differs from ``current``,
        in the order the changes first touched them."""
        new, touched = current, dict[str, None]()
        for change in changes:
            new, changed = change.apply(new)
            touched.update(dict.fromkeys(changed))
        new = keys.keep_stored(current, new, self._cipher)
        before, after = paths.leaf_values(current), paths.leaf_values(new)
        return new, [path for path in touched if before.get(path) != after.get(path)]

    async def _write(
        self,
        uow: UnitOfWork,
        who: Identity,
        request_id: str,
        current: TenantConfig,
        new: TenantConfig,
        changed: list[str],
        verified: checks.Verified | None,
    ) -> TenantConfig:
        """Seal the new keys, save ``new`` with its audit entry and commit;
        ``Conflict`` if another writer got there first."""
        now = self._clock()
        new = replace(keys.seal(new, self._cipher), version=current.version + 1, update_time=now)
        await uow.configs.save(new, previous=current, key_ids=keys.master_key_ids(new))
        await uow.audit.add(
            tenant_id=who.tenant_id,
            actor=who.actor,
            request_id=request_id,
            create_time=now,
            changed_paths=changed,
            mode_before=current.mode,
            mode_after=new.mode,
        )
        await checks.reset_health(
            uow.health, who.tenant_id, changed, version=new.version, now=now, verified=verified
        )
        await uow.announce_change(who.tenant_id)
        try:
            await uow.commit()
        finally:
            # Also when cancelled mid-commit: the write may have landed.
            self._changed(who.tenant_id)
        return new


def _typed(changes: Sequence[ConfigChange | Change]) -> list[ConfigChange]:
    out: list[ConfigChange] = []
    for change in changes:
        if isinstance(change, Change):
            out += patch.changes_at(change.path, change.value)
        else:
            out.append(change)
    return out


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
