"""Blob tags: a keyed BLAKE3 of a blob's bytes and its address, stored with the object.

Recomputing a blob's sha256 on every read costs as much CPU as receiving it (~70 ms per 100 MB
here), and on an object store that CPU is the client's bottleneck. So ENGRAM writes, next to
each blob on an object store, a *tag*: BLAKE3 in keyed mode (a MAC, ~5x cheaper than sha256)
over ``bytes || NUL || "sha256:<hex>"``, with a key derived from the master key
(``mnemos._master_key``, the one SOUL encrypts with). It travels as object metadata
(``x-amz-meta-mnemos-tag``), so reading it costs no extra request.

A read returns bytes only when one of these holds:

- the tag matches: only a holder of the master key can make a tag, and ENGRAM makes one only
  for bytes whose sha256 it has just computed; the address is part of the tagged message, so a
  tag cannot be moved to another blob;
- otherwise (no tag, no key, a tag made under another master key, or altered bytes) the sha256
  of the bytes equals the address.

Anything else is an ``IntegrityError``: a corrupted blob is never returned, and the sha256 path
stays the arbiter whenever the fast path cannot vouch for the bytes.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import blake3

__all__ = ["TAG_METADATA", "Tagger", "integrity_key", "tag_matches"]

TAG_METADATA = "mnemos-tag"  # S3 user metadata: the header x-amz-meta-mnemos-tag
_CONTEXT = "mnemos engram blob tag v1"
_derived: dict[bytes, bytes] = {}
log = logging.getLogger(__name__)


def integrity_key() -> bytes | None:
    """The tag key, derived from the master key; ``None`` when this process has no master key."""
    from mnemos._master_key import master_key

    try:
        master = master_key()
    except Exception as exc:  # noqa: BLE001 - without a key, reads verify by sha256 alone
        log.debug("ENGRAM blob tags off: no master key (%s)", type(exc).__name__)
        return None
    if master not in _derived:
        _derived[master] = blake3.blake3(master, derive_key_context=_CONTEXT).digest()
    return _derived[master]


class Tagger:
    """Accumulates a blob's bytes; ``hexdigest(digest)`` is its tag for that address."""

    def __init__(self, key: bytes) -> None:
        self._hash = blake3.blake3(key=key)

    def update(self, data: Any) -> None:
        self._hash.update(data)

    def hexdigest(self, digest: str) -> str:
        final = self._hash.copy()
        final.update(b"\0" + digest.encode())
        return final.hexdigest()


def tag_matches(tagger: Tagger, digest: str, tag: str) -> bool:
    return hmac.compare_digest(tagger.hexdigest(digest), tag)
