"""The job routes' edges: query parameters are checked, never ignored (422 naming each); a caller who
may not read a job's data is told what was withheld; ``retry`` and ``stats`` over HTTP (the owner,
operators and admins retry; another developer gets 404 as for no job, a viewer 403; everyone reads
stats, which hold no job's data); a registered Function submitted by name (``submit``, ``submit_many``)
from the embedded client as from the remote one."""

from __future__ import annotations

from typing import Any

import pytest
from security_support import Gateway, T, function_doc
from tests_support import until

import mnemos
from mnemos.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError

SECRET = "JOB-ROUTES-PRIVATE"
FAIL_PARAMS = {"type": "object", "properties": {"message": {"type": "string"}}, "additionalProperties": False}


def _error(resp: Any, status: int, param: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.request.url, resp.text)
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    return error  # type: ignore[no-any-return]


def _finished(gateway: Gateway, job_id: str) -> dict[str, Any]:
    def view() -> dict[str, Any]:  # (each call waits up to 30 s for the job to end)
        return gateway.call("GET", f"/v1/jobs/{job_id}", "operator", params={"wait": 30}).json()  # type: ignore[no-any-return]

    return until(view, f"job {job_id} to end", ready=lambda v: v["status"] in ("succeeded", "failed", "cancelled"),
                 timeout=180, interval=0)  # fmt: skip


def _submit(gateway: Gateway, who: str, function: str, kwargs: dict[str, Any]) -> str:
    sent = gateway.call("POST", "/v1/jobs", who, json={"function": function, "kwargs": kwargs, "maxAttempts": 1})
    assert sent.status_code == 200, sent.text
    return str(sent.json()["id"])


@pytest.fixture(scope="module")
def jobs(gateway: Gateway) -> dict[str, str]:
    """A developer's failed job (its error carries SECRET) and succeeded one (its result is 5)."""
    gateway.client.apply([function_doc("routes-fail", f"{T}:fail", FAIL_PARAMS)])
    made = {"failed": _submit(gateway, "developer", "routes-fail", {"message": SECRET}),
            "succeeded": _submit(gateway, "developer", "adder", {"a": 2, "b": 3})}  # fmt: skip
    for status, job_id in made.items():
        assert _finished(gateway, job_id)["status"] == status
    return made


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "param"),
    [
        ("GET", "/v1/jobs", {"queue": "\x00"}, 422, "queue"),
        ("GET", "/v1/jobs", {"queue": ""}, 422, "queue"),
        ("GET", "/v1/jobs", {"queue": "Default/../x"}, 422, "queue"),
        ("GET", "/v1/jobs", {"status": "nope"}, 422, "status"),
        ("GET", "/v1/jobs", {"status": ""}, 422, "status"),
        ("GET", "/v1/jobs", {"state": "failed"}, 422, "state"),  # not a filter of this route: not ignored
        ("GET", "/v1/jobs", {"principal": "developer-user"}, 422, "principal"),
        ("GET", "/v1/jobs", {"limit": "0"}, 422, "limit"),
        ("GET", "/v1/jobs", [("limit", "1"), ("limit", "3")], 422, "limit"),  # twice: not one kept silently
        ("GET", "/v1/jobs", {"after": "\x00"}, 422, "after"),
        ("GET", "/v1/jobs/no-such-job", {"wait": "-1"}, 422, "wait"),
        ("GET", "/v1/jobs/no-such-job", {"wiat": "1"}, 422, "wiat"),
        ("DELETE", "/v1/jobs/no-such-job", {"force": "1"}, 422, "force"),
        ("GET", "/v1/jobs/no-such-job/logs", {"attempt": "1"}, 422, "attempt"),
        ("POST", "/v1/jobs/no-such-job/retry", {"queue": "default"}, 422, "queue"),
        ("GET", "/v1/jobs:stats", {"queue": "default"}, 422, "queue"),
        ("GET", "/v1/jobs/%00", {}, 404, "id"),  # no job has such an id: as one that does not exist
    ],
)
def test_query_parameters_are_checked(gateway: Gateway, method: str, path: str, params: dict[str, str],
                                      status: int, param: str) -> None:  # fmt: skip
    error = _error(gateway.call(method, path, "admin", params=params), status, param)
    assert error["message"].startswith(f"{param}: ") if status == 422 else "not found" in error["message"]


def test_good_filters_still_filter(gateway: Gateway, jobs: dict[str, str]) -> None:
    listed = gateway.call("GET", "/v1/jobs", "admin", params={"queue": "default", "status": "failed", "limit": 10_000})
    assert listed.status_code == 200, listed.text
    ids = {j["id"] for j in listed.json()["data"]}
    assert jobs["failed"] in ids and jobs["succeeded"] not in ids
    nowhere = gateway.call("GET", "/v1/jobs", "admin", params={"queue": "no-such-queue"})
    assert nowhere.status_code == 422 and nowhere.json()["error"]["param"] == "queue", nowhere.text  # not an empty page
    assert "'no-such-queue' is not declared; declared queues: default" in nowhere.json()["error"]["message"]


