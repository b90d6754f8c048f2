"""Start-up steps shared by the server, its workers and the key commands.

Nothing here imports grpc or the storage package, so the parent of
``serve --workers`` can run these before it forks, and any ``SaltStore`` will do.
"""

from __future__ import annotations

import logging

from liya_engine.config.ports import SaltStore
from liya_engine.crypto.cipher import KeyCipher, Keyring, KeyringEntry
from liya_engine.settings import Settings

log = logging.getLogger("liya_engine")


async def build_cipher(settings: Settings, salts: SaltStore) -> KeyCipher:
    """The keyring of ``settings.master_keys`` with each key's stored salt
    (created on first use), as a cipher; refuses to go on without a primary."""
    primary = settings.primary_master_key  # refuses to go on without one
    found = await salts.salts_for(k.key_id for k in settings.master_keys)
    entries = [KeyringEntry(k.key_id, k.material, found[k.key_id]) for k in settings.master_keys]
    log.info("keyring: %d master key(s), primary %s", len(entries), primary.key_id)
    return KeyCipher(Keyring(entries))
