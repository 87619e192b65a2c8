"""Blob tags on S3: a read is vouched for by the keyed tag or by sha256, never by neither."""

from __future__ import annotations

import hashlib
import io

import pytest

from mnemos.engram import Engram
from mnemos.engram import store as store_module
from mnemos.engram.integrity import TAG_METADATA, Tagger, integrity_key
from mnemos.errors import IntegrityError


def _tag_of(engram: Engram, digest: str) -> str | None:
    bucket, key, _ = engram.fs.split_path(engram.path(engram.blob_key(digest)))
    head = engram.fs.call_s3("head_object", Bucket=bucket, Key=key)
    return (head.get("Metadata") or {}).get(TAG_METADATA)


def _rewrite(engram: Engram, digest: str, data: bytes, tag: str | None) -> None:
    """Replace a blob's stored object behind ENGRAM's back, with the given tag metadata."""
    extra = {"Metadata": {TAG_METADATA: tag}} if tag else {}
    engram.fs.pipe_file(engram.path(engram.blob_key(digest)), data, **extra)


def _expected_tag(data: bytes, digest: str) -> str:
    key = integrity_key()
    assert key is not None
    tagger = Tagger(key)
    tagger.update(data)
    return tagger.hexdigest(digest)


def test_every_way_of_putting_a_blob_tags_it(s3_engram: Engram, tmp_path) -> None:
    payloads = [b"bytes" * 1000, b"stream" * 1000, b"file" * 1000]
    src = tmp_path / "f.bin"
    src.write_bytes(payloads[2])
    digests = [s3_engram.put(payloads[0]), s3_engram.put(io.BytesIO(payloads[1])), s3_engram.put_file(src)]
    for data, digest in zip(payloads, digests, strict=True):
        assert _tag_of(s3_engram, digest) == _expected_tag(data, digest)


def test_tag_binds_the_address() -> None:
    key = integrity_key()
    assert key is not None and len(key) == 32
    tagger = Tagger(key)
    tagger.update(b"same bytes")
    assert tagger.hexdigest("sha256:" + "a" * 64) != tagger.hexdigest("sha256:" + "b" * 64)
    other = Tagger(b"\x01" * 32)
    other.update(b"same bytes")
    assert other.hexdigest("sha256:" + "a" * 64) != tagger.hexdigest("sha256:" + "a" * 64)


def test_a_tagged_blob_is_verified_by_its_tag_alone(s3_engram: Engram, monkeypatch, tmp_path) -> None:
    data = b"fast path" * 50_000
    digest = s3_engram.put(data)
    calls: list[str] = []
    real = store_module._check_sha256
    monkeypatch.setattr(store_module, "_check_sha256", lambda parts, d, h=None: calls.append(d) or real(parts, d, h))
    assert s3_engram.get(digest) == data
    s3_engram.get_to_file(digest, tmp_path / "fast")
    assert (tmp_path / "fast").read_bytes() == data
    assert calls == []
    # An untagged object (written by another tool) falls back to sha256, and is still returned.
    _rewrite(s3_engram, digest, data, tag=None)
    assert s3_engram.get(digest) == data
    s3_engram.get_to_file(digest, tmp_path / "slow")
    assert (tmp_path / "slow").read_bytes() == data
    assert calls == [digest, digest]


def test_altered_bytes_under_their_old_tag_are_refused(s3_engram: Engram, tmp_path) -> None:
    data = b"x" * 300_000
    digest = s3_engram.put(data)
    tag = _tag_of(s3_engram, digest)
    altered = bytearray(data)
    altered[150_000] ^= 0x01
    _rewrite(s3_engram, digest, bytes(altered), tag)
    with pytest.raises(IntegrityError, match="corrupted"):
        s3_engram.get(digest)
    with pytest.raises(IntegrityError, match="corrupted"):
        s3_engram.get_to_file(digest, tmp_path / "never")
    assert list(tmp_path.iterdir()) == []


def test_a_tag_moved_from_another_blob_is_refused(s3_engram: Engram) -> None:
    a, b = b"blob a" * 1000, b"blob b" * 1000
    da, db = s3_engram.put(a), s3_engram.put(b)
    _rewrite(s3_engram, db, a, _tag_of(s3_engram, da))  # b's address now holds a's bytes and tag
    with pytest.raises(IntegrityError):
        s3_engram.get(db)


def test_a_tag_from_another_master_key_falls_back_to_sha256(s3_engram: Engram, tmp_path) -> None:
    data = b"written by another cluster" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    foreign = Tagger(b"\x02" * 32)
    foreign.update(data)
    _rewrite(s3_engram, digest, data, foreign.hexdigest(digest))
    assert s3_engram.get(digest) == data
    s3_engram.get_to_file(digest, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == data
    _rewrite(s3_engram, digest, data[:-1] + b"!", foreign.hexdigest(digest))
    with pytest.raises(IntegrityError):
        s3_engram.get(digest)
    with pytest.raises(IntegrityError):
        s3_engram.get_to_file(digest, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_without_a_master_key_blobs_are_untagged_and_still_verified(s3_engram: Engram, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "integrity_key", lambda: None)
    data = b"no key here" * 1000
    digest = s3_engram.put(data)
    assert _tag_of(s3_engram, digest) is None
    assert s3_engram.get(digest) == data
    _rewrite(s3_engram, digest, data[:-1] + b"?", None)
    with pytest.raises(IntegrityError):
        s3_engram.get(digest)