def test_a_viewer_is_told_what_was_withheld(gateway: Gateway, jobs: dict[str, str]) -> None:
    failed = gateway.call("GET", f"/v1/jobs/{jobs['failed']}", "viewer").json()
    assert SECRET not in str(failed) and failed["withheld"] == ["error"]
    succeeded = gateway.call("GET", f"/v1/jobs/{jobs['succeeded']}", "viewer").json()
    assert "value" not in succeeded["result"] and succeeded["withheld"] == ["result.value"]
    listed = gateway.call("GET", "/v1/jobs", "viewer", params={"status": "failed", "limit": 10_000}).json()["data"]
    assert next(j for j in listed if j["id"] == jobs["failed"])["withheld"] == ["error"]
    for who in ("developer", "operator"):  # the owner and operators read it all: nothing withheld
        mine = gateway.call("GET", f"/v1/jobs/{jobs['failed']}", who).json()
        assert SECRET in mine["error"] and "withheld" not in mine


def test_retry_is_for_the_owner_operators_and_admins(gateway: Gateway, jobs: dict[str, str]) -> None:
    failed = jobs["failed"]
    other = gateway.call("POST", f"/v1/jobs/{failed}/retry", "developer-b")  # as if the job did not exist
    missing = gateway.call("POST", "/v1/jobs/no-such-job/retry", "developer-b")
    assert _error(other, 404, "id")["message"] == _error(missing, 404, "id")["message"].replace("no-such-job", failed)
    assert gateway.call("POST", f"/v1/jobs/{failed}/retry", "viewer").status_code == 403
    before = {j["id"] for j in gateway.admin_jobs()}
    with mnemos.connect(gateway.url, api_key=gateway.keys["developer"]) as client:
        again = client.jobs.retry(failed)
        assert again.id not in before and again.id != failed
        view = again.wait(120)
        assert view["status"] == "failed" and view["owner"] == "developer-user" and SECRET in view["error"]
        with pytest.raises(ConflictError, match="only failed or cancelled jobs"):
            client.jobs.retry(jobs["succeeded"])
    with mnemos.connect(gateway.url, api_key=gateway.keys["developer-b"]) as stranger, pytest.raises(NotFoundError):
        stranger.jobs.retry(failed)
    with mnemos.connect(gateway.url, api_key=gateway.keys["viewer"]) as viewer, pytest.raises(PermissionDeniedError):
        viewer.jobs.retry(failed)
    # nothing was made by the refused retries: only the owner's
    assert {j["id"] for j in gateway.admin_jobs()} - before == {again.id}
    operated = gateway.call("POST", f"/v1/jobs/{failed}/retry", "operator")
    assert operated.status_code == 200 and operated.json()["owner"] == "operator-user", operated.text


def test_retry_runs_only_what_the_caller_may_still_call(gateway: Gateway) -> None:
    calls = gateway.markers / "routes-gone-calls"
    parameters = {"type": "object", "properties": {"marker": {"type": "string"}, "failures": {"type": "integer"}}}
    gateway.client.apply([function_doc("routes-gone", f"{T}:flaky", parameters)])  # no other Function calls flaky
    job_id = _submit(gateway, "developer", "routes-gone", {"marker": str(calls), "failures": 1})
    assert _finished(gateway, job_id)["status"] == "failed" and calls.read_text() == "1"
    gateway.client.delete("Function", "routes-gone")  # its code may no longer be called by name
    refused = gateway.call("POST", f"/v1/jobs/{job_id}/retry", "developer")
    assert f"{T}:flaky" in _error(refused, 403, "function")["message"]
    again = gateway.call("POST", f"/v1/jobs/{job_id}/retry", "admin")  # execute: any code
    assert again.status_code == 200, again.text
    assert _finished(gateway, again.json()["id"])["status"] == "succeeded" and calls.read_text() == "2"


def test_a_retry_is_checked_against_the_functions_parameters_now(gateway: Gateway) -> None:
    """An operator tightens a Function's ``parameters`` to close a hole: a retry of a job sent with
    the old arguments is refused as a new submit of them is (it once ran them again)."""
    loose = {"type": "object", "properties": {"message": {"type": "string"}}}
    gateway.client.apply([function_doc("routes-tight", f"{T}:fail", loose)])
    job_id = _submit(gateway, "developer", "routes-tight", {"message": "FORBIDDEN-NOW"})
    assert _finished(gateway, job_id)["status"] == "failed"
    tight = {"type": "object", "properties": {"message": {"enum": ["ok"]}}}
    gateway.client.apply([function_doc("routes-tight", f"{T}:fail", tight)])
    sent = gateway.call("POST", "/v1/jobs", "developer", json={"function": "routes-tight",
                                                                "kwargs": {"message": "FORBIDDEN-NOW"}})  # fmt: skip
    retried = gateway.call("POST", f"/v1/jobs/{job_id}/retry", "developer")
    assert _error(sent, 422, "kwargs.message")["message"] == _error(retried, 422, "kwargs.message")["message"]
    assert gateway.call("POST", f"/v1/jobs/{job_id}/retry", "operator").status_code == 200  # execute: as it was


