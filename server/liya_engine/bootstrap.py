"""Start-up steps shared by the server, its workers and the key commands.

Nothing here imports grpc, so the parent of ``serve --workers`` can run these
before it forks.
"""

from __future__ import annotations

import logging

from liya_engine.crypto.cipher import KeyCipher, Keyring, KeyringEntry
from liya_engine.settings import Settings
from liya_engine.storage.database import Database

log = logging.getLogger("liya_engine")


async def build_cipher(settings: Settings, db: Database) -> KeyCipher:
    primary = settings.primary_master_key  # refuses to go on without one
    salts = await db.salts_for(k.key_id for k in settings.master_keys)
    entries = [KeyringEntry(k.key_id, k.material, salts[k.key_id]) for k in settings.master_keys]
    log.info("keyring: %d master key(s), primary %s", len(entries), primary.key_id)
    return KeyCipher(Keyring(entries))
