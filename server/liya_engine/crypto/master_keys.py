"""The ``LIYA_MASTER_KEYS`` format: ``key_id:base64(32 bytes)`` entries.

One rule for a master key id (1-64 of ``[A-Za-z0-9_-]``) serves the settings
reader and ``keys generate``; the cipher's own header rule is wider (any
printable ASCII) because it must read what older releases wrote. This module
imports only the standard library and ``liya_engine.errors``, so reading
settings does not load the cryptography package.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
from dataclasses import dataclass, field

from liya_engine.errors import SettingsError

MASTER_KEY_BYTES = 32
KEY_ID_RULE = "1-64 of [A-Za-z0-9_-]"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_valid_key_id(key_id: str) -> bool:
    """Whether ``key_id`` follows the master key id rule (``KEY_ID_RULE``)."""
    # fullmatch with an ASCII class: str.isalnum would let "clé" through.
    return _KEY_ID.fullmatch(key_id) is not None


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One master key of the keyring: an id and 32 secret bytes."""

    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not is_valid_key_id(self.key_id):
            raise SettingsError(f"master key id {self.key_id!r} must be {KEY_ID_RULE}")
        if len(self.material) != MASTER_KEY_BYTES:
            raise SettingsError(f"master key {self.key_id!r} must be {MASTER_KEY_BYTES} bytes")


def parse_master_keys(raw: str, source: str) -> tuple[MasterKey, ...]:
    """Parse ``id:base64,id:base64`` (commas or newlines); the first is primary.

    Lines starting with ``#`` are ignored. ``SettingsError`` naming ``source``
    (the variable read) on any malformed entry, never showing key material.
    """
    keys: list[MasterKey] = []
    seen: set[str] = set()
    for item in raw.replace("\n", ",").split(","):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        key = _parse_entry(item, source)
        if key.key_id in seen:
            raise SettingsError(f"{source}: key id {key.key_id!r} appears twice")
        seen.add(key.key_id)
        keys.append(key)
    if not keys:
        raise SettingsError(f"{source} is set but holds no key")
    return tuple(keys)


def _parse_entry(item: str, source: str) -> MasterKey:
    key_id, sep, b64 = item.partition(":")
    key_id = key_id.strip()
    if not sep or not key_id:
        raise SettingsError(f"{source}: each entry must be key_id:base64(32 bytes)")
    if not is_valid_key_id(key_id):
        if _is_key_material(key_id):  # written the wrong way round: never echo it
            raise SettingsError(
                f"{source}: an entry starts with key material; entries are key_id:base64(32 bytes)"
            )
        raise SettingsError(f"{source}: key id {key_id!r} must be {KEY_ID_RULE}")
    try:
        material = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source}: key {key_id!r} is not valid base64") from None
    if len(material) != MASTER_KEY_BYTES:
        raise SettingsError(
            f"{source}: key {key_id!r} decodes to {len(material)} bytes, not {MASTER_KEY_BYTES}"
        )
    return MasterKey(key_id, material)


def generate_master_key_line(key_id: str | None = None) -> str:
    """Return ``key_id:base64(32 random bytes)``, one ``LIYA_MASTER_KEYS`` entry.

    The default id is ``mk-YYYYMMDD-xxxx`` (today's UTC date and 4 random hex
    digits), so ids sort by age and rarely collide. A given ``key_id`` must
    follow ``KEY_ID_RULE``; ``ValueError`` otherwise.
    """
    if key_id is None:
        today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        key_id = f"mk-{today}-{secrets.token_hex(2)}"
    elif not is_valid_key_id(key_id):
        raise ValueError(f"key id must be {KEY_ID_RULE}")
    material = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")
    return f"{key_id}:{material}"


def _is_key_material(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == MASTER_KEY_BYTES
    except (binascii.Error, ValueError):
        return False
