"""The master key of a MNEMOS installation: the root of trust SOUL encrypts with and ENGRAM tags blobs with.

The master key comes from, in order:

1. ``MNEMOS_MASTER_KEY``: 32 bytes in (url-safe) base64, or any passphrase (stretched with scrypt);
2. ``MNEMOS_MASTER_KEY_FILE``: a file holding such a value;
3. ``$MNEMOS_HOME/master.key``: created on first use with mode 0600.

Only the last is ever created: a ``MNEMOS_MASTER_KEY_FILE`` that names no file (a typo, a Secret not
mounted) is an error, never a fresh key that would encrypt what no other process can read.

On a multi-node cluster every process that signs tokens, reads the file secret store or reads
tagged blobs needs the same key: set ``MNEMOS_MASTER_KEY`` (or ship the key file) everywhere.
It sits below every component so that ENGRAM and SOUL both reach it without importing each other.
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
from mnemos.errors import ValidationError

__all__ = ["master_key", "master_key_path"]

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
        if os.environ.get("MNEMOS_MASTER_KEY_FILE"):
            raise ValidationError(
                f"MNEMOS_MASTER_KEY_FILE names {str(path)[:200]!r}, which does not exist: mount or write the "
                "installation's key there, or unset it to use $MNEMOS_HOME/master.key",
                param="MNEMOS_MASTER_KEY_FILE",
            )
        _create_key_file(path)
    text = path.read_text()
    cache_key = ("file", hashlib.sha256(text.encode()).hexdigest())
    if cache_key not in _cache:
        _cache[cache_key] = _decode(text)
    return _cache[cache_key]
