"""Pools that follow the queue: scale to zero, grow on queue depth up to maxWorkers, shrink when idle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cortex_support import PrivateCortex, T, wait_until

POOL = {
    "name": "cpu-a", "selector": {"accelerator": "cpu"}, "minWorkers": 0, "maxWorkers": 2,
    "maxConcurrency": 1, "idleTimeout": "1s", "numCpus": 0.25,
}  # fmt: skip


def _workers(cortex: PrivateCortex) -> list[str]:
    return [w["name"] for pool in cortex.call("stats")["pools"] for w in pool["workers"]]


def test_a_pool_scales_to_zero_grows_with_the_queue_and_shrinks_when_idle(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    cortex = PrivateCortex(tmp_path, cortex_settings, pools=[POOL])
    try:
        [pool] = cortex.call("stats")["pools"]
        assert pool["workers"] == [] and pool["active"] and (pool["minWorkers"], pool["maxWorkers"]) == (0, 2)

        gates = [tmp_path / f"gate{i}" for i in range(3)]
        ids = cortex.call(
            "submit_many",
            [{"id": f"held{i}", "function": f"{T}:wait_for_file", "args": [str(g)]} for i, g in enumerate(gates)],
        )
        wait_until(lambda: sum(Path(f"{g}.started").exists() for g in gates) == 2, what="two jobs to run")
        stats = cortex.call("stats")
        assert len(_workers(cortex)) == 2 and stats["workersGrown"] == 2  # up to maxWorkers, no further
        assert stats["queues"]["default"]["waiting"] == {"cpu-a": 1}  # the third waits for a worker
        for gate in gates:
            gate.touch()
        views = cortex.call("wait_many", ids, 120)
        assert {v["status"] for v in views} == {"succeeded"} and len({v["worker"] for v in views}) == 2

        wait_until(lambda: _workers(cortex) == [], timeout=60, what="the idle pool to scale to zero")
        assert cortex.call("stats")["workersTrimmed"] == 2
        [job_id] = cortex.submit("from-zero", "add", 2, 3)  # brings one worker up again
        assert cortex.call("wait", job_id, 120)["result"]["value"] == 5
        assert cortex.call("stats")["workersGrown"] == 3
    finally:
        cortex.close()


def test_a_pool_that_awaits_capacity_admits_jobs_the_cluster_cannot_run_yet(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    """On KubeRay a GPU pool at zero nodes must still take GPU jobs: its worker then waits for the
    node that asking for it makes the autoscaler add. Without awaitCapacity the job is refused."""
    from mnemos.cortex.job import JobSubmission
    from mnemos.errors import AdmissionError, ValidationError

    gpu = {"numCpus": 0, "numGpus": 1, "minWorkers": 0, "maxWorkers": 1}
    pools = [{"name": "gpu-waits", "awaitCapacity": True, **gpu}, {"name": "gpu-fixed", **gpu}]
    cortex = PrivateCortex(tmp_path, cortex_settings, pools=pools)
    try:
        with pytest.raises(ValidationError, match="'nope' is not declared; declared queues: default") as undeclared:
            cortex.call("submit_many", [JobSubmission(id="nowhere", function=f"{T}:noop", queue="nope")])
        assert undeclared.value.param == "queue"  # the actor's own answer, for callers past the edges (SYNKRON)
        with pytest.raises(AdmissionError, match="gpu-fixed"):
            cortex.call("submit_many", [JobSubmission(id="refused", function=f"{T}:noop",
                                                      resources={"gpus": 1, "pool": "gpu-fixed"})])  # fmt: skip
        [job_id] = cortex.call("submit_many", [
            JobSubmission(id="waits", function=f"{T}:noop", resources={"gpus": 1, "pool": "gpu-waits"})
        ])  # fmt: skip
        wait_until(lambda: len(_workers(cortex)) == 1, timeout=60, what="a worker for the job")
        stats = cortex.call("stats")
        assert stats["workersGrown"] == 1 and cortex.call("get", job_id)["status"] in ("queued", "running")
        assert cortex.call("cancel", job_id)["status"] == "cancelled"
    finally:
        cortex.close()
