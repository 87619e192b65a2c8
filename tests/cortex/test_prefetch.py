"""Jobs sent ahead to busy workers while a pool's jobs are short, given back when they wait too long,
and never counted as attempts when they did not start."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from cortex_support import PrivateCortex, T, wait_until

from mnemos.config import PoolConfig
from mnemos.engram import Engram
from mnemos.neuron import worker as worker_module
from mnemos.neuron.codec import Invocation
from mnemos.neuron.pools import AHEAD_MOST, AHEAD_SECONDS, SHORT_SECONDS, PoolSet, WorkerSlot

POOL = {"name": "cpu-a", "size": 1, "maxConcurrency": 1, "numCpus": 0.25}


def _pools(local_engram: Engram, **config: Any) -> PoolSet:
    pools = PoolSet([PoolConfig(name="cpu-a", size=2, max_concurrency=2, **config)], local_engram, 1024)
    pool = pools.pools["cpu-a"]
    pool.workers = [WorkerSlot(f"w{i}", "cpu-a", None, capacity=2) for i in range(2)]
    return pools


def test_busy_workers_take_jobs_ahead_only_while_jobs_are_short(local_engram: Engram) -> None:
    pools = _pools(local_engram)
    pool, order = pools.pools["cpu-a"], pools.candidates({})
    assert [pools.acquire(order).name for _ in range(4)] == ["w0", "w1", "w0", "w1"]  # a free thread first
    assert pools.acquire(order) is None and not pools.has_room()  # run time unknown: threads only

    pool.observe(0.1)  # short, yet longer than AHEAD_SECONDS: maxConcurrency (2) ahead per worker
    assert pools.has_room()
    assert [pools.acquire(order).name for _ in range(4)] == ["w0", "w1", "w0", "w1"]
    assert pools.acquire(order) is None

    w0 = pool.workers[0]
    pools.release(w0)
    w0.gave_back = True  # a worker that gave a job back takes none ahead until one of its jobs ends
    assert pools.acquire(order) is None
    w0.gave_back = False
    assert pools.acquire(order) is w0

    for _ in range(20):
        pool.observe(SHORT_SECONDS * 5)
    assert pool.run_seconds is not None and pool.run_seconds > SHORT_SECONDS
    assert pool.limit(w0) == w0.capacity  # long jobs: none ahead


@pytest.mark.parametrize(
    ("run_seconds", "ahead"),
    [
        (0.1, 2),  # 2 threads x 25 ms of work is less than maxConcurrency: maxConcurrency
        (0.01, 5),  # 2 threads x AHEAD_SECONDS / 10 ms
        (0.0001, 2 * AHEAD_MOST),  # no-op jobs: capped at AHEAD_MOST x the threads
    ],
)
def test_the_shorter_the_jobs_the_more_a_worker_holds_ahead(
    local_engram: Engram, run_seconds: float, ahead: int
) -> None:
    """Unless ``prefetch`` is set, a worker holds enough jobs for ``AHEAD_SECONDS`` of work: jobs
    of a millisecond would end before CORTEX could send the next ones."""
    pools = _pools(local_engram)
    pool = pools.pools["cpu-a"]
    for _ in range(50):
        pool.observe(run_seconds)
    assert AHEAD_SECONDS == 0.025
    assert pool.limit(pool.workers[0]) == pool.workers[0].capacity + ahead
    order = pools.candidates({})
    taken = [pools.acquire(order) for _ in range(2 * (2 + ahead))]
    assert all(slot is not None for slot in taken) and pools.acquire(order) is None


def test_prefetch_can_be_set_or_turned_off(local_engram: Engram) -> None:
    for prefetch, room in ((0, 2), (1, 3), (5, 7)):
        pools = _pools(local_engram, prefetch=prefetch)
        pool = pools.pools["cpu-a"]
        for run_seconds in (0.1, 0.0001):  # a set prefetch does not follow the run time
            pool.observe(run_seconds)
            assert pool.limit(pool.workers[0]) == room


def test_a_free_thread_in_another_pool_comes_before_a_job_sent_ahead(local_engram: Engram) -> None:
    gpu = PoolConfig(name="gpu-a", size=1, max_concurrency=1, num_cpus=0, num_gpus=1)
    cpu = PoolConfig(name="cpu-a", size=1, max_concurrency=1)
    pools = PoolSet([gpu, cpu], local_engram, 1024, gpu_preferred=True)
    for pool in pools.pools.values():
        pool.workers = [WorkerSlot(f"{pool.name}-0", pool.name, None, capacity=1)]
        pool.observe(0.1)  # one job ahead per worker (maxConcurrency)
    order = pools.candidates({})
    assert [pools.acquire(order).name for _ in range(4)] == ["gpu-a-0", "cpu-a-0", "gpu-a-0", "cpu-a-0"]


def _invocation(job_id: str, function: str, *args: Any) -> Invocation:
    return Invocation(id=job_id, attempt=1, function=f"{T}:{function}", args=list(args))


def test_a_worker_runs_waiting_jobs_in_order_drops_and_gives_back(
    local_engram: Engram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker itself, in this process (no Ray): one thread, jobs beyond it wait their turn."""
    monkeypatch.setattr(worker_module, "install_capture", lambda: None)  # keep pytest's own capture
    # Its GPU gauges name the Ray node (ray.get_runtime_context()), which would start a Ray of its own in
    # this process: with this file run alone, the later tests' ray_cluster would then fail "ray.init twice".
    monkeypatch.setattr(worker_module.Worker, "_record_gpus", lambda self: None)
    monkeypatch.setattr(worker_module, "HOLD_SECONDS", 0.5)
    gate = tmp_path / "gate"

    async def scenario() -> None:
        worker = worker_module.Worker("cpu-a", "w0", local_engram, 1024, concurrency=1)
        await worker.start([_invocation("first", "stamp", 0.2), _invocation("second", "stamp", 0.0)])
        outcomes = await worker.completions(wait=10) + await worker.completions(wait=10)
        first, second = (o.result["value"] for o in sorted(outcomes, key=lambda o: o.id))
        assert [o.id for o in outcomes] == ["first", "second"] and all(o.ok for o in outcomes)
        assert second["start"] >= first["end"]  # it waited for the thread, then took it at once

        await worker.start([_invocation("held", "wait_for_file", str(gate)), _invocation("dropped", "noop"),
                            _invocation("returned", "noop")])  # fmt: skip
        assert await worker.drop(["dropped", "absent"]) == ["dropped"]
        [back] = await worker.completions(wait=10)  # the held job keeps the thread past HOLD_SECONDS
        assert (back.id, back.unstarted, back.ok) == ("returned", True, False)
        assert await worker.drop(["returned"]) == []  # no longer waiting there
        gate.touch()
        [held] = await worker.completions(wait=10)
        assert held.id == "held" and held.ok and not held.unstarted
        assert await worker.completions(wait=0.7) == []  # "dropped" never ran

    asyncio.run(scenario())


