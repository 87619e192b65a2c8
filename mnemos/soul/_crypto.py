"""The master key and authenticated encryption (AES-256-GCM) of SOUL's data at rest.

The master key comes from, in order:

1. ``MNEMOS_MASTER_KEY``: 32 bytes in (url-safe) base64, or any passphrase (stretched with scrypt);
2. ``MNEMOS_MASTER_KEY_FILE``: a file holding such a value;
3. ``$MNEMOS_HOME/master.key``: created on first use with mode 0600.

On a multi-node cluster every process that signs tokens or reads the file secret store needs the
same key: set ``MNEMOS_MASTER_KEY`` (or ship the key file) everywhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import tempfile
from pathlib import Path

from mnemos.config import default_home
from mnemos.errors import IntegrityError, ValidationError

_MAGIC = b"MNS1"
_NONCE_BYTES = 12
_SCRYPT_SALT = b"mnemos-master-key-v1"
_cache: dict[tuple[str, str], bytes] = {}


def master_key_path() -> Path:
    """Where the master key file lives (``MNEMOS_MASTER_KEY_FILE`` or ``$MNEMOS_HOME/master.key``)."""
    return Path(os.environ.get("MNEMOS_MASTER_KEY_FILE") or default_home() / "master.key")


def _decode(value: str) -> bytes:
    """32 raw bytes from base64, else a key stretched from the passphrase."""
    text = value.strip()
    if not text:
        raise ValidationError("the master key is empty", param="MNEMOS_MASTER_KEY")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    return hashlib.scrypt(text.encode(), salt=_SCRYPT_SALT, n=2**14, r=8, p=1, dklen=32)


def _create_key_file(path: Path) -> None:
    """Write a fresh key with mode 0600; atomic, and a concurrent creator's key wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-master-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
        with contextlib.suppress(FileExistsError):  # another process created it first: its key wins
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def master_key() -> bytes:
    """The 32-byte master key (created under MNEMOS_HOME on first use when none is configured)."""
    env = os.environ.get("MNEMOS_MASTER_KEY")
    if env:
        cache_key = ("env", hashlib.sha256(env.encode()).hexdigest())
        if cache_key not in _cache:
            _cache[cache_key] = _decode(env)
        return _cache[cache_key]
    path = master_key_path()
    if not path.exists():
        _create_key_file(path)
    text = path.read_text()
    cache_key = ("file", hashlib.sha256(text.encode()).hexdigest())
    if cache_key not in _cache:
        _cache[cache_key] = _decode(text)
    return _cache[cache_key]


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
