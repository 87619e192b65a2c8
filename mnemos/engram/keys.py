"""ENGRAM key and digest validation."""

from __future__ import annotations

import re

from mnemos.errors import InvalidKeyError

__all__ = ["normalize_digest", "validate_key"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def validate_key(key: str, *, what: str = "key") -> str:
    """Return ``key`` when it is a safe relative path, else raise ``InvalidKeyError``.

    Refused: empty keys, absolute paths, ``..`` or ``.`` segments, empty segments, NUL,
    backslashes and URL schemes.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"{what} must be a non-empty string", param=what)
    if "\x00" in key:
        raise InvalidKeyError(f"{what} {key!r} contains NUL", param=what)
    if key.startswith("/") or "\\" in key or "://" in key:
        raise InvalidKeyError(f"{what} {key!r} must be a relative path like 'runs/abc/output'", param=what)
    parts = key.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKeyError(f"{what} {key!r} may not contain '..', '.' or empty segments", param=what)
    return key.rstrip("/")


def normalize_digest(digest: str) -> str:
    """``sha256:<hex>`` or ``<hex>`` → ``sha256:<hex>``; anything else is an ``InvalidKeyError``."""
    hexpart = digest[7:] if isinstance(digest, str) and digest.startswith("sha256:") else digest
    if not isinstance(hexpart, str) or not _HEX64.fullmatch(hexpart):
        raise InvalidKeyError(f"{digest!r} is not a sha256 digest ('sha256:' + 64 hex digits)", param="digest")
    return "sha256:" + hexpart
