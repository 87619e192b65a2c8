"""A worker that died before it ever started ran no job: a job sent to it spends no attempt.

On a cluster that loses a node, the pool's replacement for a lost worker can be placed on that
node while Ray still counts it alive; the replacement dies unstarted ("The actor never ran"), and
CORTEX learns it only when it sends it a job. Measured with a second ``ray start`` node killed
mid-run: jobs submitted after the loss spent one or two of their three attempts on such workers
before ever running. Here the worker is one that cannot be placed (more CPUs than the cluster
has), killed while it waits for a node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
from cortex_support import PrivateCortex, T, wait_until

from mnemos.cortex.job import JobSubmission

POOL = {"name": "cpu-a", "size": 1, "maxConcurrency": 1, "numCpus": 10_000}  # never placed here


def test_a_job_sent_to_a_worker_that_never_started_keeps_its_attempt(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    cortex = PrivateCortex(tmp_path, cortex_settings, pools=[POOL])
    try:
        [pool] = [p for p in cortex.call("stats")["pools"] if p["name"] == "cpu-a"]
        [unstarted] = [w["name"] for w in pool["workers"]]
        ray.kill(ray.get_actor(unstarted, namespace="mnemos"), no_restart=True)  # dies before it ever ran
        submission = JobSubmission(id="only-try", function=f"{T}:add", args=[2, 3], max_attempts=1)
        cortex.call("submit_many", [submission])  # it goes to the dead worker, the pool's only one
        wait_until(lambda: cortex.records("only-try")["requeue"] >= 1 or cortex.records("only-try")["fail"] >= 1,
                   timeout=60, what="the dead worker to be noticed")  # fmt: skip
        job = cortex.call("get", "only-try")
        assert job["status"] != "failed", job  # its one attempt was not spent on a worker that never ran
        assert cortex.records("only-try")["retry"] == 0
    finally:
        cortex.close()
