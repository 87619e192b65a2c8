"""Cancelled and timed-out attempts that run on: their threads are not CORTEX's to use until they
end, and a worker whose every thread runs one is replaced instead of taking jobs it cannot start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cortex_support import PrivateCortex, T, wait_until

POOL = {"name": "cpu-a", "size": 1, "maxConcurrency": 2, "numCpus": 0.25}


def _capacity(cortex: PrivateCortex) -> list[int]:
    return [w["capacity"] for pool in cortex.call("stats")["pools"] for w in pool["workers"]]


def _held(cortex: PrivateCortex, job_id: str, **options: Any) -> Path:
    """Submit a job that runs until its gate file appears; returns the gate, once the job runs."""
    from mnemos.cortex.job import JobSubmission

    gate = cortex.gate.parent / job_id
    cortex.call("submit_many", [JobSubmission(id=job_id, function=f"{T}:wait_for_file", args=[str(gate)], **options)])
    wait_until(Path(f"{gate}.started").exists, what=f"{job_id} to start")
    return gate


def test_a_worker_whose_threads_run_abandoned_attempts_is_replaced(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    cortex = PrivateCortex(tmp_path, cortex_settings, pools=[POOL])
    try:
        # a cancelled attempt holds its thread until it ends; then the worker has both again
        gate = _held(cortex, "cancelled")
        assert cortex.call("cancel", "cancelled")["status"] == "cancelled"
        wait_until(lambda: _capacity(cortex) == [1], timeout=30, what="the thread to count as taken")
        gate.touch()
        wait_until(lambda: _capacity(cortex) == [2], timeout=30, what="the thread to be free again")

        # two attempts that time out and never end: the worker could run nothing again
        worker = cortex.call("stats")["pools"][0]["workers"][0]["name"]
        for job_id in ("stuck1", "stuck2"):
            _held(cortex, job_id, timeout="1s", max_attempts=1)
        for view in cortex.call("wait_many", ["stuck1", "stuck2"], 60):
            assert view["status"] == "failed" and "timed out" in view["error"]

        [job_id] = cortex.submit("after", "add", 2, 3)
        view = cortex.call("wait", job_id, 60)  # before: sent to the stuck worker and given back, over and over
        assert view["status"] == "succeeded" and view["result"]["value"] == 5, view
        assert view["worker"] != worker and cortex.call("stats")["workersReplaced"] == 1
        assert view["attempts"] == 1
    finally:
        cortex.close()
