"""Envelope encryption of tenants' provider keys at rest.

Every stored key is sealed with AES-256-GCM under a per-tenant key derived from
a master key of the keyring, and bound to where it is stored, so a ciphertext
copied to another tenant, provider or field does not decrypt.

Stored format (all lengths in bytes)::

    offset  size  content
    0       1     version, 0x01
    1       1     n, length of the master key id
    2       n     master key id, ASCII
    2+n     12    nonce, random (os.urandom) for every encryption
    14+n    rest  AES-256-GCM ciphertext followed by the 16-byte tag

Associated data (authenticated, not stored)::

    header (version, n, id) || lp(tenant_id) || lp(provider) || lp(field)

where ``lp(s)`` is the 4-byte big-endian length of the UTF-8 bytes of ``s``
followed by those bytes. The length prefixes keep ("ab", "c") and ("a", "bc")
apart.

Per-tenant key::

    HKDF-SHA256(ikm=master key material, salt=that master key's salt,
                info=lp(b"liya-engine/byok/v1") || lp(tenant_id), length=32)

The plaintext is the UTF-8 encoding of the key string.

Master keys form a ``Keyring``: the first entry is the primary and encrypts;
every entry decrypts. Retiring a master key: add a new primary in front, call
``KeyCipher.rewrap`` on every value for which ``needs_rewrap`` is true, then
drop the old key.

Failures to decrypt, whatever the cause, raise ``KeyDecryptionFailed`` whose
message and metadata name the provider and (when readable) the master key id,
and nothing else: no bytes of the blob, the key or the plaintext.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from liya_engine.crypto.master_keys import MASTER_KEY_BYTES

# Re-exported for callers of the cipher; the LIYA_MASTER_KEYS format lives in master_keys.
from liya_engine.crypto.master_keys import generate_master_key_line as generate_master_key_line
from liya_engine.errors import KeyDecryptionFailed
from liya_engine.secret import Secret

SALT_BYTES = 32
FORMAT_VERSION = 0x01
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_KEY_ID_BYTES = 255  # the id length is stored in one byte
MIN_SALT_BYTES = 16
DERIVED_KEY_CACHE_SIZE = 10_000

_HKDF_CONTEXT = b"liya-engine/byok/v1"
_LENGTH_PREFIX_BYTES = 4
# Printable ASCII without space: an id that shows unambiguously in logs and errors.
_HEADER_KEY_ID = re.compile(rb"[\x21-\x7e]{1,255}")

# (master key id, header bytes, nonce, ciphertext + tag)
_Parsed = tuple[str, bytes, bytes, bytes]


def new_salt() -> bytes:
    """Return a fresh random HKDF salt to store alongside a new master key."""
    return os.urandom(SALT_BYTES)


@dataclasses.dataclass(frozen=True, slots=True)
class KeyringEntry:
    """One master key: its id, its 32 secret bytes and its HKDF salt.

    The id must be 1-255 printable ASCII characters without spaces (it is
    written into every ciphertext); the salt at least 16 bytes (``new_salt``
    makes 32). ``ValueError`` otherwise, naming the id but never the material.
    """

    key_id: str
    material: bytes = dataclasses.field(repr=False)
    salt: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not self.key_id.isascii():
            raise ValueError("master key id must be an ASCII string")
        if not _HEADER_KEY_ID.fullmatch(self.key_id.encode("ascii")):
            raise ValueError(
                f"master key id {self.key_id!r} must be 1-{MAX_KEY_ID_BYTES} printable "
                "ASCII characters without spaces"
            )
        if not isinstance(self.material, bytes) or len(self.material) != MASTER_KEY_BYTES:
            raise ValueError(f"master key {self.key_id!r} must be {MASTER_KEY_BYTES} bytes")
        if not isinstance(self.salt, bytes) or len(self.salt) < MIN_SALT_BYTES:
            raise ValueError(
                f"salt of master key {self.key_id!r} must be at least {MIN_SALT_BYTES} bytes"
            )


class Keyring:
    """The master keys the service knows; the first is the primary.

    The primary encrypts; every entry decrypts. ``ValueError`` if ``entries``
    is empty or repeats an id.
    """

    __slots__ = ("_entries", "_primary_id")

    def __init__(self, entries: Sequence[KeyringEntry]) -> None:
        if not entries:
            raise ValueError("a keyring needs at least one master key")
        by_id: dict[str, KeyringEntry] = {}
        for entry in entries:
            if entry.key_id in by_id:
                raise ValueError(f"master key id {entry.key_id!r} appears twice")
            by_id[entry.key_id] = entry
        self._entries = by_id
        self._primary_id = entries[0].key_id

    @property
    def primary_id(self) -> str:
        """The id of the master key new values are encrypted under."""
        return self._primary_id

    @property
    def primary(self) -> KeyringEntry:
        """The master key new values are encrypted under."""
        return self._entries[self._primary_id]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All ids, primary first."""
        return tuple(self._entries)

    def has(self, key_id: str) -> bool:
        """Whether ``key_id`` is in the keyring."""
        return key_id in self._entries

    def get(self, key_id: str) -> KeyringEntry | None:
        """The entry for ``key_id``, or None."""
        return self._entries.get(key_id)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"


