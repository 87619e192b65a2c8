"""CORTEX jobs end to end on a real Ray cluster: queues, priorities, limits, retries, logs, admission."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import ray
from cortex_support import journal_records, wait_until

from mnemos.cortex import JobCancelledError, JobFailedError
from mnemos.errors import AdmissionError, ConflictError, NotFoundError, ValidationError

T = "mnemos.cortex.testing"


def test_a_thousand_noop_jobs_all_complete(client: Any) -> None:
    handles = client.jobs.submit_many(f"{T}:noop", [(i,) for i in range(1000)])
    assert len({h.id for h in handles}) == 1000
    assert client.jobs.results(handles, timeout=600) == list(range(1000))
    views = client.jobs.wait(handles[:5])
    assert {v["status"] for v in views} == {"succeeded"} and {v["pool"] for v in views} == {"cpu-a"}


def test_python_callables_and_references(client: Any) -> None:
    offset = 10
    closure = client.jobs.submit(lambda x, y=1: x * y + offset, 4, y=8)
    reference = client.jobs.submit(f"{T}:echo", 1, "two", three=[3])
    assert closure.result(timeout=120) == 42
    assert reference.result(timeout=120) == {"args": [1, "two"], "kwargs": {"three": [3]}}
    tuple_result = client.jobs.submit(divmod, 17, 5)
    assert tuple_result.result(timeout=120) == (3, 2)  # not JSON: travels pickled, comes back a tuple


def test_priorities_order_the_queue(client: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    blocker = client.jobs.submit(f"{T}:wait_for_file", str(gate), queue="serial")
    wait_until(Path(f"{gate}.started").exists, what="the blocking job to start")
    order = [("low", 0), ("high-1", 5), ("mid", 1), ("high-2", 5), ("lowest", -3)]
    handles = {name: client.jobs.submit(f"{T}:stamp", 0, name, queue="serial", priority=p) for name, p in order}
    assert {h.status() for h in handles.values()} == {"queued"}  # the queue runs one job at a time
    gate.touch()
    blocker.result(timeout=120)
    starts = {name: h.result(timeout=120)["start"] for name, h in handles.items()}
    assert sorted(starts, key=starts.__getitem__) == ["high-1", "high-2", "mid", "low", "lowest"]


def test_concurrency_limit_is_respected(client: Any) -> None:
    handles = [client.jobs.submit(f"{T}:stamp", 0.4, i, queue="limited") for i in range(6)]
    spans = [h.result(timeout=120) for h in handles]
    edges = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    assert most == 2  # never more than the queue's limit, and the limit is used
    assert client.jobs.stats()["queues"]["limited"]["maxRunning"] == 2


def test_timeout_fails_the_attempt(client: Any) -> None:
    job = client.jobs.submit(f"{T}:sleep", 30, timeout=0.5, max_attempts=1)
    with pytest.raises(JobFailedError, match="timed out after 0.5s"):
        job.result(timeout=120)
    assert job.info()["attempts"] == 1


def test_max_attempts_with_backoff(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "count"
    ok = client.jobs.submit(f"{T}:flaky", str(marker), 2, "done", max_attempts=3)
    assert ok.result(timeout=120) == "done"
    assert ok.info()["attempts"] == 3
    logs = ok.logs()
    assert "--- attempt 1 (retried) ---\ncall 1" in logs and "--- attempt 3 (succeeded) ---\ncall 3" in logs
    retries = [r for r in journal_records(client.engram) if r.get("t") == "retry" and r["id"] == ok.id]
    assert [round(r["retryAt"] - r["ts"], 3) for r in retries] == [0.1, 0.2]  # backoff doubles from min

    marker2 = tmp_path / "count2"
    dead = client.jobs.submit(f"{T}:flaky", str(marker2), 5, max_attempts=2)
    with pytest.raises(JobFailedError, match="failed after 2 attempt.*flaky failure 2 of 5"):
        dead.result(timeout=120)
    assert dead.id in {j["id"] for j in client.jobs.list(status="dead")}
    again = client.jobs.retry(dead.id)  # WRAITH's replay: a new job, lineage points at the old one
    assert again.id != dead.id and again.info()["function"] == f"{T}:flaky"
    with pytest.raises(JobFailedError):
        again.result(timeout=120)


def test_a_failing_job_reports_its_error(client: Any) -> None:
    with pytest.raises(ValidationError, match="has no attribute 'nope'"):
        client.jobs.submit(f"{T}:nope")  # checked before it is queued
    job = client.jobs.submit(f"{T}:fail", "on purpose", max_attempts=1)
    with pytest.raises(JobFailedError, match="failed after 1 attempt.*RuntimeError: on purpose"):
        job.result(timeout=120)
    info = job.info()
    assert info["status"] == "failed" and "Traceback" in info["traceback"]


def test_a_result_that_cannot_be_pickled_fails_once_naming_it(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "calls"

    def returns_a_lock() -> Any:
        import threading

        with open(marker, "a") as f:
            f.write("call\n")
        return threading.Lock()

    job = client.jobs.submit(returns_a_lock, max_attempts=3)
    with pytest.raises(JobFailedError, match="result: a lock cannot be pickled.*return JSON values"):
        job.result(timeout=120)
    assert marker.read_text() == "call\n"  # not run again: it would return the same
    assert job.info()["attempts"] == 1


def test_a_string_that_is_not_unicode_never_wedges_the_journal(client: Any) -> None:
    """Python names a file whose name is not UTF-8 with lone surrogates (``os.fsdecode``). Such a
    string in a job's arguments, result or error once stopped the journal for good: its writer
    retried a segment it could not encode, and every later submit on the cluster was a 503."""
    import os

    name = os.fsdecode(b"report-\xff.csv")  # 'report-\udcff.csv'
    echoed = client.jobs.submit(f"{T}:echo", name, labels={"file": name})
    assert echoed.result(timeout=120) == {"args": [name], "kwargs": {}}
    failed = client.jobs.submit(f"{T}:fail", name, max_attempts=1)
    with pytest.raises(JobFailedError, match="RuntimeError: report-"):
        failed.result(timeout=120)
    assert client.jobs.submit(f"{T}:noop", 7).result(timeout=120) == 7  # the journal still writes
    submitted = next(r for r in journal_records(client.engram) if r["t"] == "submit" and r["id"] == echoed.id)
    assert submitted["labels"] == {"file": name}  # stored as it was given, read back the same


def test_threads_of_a_worker_outside_its_jobs_can_print_and_call_ray(client: Any) -> None:
    """A worker sends its job output to the job; other threads write to Ray's own stream, whose
    ``write`` returns None. Counting that raised a TypeError: every print and log line from such a
    thread failed, and so did the first ``ray.get`` (Ray logs a warning there in an async actor),
    which made the worker's metrics flusher fail every second, for good."""
    assert client.jobs.submit(f"{T}:in_a_thread", 7).result(timeout=120) == 7


