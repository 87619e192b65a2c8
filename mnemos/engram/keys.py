"""ENGRAM key and digest validation."""

from __future__ import annotations

import re

from mnemos.errors import InvalidKeyError

__all__ = ["bucket_problem", "normalize_digest", "validate_key"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# The bucket names an S3 client sends at all (botocore refuses any other before a request, in a message of
# two regular expressions); the rules of a new bucket, which the message gives, are narrower.
_S3_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")
_S3_RULES = "3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"


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


def bucket_problem(uri: str) -> str | None:
    """Why object-store URI ``uri`` names no usable bucket, with the fix; ``None`` for a local path or one
    that does. ``s3://`` alone would put each top-level key in a bucket of its name (``registry``,
    ``blobs``), and a name S3 refuses ended in botocore's message of two regular expressions."""
    if "://" not in uri or uri.startswith("file://"):
        return None
    protocol, rest = uri.split("://", 1)
    bucket = rest.split("/", 1)[0]
    if not bucket:
        return f"names no bucket: give {protocol}://BUCKET/PREFIX, e.g. {protocol}://my-bucket/mnemos"
    if protocol not in ("s3", "s3a") or _S3_BUCKET.fullmatch(bucket) or bucket.startswith("arn:"):
        return None
    if "@" in bucket:  # s3://key:secret@bucket: never shown, and S3 URIs carry no credentials
        return ("carries a user or password, which S3 URIs cannot: drop it and set the credentials in "
                "engram.storageOptions (key, secret) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    shown = repr(bucket) if len(bucket) <= 80 else f"{bucket[:60]!r}… ({len(bucket)} characters)"
    return f"bucket {shown} is not a valid bucket name: a bucket name is {_S3_RULES}, e.g. {protocol}://my-bucket/mnemos"
