"""The multi-node scenario, run as its own driver (a process connects to one Ray cluster at a time).

    python tests/multinode/driver.py OUT_JSON

Builds a real multi-node Ray cluster on this machine with ``ray.cluster_utils.Cluster``: a head
labelled ``accelerator: nvidia`` with one (logical) GPU, standing for a GPU node, and two worker
nodes labelled ``accelerator: cpu``. Runs CORTEX with a ``cpu-a`` and a ``gpu-a`` pool, kills a
node that hosts a ``cpu-a`` worker while 200 jobs run, adds a node back, and writes what it saw
to OUT_JSON for the test to judge.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

T = "mnemos.cortex.testing"


def _retry(start: Callable[[], Any], tries: int = 3) -> Any:
    """Start a Ray node, again when it timed out (Ray waits 30 s for a raylet; a loaded machine can be slower)."""
    for attempt in range(tries):
        try:
            return start()
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on that timeout
            if "timed out during startup" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def main(out: str) -> None:
    home = tempfile.mkdtemp(prefix="mnemos-multinode-")
    os.environ["MNEMOS_HOME"] = home
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray.cluster_utils import Cluster

    from mnemos.client import Client
    from mnemos.config import load_settings
    from mnemos.cortex import read_records

    head = {"num_cpus": 2, "num_gpus": 1, "labels": {"accelerator": "nvidia"}, "include_dashboard": False}
    cluster = _retry(lambda: Cluster(initialize_head=True, head_node_args=head))
    nodes = [_retry(lambda: cluster.add_node(num_cpus=2, labels={"accelerator": "cpu"})) for _ in range(2)]
    cluster.wait_for_nodes(timeout=300)
    report: dict[str, object] = {}
    try:
        ray.init(address=cluster.address, namespace="mnemos", log_to_driver=False)
        settings = load_settings(
            engram={"uri": f"{home}/engram"},
            cortex={"queues": {"default": {"concurrency": 100, "backoff": {"min": "100ms", "max": "400ms"}}}},
            neuron={"pools": [
                {"name": "cpu-a", "selector": {"accelerator": "cpu"}, "size": 2, "numCpus": 0.5, "maxConcurrency": 8},
                {"name": "gpu-a", "selector": {"accelerator": "nvidia"}, "size": 1, "numCpus": 0, "numGpus": 1},
            ]},
        )  # fmt: skip
        jobs = Client(settings, connected=True).jobs
        labels = {n["NodeID"]: (n.get("Labels") or {}).get("accelerator") for n in ray.nodes() if n["Alive"]}

        def placement() -> dict[str, list[tuple[str, str]]]:
            workers = ray.get(jobs.cortex.workers.remote())
            pings = ray.get([w["handle"].ping.remote() for w in workers], timeout=120)
            out: dict[str, list[tuple[str, str]]] = {}
            for ping in pings:
                out.setdefault(ping["pool"], []).append((ping["name"], ping["node"]))
            return out

        where = placement()
        report["placement"] = {pool: sorted({labels[node] for _, node in ws}) for pool, ws in where.items()}
        report["gpuJobNode"] = labels.get(jobs.submit(f"{T}:node_id", resources={"gpus": 1}).result(timeout=180))
        victim_node = where["cpu-a"][0][1]
        victim = next(n for n in nodes if n.node_id == victim_node)
        handles = jobs.submit_many(f"{T}:stamp", [(0.2, i) for i in range(200)], resources={"pool": "cpu-a"})
        for _ in range(1200):  # kill the node mid-run: once some jobs are done and most are not
            if jobs.stats()["jobs"]["succeeded"] >= 20:
                break
            time.sleep(0.05)
        report["succeededBeforeKill"] = jobs.stats()["jobs"]["succeeded"]
        cluster.remove_node(victim, allow_graceful=False)
        started = time.monotonic()
        results = jobs.results(handles, timeout=600)
        report["recoverySeconds"] = round(time.monotonic() - started, 1)
        report["values"] = [r["value"] for r in results]
        records = read_records(jobs.client.engram)
        ids = {h.id for h in handles}
        report["resultRecords"] = sorted(
            set(Counter(r["id"] for r in records if r.get("t") == "result" and r["id"] in ids).values())
        )
        report["lostRetries"] = sum(1 for r in records if r.get("t") == "retry" and "was lost" in str(r.get("error")))
        report["placementAfterLoss"] = {
            pool: sorted({labels.get(node, "gone") for _, node in ws}) for pool, ws in placement().items()
        }
        _retry(lambda: cluster.add_node(num_cpus=2, labels={"accelerator": "cpu"}))
        cluster.wait_for_nodes(timeout=300)
        report["afterNodeBack"] = jobs.results(jobs.submit_many(f"{T}:add", [(i, 1) for i in range(20)]), timeout=300)
    finally:
        with open(out, "w") as fh:
            json.dump(report, fh)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
