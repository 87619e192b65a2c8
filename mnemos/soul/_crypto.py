"""Authenticated encryption (AES-256-GCM) of SOUL's data at rest, under the master key.

The master key itself (where it comes from, how it is created) is ``mnemos._master_key``; it is
re-exported here.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from mnemos._master_key import master_key, master_key_path
from mnemos.errors import IntegrityError

__all__ = ["decrypt", "encrypt", "master_key", "master_key_path", "write_private_file"]

_MAGIC = b"MNS1"
_NONCE_BYTES = 12


def encrypt(plaintext: bytes, *, context: str, key: bytes | None = None) -> bytes:
    """AES-256-GCM: ``MNS1 | nonce | ciphertext+tag``; ``context`` is bound as associated data."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _MAGIC + nonce + AESGCM(key or master_key()).encrypt(nonce, plaintext, context.encode())


def decrypt(blob: bytes, *, context: str, key: bytes | None = None) -> bytes:
    """Inverse of ``encrypt``; a wrong master key or tampered data is an ``IntegrityError``."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _NONCE_BYTES + 16:
        raise IntegrityError(f"{context}: not a MNEMOS encrypted blob", param="MNEMOS_MASTER_KEY")
    nonce = blob[len(_MAGIC) : len(_MAGIC) + _NONCE_BYTES]
    try:
        return AESGCM(key or master_key()).decrypt(nonce, blob[len(_MAGIC) + _NONCE_BYTES :], context.encode())
    except InvalidTag:
        raise IntegrityError(
            f"{context}: cannot decrypt: the master key differs from the one it was written with, or the data "
            "was altered (set MNEMOS_MASTER_KEY or MNEMOS_MASTER_KEY_FILE to the original key)",
            param="MNEMOS_MASTER_KEY",
        ) from None


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
