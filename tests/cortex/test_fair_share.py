"""Fair share within a queue: inside one priority level the owners of the waiting jobs take turns
(start-time fair queuing, ``mnemos.cortex._queue``), so one principal's backlog does not starve
another's jobs; priority still wins, one owner's jobs keep their order, and a restart rebuilds
the same order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cortex_support import PrivateCortex, wait_until

from mnemos.config import QueueConfig
from mnemos.cortex._queue import QueueState
from mnemos.cortex.job import Job, JobSubmission
from mnemos.engram import Engram

T = "mnemos.cortex.testing"


class _Jobs:
    """Jobs for one ``QueueState``, numbered in submit order as CORTEX numbers them."""

    def __init__(self) -> None:
        self.seq = 0
        self.queue = QueueState("q", QueueConfig())

    def push(self, owner: str | None, *names: str, priority: int = 0) -> None:
        for name in names:
            self.seq += 1
            self.queue.push(Job(id=name, queue="q", function="m:f", priority=priority, seq=self.seq, principal=owner))

    def pop(self, n: int | None = None) -> list[str]:
        out = []
        while self.queue.heap and (n is None or len(out) < n):
            out.append(self.queue.pop()[2])
        return out


def test_owners_take_turns_within_a_priority_level_each_in_its_own_order() -> None:
    q = _Jobs()
    q.push("alice", *(f"a{i}" for i in range(1, 7)))
    q.push("bob", "b1", "b2")
    q.push(None, "n1")
    q.push("", "n2")  # no principal and "" are one owner
    assert q.pop() == ["a1", "b1", "n1", "a2", "b2", "n2", "a3", "a4", "a5", "a6"]


def test_an_owner_arriving_late_is_served_next_round_not_after_the_backlog() -> None:
    q = _Jobs()
    q.push("alice", *(f"a{i}" for i in range(1, 101)))
    assert q.pop(50) == [f"a{i}" for i in range(1, 51)]
    q.push("bob", "b1", "b2")
    assert q.pop(4) == ["a51", "b1", "a52", "b2"]


def test_priority_wins_over_fairness_and_a_job_at_another_level_does_not_move_the_turns_below() -> None:
    q = _Jobs()
    q.push("alice", *(f"a{i}" for i in range(1, 11)))
    q.push("bob", "b1")
    q.push("alice", "urgent", priority=5)
    assert q.pop(2) == ["urgent", "a1"]
    q.push("carol", "c1")  # the urgent job took a turn at its own level: carol still comes next round
    assert q.pop(4) == ["b1", "a2", "c1", "a3"]


def test_a_job_queued_again_returns_to_the_front_of_the_round_without_taking_a_turn() -> None:
    q = _Jobs()
    q.push("alice", "a1", "a2", "a3")
    q.push("bob", "b1", "b2")
    [first] = q.pop(1)
    again = Job(id=first, queue="q", function="m:f", seq=1, principal="alice", started_at=1.0)
    q.queue.push(again)  # its attempt was given back, or it failed and its backoff elapsed
    assert q.pop() == ["a1", "b1", "a2", "b2", "a3"]


def test_an_entry_put_back_keeps_its_place() -> None:
    """Dispatch puts back what found its pool full (``push_entry``): it stays where it was."""
    q = _Jobs()
    q.push("alice", "a1", "a2")
    q.push("bob", "b1")
    held = q.queue.pop()
    q.push("carol", "c1")
    q.queue.push_entry(held)
    assert q.pop() == ["a1", "b1", "a2", "c1"]
    assert q.queue.waiting == {"none": 0} and not q.queue.levels


def test_a_level_with_nothing_waiting_starts_over() -> None:
    q = _Jobs()
    q.push("alice", "a1", "a2", "a3")
    assert q.pop() == ["a1", "a2", "a3"]
    assert not q.queue.levels
    q.push("bob", "b1", "b2")
    q.push("alice", "a4")
    assert q.pop() == ["b1", "a4", "b2"]
    assert q.queue.tags == {0: {"bob": 2, "alice": 1}}  # what a level keeps is what waited since it emptied


def test_a_fifo_queue_keeps_submit_order_whoever_submitted() -> None:
    q = _Jobs()
    q.queue = QueueState("q", QueueConfig.model_validate({"fairness": "fifo"}))
    q.push("alice", "a1", "a2", "a3")
    q.push("bob", "b1")
    q.push("bob", "urgent", priority=1)
    assert q.pop() == ["urgent", "a1", "a2", "a3", "b1"]
    assert QueueConfig().fairness == "owner"


# -- a real CORTEX: one slot, a backlog and a few latecomers -----------------------------------------------
BACKLOG = [f"fair-a{i}" for i in range(1, 9)]
LATE = ["fair-b1", "fair-b2", "fair-b3"]
FAIR = ["fair-hold", "fair-urgent", "fair-a1", "fair-b1", "fair-a2", "fair-b2", "fair-a3", "fair-b3",
        "fair-a4", "fair-a5", "fair-a6", "fair-a7", "fair-a8"]  # fmt: skip
"""The start order: carol's job that held the slot, alice's urgent one, then alice and bob in turn."""


def _submit_all(cortex: PrivateCortex, gate: Path) -> None:
    def subs(*ids: str, priority: int = 0) -> list[JobSubmission]:
        return [JobSubmission(id=i, function=f"{T}:noop", queue="serial", priority=priority) for i in ids]

    hold = JobSubmission(id="fair-hold", function=f"{T}:wait_for_file", args=[str(gate)], queue="serial")
    cortex.call("submit_many", [hold], "carol")
    wait_until(Path(f"{gate}.started").exists, what="the job holding the queue's one slot to start")
    cortex.call("submit_many", subs(*BACKLOG), "alice")
    cortex.call("submit_many", subs(*LATE), "bob")
    cortex.call("submit_many", subs("fair-urgent", priority=5), "alice")


def _start_order(cortex: PrivateCortex) -> list[str]:
    from mnemos.cortex import read_records

    for job_id in FAIR:
        assert cortex.call("wait", job_id, 120)["status"] == "succeeded", job_id
    starts = [r["id"] for r in read_records(Engram(cortex.engram.uri)) if r.get("t") == "start"]
    return list(dict.fromkeys(starts))  # a job started again after a restart: its first start


def test_a_backlog_does_not_starve_another_owners_jobs_in_a_queue_with_one_slot(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "held"
    cortex = PrivateCortex(tmp_path, cortex_settings)
    try:
        _submit_all(cortex, gate)
        gate.touch()
        order = _start_order(cortex)
    finally:
        cortex.close()
        gate.touch()
    assert order == FAIR
    assert max(order.index(b) for b in LATE) < order.index(BACKLOG[-1]) - 4  # bob is done long before alice


def test_a_restarted_cortex_rebuilds_the_same_fair_order(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "held"
    cortex = PrivateCortex(tmp_path, cortex_settings)
    try:
        _submit_all(cortex, gate)
        cortex.crash()  # everything but the held job is queued; the restart queues all of them again
        assert cortex.call("info")["restarted"]
        gate.touch()
        order = _start_order(cortex)
        from mnemos.cortex import read_records

        requeued = [r["id"] for r in read_records(Engram(cortex.engram.uri)) if r.get("t") == "requeue"]
        assert requeued == ["fair-hold"]  # it was running: the others were rebuilt from their submits
    finally:
        cortex.close()
        gate.touch()
    assert order == FAIR
