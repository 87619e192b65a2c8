"""Fair share within a queue: inside one priority level the owners of the waiting jobs take turns
(start-time fair queuing, ``mnemos.cortex._queue``), so one principal's backlog does not starve
another's jobs; priority still wins, one owner's jobs keep their order, and a restart rebuilds
the same order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cortex_support import PrivateCortex, wait_until

from mnemos.config import PoolConfig, QueueConfig
from mnemos.cortex._dispatch import Dispatcher
from mnemos.cortex._queue import QueueState
from mnemos.cortex.job import TEAM_LABEL, Job, JobSubmission
from mnemos.engram import Engram
from mnemos.neuron.pools import PoolSet, WorkerSlot

T = "mnemos.cortex.testing"


class _Jobs:
    """Jobs for one ``QueueState``, numbered in submit order as CORTEX numbers them."""

    def __init__(self) -> None:
        self.seq = 0
        self.queue = QueueState("q", QueueConfig())

    def push(self, owner: str | None, *names: str, priority: int = 0, team: str | None = None) -> list[Job]:
        labels = {TEAM_LABEL: team} if team else {}
        jobs = []
        for name in names:
            self.seq += 1
            jobs.append(Job(id=name, queue="q", function="m:f", priority=priority, seq=self.seq, principal=owner,
                            labels=labels))  # fmt: skip
            self.queue.push(jobs[-1])
        return jobs

    def pop(self, n: int | None = None) -> list[str]:
        out = []
        while self.queue.depth and (n is None or len(out) < n):
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


def test_an_entry_put_back_keeps_its_place_and_moves_no_turn() -> None:
    """Dispatch puts back what found its pool full (``pop(take=False)``, ``push_entry``): it stays
    where it was, and a job queued meanwhile gets the tag it would have had (carol: this round)."""
    q = _Jobs()
    q.push("alice", "a1", "a2")
    q.push("bob", "b1")
    held = q.queue.pop(take=False)
    q.push("carol", "c1")
    q.queue.push_entry(held)
    assert q.pop() == ["a1", "b1", "c1", "a2"]
    assert q.queue.waiting == {"none": 0} and not q.queue.levels


def test_a_dispatch_round_that_finds_the_pool_full_leaves_the_turns_as_they_were() -> None:
    """A real dispatch round over a pool whose one thread is busy: alice's first job is taken out
    and put back. Before, that moved the level's virtual time to its tag, and carol, queued next,
    got a tag a round later than bob's (after alice's second job instead of before it)."""
    cpu = PoolConfig.model_validate({"name": "cpu", "size": 1, "maxConcurrency": 1})
    pools = PoolSet([cpu], engram=None, inline_limit=0)  # type: ignore[arg-type]  # it starts no worker here
    pools.pools["cpu"].workers.append(WorkerSlot("w1", "cpu", handle=None, capacity=1, inflight=1))
    q = _Jobs()
    dispatcher = Dispatcher()
    dispatcher.queues, dispatcher.pools = {"q": q.queue}, pools
    q.push("alice", "a1", "a2")
    q.push("bob", "b1")
    dispatcher.jobs = {job_id: Job(id=job_id, queue="q", function="m:f") for job_id in ("a1", "a2", "b1", "c1")}

    async def round_() -> list[Any]:
        return dispatcher._dispatch()

    assert asyncio.run(round_()) == []  # nothing started: every thread is busy
    assert len(q.queue.heap) == 3 and q.queue.running == 0
    assert not q.queue.vtime.get(0)  # no job was dispatched: the turns did not move
    q.push("carol", "c1")
    assert q.pop() == ["a1", "b1", "c1", "a2"]


def test_a_level_with_nothing_waiting_starts_over() -> None:
    q = _Jobs()
    q.push("alice", "a1", "a2", "a3")
    assert q.pop() == ["a1", "a2", "a3"]
    assert not q.queue.levels and not q.queue.held  # alice holds no turn: her next job is dealt one as anyone's
    q.push("bob", "b1", "b2")
    q.push("alice", "a4")
    assert q.queue.held == {0: {"bob": [4, 5], "alice": [4]}}  # the virtual time goes on (3): turns are journaled
    assert q.pop() == ["b1", "a4", "b2"]


def test_an_owner_who_cancels_queued_jobs_gets_their_turns_back() -> None:
    """Cancelling a queued job (``Dispatcher._unassign``, as ``cancel`` does) gives its turn back:
    before, alice, who cancelled a mistaken backlog, waited behind all of bob's with her next job."""
    q = _Jobs()
    dispatcher = Dispatcher()
    dispatcher.queues = {"q": q.queue}
    mistaken = q.push("alice", "a1", "a2", "a3", "a4", "a5")
    q.push("bob", "b1", "b2", "b3")
    for job in mistaken[1:]:
        dispatcher._unassign(job)
        job.status = "cancelled"
    q.push("alice", "a6")
    again = Job(id="r1", queue="q", function="m:f", seq=99, principal="alice", started_at=1.0)
    q.queue.push(again)  # queued again after an attempt: it took no turn, and cancelling it gives none back
    dispatcher._unassign(again)
    again.status = "cancelled"
    assert q.queue.held[0] == {"alice": [1, 2], "bob": [1, 2, 3]}
    assert q.queue.depth == 5 and q.queue.waiting == {"none": 5}  # the cancelled left the depth at once
    assert q.pop() == ["a1", "b1", "b2", "a6", "b3"]  # alice's next job: her second turn, not after bob's backlog