def _one_held_one_behind(cortex: PrivateCortex, held: str, behind: str, **options: Any) -> Path:
    """Short jobs first (so that the pool sends jobs ahead), then, in one submit, ``held`` (it holds
    the worker's one thread until the returned gate file exists) and ``behind`` (``add(2, 3)``)."""
    from mnemos.cortex.job import JobSubmission

    ids = [cortex.submit(f"warm{i}", "noop", i)[0] for i in range(5)]
    assert {v["status"] for v in cortex.call("wait_many", ids, 120)} == {"succeeded"}
    gate = cortex.gate.parent / held
    cortex.call("submit_many", [
        JobSubmission(id=held, function=f"{T}:wait_for_file", args=[str(gate)], **options),
        JobSubmission(id=behind, function=f"{T}:add", args=[2, 3], **options),
    ])  # fmt: skip
    return gate


def test_a_job_sent_ahead_to_a_stuck_worker_is_given_back_and_not_counted(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    cortex = PrivateCortex(tmp_path, cortex_settings, pools=[POOL])
    try:
        gate = _one_held_one_behind(cortex, "long", "short")
        # "short" went ahead to the one worker, whose thread "long" holds: after HOLD_SECONDS it is
        # given back and waits in CORTEX's queue instead (well before the 30 s long-poll ends).
        wait_until(lambda: cortex.records("short")["requeue"] == 1, timeout=15, what="the job to be given back")
        assert cortex.call("get", "short")["status"] == "queued" and cortex.call("get", "long")["status"] == "running"
        gate.touch()
        long, short = cortex.call("wait_many", ["long", "short"], 120)
        assert (long["status"], short["status"], short["result"]["value"]) == ("succeeded", "succeeded", 5)
        assert short["attempts"] == 1 and cortex.records("short")["start"] == 2
    finally:
        cortex.close()


def test_jobs_waiting_on_a_lost_worker_are_queued_again_without_an_attempt(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    cortex = PrivateCortex(tmp_path, cortex_settings, pools=[POOL])
    try:
        gate = _one_held_one_behind(cortex, "doomed", "waiting", max_attempts=1)
        started = Path(f"{gate}.started")
        wait_until(started.exists, what="the first job to start")
        os.kill(int(started.read_text()), signal.SIGKILL)  # the worker's process dies mid-job
        doomed, waiting = cortex.call("wait_many", ["doomed", "waiting"], 120)
        assert doomed["status"] == "failed" and "was lost" in doomed["error"]  # it ran: its one attempt is spent
        assert (waiting["status"], waiting["result"]["value"], waiting["attempts"]) == ("succeeded", 5, 1)
    finally:
        cortex.close()
