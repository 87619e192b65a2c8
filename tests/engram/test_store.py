from __future__ import annotations

import hashlib
import io

import pytest

from mnemos.engram import Engram
from mnemos.errors import IntegrityError, InvalidKeyError, NotFoundError


def test_put_get_roundtrip_bytes_stream_and_chunks(engram: Engram) -> None:
    data = b"hello engram" * 1000
    digest = engram.put(data)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert engram.get(digest) == data
    assert engram.put(io.BytesIO(data)) == digest
    assert engram.put(iter([data[:5], data[5:]])) == digest
    with engram.open(digest) as fh:
        assert fh.read() == data


def test_put_file_and_get_to_file(engram: Engram, tmp_path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * 4096)
    digest = engram.put_file(src)
    out = tmp_path / "copy.bin"
    engram.get_to_file(digest, out)
    assert out.read_bytes() == src.read_bytes()


def _corrupt(engram: Engram, digest: str) -> None:
    path = engram.path(engram.blob_key(digest))
    raw = bytearray(engram.fs.cat_file(path))
    raw[len(raw) // 2] ^= 0x01
    engram.fs.pipe_file(path, bytes(raw))


def test_flipped_byte_is_an_integrity_error(engram: Engram, tmp_path) -> None:
    digest = engram.put(b"x" * 100_000)
    _corrupt(engram, digest)
    with pytest.raises(IntegrityError, match="corrupted"):
        engram.get(digest)
    with pytest.raises(IntegrityError), engram.open(digest) as fh:
        fh.read()
    with pytest.raises(IntegrityError):
        engram.get_to_file(digest, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_missing_blob_is_not_found(engram: Engram) -> None:
    with pytest.raises(NotFoundError):
        engram.get("sha256:" + "0" * 64)


def test_refs(engram: Engram) -> None:
    d1, d2 = engram.put(b"one"), engram.put(b"two")
    engram.set_ref("runs/r1/results", d1)
    engram.set_ref("runs/r1/index", d2)
    engram.set_ref("models/tiny/1", d1)
    assert engram.get_ref("runs/r1/results") == d1
    assert engram.refs("runs/r1") == {"runs/r1/index": d2, "runs/r1/results": d1}
    assert set(engram.refs()) == {"runs/r1/index", "runs/r1/results", "models/tiny/1"}
    engram.delete_ref("runs/r1/index")
    with pytest.raises(NotFoundError):
        engram.get_ref("runs/r1/index")
    with pytest.raises(NotFoundError, match="no such blob"):
        engram.set_ref("x", "sha256:" + "1" * 64)


@pytest.mark.parametrize("key", ["", "../etc/passwd", "/abs", "a/../b", "a//b", "a\x00b", "s3://x", "a\\b", "./a"])
def test_bad_keys_are_refused(engram: Engram, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        engram.write_json(key, {})
    with pytest.raises(InvalidKeyError):
        engram.set_ref(key, engram.put(b"v"))


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, "0" * 63])
def test_bad_digests_are_refused(engram: Engram, digest: str) -> None:
    with pytest.raises(InvalidKeyError):
        engram.get(digest)


def test_logs_append_in_segments_and_read_in_order(engram: Engram) -> None:
    for i in range(5):
        engram.append("journal/cortex", [{"i": i * 2}, {"i": i * 2 + 1}])
    assert len(engram.segments("journal/cortex")) == 5
    assert [r["i"] for r in engram.read_log("journal/cortex")] == list(range(10))


def test_documents_and_listing(engram: Engram) -> None:
    engram.write_json("registry/Model/a/00000001.json", {"a": 1})
    engram.write_json("registry/Model/b/00000001.json", {"b": 1})
    assert engram.read_json("registry/Model/a/00000001.json") == {"a": 1}
    assert engram.list("registry/Model") == ["registry/Model/a/00000001.json", "registry/Model/b/00000001.json"]
    assert engram.list("registry/Nothing") == []


def test_blob_listing_and_delete(engram: Engram) -> None:
    d = engram.put(b"listed")
    assert d in {digest for digest, _, _ in engram.blobs()}
    engram.delete_blob(d)
    assert not engram.has(d)


def test_a_blobs_size_is_read_without_its_bytes(engram: Engram) -> None:
    digest = engram.put(b"x" * 1234)
    assert engram.size(digest) == 1234
    assert engram.size(digest.removeprefix("sha256:")) == 1234  # a bare hex digest names it too
    engram.delete_blob(digest)
    with pytest.raises(NotFoundError) as missing:
        engram.size(digest)
    assert missing.value.param == "digest" and digest in missing.value.message


def test_engram_pickles(engram: Engram) -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(engram))
    d = engram.put(b"shared")
    assert copy.get(d) == b"shared"



def test_large_puts_share_one_thread_pool() -> None:
    from mnemos.engram import store

    assert store._pool() is store._pool()  # a pool per large put would leave its threads behind each time