class KeyCipher:
    """Encrypts and decrypts stored provider keys with a ``Keyring``.

    Safe to share between threads and tasks. Derived per-tenant keys are kept
    in a bounded LRU cache owned by the instance, so a new instance (for a new
    keyring) never sees keys derived from an old one.
    """

    __slots__ = ("_aead_for", "_keyring")

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        # HKDF and AES key setup on every call would dominate decryption time.
        self._aead_for = functools.lru_cache(maxsize=DERIVED_KEY_CACHE_SIZE)(self._derive_aead)

    @property
    def keyring(self) -> Keyring:
        """The keyring this cipher was built with."""
        return self._keyring

    def encrypt(
        self, plaintext: Secret | str, *, tenant_id: str, provider: str, field: str
    ) -> bytes:
        """Seal ``plaintext`` under the primary master key, bound to its place.

        ``ValueError`` if ``tenant_id``, ``provider`` or ``field`` is empty.
        """
        for name, value in (("tenant_id", tenant_id), ("provider", provider), ("field", field)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        text = plaintext.reveal() if isinstance(plaintext, Secret) else plaintext
        if not isinstance(text, str):
            raise TypeError("plaintext must be a Secret or a str")
        key_id = self._keyring.primary_id
        header = _header(key_id)
        nonce = os.urandom(NONCE_BYTES)
        aad = _associated_data(header, tenant_id, provider, field)
        sealed = _seal(self._aead_for(key_id, tenant_id), nonce, text.encode("utf-8"), aad)
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, tenant_id: str, provider: str, field: str) -> Secret:
        """Open a value written by ``encrypt`` with the same tenant, provider and field.

        Raises ``KeyDecryptionFailed`` on any failure: a truncated or altered
        blob, an unknown version or master key, or another tenant, provider or
        field than the one it was written for.
        """
        parsed = _parse(blob)
        key_id = None if parsed is None else parsed[0]
        plaintext = None if parsed is None else self._try_open(parsed, tenant_id, provider, field)
        # Raised here, outside any except block, so the exception carries no
        # __context__ that could hold plaintext bytes (UnicodeDecodeError does).
        if plaintext is None:
            raise self._failure(provider, key_id)
        return Secret(plaintext)

    @staticmethod
    def key_id_of(blob: bytes) -> str | None:
        """The master key id in ``blob``'s header, or None if it is unreadable."""
        parsed = _parse(blob)
        return None if parsed is None else parsed[0]

    def needs_rewrap(self, blob: bytes) -> bool:
        """Whether ``blob`` is not under the primary master key.

        True for an unreadable blob too: ``rewrap`` then raises
        ``KeyDecryptionFailed``, which a re-wrap run should report.
        """
        return self.key_id_of(blob) != self._keyring.primary_id

    def rewrap(self, blob: bytes, *, tenant_id: str, provider: str, field: str) -> bytes:
        """Decrypt ``blob`` and encrypt it again under the primary, with a new nonce."""
        plaintext = self.decrypt(blob, tenant_id=tenant_id, provider=provider, field=field)
        return self.encrypt(plaintext, tenant_id=tenant_id, provider=provider, field=field)

    def __repr__(self) -> str:
        return f"KeyCipher(primary_id={self._keyring.primary_id!r})"

    def _try_open(self, parsed: _Parsed, tenant_id: str, provider: str, field: str) -> str | None:
        key_id, header, nonce, sealed = parsed
        if not self._keyring.has(key_id):
            return None
        try:
            aad = _associated_data(header, tenant_id, provider, field)
            return _open(self._aead_for(key_id, tenant_id), nonce, sealed, aad).decode("utf-8")
        except (InvalidTag, UnicodeError):
            return None

    def _derive_aead(self, key_id: str, tenant_id: str) -> AESGCM:
        entry = self._keyring.get(key_id)
        if entry is None:  # callers check ``has`` first
            raise KeyError(key_id)
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=entry.salt,
            info=_length_prefixed(_HKDF_CONTEXT) + _length_prefixed(tenant_id.encode("utf-8")),
        )
        return AESGCM(hkdf.derive(entry.material))

    def _failure(self, provider: str, key_id: str | None) -> KeyDecryptionFailed:
        metadata = {"provider": provider}
        message = f"stored key for provider {provider} could not be decrypted"
        if key_id is not None:
            metadata["master_key_id"] = key_id
            if not self._keyring.has(key_id):
                message += f": master key {key_id} is not configured"
        return KeyDecryptionFailed(message, metadata=metadata)


def _seal(aead: AESGCM, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM encryption as stored: ciphertext followed by the 16-byte tag."""
    return aead.encrypt(nonce, plaintext, aad)


def _open(aead: AESGCM, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Inverse of ``_seal``; ``InvalidTag`` if anything was altered."""
    return aead.decrypt(nonce, sealed, aad)


def _header(key_id: str) -> bytes:
    raw_id = key_id.encode("ascii")
    return bytes((FORMAT_VERSION, len(raw_id))) + raw_id


def _parse(blob: object) -> _Parsed | None:
    """Split a blob into (key id, header, nonce, ciphertext+tag), or None."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        return None
    data = bytes(blob)
    if len(data) < 2 or data[0] != FORMAT_VERSION:
        return None
    id_end = 2 + data[1]
    raw_id = data[2:id_end]
    if len(data) < id_end + NONCE_BYTES + TAG_BYTES or not _HEADER_KEY_ID.fullmatch(raw_id):
        return None
    nonce_end = id_end + NONCE_BYTES
    return raw_id.decode("ascii"), data[:id_end], data[id_end:nonce_end], data[nonce_end:]


def _associated_data(header: bytes, tenant_id: str, provider: str, field: str) -> bytes:
    return header + b"".join(
        _length_prefixed(part.encode("utf-8")) for part in (tenant_id, provider, field)
    )


def _length_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(_LENGTH_PREFIX_BYTES, "big") + data
