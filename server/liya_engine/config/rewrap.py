"""Re-encrypt every stored key under the primary master key.

Runs in batches of short transactions, each row swapped only if it still holds
the ciphertext that was read (a concurrent UpdateConfig wins), so it is safe
while servers serve and can be re-run after an interruption: rows already
under the primary are not selected again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from liya_engine.config.model import KEY_FIELD
from liya_engine.config.ports import ConfigStore
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.errors import KeyDecryptionFailed

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
    store: ConfigStore, cipher: KeyCipher, *, batch_size: int = 200
) -> RewrapReport:
    """Re-encrypt every key in ``store`` not under ``cipher``'s primary master
    key; the report says what was done and what is left, by master key.

    The caller builds both (``liya-engine keys rewrap`` from settings) and
    owns their lifetime.
    """
    primary = cipher.keyring.primary_id
    report = RewrapReport(primary)
    after: tuple[str, str] | None = None
    while True:
        async with store.unit_of_work(write=True) as uow:
            batch = await uow.configs.stale_ciphertexts(primary, batch_size, after)
            if not batch:
                break
            for tenant_id, provider, blob in batch:
                after = (tenant_id, provider)
                try:
                    new = cipher.rewrap(
                        blob, tenant_id=tenant_id, provider=provider, field=KEY_FIELD
                    )
                except KeyDecryptionFailed as exc:
                    report.failed += 1
                    report.failures.append(
                        f"tenant {tenant_id} provider {provider} ({exc.message})"
                    )
                    continue
                if await uow.configs.replace_ciphertext(tenant_id, provider, blob, new, primary):
                    report.rewrapped += 1
                else:
                    report.skipped_changed += 1
            await uow.commit()
        log.info("rewrap: %d done so far", report.rewrapped)
    async with store.unit_of_work() as uow:
        report.remaining_by_key = await uow.configs.count_by_master_key()
    return report
