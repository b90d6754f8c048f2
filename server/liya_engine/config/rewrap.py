"""Re-encrypt every stored key under the primary master key.

Runs in batches of short transactions, each row swapped only if it still holds
the ciphertext that was read (a concurrent UpdateConfig wins), so it is safe
while servers serve and can be re-run after an interruption: rows already
under the primary are not selected again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from liya_engine.errors import KeyDecryptionFailed
from liya_engine.settings import Settings
from liya_engine.storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class RewrapReport:
    primary_key_id: str
    rewrapped: int = 0
    skipped_changed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    remaining_by_key: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"rewrapped {self.rewrapped} key(s) under {self.primary_key_id}; "
            f"{self.skipped_changed} changed concurrently (already current); "
            f"{self.failed} failed"
        ]
        lines += [f"  cannot decrypt: {f}" for f in self.failures]
        counts = ", ".join(
            f"{k or '(none)'}: {n}" for k, n in sorted(self.remaining_by_key.items())
        )
        lines.append(f"stored keys by master key now: {counts or 'none'}")
        return "\n".join(lines)


async def rewrap_all(
    settings: Settings, *, batch_size: int = 200, db: Database | None = None
) -> RewrapReport:
    from liya_engine.bootstrap import build_cipher

    own_db = db is None
    db = db or Database(settings.database_url)
    try:
        cipher = await build_cipher(settings, db)
        primary = cipher.keyring.primary_id
        report = RewrapReport(primary)
        after: tuple[str, str] | None = None
        while True:
            async with db.unit_of_work(write=True) as uow:
                batch = await uow.configs.stale_ciphertexts(primary, batch_size, after)
                if not batch:
                    break
                for tenant_id, provider, blob in batch:
                    after = (tenant_id, provider)
                    try:
                        new = cipher.rewrap(
                            blob, tenant_id=tenant_id, provider=provider, field="api_key"
                        )
                    except KeyDecryptionFailed as exc:
                        report.failed += 1
                        report.failures.append(
                            f"tenant {tenant_id} provider {provider} ({exc.message})"
                        )
                        continue
                    if await uow.configs.replace_ciphertext(
                        tenant_id, provider, blob, new, primary
                    ):
                        report.rewrapped += 1
                    else:
                        report.skipped_changed += 1
                await uow.commit()
            log.info("rewrap: %d done so far", report.rewrapped)
        async with db.unit_of_work() as uow:
            report.remaining_by_key = await uow.configs.count_by_master_key()
        return report
    finally:
        if own_db:
            await db.dispose()
