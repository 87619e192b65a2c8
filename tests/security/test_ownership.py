"""Ownership: a developer never sees, reads the logs of, or cancels another's jobs and runs (404);
viewers read but change nothing and read no logs (403); operators and admins see all."""

from __future__ import annotations

from typing import Any

from security_support import Gateway


def _code(resp: Any) -> int:
    if resp.status_code >= 400:
        error = resp.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
    return int(resp.status_code)


def test_jobs_belong_to_who_submitted_them(gateway: Gateway) -> None:
    gate = gateway.markers / "gate"
    submitted = gateway.call(
        "POST", "/v1/jobs", "developer", json={"function": "waiter", "kwargs": {"path": str(gate)}}
    )
    assert submitted.status_code == 200, submitted.text
    job = submitted.json()
    assert job["owner"] == "developer-user"
    jid = job["id"]
    try:
        for method, path in (("GET", f"/v1/jobs/{jid}"), ("GET", f"/v1/jobs/{jid}/logs"),
                             ("DELETE", f"/v1/jobs/{jid}"), ("GET", f"/v1/jobs/{jid}?wait=1")):  # fmt: skip
            resp = gateway.call(method, path, "developer-b")
            assert _code(resp) == 404 and "not found" in resp.text, resp.text
            assert resp.json()["error"]["message"] == gateway.call("GET", "/v1/jobs/no-such-job", "developer-b").json()[
                "error"
            ]["message"].replace("no-such-job", jid)  # indistinguishable from a job that does not exist
        theirs = gateway.call("GET", "/v1/jobs", "developer-b", params={"limit": 10_000}).json()["data"]
        assert jid not in {j["id"] for j in theirs}
        mine = gateway.call("GET", "/v1/jobs", "developer", params={"limit": 10_000}).json()["data"]
        assert jid in {j["id"] for j in mine} and {j["owner"] for j in mine} == {"developer-user"}
        # viewers: see it exists, but no logs and no cancel
        assert _code(gateway.call("GET", f"/v1/jobs/{jid}", "viewer")) == 200
        assert _code(gateway.call("GET", f"/v1/jobs/{jid}/logs", "viewer")) == 403
        assert _code(gateway.call("DELETE", f"/v1/jobs/{jid}", "viewer")) == 403
        # a developer cannot take over another's job through its idempotency key
        taken = gateway.call("POST", "/v1/jobs", "developer-b", json={"function": "adder", "id": jid,
                                                                      "kwargs": {"a": 1, "b": 1}})  # fmt: skip
        assert _code(taken) == 409 and "developer-user" not in taken.text
        # operators see and read everything
        assert _code(gateway.call("GET", f"/v1/jobs/{jid}/logs", "operator")) == 200
        assert gateway.call("GET", f"/v1/jobs/{jid}", "developer").json()["status"] in ("queued", "running")
    finally:
        cancelled = gateway.call("DELETE", f"/v1/jobs/{jid}", "developer")  # the owner may cancel
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        gate.touch()


def test_runs_belong_to_who_started_them(gateway: Gateway) -> None:
    started = gateway.call("POST", "/v1/pipelines/echo-text/runs", "developer", json={"params": {"text": "mine"}})
    assert started.status_code == 202, started.text
    rid = started.json()["id"]
    for method, path in (("GET", f"/v1/runs/{rid}"), ("POST", f"/v1/runs/{rid}/cancel"),
                         ("POST", f"/v1/runs/{rid}/resume")):  # fmt: skip
        resp = gateway.call(method, path, "developer-b")
        assert _code(resp) == 404 and rid in resp.text, resp.text
    theirs = gateway.call("GET", "/v1/pipelines/echo-text/runs", "developer-b").json()["data"]
    assert rid not in {r["id"] for r in theirs}
    assert rid in {r["id"] for r in gateway.call("GET", "/v1/pipelines/echo-text/runs", "developer").json()["data"]}
    assert _code(gateway.call("GET", f"/v1/runs/{rid}", "viewer")) == 200
    assert _code(gateway.call("POST", f"/v1/runs/{rid}/cancel", "viewer")) == 403
    state = gateway.finished_run(rid, "operator")
    assert state["status"] == "succeeded" and state["owner"] == "developer-user", state.get("error")