def test_cancel_queued_and_running_jobs(client: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    running = client.jobs.submit(f"{T}:wait_for_file", str(gate), value="late", queue="serial")
    wait_until(Path(f"{gate}.started").exists, what="the job to start")
    queued = client.jobs.submit(f"{T}:noop", 1, queue="serial")
    assert queued.cancel()["status"] == "cancelled"
    assert running.status() == "running"
    assert running.cancel()["status"] == "cancelled"
    with pytest.raises(JobCancelledError):
        running.result(timeout=60)
    gate.touch()  # the abandoned attempt ends; its result is discarded
    after = client.jobs.submit(f"{T}:noop", 2, queue="serial")
    assert after.result(timeout=120) == 2  # the queue's slot was given back
    assert running.status() == "cancelled" and queued.status() == "cancelled"
    with pytest.raises(ConflictError, match="already cancelled"):
        running.cancel()
    records = [r for r in journal_records(client.engram) if r.get("id") == running.id]
    assert [r["t"] for r in records].count("result") == 0


def test_logs_are_captured_per_job(client: Any) -> None:
    handles = [client.jobs.submit(f"{T}:shout", f"job-{i}", 3) for i in range(24)]  # run concurrently
    pids = client.jobs.results(handles, timeout=120)
    assert len(set(pids)) >= 1
    for i, handle in enumerate(handles):
        lines = handle.logs().splitlines()
        assert sorted(lines) == sorted([f"job-{i}", f"job-{i} #0", f"job-{i} #1", f"job-{i} #2"]), lines


def test_large_results_go_to_engram(client: Any) -> None:
    size = client.settings.cortex.inline_result_bytes * 3
    job = client.jobs.submit(f"{T}:big", size)
    data = job.result(timeout=120)
    assert len(data) == size and data[:3] == b"\x00\x01\x02"
    envelope = job.info()["result"]
    assert envelope["encoding"] == "pickle" and envelope["bytes"] > size and "inline" not in envelope
    assert client.engram.has(envelope["digest"])
    small = client.jobs.submit(f"{T}:add", 2, 3)
    small.result(timeout=120)
    assert small.info()["result"] == {"encoding": "json", "value": 5, "bytes": 1}


def test_gpu_job_is_refused_at_admission(client: Any) -> None:
    with pytest.raises(AdmissionError) as refused:
        client.jobs.submit(f"{T}:noop", resources={"gpus": 1}, name="needs-gpu")
    message = refused.value.message
    assert "rule resources.gpus" in message and "1 GPU" in message
    assert "pool gpu-a has no workers: the cluster has 0 GPUs" in message
    assert refused.value.details["rule"] == "resources.gpus"
    assert not [j for j in client.jobs.list(limit=10_000) if j["name"] == "needs-gpu"]  # never queued
    with pytest.raises(AdmissionError, match="rule resources.selector.*accelerator=tpu"):
        client.jobs.submit(f"{T}:noop", resources={"selector": {"accelerator": "tpu"}})
    with pytest.raises(AdmissionError, match="rule resources.pool.*pool 'cpu-z'"):
        client.jobs.submit(f"{T}:noop", resources={"pool": "cpu-z"})
    # a job that can use either kind of pool runs on the CPU pool
    assert client.jobs.submit(f"{T}:noop", 7, resources={"gpus": 0}).result(timeout=120) == 7


def test_policy_quota_refuses_with_its_name(client: Any, tmp_path: Path) -> None:
    team = f"t{uuid.uuid4().hex[:6]}"
    client.apply(
        {
            "apiVersion": "genome.mnemos.dev/v1",
            "kind": "Policy",
            "metadata": {"name": f"quota-{team}"},
            "spec": {"selector": {"kinds": ["Job"]}, "quotas": [{"label": "team", "maxRunningJobs": 1, "maxGpus": 0}]},
        }
    )
    try:
        gate = tmp_path / "gate"
        first = client.jobs.submit(f"{T}:wait_for_file", str(gate), labels={"team": team})
        with pytest.raises(AdmissionError) as refused:
            client.jobs.submit(f"{T}:noop", labels={"team": team})
        assert f"Policy 'quota-{team}' quotas[0].maxRunningJobs" in refused.value.message
        assert refused.value.details["policy"] == f"quota-{team}"
        with pytest.raises(AdmissionError, match="quotas\\[0\\].maxGpus"):
            client.jobs.submit(f"{T}:noop", labels={"team": team}, resources={"gpus": 1})
        assert client.jobs.submit(f"{T}:noop", 1, labels={"team": "other"}).result(timeout=120) == 1
        gate.touch()
        first.result(timeout=120)
        assert client.jobs.submit(f"{T}:noop", 2, labels={"team": team}).result(timeout=120) == 2
    finally:
        client.delete("Policy", f"quota-{team}")


def test_bad_requests_name_the_field(client: Any) -> None:
    with pytest.raises(ValidationError, match="'nope' is not declared; declared queues: default, limited") as bad:
        client.jobs.submit(f"{T}:noop", queue="nope")
    assert bad.value.param == "queue" and bad.value.status == 422
    with pytest.raises(ValidationError, match="after: '../jobs' is not a job id") as bad:  # as over HTTP
        client.jobs.list(after="../jobs")
    assert bad.value.param == "after"
    with pytest.raises(NotFoundError, match="after: no job 'no-such-job' to list after"):
        client.jobs.list(after="no-such-job")
    with pytest.raises(ValidationError, match="'nope' is not declared"):
        client.jobs.submit_many(f"{T}:noop", [1, 2], queue="nope")
    with pytest.raises(ValidationError, match="'nope' is not declared"):
        client.jobs.list(queue="nope")
    with pytest.raises(ValidationError) as bad:
        client.jobs.submit(f"{T}:noop", resources={"gpu": 1})
    assert bad.value.param == "resources.gpu"
    with pytest.raises(ValidationError, match="max_attempts|maxAttempts"):
        client.jobs.submit(f"{T}:noop", max_attempts=0)
    with pytest.raises(ValidationError, match="neither a Function name .* nor 'package.module:function'") as bad:
        client.jobs.submit("not a reference")  # no ':': a registered Function's name, as over HTTP
    assert bad.value.param == "function"
    with pytest.raises(NotFoundError, match="job 'missing' not found"):
        client.jobs.get("missing")


def test_the_sdk_names_the_argument_it_cannot_take(client: Any) -> None:
    """Embedded ``client.jobs`` answered these with raw ``RayTaskError``/``TypeError`` tracebacks
    from inside CORTEX or cloudpickle, stored ``parents="run:x"`` as the nodes 'r', 'u', 'n' …,
    and listed ``limit=-1``; each is now a ``ValidationError`` naming the argument, as remotely."""
    import threading

    lock = threading.Lock()  # what cloudpickle cannot send
    before = len(client.jobs.list(limit=10_000))
    for call, param in ((lambda: client.jobs.get(5), "job_id"),
                        (lambda: client.jobs.list(limit="x"), "limit"),
                        (lambda: client.jobs.list(limit=-1), "limit"),
                        (lambda: client.jobs.list(limit=True), "limit"),
                        (lambda: client.jobs.list(status=3), "status"),
                        (lambda: client.jobs.submit(f"{T}:add", 1, 2, parents="run:x"), "parents"),
                        (lambda: client.jobs.submit(f"{T}:add", 1, threading.Lock()), "fn"),
                        (lambda: client.jobs.submit(lambda: lock.locked()), "fn"),
                        (lambda: client.jobs.submit_many(f"{T}:noop", 5), "arguments"),
                        (lambda: client.jobs.wait(["x"], timeout="30s"), "timeout"),
                        (lambda: client.jobs.cancel(None), "job_id")):  # fmt: skip
        with pytest.raises(ValidationError) as bad:
            call()
        assert bad.value.param == param, (param, bad.value)
    assert len(client.jobs.list(limit=10_000)) == before  # none of them queued a job
    job = client.jobs.submit(f"{T}:sleep", 30, "cancel me")
    with pytest.raises(ValidationError, match="timeout: expected seconds") as bad:
        job.result(timeout="30s")
    assert client.jobs.cancel(job.id)["status"] == "cancelled"  # the remote client's calls, embedded too
    assert isinstance(client.jobs.logs(job.id), str)


def test_a_job_id_is_an_idempotency_key(client: Any) -> None:
    key = f"step-{uuid.uuid4().hex[:8]}"
    first = client.jobs.submit(f"{T}:add", 1, 1, job_id=key)
    second = client.jobs.submit(f"{T}:add", 5, 5, job_id=key)
    assert first.id == second.id == key and second.result(timeout=120) == 2
    submits = [r for r in journal_records(client.engram) if r.get("t") == "submit" and r["id"] == key]
    assert len(submits) == 1


def test_an_id_reused_for_another_call_is_refused(client: Any) -> None:
    """A client that reused an id for new work was answered with the first job (200), and believed its
    new work ran. A call sent as JSON (``POST /v1/jobs``, a registered Function) is compared with the
    job's: other arguments, function or queue are a 409 naming ``id``. (A pickled call compares only its
    function and queue: its bytes may differ for the same call, as a resumed pipeline step's do.)"""
    key = f"reuse-{uuid.uuid4().hex[:8]}"
    call = {"function": f"{T}:sleep", "args": [3, "first"], "id": key}  # in memory while this runs (retention)
    assert ray.get(client.jobs.cortex.submit_many.remote([call], "user:bob")) == [key]
    assert ray.get(client.jobs.cortex.submit_many.remote([dict(call)], "user:bob")) == [key]  # the same call: ok
    for other, named in (({"args": [3, "second"]}, "args"), ({"function": f"{T}:stamp"}, "function"),
                         ({"kwargs": {"value": 2}}, "kwargs")):  # fmt: skip
        with pytest.raises(ConflictError, match=f"id: '{key}' names a job already submitted with other {named}"):
            ray.get(client.jobs.cortex.submit_many.remote([{**call, **other}], "user:bob"))
    assert client.jobs.get(key).result(timeout=120) == "first"
    # done, its arguments dropped from memory: still compared (a digest is kept), not answered with "first"
    with pytest.raises(ConflictError, match=f"id: '{key}' names a job already submitted with other args or kwargs"):
        ray.get(client.jobs.cortex.submit_many.remote([{**call, "args": [3, "second"]}], "user:bob"))
    assert ray.get(client.jobs.cortex.submit_many.remote([dict(call)], "user:bob")) == [key]


def test_an_id_another_principal_holds_is_never_their_job(client: Any) -> None:
    """An idempotent submit returns the existing job only to the one who submitted it: a developer who took
    the id a pipeline run would give its next step had their job stand in for the step (its result the
    step's). Another submitter is refused, naming the id; the first keeps its job."""
    from mnemos.cortex.job import STEP_JOB_ID
    from mnemos.synkron._jobs import job_key

    key = f"taken-{uuid.uuid4().hex[:8]}"
    call = {"function": f"{T}:add", "args": [1, 1], "id": key}
    assert ray.get(client.jobs.cortex.submit_many.remote([call], "user:bob")) == [key]
    with pytest.raises(ConflictError, match=f"id: '{key}' is already used by another job"):
        ray.get(client.jobs.cortex.submit_many.remote([call], "user:ana"))
    assert ray.get(client.jobs.cortex.submit_many.remote([call], "user:bob")) == [key]  # still idempotent
    assert client.jobs.get(key).result(timeout=120) == 2
    # SYNKRON's step ids are of the form the gateway keeps for it (tests/security/test_job_routes.py)
    for run, step in (("greet-20261204-132117-a0fe", "say"), ("p" * 100, "s" * 60)):
        assert STEP_JOB_ID.fullmatch(job_key(run, step, 1)), job_key(run, step, 1)


def test_lineage_from_intent_to_result(client: Any) -> None:
    from mnemos.trace.lineage import events

    job = client.jobs.submit(f"{T}:add", 20, 22, parents=["run:r-lineage"])
    assert job.result(timeout=120) == 42
    ray.get(client.jobs.cortex.drain.remote())
    mine = [e for e in events(client.engram) if e["id"] == f"job:{job.id}"]
    assert [e["type"] for e in mine] == ["intent", "execution", "result"]
    intent, execution, result = (e["attrs"] for e in mine)
    assert intent["function"] == f"{T}:add" and intent["queue"] == "default" and intent["principal"]
    assert mine[0]["parents"] == ["run:r-lineage"]
    assert (
        execution["attempt"] == 1 and execution["pool"] == "cpu-a" and execution["worker"].startswith("neuron-cpu-a-")
    )
    assert result["status"] == "succeeded" and result["result_digest"].startswith("sha256:")