def test_a_retry_runs_no_pickle_for_a_developer_and_takes_the_retriers_team(gateway: Gateway) -> None:
    """A developer's own job that carries a pickle (submitted embedded in its name: a reference's
    arguments are pickled) names a registered Function's entrypoint: retrying it over HTTP would
    unpickle as the developer. And a retry's ``mnemos.dev/team`` label is the new owner's."""
    from mnemos.cortex import JobsAPI
    from mnemos.cortex.job import TEAM_LABEL

    embedded = JobsAPI(gateway.client, principal="developer-user")
    job = embedded.submit(f"{T}:add", "not a number", 1, labels={TEAM_LABEL: "red"}, max_attempts=1)
    assert _finished(gateway, job.id)["status"] == "failed"
    refused = gateway.call("POST", f"/v1/jobs/{job.id}/retry", "developer")
    assert "pickled" in _error(refused, 403, "function")["message"]
    again = gateway.call("POST", f"/v1/jobs/{job.id}/retry", "operator")  # execute: it may
    assert again.status_code == 200 and again.json()["owner"] == "operator-user", again.text
    assert TEAM_LABEL not in again.json()["labels"]  # the operator has no team: not the developer's "red"


def test_stats_hold_no_job_data_and_every_role_reads_them(gateway: Gateway, jobs: dict[str, str]) -> None:
    with mnemos.connect(gateway.url, api_key=gateway.keys["viewer"]) as client:
        stats = client.jobs.stats()
    assert stats["queues"]["default"]["concurrency"] >= 1 and stats["jobs"]["failed"] >= 1
    assert jobs["failed"] not in str(stats) and SECRET not in str(stats) and "developer-user" not in str(stats)
    assert set(stats) == set(gateway.client.jobs.stats())  # the embedded client's, over HTTP
    for who in ("developer", "operator"):
        assert gateway.call("GET", "/v1/jobs:stats", who).status_code == 200
    assert gateway.call("GET", "/v1/jobs:stats").status_code == 401


def test_a_registered_function_by_name_embedded_and_remote(gateway: Gateway) -> None:
    with mnemos.connect(gateway.url, api_key=gateway.keys["developer"]) as remote:
        for client in (gateway.client, remote):
            job = client.jobs.submit("adder", a=2, b=3)
            assert job.result(timeout=120) == 5
            info = job.info()
            assert info["name"] == "adder" and info["function"] == f"{T}:add" and info["queue"] == "default"
            with pytest.raises(ValidationError) as bad:
                client.jobs.submit("adder", a="two", b=3)
            assert bad.value.param is not None and "a" in str(bad.value)
            with pytest.raises(ValidationError, match="keyword arguments only"):
                client.jobs.submit("adder", 2, 3)
            with pytest.raises(NotFoundError) as unknown:
                client.jobs.submit("no-such-function", a=1)
            assert unknown.value.param == "function"
            many = client.jobs.submit_many("adder", [{"a": 1, "b": 1}, {"a": 2, "b": 2}])
            assert client.jobs.results(many, timeout=120) == [2, 4]


@pytest.mark.parametrize("job_id", ["greet-20261204-132117-a0fe.say.1", "x.y.2", "0123456789abcdef" * 2 + "01234567"])
def test_a_pipeline_steps_job_id_is_not_a_callers_to_take(gateway: Gateway, job_id: str) -> None:
    """A developer who took the id of a step a run had not reached yet had their job stand in for the step."""
    sent = gateway.call("POST", "/v1/jobs", "developer-b", json={"id": job_id, "function": "adder",
                                                                  "kwargs": {"a": 1, "b": 2}})  # fmt: skip
    assert "only SYNKRON gives" in _error(sent, 422, "id")["message"]
    assert gateway.call("GET", f"/v1/jobs/{job_id}", "admin").status_code == 404  # nothing was queued
    fine = gateway.call("POST", "/v1/jobs", "developer-b", json={"id": f"my-{job_id[:8]}.v2", "function": "adder",
                                                                  "kwargs": {"a": 1, "b": 2}})  # fmt: skip
    assert fine.status_code == 200, fine.text  # a dot alone is still an id a caller may choose


@pytest.mark.parametrize(("field", "value", "param"), [("name", "a\r\nX-Injected: 1", "name"),
                                                       ("labels", {"team": "x\ny"}, "labels.team")])  # fmt: skip
def test_control_characters_in_a_jobs_name_or_labels_are_refused(gateway: Gateway, field: str, value: Any,
                                                                 param: str) -> None:  # fmt: skip
    """They were stored as sent: a newline in a name or label forges lines of a log, a table or a header."""
    sent = gateway.call("POST", "/v1/jobs", "developer-b", json={field: value, "function": "adder",
                                                                  "kwargs": {"a": 1, "b": 2}})  # fmt: skip
    assert "control characters" in _error(sent, 422, param)["message"]
