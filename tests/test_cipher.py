"""Tests of the at-rest encryption of provider keys (liya_engine.crypto.cipher)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from liya_engine.crypto import cipher
from liya_engine.crypto.cipher import (
    SALT_BYTES,
    KeyCipher,
    Keyring,
    KeyringEntry,
    generate_master_key_line,
    new_salt,
)
from liya_engine.errors import KeyDecryptionFailed
from liya_engine.secret import Secret
from liya_engine.settings import parse_master_keys

WYCHEPROOF = Path(__file__).parent / "data" / "wycheproof_aes_gcm.json"

PLAINTEXT = "sk-proj-Zq9XvT3mLw8RkP2aYb6NcD4eFg7Hj1Kl0Mn5"
PLACE = {"tenant_id": "tenant-a", "provider": "openai", "field": "api_key"}
# Where the nonce starts in a blob written under the id "mk-old" / "mk-new".
NONCE_OFFSET = 2 + len("mk-old")


def entry(key_id: str) -> KeyringEntry:
    return KeyringEntry(key_id=key_id, material=os.urandom(32), salt=new_salt())


@pytest.fixture
def old_key() -> KeyringEntry:
    return entry("mk-old")


@pytest.fixture
def new_key() -> KeyringEntry:
    return entry("mk-new")


@pytest.fixture
def kc(old_key: KeyringEntry) -> KeyCipher:
    return KeyCipher(Keyring([old_key]))


def test_round_trip(kc: KeyCipher) -> None:
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    result = kc.decrypt(blob, **PLACE)
    assert isinstance(result, Secret)
    assert result.reveal() == PLAINTEXT


def test_round_trip_of_secret_and_non_ascii(kc: KeyCipher) -> None:
    for text in (Secret(PLAINTEXT), "ключ-🔑-clé", ""):
        blob = kc.encrypt(text, tenant_id="tenänt", provider="azure", field="api_key")
        expected = text.reveal() if isinstance(text, Secret) else text
        opened = kc.decrypt(blob, tenant_id="tenänt", provider="azure", field="api_key")
        assert opened.reveal() == expected


def test_blob_layout_matches_documented_format(kc: KeyCipher) -> None:
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    assert blob[0] == 0x01
    assert blob[1] == len(b"mk-old")
    assert blob[2:NONCE_OFFSET] == b"mk-old"
    # nonce + ciphertext + 16-byte tag, ciphertext as long as the plaintext
    assert len(blob) == NONCE_OFFSET + 12 + len(PLAINTEXT.encode()) + 16
    assert PLAINTEXT.encode() not in blob


def test_layout_and_derivation_agree_with_an_independent_implementation(
    old_key: KeyringEntry,
) -> None:
    # Recomputes the documented key derivation and associated data from scratch,
    # so a change to the format cannot pass unnoticed.
    def lp(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    kc = KeyCipher(Keyring([old_key]))
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    header, nonce, sealed = (
        blob[:NONCE_OFFSET],
        blob[NONCE_OFFSET : NONCE_OFFSET + 12],
        blob[NONCE_OFFSET + 12 :],
    )
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=old_key.salt,
        info=lp(b"liya-engine/byok/v1") + lp(b"tenant-a"),
    ).derive(old_key.material)
    aad = header + lp(b"tenant-a") + lp(b"openai") + lp(b"api_key")
    assert AESGCM(key).decrypt(nonce, sealed, aad) == PLAINTEXT.encode()


def test_every_single_bit_flip_is_rejected(kc: KeyCipher) -> None:
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    for position in range(len(blob)):
        for bit in range(8):
            tampered = bytearray(blob)
            tampered[position] ^= 1 << bit
            with pytest.raises(KeyDecryptionFailed):
                kc.decrypt(bytes(tampered), **PLACE)


@pytest.mark.parametrize(
    "place",
    [
        {**PLACE, "tenant_id": "tenant-b"},
        {**PLACE, "provider": "anthropic"},
        {**PLACE, "field": "endpoint"},
        # length prefixes keep the boundaries between context fields fixed
        {**PLACE, "provider": "openaia", "field": "pi_key"},
        {**PLACE, "tenant_id": "TENANT-A"},
    ],
)
def test_value_moved_elsewhere_is_rejected(kc: KeyCipher, place: dict[str, str]) -> None:
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    with pytest.raises(KeyDecryptionFailed) as caught:
        kc.decrypt(blob, **place)
    assert caught.value.metadata == {"provider": place["provider"], "master_key_id": "mk-old"}


def test_different_tenants_get_different_keys(kc: KeyCipher, old_key: KeyringEntry) -> None:
    # Same nonce, same plaintext, same everything but the tenant: the ciphertexts
    # differ only if the tenants' derived keys differ.
    nonce = b"\x00" * 12
    a = cipher._seal(kc._aead_for("mk-old", "tenant-a"), nonce, b"x" * 16, b"")
    b = cipher._seal(kc._aead_for("mk-old", "tenant-b"), nonce, b"x" * 16, b"")
    assert a != b


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01",
        b"\x01\x06mk-old",
        b"\x01\x06mk-old" + b"\x00" * 27,  # one byte short of nonce + tag
        b"garbage that is not a blob at all, but long enough to parse",
        os.urandom(64),
        b"\x01\x00" + os.urandom(40),  # empty key id
        b"\x01\xff" + b"a" * 40,  # id length past the end
    ],
)
def test_malformed_blobs_are_rejected(kc: KeyCipher, blob: bytes) -> None:
    with pytest.raises(KeyDecryptionFailed) as caught:
        kc.decrypt(blob, **PLACE)
    assert caught.value.metadata["provider"] == "openai"


def test_truncated_blob_is_rejected_at_every_length(kc: KeyCipher) -> None:
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    for length in range(len(blob)):
        with pytest.raises(KeyDecryptionFailed):
            kc.decrypt(blob[:length], **PLACE)
    with pytest.raises(KeyDecryptionFailed):
        kc.decrypt(blob + b"\x00", **PLACE)


@pytest.mark.parametrize("version", [0x00, 0x02, 0xFF])
def test_unknown_version_is_rejected(kc: KeyCipher, version: int) -> None:
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    with pytest.raises(KeyDecryptionFailed) as caught:
        kc.decrypt(bytes([version]) + blob[1:], **PLACE)
    assert "master_key_id" not in caught.value.metadata
    assert KeyCipher.key_id_of(bytes([version]) + blob[1:]) is None


def test_non_bytes_blob_is_rejected(kc: KeyCipher) -> None:
    with pytest.raises(KeyDecryptionFailed):
        kc.decrypt("not bytes", **PLACE)  # type: ignore[arg-type]
    with pytest.raises(KeyDecryptionFailed):
        kc.decrypt(None, **PLACE)  # type: ignore[arg-type]


def test_bytes_like_blobs_are_accepted(kc: KeyCipher) -> None:
    # Database drivers hand back memoryview or bytearray for binary columns.
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    assert kc.decrypt(memoryview(blob), **PLACE).reveal() == PLAINTEXT
    assert kc.decrypt(bytearray(blob), **PLACE).reveal() == PLAINTEXT


def test_unknown_master_key_is_rejected_and_named(
    old_key: KeyringEntry, new_key: KeyringEntry
) -> None:
    blob = KeyCipher(Keyring([old_key])).encrypt(PLAINTEXT, **PLACE)
    with pytest.raises(KeyDecryptionFailed) as caught:
        KeyCipher(Keyring([new_key])).decrypt(blob, **PLACE)
    assert caught.value.metadata == {"provider": "openai", "master_key_id": "mk-old"}
    assert "mk-old" in caught.value.message


def test_same_id_with_other_material_is_rejected(old_key: KeyringEntry) -> None:
    blob = KeyCipher(Keyring([old_key])).encrypt(PLAINTEXT, **PLACE)
    impostor = KeyringEntry("mk-old", os.urandom(32), old_key.salt)
    with pytest.raises(KeyDecryptionFailed):
        KeyCipher(Keyring([impostor])).decrypt(blob, **PLACE)
    other_salt = KeyringEntry("mk-old", old_key.material, new_salt())
    with pytest.raises(KeyDecryptionFailed):
        KeyCipher(Keyring([other_salt])).decrypt(blob, **PLACE)


def test_rotation_old_value_survives_new_primary_and_rewrap(
    old_key: KeyringEntry, new_key: KeyringEntry
) -> None:
    before = KeyCipher(Keyring([old_key]))
    blob = before.encrypt(PLAINTEXT, **PLACE)

    during = KeyCipher(Keyring([new_key, old_key]))
    assert during.decrypt(blob, **PLACE).reveal() == PLAINTEXT
    assert during.needs_rewrap(blob)

    rewrapped = during.rewrap(blob, **PLACE)
    assert KeyCipher.key_id_of(rewrapped) == "mk-new"
    assert not during.needs_rewrap(rewrapped)
    assert during.decrypt(rewrapped, **PLACE).reveal() == PLAINTEXT

    after = KeyCipher(Keyring([new_key]))
    assert after.decrypt(rewrapped, **PLACE).reveal() == PLAINTEXT
    with pytest.raises(KeyDecryptionFailed):
        after.decrypt(blob, **PLACE)


def test_rewrap_keeps_the_value_bound_to_its_place(
    old_key: KeyringEntry, new_key: KeyringEntry
) -> None:
    kc = KeyCipher(Keyring([new_key, old_key]))
    blob = KeyCipher(Keyring([old_key])).encrypt(PLAINTEXT, **PLACE)
    rewrapped = kc.rewrap(blob, **PLACE)
    with pytest.raises(KeyDecryptionFailed):
        kc.decrypt(rewrapped, **{**PLACE, "tenant_id": "tenant-b"})
    with pytest.raises(KeyDecryptionFailed):
        kc.rewrap(blob, **{**PLACE, "provider": "anthropic"})


def test_needs_rewrap(old_key: KeyringEntry, new_key: KeyringEntry) -> None:
    kc = KeyCipher(Keyring([new_key, old_key]))
    old_blob = KeyCipher(Keyring([old_key])).encrypt(PLAINTEXT, **PLACE)
    new_blob = kc.encrypt(PLAINTEXT, **PLACE)
    assert kc.needs_rewrap(old_blob) is True
    assert kc.needs_rewrap(new_blob) is False
    # An unreadable blob needs attention; rewrap then reports it.
    assert kc.needs_rewrap(b"garbage") is True


def test_key_id_of(kc: KeyCipher) -> None:
    assert KeyCipher.key_id_of(kc.encrypt(PLAINTEXT, **PLACE)) == "mk-old"
    assert KeyCipher.key_id_of(b"") is None
    assert KeyCipher.key_id_of(b"\x01\x06mk-old") is None
    assert KeyCipher.key_id_of(b"\x01\x06mk\x00old" + b"\x00" * 28) is None


def test_nonces_never_repeat(kc: KeyCipher) -> None:
    nonces = {
        kc.encrypt(PLAINTEXT, **PLACE)[NONCE_OFFSET : NONCE_OFFSET + 12] for _ in range(10_000)
    }
    assert len(nonces) == 10_000


def test_error_reveals_no_plaintext_and_no_key_material(
    old_key: KeyringEntry, new_key: KeyringEntry
) -> None:
    kc = KeyCipher(Keyring([old_key]))
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    failures: list[KeyDecryptionFailed] = []
    for attempt in (
        lambda: kc.decrypt(blob, **{**PLACE, "tenant_id": "tenant-b"}),
        lambda: kc.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), **PLACE),
        lambda: kc.decrypt(blob[:20], **PLACE),
        lambda: KeyCipher(Keyring([new_key])).decrypt(blob, **PLACE),
    ):
        with pytest.raises(KeyDecryptionFailed) as caught:
            attempt()
        failures.append(caught.value)

    forbidden = [PLAINTEXT, PLAINTEXT[-8:]]
    for material in (old_key.material, old_key.salt, new_key.material):
        forbidden += [material.hex(), base64.b64encode(material).decode(), repr(material)]
    for exc in failures:
        assert exc.message.startswith("stored key for provider openai could not be decrypted")
        # Chained exceptions end up in tracebacks and logs too.
        assert exc.__cause__ is None
        assert exc.__context__ is None
        shown = " ".join([str(exc), repr(exc), exc.message, repr(exc.args), repr(exc.metadata)])
        for text in forbidden:
            assert text not in shown
        assert blob.hex()[:16] not in shown


def test_reprs_hide_key_material(old_key: KeyringEntry) -> None:
    kc = KeyCipher(Keyring([old_key]))
    decrypted = kc.decrypt(kc.encrypt(PLAINTEXT, **PLACE), **PLACE)
    for shown in (repr(old_key), repr(kc.keyring), repr(kc), repr(decrypted), str(decrypted)):
        assert repr(old_key.material) not in shown
        assert old_key.material.hex() not in shown
        assert PLAINTEXT not in shown
    assert "mk-old" in repr(old_key)


def test_derived_keys_are_cached_per_instance(old_key: KeyringEntry) -> None:
    kc = KeyCipher(Keyring([old_key]))
    blob = kc.encrypt(PLAINTEXT, **PLACE)
    for _ in range(5):
        kc.decrypt(blob, **PLACE)
    info = kc._aead_for.cache_info()
    assert info.misses == 1
    assert info.hits == 5
    assert info.maxsize == cipher.DERIVED_KEY_CACHE_SIZE
    assert KeyCipher(Keyring([old_key]))._aead_for.cache_info().currsize == 0


def test_encrypt_refuses_empty_context(kc: KeyCipher) -> None:
    for name in ("tenant_id", "provider", "field"):
        with pytest.raises(ValueError) as caught:
            kc.encrypt(PLAINTEXT, **{**PLACE, name: ""})
        assert type(caught.value) is ValueError
        assert str(caught.value) == f"{name} must be a non-empty string"


def test_keyring_validation(old_key: KeyringEntry, new_key: KeyringEntry) -> None:
    with pytest.raises(ValueError) as empty:
        Keyring([])
    assert str(empty.value) == "a keyring needs at least one master key"
    with pytest.raises(ValueError) as twice:
        Keyring([old_key, new_key, entry("mk-old")])
    assert str(twice.value) == "master key id 'mk-old' appears twice"
    ring = Keyring([new_key, old_key])
    assert ring.primary_id == "mk-new"
    assert ring.primary is new_key
    assert ring.key_ids == ("mk-new", "mk-old")
    assert ring.has("mk-old")
    assert not ring.has("mk-other")
    assert len(ring) == 2


_PRINTABLE = "must be 1-255 printable ASCII characters without spaces"


@pytest.mark.parametrize(
    ("key_id", "material", "salt", "message"),
    [
        ("", b"k" * 32, b"s" * 32, f"master key id '' {_PRINTABLE}"),
        ("has space", b"k" * 32, b"s" * 32, f"master key id 'has space' {_PRINTABLE}"),
        ("clé", b"k" * 32, b"s" * 32, "master key id must be an ASCII string"),
        ("x" * 256, b"k" * 32, b"s" * 32, f"master key id {'x' * 256!r} {_PRINTABLE}"),
        ("mk-1", b"k" * 31, b"s" * 32, "master key 'mk-1' must be 32 bytes"),
        ("mk-1", b"k" * 33, b"s" * 32, "master key 'mk-1' must be 32 bytes"),
        ("mk-1", b"k" * 32, b"", "salt of master key 'mk-1' must be at least 16 bytes"),
        ("mk-1", b"k" * 32, b"s" * 8, "salt of master key 'mk-1' must be at least 16 bytes"),
    ],
)
def test_keyring_entry_validation(key_id: str, material: bytes, salt: bytes, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        KeyringEntry(key_id, material, salt)
    assert type(caught.value) is ValueError
    assert str(caught.value) == message  # names the id, never the material


def test_new_salt() -> None:
    assert len(new_salt()) == SALT_BYTES
    assert new_salt() != new_salt()


def test_generated_master_key_line_parses() -> None:
    line = generate_master_key_line()
    (key,) = parse_master_keys(line, "LIYA_MASTER_KEYS")
    assert re.fullmatch(r"mk-\d{8}-[0-9a-f]{4}", key.key_id)
    assert len(key.material) == 32
    # and it is usable as a keyring entry
    kc = KeyCipher(Keyring([KeyringEntry(key.key_id, key.material, new_salt())]))
    assert kc.decrypt(kc.encrypt(PLAINTEXT, **PLACE), **PLACE).reveal() == PLAINTEXT


def test_generated_master_key_lines_differ_and_take_an_id() -> None:
    first, second = generate_master_key_line("prod-1"), generate_master_key_line("prod-2")
    keys = parse_master_keys(f"{first}\n{second}", "LIYA_MASTER_KEYS")
    assert [k.key_id for k in keys] == ["prod-1", "prod-2"]
    assert keys[0].material != keys[1].material
    for bad in ("bad id", "a:b"):
        with pytest.raises(ValueError) as caught:
            generate_master_key_line(bad)
        assert type(caught.value) is ValueError
        assert str(caught.value) == "key id must be 1-64 of [A-Za-z0-9_-]"


def _wycheproof_tests() -> list[dict[str, object]]:
    data = json.loads(WYCHEPROOF.read_text(encoding="utf-8"))
    assert data["source"].startswith("https://github.com/C2SP/wycheproof/")
    assert (data["keySize"], data["ivSize"], data["tagSize"]) == (256, 96, 128)
    return data["tests"]


WYCHEPROOF_TESTS = _wycheproof_tests()


def test_wycheproof_selection_has_both_results() -> None:
    results = {t["result"] for t in WYCHEPROOF_TESTS}
    assert results == {"valid", "invalid"}


@pytest.mark.parametrize("vector", WYCHEPROOF_TESTS, ids=lambda t: f"tcId{t['tcId']}")
def test_wycheproof_aes_gcm(vector: dict[str, str]) -> None:
    key, iv, aad, msg, ct, tag = (
        bytes.fromhex(vector[name]) for name in ("key", "iv", "aad", "msg", "ct", "tag")
    )
    assert (len(key), len(iv), len(tag)) == (32, cipher.NONCE_BYTES, cipher.TAG_BYTES)
    aead = AESGCM(key)
    if vector["result"] == "valid":
        assert cipher._open(aead, iv, ct + tag, aad) == msg
        assert cipher._seal(aead, iv, msg, aad) == ct + tag
    else:
        with pytest.raises(InvalidTag):
            cipher._open(aead, iv, ct + tag, aad)
