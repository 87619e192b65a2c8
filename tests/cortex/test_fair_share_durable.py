"""Fair share across a CORTEX restart, and cancelled jobs out of the queue at once.

Turns are journaled (``turn`` on submit and requeue records, kept by checkpoints), so a restart
resumes the exact order the live scheduler had: each test runs one scenario twice, on two real
CORTEX actors, one crashed mid-way and one not (its twin), and compares the start orders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cortex_support import PrivateCortex, wait_until

from mnemos.config import QueueConfig
from mnemos.cortex._dispatch import Dispatcher
from mnemos.cortex._queue import QueueState
from mnemos.cortex.job import Job, JobSubmission
from mnemos.engram import Engram
from mnemos.trace import metrics

T = "mnemos.cortex.testing"


# -- withdraw: what a cancelled job's turn gives back, exactly -----------------------------------------------------
class _Queue:
    """One ``QueueState``, its jobs numbered in submit order as CORTEX numbers them (``push`` deals their turns)."""

    def __init__(self) -> None:
        self.seq = 0
        self.state = QueueState("q", QueueConfig())
        self.jobs: dict[str, Job] = {}

    def submit(self, owner: str, *names: str) -> list[Job]:
        out = []
        for name in names:
            self.seq += 1
            job = Job(id=name, queue="q", function="m:f", seq=self.seq, principal=owner)
            self.state.push(job)
            self.jobs[name] = job
            out.append(job)
        return out

    def cancel(self, *names: str) -> None:
        for name in names:
            self.state.withdraw(self.jobs[name])

    def start(self, n: int) -> list[str]:
        return [self.state.pop()[2] for _ in range(n)]


def test_cancelling_an_owners_latest_jobs_gives_back_the_turns_they_never_had_been_dealt() -> None:
    """The guarantee of ``QueueState.release``: when the cancelled jobs held the owner's latest turns,
    its next job gets the turn it would have had if they had never been submitted, wherever the
    virtual time stands (here, two jobs of the round were dispatched meanwhile)."""
    cancelled, never = _Queue(), _Queue()
    for q, backlog in ((cancelled, ["a2", "a3", "a4"]), (never, [])):
        q.submit("alice", "a1", *backlog)
        q.submit("bob", "b1", "b2", "b3")
        assert q.start(2) == ["a1", "b1"]
        q.cancel(*backlog)
        q.submit("alice", "a5")
        q.submit("carol", "c1")
    assert cancelled.jobs["a5"].turn == never.jobs["a5"].turn == 2
    assert cancelled.state.held == never.state.held
    assert cancelled.start(4) == never.start(4) == ["b2", "a5", "c1", "b3"]


def test_a_job_cancelled_ahead_of_its_owners_later_ones_frees_no_place_for_them() -> None:
    """Turns once dealt are journaled, never dealt again: alice's a3 keeps its turn (3) when a1 and a2
    are cancelled, and her next job comes after it (4), not at the turn it would have had (2) had
    they never been submitted. Once a3 is dispatched too, she starts from the virtual time like anyone."""
    q = _Queue()
    q.submit("alice", "a1", "a2", "a3")
    q.submit("bob", "b1", "b2", "b3", "b4")
    q.cancel("a1", "a2")
    q.submit("alice", "a4")
    assert q.start(6) == ["b1", "b2", "a3", "b3", "b4", "a4"]  # before, a4 was dealt turn 2, ahead of a3
    assert [q.jobs[j].turn for j in ("a3", "a4")] == [3, 4]
    q.submit("dave", "d1")
    q.submit("alice", "a5")
    assert q.jobs["a5"].turn == q.jobs["d1"].turn == 5  # virtual time 4: both are dealt the next round
    assert q.start(2) == ["d1", "a5"]


def test_a_cancelled_queued_job_leaves_the_depth_and_its_metric_at_once() -> None:
    """Before, its entry counted in ``waiting`` (stats, ``mnemos_cortex_queue_depth``) until dispatch
    passed it: in a queue whose slots are all taken, as long as the jobs ahead of it ran."""
    q = _Queue()
    dispatcher = Dispatcher()
    dispatcher.queues = {"q": q.state}
    jobs = q.submit("alice", "a1", "a2", "a3")
    dispatcher._unassign(jobs[1])  # as cancel does
    jobs[1].status = "cancelled"
    assert (q.state.waiting, q.state.levels) == ({"none": 2}, {0: 2})
    assert metrics.CORTEX_QUEUE_DEPTH.value(queue="q", pool="none") == 2
    assert q.state.depth == 2
    assert q.start(2) == ["a1", "a3"] and q.state.depth == 0 and q.state.head() is None


def test_a_journal_written_before_turns_were_queues_in_the_order_it_did() -> None:
    """Records without ``turn`` (an older CORTEX's) replay as before: turns dealt again in submit order,
    the job that ran queued again at the front, then alice's a2 before bob's b1 (submitted first). With
    turns, the same history resumes as it was live: alice had her turn of the round (a1), bob's is next."""
    from mnemos.cortex import rebuild
    from mnemos.cortex.job import apply_record
    from mnemos.cortex.records import RequeueRecord

    def records(turns: bool) -> list[dict[str, Any]]:
        subs = [("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("b2", "bob")]
        out = [{"t": "submit", "id": i, "function": "m:f", "queue": "q", "seq": n, "principal": who,
                **({"turn": 1 + n % 2} if turns else {})} for n, (i, who) in enumerate(subs)]  # fmt: skip
        return out + [{"t": "start", "id": "a1", "attempt": 1, "ts": 1.0}]

    orders = []
    for turns in (False, True):
        state = QueueState("q", QueueConfig())
        jobs = rebuild(records(turns))
        for job in jobs.values():
            state.recover(job)
        for job in sorted(jobs.values(), key=lambda j: j.seq):
            if job.status == "running":  # as a restart queues it again
                apply_record(jobs, RequeueRecord(id=job.id, reason="cortex restarted", turn=state.again(job)))
            state.push(job)
        orders.append([state.pop()[2] for _ in range(4)])
    assert orders == [["a1", "a2", "b1", "b2"], ["a1", "b1", "a2", "b2"]]


# -- a real CORTEX, crashed or not ---------------------------------------------------------------------------------
Step = Callable[[PrivateCortex, Path], None]


def _sub(job_id: str, *, priority: int = 0, gate: Path | None = None) -> JobSubmission:
    """A job of queue ``fair``: held until ``gate`` exists, else a no-op."""
    if gate is None:
        return JobSubmission(id=job_id, function=f"{T}:noop", queue="fair", priority=priority)
    return JobSubmission(id=job_id, function=f"{T}:wait_for_file", args=[str(gate)], queue="fair", priority=priority)


def _held(cortex: PrivateCortex, gates: Path, job_id: str, owner: str, priority: int = 0) -> None:
    cortex.call("submit_many", [_sub(job_id, priority=priority, gate=gates / job_id)], owner)
    wait_until(Path(f"{gates / job_id}.started").exists, what=f"{job_id} to start")


def _run(root: Path, settings: Any, before: list[Step], after: list[Step], crash: bool, **cortex: Any) -> list[str]:
    """The start order of every job: ``before`` run, then (``crash``) CORTEX killed and restarted, then ``after``."""
    from mnemos.cortex import read_records

    gates = root / "gates"
    gates.mkdir(parents=True)
    queues = {**settings.cortex.queues, "fair": QueueConfig.model_validate({"concurrency": 1})}
    instance = PrivateCortex(root, settings, queues=queues, **cortex)
    try:
        for step in before:
            step(instance, gates)
        instance.call("drain")  # every start so far is durable
        if crash:
            instance.crash()
            assert instance.call("info")["restarted"]
        for step in after:
            step(instance, gates)
        ids = [r["id"] for r in read_records(Engram(instance.engram.uri)) if r.get("t") == "submit"]
        for job_id in ids:
            assert instance.call("wait", job_id, 120)["status"] == "succeeded", job_id
        starts = [r["id"] for r in read_records(Engram(instance.engram.uri)) if r.get("t") == "start"]
    finally:
        for gate in ("hold", "a1", "urgent"):
            (gates / gate).touch()
        instance.close()
    return list(dict.fromkeys(starts))  # a job started again after the restart: its first start


def _release(job_id: str, next_id: str | None = None) -> Step:
    def step(cortex: PrivateCortex, gates: Path) -> None:
        (gates / job_id).touch()
        if next_id is not None:
            wait_until(Path(f"{gates / next_id}.started").exists, what=f"{next_id} to start")

    return step


def _backlogs(cortex: PrivateCortex, gates: Path) -> None:
    _held(cortex, gates, "hold", "carol")
    cortex.call("submit_many", [_sub("a1", gate=gates / "a1"), _sub("a2"), _sub("a3")], "alice")
    cortex.call("submit_many", [_sub("b1"), _sub("b2"), _sub("b3")], "bob")


def test_cancelling_queued_jobs_takes_them_out_of_the_queue_depth_at_once(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    """``stats`` (``GET /v1/jobs/stats``, ``mnemos jobs stats``) counts what waits, per pool, as soon as
    the cancel returns; before, the cancelled stayed in ``waiting`` while the held job ran."""
    (gates := tmp_path / "gates").mkdir()
    queues = {**cortex_settings.cortex.queues, "fair": QueueConfig.model_validate({"concurrency": 1})}
    cortex = PrivateCortex(tmp_path, cortex_settings, queues=queues)
    try:
        _held(cortex, gates, "hold", "carol")
        cortex.call("submit_many", [_sub("x1"), _sub("x2"), _sub("x3")], "alice")
        for job_id in ("x1", "x3"):
            assert cortex.call("cancel", job_id)["status"] == "cancelled"
        fair = cortex.call("stats")["queues"]["fair"]
        (gates / "hold").touch()
        assert cortex.call("wait", "x2", 120)["status"] == "succeeded"
        after = cortex.call("stats")["queues"]["fair"]
    finally:
        (gates / "hold").touch()
        cortex.close()
    pool = cortex_settings.neuron.pools[0].name
    assert (fair["queued"], fair["waiting"], fair["running"]) == (1, {pool: 1}, 1)
    assert (after["queued"], after["waiting"]) == (0, {})


def _checkpoint(cortex: PrivateCortex, gates: Path) -> None:
    cortex.call("checkpoint")


@pytest.mark.parametrize("checkpointed", [False, True], ids=["from-the-journal", "from-a-checkpoint"])
def test_a_restart_in_the_middle_of_a_round_resumes_the_live_order(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path, checkpointed: bool
) -> None:
    """alice's a1 had her turn of the round and runs when CORTEX dies; bob's b1 still waits for his
    turn of that round. Before, the restart dealt the turns again from scratch and alice's a2 (submitted
    before b1) went first; now the restart finds each job's turn in the journal (or the checkpoint)."""
    before = [_backlogs, *([_checkpoint] if checkpointed else []), _release("hold", "a1")]
    after = [_release("a1")]
    live = _run(tmp_path / "twin", cortex_settings, before, after, crash=False)
    restarted = _run(tmp_path / "crashed", cortex_settings, before, after, crash=True)
    assert live[:3] == ["hold", "a1", "b1"] and len(live) == 7  # bob's turn of the round follows
    assert restarted == live


def test_a_restart_keeps_the_virtual_time_of_a_level_whose_last_started_job_left_memory(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    """The job that set a level's virtual time (carol's hold) finished, and past its retention (0 s)
    a checkpoint would have let it leave memory while an urgent job holds the only slot and the
    level's jobs wait. The level's virtual time is kept with the checkpoint, so that dave, who submits
    after the restart, is dealt the same turn as live (the next round, after alice's and bob's
    first), not the one before everything."""

    def queue_behind_urgent(cortex: PrivateCortex, gates: Path) -> None:
        _held(cortex, gates, "hold", "carol")
        cortex.call("submit_many", [_sub("a1"), _sub("a2")], "alice")
        cortex.call("submit_many", [_sub("b1")], "bob")
        cortex.call("submit_many", [_sub("urgent", priority=5, gate=gates / "urgent")], "eve")
        _release("hold", "urgent")(cortex, gates)
        assert cortex.call("wait", "hold", 60)["status"] == "succeeded"
        cortex.call("checkpoint")

    def dave(cortex: PrivateCortex, gates: Path) -> None:
        cortex.call("submit_many", [_sub("d1")], "dave")

    before, after = [queue_behind_urgent], [dave, _release("urgent")]
    live = _run(tmp_path / "twin", cortex_settings, before, after, crash=False, retention=0)
    restarted = _run(tmp_path / "crashed", cortex_settings, before, after, crash=True, retention=0)
    assert live == ["hold", "urgent", "a1", "b1", "d1", "a2"]  # what the twin ran, spelled out for the reader
    assert restarted == live
