"""A labelled node that joins after CORTEX started, run as its own driver (one Ray cluster per process).

    python tests/multinode/late_labels_driver.py OUT_JSON

A head without labels starts first and CORTEX with it (as ``mnemos up``, or a KubeRay head whose
worker pods come later): its ``cpu-a`` pool selects ``accelerator: cpu``, a key no node carries
yet, so its worker runs on the head. Then a node labelled ``accelerator: cpu`` joins. Writes to
OUT_JSON the label of the node each job ran on, before and after, and how long the move took.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback

from driver import _retry

T = "mnemos.cortex.testing"
MOVE_WAIT_S = 60.0  # how long the driver waits for jobs to land on the labelled node


def main(out: str) -> None:
    home = tempfile.mkdtemp(prefix="mnemos-late-labels-")
    os.environ["MNEMOS_HOME"] = home
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray.cluster_utils import Cluster

    from mnemos.client import Client
    from mnemos.config import load_settings

    cluster = _retry(lambda: Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}))
    report: dict[str, object] = {}
    try:
        ray.init(address=cluster.address, namespace="mnemos", log_to_driver=False)
        settings = load_settings(
            engram={"uri": f"{home}/engram"},
            neuron={"pools": [{"name": "cpu-a", "selector": {"accelerator": "cpu"}, "size": 1, "numCpus": 0.5,
                               "maxConcurrency": 4, "idleTimeout": "2s"}]},
        )  # fmt: skip
        jobs = Client(settings, connected=True).jobs

        def labels_of_jobs(count: int) -> list[str]:
            label = {n["NodeID"]: (n.get("Labels") or {}).get("accelerator", "none") for n in ray.nodes()}
            handles = jobs.submit_many(f"{T}:node_id", [() for _ in range(count)], resources={"pool": "cpu-a"})
            return [label.get(node, "gone") for node in jobs.results(handles, timeout=120)]

        report["before"] = labels_of_jobs(4)
        _retry(lambda: cluster.add_node(num_cpus=2, labels={"accelerator": "cpu"}))
        cluster.wait_for_nodes(timeout=120)
        joined = time.monotonic()
        seen: list[str] = []
        while time.monotonic() - joined < MOVE_WAIT_S:
            seen = labels_of_jobs(1)
            if seen == ["cpu"]:
                break
            time.sleep(0.5)
        report["moveSeconds"] = round(time.monotonic() - joined, 1) if seen == ["cpu"] else None
        report["after"] = labels_of_jobs(8)
        workers = ray.get(jobs.cortex.workers.remote())
        report["workers"] = len(workers)
    except BaseException:
        report["error"] = traceback.format_exc()
        raise
    finally:
        with open(out, "w") as fh:
            json.dump(report, fh)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
