"""ENGRAM put/get of a large blob vs raw s3fs, against the same loopback S3, in one run.

    python benchmarks/engram_io.py [--quick] [--mb 100]

ENGRAM does more than s3fs (sha256 on write, verification on read, content addressing); the
target is that it costs at most 10%: ratio = s3fs time / ENGRAM time >= 0.9 both ways.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loopback_s3, target  # noqa: E402

from mnemos.engram import Engram  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round (under a minute)")
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    data = os.urandom(args.mb * 1024 * 1024)

    with loopback_s3() as opts:
        import s3fs

        fs = s3fs.S3FileSystem(**opts)
        fs.mkdir("bench")
        engram = Engram("s3://bench/engram", opts)
        put_raw, put_eng, get_raw, get_eng = [], [], [], []
        for i in range(rounds):
            # Raw s3fs: one PUT of the bytes, one ranged read of the object.
            path = f"bench/raw/{i}"
            t = time.perf_counter()
            fs.pipe_file(path, data)
            put_raw.append(time.perf_counter() - t)
            t = time.perf_counter()
            with fs.open(path, "rb", block_size=8 * 1024 * 1024) as fh:
                back = fh.read()
            get_raw.append(time.perf_counter() - t)
            assert back == data

            # ENGRAM: a fresh blob each round (content addressing would skip a re-put).
            blob = data[:-8] + i.to_bytes(8, "little")
            t = time.perf_counter()
            digest = engram.put(blob)
            put_eng.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = engram.get(digest)
            get_eng.append(time.perf_counter() - t)
            assert back == blob

    def med(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    mb = args.mb
    print(f"info put s3fs {mb / med(put_raw):.0f} MB/s engram {mb / med(put_eng):.0f} MB/s")
    print(f"info get s3fs {mb / med(get_raw):.0f} MB/s engram {mb / med(get_eng):.0f} MB/s")
    print(target("ratio", "engram_put_vs_s3fs", med(put_raw) / med(put_eng), ">=", 0.9))
    print(target("ratio", "engram_get_vs_s3fs", med(get_raw) / med(get_eng), ">=", 0.9))


if __name__ == "__main__":
    main()
