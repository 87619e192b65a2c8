"""ENGRAM put/get of a large blob vs raw s3fs, against the same loopback S3, in one run.

    python benchmarks/engram_io.py [--quick] [--mb 100]

ENGRAM does more than s3fs (sha256 and a keyed BLAKE3 tag on write, verification on read,
content addressing); the target is that it costs at most 10%: ratio = s3fs time / ENGRAM time
>= 0.9 both ways. The two sides alternate which goes first in each round, so neither always
meets the S3 server right after the other's large transfer. `info` lines also time a read of an
untagged blob (verified by sha256 alone, the path for blobs written without a key) and a
download to a local file (get_to_file vs s3fs get_file).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loopback_s3, target  # noqa: E402

from mnemos.engram import Engram  # noqa: E402
from mnemos.engram.integrity import TAG_METADATA  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under a minute)")
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    rounds = 6 if args.quick else 10
    data = os.urandom(args.mb * 1024 * 1024)

    with loopback_s3() as opts:
        import s3fs

        fs = s3fs.S3FileSystem(**opts)
        fs.mkdir("bench")
        engram = Engram("s3://bench/engram", opts)
        keys = ("put_raw", "put_eng", "get_raw", "get_eng", "get_sha", "file_raw", "file_eng")
        times: dict[str, list[float]] = {k: [] for k in keys}

        def timed(name: str, fn, *a):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            out = fn(*a)
            times[name].append(time.perf_counter() - t)
            return out

        def raw(i: int) -> None:
            # Raw s3fs: one PUT of the bytes, one buffered read of the object.
            path = f"bench/raw/{i}"
            timed("put_raw", fs.pipe_file, path, data)

            def read() -> bytes:
                with fs.open(path, "rb", block_size=8 * 1024 * 1024) as fh:
                    return fh.read()

            assert timed("get_raw", read) == data

        def eng(i: int) -> None:
            # ENGRAM: a fresh blob each round (content addressing would skip a re-put).
            blob = data[:-8] + i.to_bytes(8, "little")
            digest = timed("put_eng", engram.put, blob)
            assert timed("get_eng", engram.get, digest) == blob

        for i in range(rounds):
            for side in (raw, eng) if i % 2 == 0 else (eng, raw):
                side(i)

        # Download to a local file: ENGRAM's get_to_file vs s3fs get_file, same blob.
        blob = data[:-8] + (0).to_bytes(8, "little")
        digest = engram.put(blob)
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(max(2, rounds // 2)):
                timed("file_raw", fs.get_file, engram.path(engram.blob_key(digest)), f"{tmp}/raw")
                timed("file_eng", engram.get_to_file, digest, f"{tmp}/eng")

        # The same blob without its tag (as another tool or a keyless process writes it).
        blob = data[:-8] + b"untagged"
        digest = engram.put(blob)
        bucket, key, _ = fs.split_path(engram.path(engram.blob_key(digest)))
        head = fs.call_s3("head_object", Bucket=bucket, Key=key)
        assert TAG_METADATA in head.get("Metadata", {})
        fs.pipe_file(engram.path(engram.blob_key(digest)), blob)
        for _ in range(max(2, rounds // 2)):
            assert timed("get_sha", engram.get, digest) == blob

    def med(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    mb = args.mb
    m = {k: med(v) for k, v in times.items()}
    print(f"info put s3fs {mb / m['put_raw']:.0f} MB/s engram {mb / m['put_eng']:.0f} MB/s")
    print(f"info get s3fs {mb / m['get_raw']:.0f} MB/s engram {mb / m['get_eng']:.0f} MB/s")
    untagged = m["get_raw"] / m["get_sha"]
    print(f"info get of an untagged blob (sha256 only) {mb / m['get_sha']:.0f} MB/s, {untagged:.2f}x s3fs")
    print(f"info get_to_file {m['file_raw'] / m['file_eng']:.2f}x s3fs get_file")
    print(target("ratio", "engram_put_vs_s3fs", m["put_raw"] / m["put_eng"], ">=", 0.9))
    print(target("ratio", "engram_get_vs_s3fs", m["get_raw"] / m["get_eng"], ">=", 0.9))


if __name__ == "__main__":
    main()
