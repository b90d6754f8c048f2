"""Tenants' provider keys inside an update: the preview shown for a key, telling
a resent key from a new one, and sealing new keys.

A key set by an update waits as ``StoredProvider.pending_key`` (see
``liya_engine.config.changes``). The service then calls ``keep_stored`` (a key
equal to the stored one keeps the stored ciphertext) and, only when it writes,
``seal``. So ``validate_only`` and a resend of the stored key never encrypt.
"""

from __future__ import annotations

from dataclasses import replace

from liya_engine.config.model import KEY_FIELD, TenantConfig
from liya_engine.crypto.cipher import KeyCipher
from liya_engine.errors import KeyDecryptionFailed
from liya_engine.providers import facts
from liya_engine.secret import Secret


def key_preview(key: Secret) -> str:
    """A known prefix and at most the last four characters: ``sk-...a1b2``.

    Short keys show no tail, so a preview never reveals a meaningful share.
    """
    value = key.reveal()
    prefix = next((p for p in facts.KEY_PREFIXES if value.startswith(p)), "")
    prefix = prefix.rstrip("-") + "-" if prefix else ""
    tail = value[-4:] if len(value) >= 20 else ""
    return f"{prefix}...{tail}"


def keep_stored(stored: TenantConfig, patched: TenantConfig, cipher: KeyCipher) -> TenantConfig:
    """``patched`` with each pending key that equals the key ``stored`` holds
    for that provider put back as the stored ciphertext and preview.

    Knowing that needs nothing stored beside the ciphertext: the stored key is
    decrypted with the service's cipher and compared in constant time
    (``Secret.__eq__`` is ``hmac.compare_digest``). A stored key that does not
    decrypt (its master key is gone, say) counts as different, so setting the
    key again repairs it.
    """
    out = patched
    for provider, new in patched.providers.items():
        old = stored.provider(provider)
        if new.pending_key is None or old.api_key_ciphertext is None:
            continue
        try:
            same = new.pending_key == cipher.decrypt(
                old.api_key_ciphertext,
                tenant_id=stored.tenant_id,
                provider=provider,
                field=KEY_FIELD,
            )
        except KeyDecryptionFailed:
            same = False
        if same:
            kept = replace(
                new,
                api_key_ciphertext=old.api_key_ciphertext,
                api_key_preview=old.api_key_preview,
                pending_key=None,
            )
            out = out.with_provider(provider, kept)
    return out


def seal(config: TenantConfig, cipher: KeyCipher) -> TenantConfig:
    """``config`` with every pending key encrypted under the primary master key."""
    out = config
    for provider, new in config.providers.items():
        if new.pending_key is not None:
            blob = cipher.encrypt(
                new.pending_key, tenant_id=config.tenant_id, provider=provider, field=KEY_FIELD
            )
            sealed = replace(new, api_key_ciphertext=blob, pending_key=None)
            out = out.with_provider(provider, sealed)
    return out


def master_key_ids(config: TenantConfig) -> dict[str, str]:
    """The master key id of each provider's stored ciphertext."""
    return {
        name: KeyCipher.key_id_of(p.api_key_ciphertext) or ""
        for name, p in config.providers.items()
        if p.api_key_ciphertext is not None
    }