def test_with_team_fairness_a_teams_keys_share_one_turn() -> None:
    """One developer's (or team's) several API keys are several principals: with ``fairness: team``
    they take one turn, not one each; a job without a team takes its principal's own turn."""
    q = _Jobs()
    q.queue = QueueState("q", QueueConfig.model_validate({"fairness": "team"}))
    q.push("alice-key1", "a1", "a2", "a3", team="vision")
    q.push("alice-key2", "x1", "x2", "x3", team="vision")
    q.push("bob", "b1", "b2", team="nlp")
    q.push("carol", "c1", "c2")  # no team: her principal's turn
    q.push("vision", "v1")  # a principal named like a team is not that team
    assert q.pop() == ["a1", "b1", "c1", "v1", "a2", "b2", "c2", "a3", "x1", "x2", "x3"]


def test_with_owner_fairness_each_key_takes_a_turn_of_its_own() -> None:
    q = _Jobs()
    q.push("alice-key1", "a1", "a2", team="vision")
    q.push("alice-key2", "x1", "x2", team="vision")
    q.push("bob", "b1", "b2", team="nlp")
    assert q.pop() == ["a1", "x1", "b1", "a2", "x2", "b2"]


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
ALICE = {"owner": ["alice"], "team": ["alice-laptop", "alice-ci"]}
"""The keys alice submits her backlog with: with ``fairness: team`` two (of team vision), which take one turn."""


def _submit_all(cortex: PrivateCortex, gate: Path, queue: str, alice: list[str]) -> None:
    def subs(*ids: str, priority: int = 0, team: str = "") -> list[JobSubmission]:
        labels = {TEAM_LABEL: team} if team else {}  # as the gateway labels a job of a key with a team
        return [JobSubmission(id=i, function=f"{T}:noop", queue=queue, priority=priority, labels=labels) for i in ids]

    hold = JobSubmission(id="fair-hold", function=f"{T}:wait_for_file", args=[str(gate)], queue=queue)
    cortex.call("submit_many", [hold], "carol")
    wait_until(Path(f"{gate}.started").exists, what="the job holding the queue's one slot to start")
    share = len(BACKLOG) // len(alice)
    for n, key in enumerate(alice):  # alice's backlog, in submit order, split between her keys
        cortex.call("submit_many", subs(*BACKLOG[n * share : (n + 1) * share], team="vision"), key)
    cortex.call("submit_many", subs(*LATE, team="nlp"), "bob")
    cortex.call("submit_many", subs("fair-urgent", priority=5, team="vision"), alice[-1])


def _start_order(cortex: PrivateCortex) -> list[str]:
    from mnemos.cortex import read_records

    for job_id in FAIR:
        assert cortex.call("wait", job_id, 120)["status"] == "succeeded", job_id
    starts = [r["id"] for r in read_records(Engram(cortex.engram.uri)) if r.get("t") == "start"]
    return list(dict.fromkeys(starts))  # a job started again after a restart: its first start


@pytest.mark.parametrize(
    ("fairness", "restart"), [("owner", False), ("owner", True), ("team", False)],
    ids=["owner", "owner-restarted", "team-of-two-keys"],
)  # fmt: skip
def test_a_backlog_does_not_starve_another_owners_jobs_in_a_queue_with_one_slot(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path, fairness: str, restart: bool
) -> None:
    """Restarted: everything but the held job was queued, and the restart queues all of them again
    in the same fair order. Team: alice's backlog comes from two keys of one team, which take one
    turn (with ``fairness: owner`` each would take one, and bob would wait twice as long)."""
    from mnemos.cortex import read_records

    gate = tmp_path / "held"
    queues = {
        **cortex_settings.cortex.queues,
        "fair": QueueConfig.model_validate({"concurrency": 1, "fairness": fairness}),
    }
    cortex = PrivateCortex(tmp_path, cortex_settings, queues=queues)
    try:
        _submit_all(cortex, gate, "fair", ALICE[fairness])
        if restart:
            cortex.crash()
            assert cortex.call("info")["restarted"]
        gate.touch()
        order = _start_order(cortex)
        requeued = [r["id"] for r in read_records(Engram(cortex.engram.uri)) if r.get("t") == "requeue"]
    finally:
        cortex.close()
        gate.touch()
    assert requeued == (["fair-hold"] if restart else [])  # it was running: the others were rebuilt from their submits
    assert order == FAIR
    assert max(order.index(b) for b in LATE) < order.index(BACKLOG[-1]) - 4  # bob is done long before alice
