"""Envelope encryption of personal fields, so that erasure can be real (crypto-shredding).

Each prospect has its own random 256-bit data key. Fields are sealed with AES-GCM under that
key (the field name is bound as associated data, so ciphertexts can't be swapped between
fields); the data key is stored only wrapped by the master key. Destroying the wrapped key
makes every copy of the prospect's fields unreadable. Identity lookups use keyed hashes
(HMAC-SHA256 under a key derived from the master key), which survive erasure for compliance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = 12
_WRAP_AAD = b"mcep:data-key:v1"


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """An independent 256-bit key for ``purpose`` (JWT signing, identity hashing, ...)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master_key
    )


def decode_master_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except ValueError as exc:
        raise ValueError("the master key must be 32 bytes in urlsafe base64") from exc
    if len(key) != 32:
        raise ValueError("the master key must be 32 bytes in urlsafe base64")
    return key


def new_master_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@dataclass(frozen=True, slots=True)
class DataKey:
    """A prospect's unwrapped data key; lives only in memory, for one request or batch."""

    key: bytes

    def seal(self, field: str, plaintext: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext.encode(), field.encode())

    def open(self, field: str, sealed: bytes) -> str:
        nonce, body = sealed[:_NONCE], sealed[_NONCE:]
        return AESGCM(self.key).decrypt(nonce, body, field.encode()).decode()


class Keyring:
    """Wraps and unwraps data keys with the master key; computes identity hashes."""

    def __init__(self, master_key: bytes) -> None:
        self._master = master_key
        self._wrap = AESGCM(derive_key(master_key, "mcep:wrap"))
        self._hash_key = derive_key(master_key, "mcep:identity-hash")

    def __reduce__(self) -> tuple[type[Keyring], tuple[bytes]]:
        # Lets the CSV importer hand the keyring to its own worker processes.
        return (Keyring, (self._master,))

    def __repr__(self) -> str:
        return "Keyring(<secret>)"

    def new_data_key(self) -> tuple[DataKey, bytes]:
        key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        return DataKey(key), nonce + self._wrap.encrypt(nonce, key, _WRAP_AAD)

    def unwrap(self, wrapped: bytes) -> DataKey:
        return DataKey(self._wrap.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _WRAP_AAD))

    def webhook_secret(self, platform: str, device_id: str) -> str:
        """The secret a provider presents when calling back about one device: derived, so it
        needs no storage and changes with the master key."""
        message = f"webhook:{platform}:{device_id}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()

    def identity_hash(self, kind: str, value: str) -> str:
        message = f"{kind}:{value}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()
