"""Sealing of the registration token at rest.

The database is the file users copy into backups and bug reports, so the registration token is
stored sealed with a key derived from the provisioning token, which the caller passes to every
start and the database never holds. The SAS is not stored at all: it is obtained again by
registering after each start. The construction is standard-library only (Home Assistant OS offers
no other choice): SHAKE-256 as a keyed stream cipher with a random nonce, then HMAC-SHA-256 over
nonce and ciphertext (encrypt-then-MAC).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_NONCE_BYTES = 16
_TAG_BYTES = 32


def derive_key(provisioning_token: str, salt: bytes) -> bytes:
    """Derive the sealing key from the provisioning token and the database's random salt."""
    return hashlib.pbkdf2_hmac("sha256", provisioning_token.encode(), salt, 10_000)


def seal(key: bytes, plaintext: str) -> bytes:
    """Encrypt and authenticate a secret."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    data = plaintext.encode()
    ciphertext = bytes(a ^ b for a, b in zip(data, _keystream(key, nonce, len(data)), strict=True))
    return nonce + ciphertext + hmac.digest(key, nonce + ciphertext, "sha256")


def unseal(key: bytes, sealed: bytes) -> str | None:
    """Decrypt a sealed secret; None when the key does not match or the data was altered."""
    nonce, ciphertext, tag = (
        sealed[:_NONCE_BYTES],
        sealed[_NONCE_BYTES:-_TAG_BYTES],
        sealed[-_TAG_BYTES:],
    )
    if len(sealed) < _NONCE_BYTES + _TAG_BYTES or not hmac.compare_digest(
        tag, hmac.digest(key, nonce + ciphertext, "sha256")
    ):
        return None
    keystream = _keystream(key, nonce, len(ciphertext))
    return bytes(a ^ b for a, b in zip(ciphertext, keystream, strict=True)).decode()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    return hashlib.shake_256(b"spotflow-seal" + key + nonce).digest(length)
