"""CORTEX dispatch vs raw Ray tasks, in one run on one local Ray cluster (num_cpus=8).

    python benchmarks/cortex_dispatch.py [--quick] [--jobs 3000] [--sleep-jobs 800] [--s3]

Same work both ways, with the same concurrency (8: raw tasks take 1 CPU each; CORTEX's
``cpu-a`` pool has 2 workers running 4 jobs each), the journal on (group commit, every state
change durable in ENGRAM: a local temp folder, or with ``--s3`` a loopback S3 — moto in its
own process):

* throughput of no-op jobs and of 10 ms jobs (submit all, wait for all);
* submit-to-start latency p50/p99, one job at a time (no queueing: the cost of a dispatch,
  including for CORTEX the durable journal write that acknowledges the submit).

Targets: CORTEX no-op and 10 ms throughput >= 0.8x raw Ray tasks; exits non-zero on a miss.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loopback_s3, target  # noqa: E402

T = "mnemos.cortex.testing"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, one round (under a minute)")
    parser.add_argument("--jobs", type=int, default=None, help="no-op jobs per round (default 3000; quick 1000)")
    parser.add_argument("--sleep-jobs", type=int, default=None, help="10 ms jobs per round (default 800; quick 240)")
    parser.add_argument("--s3", action="store_true", help="the journal on a loopback S3 instead of a local folder")
    args = parser.parse_args()
    if not args.s3:
        return run(args, {"uri": f"{tempfile.mkdtemp(prefix='mnemos-bench-engram-')}"})
    import s3fs

    with loopback_s3() as options:
        s3fs.S3FileSystem(**options).mkdir("bench")
        return run(args, {"uri": "s3://bench/root", "storageOptions": options})


def run(args: argparse.Namespace, engram: dict[str, object]) -> int:
    n_noop = args.jobs or (1000 if args.quick else 3000)
    n_sleep = args.sleep_jobs or (240 if args.quick else 800)
    n_latency = 60 if args.quick else 200
    rounds = 1 if args.quick else 3

    home = tempfile.mkdtemp(prefix="mnemos-bench-")
    os.environ["MNEMOS_HOME"] = home
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from mnemos.client import Client
    from mnemos.config import load_settings
    from mnemos.cortex import stop

    ray.init(address="local", num_cpus=8, include_dashboard=False, namespace="mnemos", log_to_driver=False)
    settings = load_settings(
        engram=engram,
        neuron={"pools": [{"name": "cpu-a", "size": 2, "maxConcurrency": 4, "numCpus": 0.5}]},
    )
    client = Client(settings, connected=True)
    jobs = client.jobs

    @ray.remote(num_cpus=1)
    def noop(i: int) -> int:
        return i

    @ray.remote(num_cpus=1)
    def sleep(seconds: float, i: int) -> int:
        time.sleep(seconds)
        return i

    @ray.remote(num_cpus=1)
    def started() -> float:
        return time.time()

    def raw_noop() -> float:
        t = time.perf_counter()
        assert ray.get([noop.remote(i) for i in range(n_noop)]) == list(range(n_noop))
        return n_noop / (time.perf_counter() - t)

    def cortex_noop() -> float:
        t = time.perf_counter()
        handles = jobs.submit_many(f"{T}:noop", range(n_noop))
        assert jobs.results(handles, timeout=600) == list(range(n_noop))
        return n_noop / (time.perf_counter() - t)

    def raw_sleep() -> float:
        t = time.perf_counter()
        ray.get([sleep.remote(0.01, i) for i in range(n_sleep)])
        return n_sleep / (time.perf_counter() - t)

    def cortex_sleep() -> float:
        t = time.perf_counter()
        handles = jobs.submit_many(f"{T}:sleep", [(0.01, i) for i in range(n_sleep)])
        assert jobs.results(handles, timeout=600) == list(range(n_sleep))
        return n_sleep / (time.perf_counter() - t)

    def raw_latency() -> list[float]:
        out = []
        for _ in range(n_latency):
            t = time.time()
            out.append(ray.get(started.remote()) - t)
        return out

    def cortex_latency() -> list[float]:
        out = []
        for _ in range(n_latency):
            t = time.time()
            out.append(jobs.submit(f"{T}:stamp").result(timeout=120)["start"] - t)
        return out

    # warm up: worker processes of both sides started, code imported, CORTEX and its pool up
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(400)])
    jobs.results(jobs.submit_many(f"{T}:noop", range(400)), timeout=600)
    print(f"warm-up {time.perf_counter() - t0:.1f}s (Ray workers, CORTEX, NEURON pool cpu-a: 2 workers x 4 jobs)")

    results: dict[str, list[float]] = {k: [] for k in ("raw_noop", "cortex_noop", "raw_sleep", "cortex_sleep")}
    before = ray.get(jobs.cortex.stats.remote())["journal"]
    for _ in range(rounds):  # interleaved, so that load on the machine hits both sides alike
        results["raw_noop"].append(raw_noop())
        results["cortex_noop"].append(cortex_noop())
        results["raw_sleep"].append(raw_sleep())
        results["cortex_sleep"].append(cortex_sleep())
    after = ray.get(jobs.cortex.stats.remote())["journal"]
    lat_raw, lat_cortex = raw_latency(), cortex_latency()

    med = {k: statistics.median(v) for k, v in results.items()}
    segments = after["segments"] - before["segments"]
    records = after["records"] - before["records"]
    print(f"no-op jobs x{n_noop}: raw Ray {med['raw_noop']:.0f}/s, CORTEX {med['cortex_noop']:.0f}/s")
    print(f"10 ms jobs x{n_sleep}: raw Ray {med['raw_sleep']:.0f}/s, CORTEX {med['cortex_sleep']:.0f}/s")
    print(f"journal: {records} records in {segments} segments ({records / max(segments, 1):.0f} per write)")
    print(
        f"submit-to-start, one at a time x{n_latency}: raw Ray p50 {_percentile(lat_raw, 0.5) * 1e3:.1f} ms "
        f"p99 {_percentile(lat_raw, 0.99) * 1e3:.1f} ms; CORTEX p50 {_percentile(lat_cortex, 0.5) * 1e3:.1f} ms "
        f"p99 {_percentile(lat_cortex, 0.99) * 1e3:.1f} ms"
    )
    stop()
    ray.shutdown()
    lines = [
        target("latency_ms", "cortex_submit_to_start_p50", _percentile(lat_cortex, 0.5) * 1e3, "<=", 50),
        target("latency_ms", "cortex_submit_to_start_p99", _percentile(lat_cortex, 0.99) * 1e3, "<=", 200),
        target("ratio", "cortex_10ms_vs_ray", med["cortex_sleep"] / med["raw_sleep"], ">=", 0.8),
        target("ratio", "cortex_noop_vs_ray", med["cortex_noop"] / med["raw_noop"], ">=", 0.8),
    ]
    print(f"journal on {engram['uri'].split('://')[0] if '://' in str(engram['uri']) else 'a local folder'}")
    print("\n".join(lines))
    return 1 if any("MISSED" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
