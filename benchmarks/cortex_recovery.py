"""CORTEX restart time and memory against history: checkpoints + retention keep both flat.

    python benchmarks/cortex_recovery.py [--quick] [--jobs 100000] [--s3]

One local Ray cluster (num_cpus=8), one CORTEX with ``retention: 0`` (finished jobs leave memory
at the next checkpoint) and the default ``checkpointRecords`` (20,000), the journal on a local
folder (``--s3``: on a loopback S3, moto in its own process). In one run:

1. restart time with an empty journal: ``ray.kill`` of the actor (Ray restarts it) until it
   answers again, median of 3;
2. resident memory (RSS) of the CORTEX process once 1,000 no-op jobs have finished;
3. the same after ``--jobs`` (100,000) finished jobs, then the restart time again.

Targets: ``ratio cortex_restart_100k_vs_empty <= 2`` and ``ratio cortex_memory_100k_vs_1k <= 1.5``.
``--quick`` runs 20,000 jobs (under a minute here): the lines keep their names and say so.
Exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loopback_s3, target  # noqa: E402

T = "mnemos.cortex.testing"
CHUNK = 5000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 jobs instead of 100,000 (under a minute)")
    parser.add_argument("--jobs", type=int, default=None, help="finished jobs for the second measure")
    parser.add_argument("--s3", action="store_true", help="journal on a loopback S3 instead of a local folder")
    args = parser.parse_args()
    n_jobs = args.jobs or (20_000 if args.quick else 100_000)

    home = tempfile.mkdtemp(prefix="mnemos-bench-")
    os.environ["MNEMOS_HOME"] = home
    os.environ.pop("RAY_ADDRESS", None)
    with ExitStack() as stack:
        engram: dict[str, object] = {"uri": f"{home}/engram"}
        if args.s3:
            import s3fs

            options = stack.enter_context(loopback_s3())
            s3fs.S3FileSystem(**options).mkdir("bench")
            engram = {"uri": "s3://bench/root", "storageOptions": options}
        return run(engram, n_jobs, args.quick)


def run(engram: dict[str, object], n_jobs: int, quick: bool) -> int:
    import psutil
    import ray

    from mnemos.client import Client
    from mnemos.config import load_settings
    from mnemos.cortex import stop

    ray.init(address="local", num_cpus=8, include_dashboard=False, namespace="mnemos", log_to_driver=False)
    settings = load_settings(
        engram=engram,
        cortex={"retention": 0},
        neuron={"pools": [{"name": "cpu-a", "size": 2, "maxConcurrency": 16, "numCpus": 0.5}]},
    )
    jobs = Client(settings, connected=True).jobs
    cortex = jobs.cortex

    def restart() -> float:
        before = ray.get(cortex.info.remote())["pid"]
        t = time.perf_counter()
        ray.kill(cortex, no_restart=False)
        for _ in range(600):  # calls wait while Ray restarts the actor
            try:
                info = ray.get(cortex.info.remote(), timeout=60)
            except ray.exceptions.RayActorError:
                time.sleep(0.05)
                continue
            if info["pid"] != before:
                return time.perf_counter() - t
        raise RuntimeError("CORTEX did not come back")

    def rss() -> float:
        ray.get(cortex.checkpoint.remote())  # what retention lets go leaves memory now
        return psutil.Process(ray.get(cortex.info.remote())["pid"]).memory_info().rss / 2**20

    def run_jobs(count: int) -> float:
        t = time.perf_counter()
        for start in range(0, count, CHUNK):
            handles = jobs.submit_many(f"{T}:noop", range(start, min(count, start + CHUNK)))
            jobs.wait(handles, timeout=600)
        return time.perf_counter() - t

    run_jobs(200)  # warm-up: workers up, code imported
    empty = statistics.median(restart() for _ in range(3))
    loaded_empty = ray.get(cortex.info.remote())["loaded"]
    run_jobs(1000)
    mem_1k = rss()
    took = run_jobs(n_jobs - 1000)
    mem_big = rss()
    stats = ray.get(cortex.stats.remote())
    full = statistics.median(restart() for _ in range(3))
    loaded_full = ray.get(cortex.info.remote())["loaded"]
    stop()
    ray.shutdown()

    label = f"{n_jobs:,} finished jobs" + (" (--quick: standing for 100,000)" if quick else "")
    print(f"ran {n_jobs - 1000:,} no-op jobs in {took:.1f}s ({(n_jobs - 1000) / took:.0f} jobs/s)")
    print(f"journal: {stats['journal']['records']:,} records, {stats['journal']['checkpoints']} checkpoints")
    print(f"restart, empty journal: {empty:.2f}s (load {loaded_empty['seconds']:.3f}s)")
    print(f"restart, {label}: {full:.2f}s (load {loaded_full['seconds']:.3f}s, "
          f"{loaded_full['jobs']} jobs, {loaded_full['tailRecords']} tail records)")  # fmt: skip
    print(f"CORTEX RSS: {mem_1k:.0f} MiB after 1,000 jobs, {mem_big:.0f} MiB after {label}")
    lines = [
        target("ratio", "cortex_restart_100k_vs_empty", full / empty, "<=", 2),
        target("ratio", "cortex_memory_100k_vs_1k", mem_big / mem_1k, "<=", 1.5),
    ]
    print("\n".join(lines))
    return 1 if any("MISSED" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
