"""What a developer's job request may ask for: parents it reads, priorities and attempts in range,
quotas it cannot step out of, and a listing that pages through its own jobs only."""

from __future__ import annotations

import uuid
from typing import Any

from security_support import Gateway


def _error(resp: Any, status: int, param: str) -> str:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param, error
    return str(error["message"])


def _submit(gateway: Gateway, who: str, **body: Any) -> Any:
    return gateway.call("POST", "/v1/jobs", who, json={"function": "adder", "kwargs": {"a": 1, "b": 2}, **body})


def _run(gateway: Gateway, who: str) -> str:
    started = gateway.call("POST", "/v1/pipelines/echo-text/runs", who, json={"params": {"text": "x"}})
    assert started.status_code == 202, started.text
    rid = str(started.json()["id"])
    state = gateway.finished_run(rid, who)
    assert state["status"] in ("succeeded", "failed"), state
    return rid


def test_a_job_links_only_to_parents_its_submitter_reads(gateway: Gateway) -> None:
    mine = _submit(gateway, "developer")
    assert mine.status_code == 200, mine.text
    job = f"job:{mine.json()['id']}"
    rid = _run(gateway, "developer")
    run, step = f"run:{rid}", f"step:{rid}/say"
    for parent in (job, run, step):
        # another developer: 404 naming the parent, as for a node that does not exist
        message = _error(_submit(gateway, "developer-b", parents=[parent]), 404, "parents[0]")
        missing = _error(_submit(gateway, "developer-b", parents=[parent + "x"]), 404, "parents[0]")
        assert message == missing.replace(parent + "x", parent)
        # its owner, operators and admins may
        for who in ("developer", "operator", "admin"):
            linked = _submit(gateway, who, parents=[parent])
            assert linked.status_code == 200, (who, parent, linked.text)
    # a node nobody owns (the Pipeline the run came from) is shared: any submitter may name it
    nodes = gateway.call("GET", f"/v1/lineage/{run}", "admin").json()["nodes"]
    shared = next(n["id"] for n in nodes if n.get("owner") is None and n["direction"] == "upstream")
    assert _submit(gateway, "developer-b", parents=[shared]).status_code == 200, shared
    _error(_submit(gateway, "developer", parents=[job, "job:no-such-job"]), 404, "parents[1]")
    _error(_submit(gateway, "developer", parents=["../../etc/passwd"]), 422, "parents[0]")


def test_priority_and_attempts_are_bounded_and_high_priorities_are_for_operators(gateway: Gateway) -> None:
    assert "between -1000 and 1000" in _error(_submit(gateway, "developer", priority=10**12), 422, "priority")
    assert "between 1 and 20" in _error(_submit(gateway, "developer", maxAttempts=10**6), 422, "maxAttempts")
    refused = _error(_submit(gateway, "developer", priority=101), 403, "priority")
    assert "reserved for operators and admins" in refused
    assert _submit(gateway, "developer", priority=100, maxAttempts=20).status_code == 200
    assert _submit(gateway, "operator", priority=1000).status_code == 200
    _error(_submit(gateway, "developer", labels={"mnemos.dev/team": "ops"}), 422, "labels.mnemos.dev/team")


def test_a_team_quota_counts_the_credentials_team_not_a_label(gateway: Gateway) -> None:
    team = f"q{uuid.uuid4().hex[:6]}"
    key = gateway.store.create_api_key(f"{team}-dev", "developer", team=team).secret
    name = f"quota-{team}"
    gateway.client.apply({"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": name},
                          "spec": {"selector": {"kinds": ["Job"]},
                                   "quotas": [{"per": "team", "teams": [team], "maxRunningJobs": 1}]}})  # fmt: skip
    gate = gateway.markers / f"gate-{team}"
    try:
        first = gateway.call("POST", "/v1/jobs", key, json={"function": "waiter", "kwargs": {"path": str(gate)}})
        assert first.status_code == 200, first.text
        assert first.json()["labels"] == {"mnemos.dev/team": team}
        for labels in ({}, {"team": "someone-else"}):  # no label, or another's, does not leave the quota
            refused = gateway.call("POST", "/v1/jobs", key, json={"function": "adder", "kwargs": {"a": 1, "b": 1},
                                                                   "labels": labels})  # fmt: skip
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "admission_refused", refused.text
            assert f"team={team} would have 2 active jobs" in refused.text
        assert _submit(gateway, "developer").status_code == 200  # other teams are not counted
    finally:
        gate.touch()
        gateway.client.delete("Policy", name)


def test_a_developer_pages_through_its_own_jobs_only(gateway: Gateway) -> None:
    ids = [_submit(gateway, "developer-b").json()["id"] for _ in range(3)]
    others = _submit(gateway, "developer").json()["id"]
    seen, params = [], {"limit": 1}
    while True:
        page = gateway.call("GET", "/v1/jobs", "developer-b", params=params).json()
        seen += [j["id"] for j in page["data"]]
        assert {j["owner"] for j in page["data"]} <= {"developer-b-user"}
        if not page["has_more"]:
            break
        params = {"limit": 1, "after": page["last_id"]}
    assert seen[:3] == ids[::-1] and others not in seen and len(seen) == len(set(seen))
    # another's job is no cursor (as if it did not exist)
    message = _error(gateway.call("GET", "/v1/jobs", "developer-b", params={"after": others}), 404, "after")
    assert message == _error(gateway.call("GET", "/v1/jobs", "developer-b", params={"after": "nope"}), 404,
                             "after").replace("nope", others)  # fmt: skip
