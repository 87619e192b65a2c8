"""Viewers see job and run *metadata*, never their data (docs/guides/security.md, "Ownership"): not a
job's result value or error text, not a run's parameters, its steps' logs and results or its error
texts — on the API, on the console's pages and on the event stream. Owners and operators see all."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from security_support import Gateway, function_doc, say_pipeline
from tests_support import until

COOKIE = "mnemos_session"
SECRET = "ALICE-PRIVATE-DATA"
T = "mnemos.cortex.testing"
SAY = say_pipeline("say-secret", "DEFAULT-TEXT")


@pytest.fixture(scope="module")
def finished(gateway: Gateway) -> dict[str, Any]:
    """A developer's failed and succeeded job, and succeeded and failed run, all carrying SECRET."""
    gateway.client.apply([
        function_doc("telltale", f"{T}:fail", {"type": "object", "properties": {"message": {"type": "string"}}}),
        function_doc("keeper", f"{T}:sleep", {"type": "object", "properties": {"seconds": {"type": "number"},
                     "value": {"type": "string"}}}),
        SAY,
    ])  # fmt: skip
    jobs = {}
    for name, kwargs in (("failed", {"message": f"{SECRET} job error"}), ("result", {"seconds": 0, "value": SECRET})):
        function = "telltale" if name == "failed" else "keeper"
        sent = gateway.call("POST", "/v1/jobs", "developer", json={"function": function, "kwargs": kwargs,
                                                                   "maxAttempts": 1})  # fmt: skip
        assert sent.status_code == 200, sent.text
        jobs[name] = sent.json()["id"]
    runs = {}
    for name, code in (("succeeded", 0), ("failed", 3)):
        started = gateway.call("POST", "/v1/pipelines/say-secret/runs", "developer",
                               json={"params": {"text": f"{SECRET} run param", "code": code}})  # fmt: skip
        assert started.status_code == 202, started.text
        runs[name] = started.json()["id"]
    deadline = time.monotonic() + 180  # for them all

    def settled(path: str, interval: float = 0.5) -> dict[str, Any]:
        return until(lambda: _json(gateway, path, "operator"), path, timeout=deadline - time.monotonic(),
                     ready=lambda state: state["status"] in ("succeeded", "failed"), interval=interval)  # fmt: skip

    for jid in jobs.values():
        settled(f"/v1/jobs/{jid}?wait=30", interval=0)  # a long poll
    for name, rid in runs.items():
        state = settled(f"/v1/runs/{rid}")
        assert state["status"] == name, state.get("error")
    return {"jobs": jobs, "runs": runs}


def _json(gateway: Gateway, path: str, who: str) -> dict[str, Any]:
    resp = gateway.call("GET", path, who)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_a_viewer_reads_a_jobs_metadata_not_its_result_or_error(gateway: Gateway, finished: dict[str, Any]) -> None:
    failed, result = finished["jobs"]["failed"], finished["jobs"]["result"]
    for path in (f"/v1/jobs/{failed}", f"/v1/jobs/{failed}?wait=1", f"/v1/jobs/{result}", "/v1/jobs?limit=10000"):
        text = gateway.call("GET", path, "viewer").text
        assert SECRET not in text, (path, text[:2000])
    job = _json(gateway, f"/v1/jobs/{failed}", "viewer")
    assert job["status"] == "failed" and job["owner"] == "developer-user"
    assert job["error"].startswith("RuntimeError (details withheld")  # that it failed, and the exception class
    kept = _json(gateway, f"/v1/jobs/{result}", "viewer")["result"]
    assert kept["encoding"] == "json" and kept["bytes"] > 0 and "value" not in kept
    for who in ("developer", "operator"):  # the owner and operators read the data
        assert SECRET in _json(gateway, f"/v1/jobs/{failed}", who)["error"]
        assert _json(gateway, f"/v1/jobs/{result}", who)["result"]["value"] == SECRET


def test_a_viewer_reads_a_runs_metadata_not_its_params_logs_or_errors(gateway: Gateway,
                                                                    finished: dict[str, Any]) -> None:  # fmt: skip
    ok, failed = finished["runs"]["succeeded"], finished["runs"]["failed"]
    for rid in (ok, failed):
        text = gateway.call("GET", f"/v1/runs/{rid}", "viewer").text
        assert SECRET not in text and "DEFAULT-TEXT" not in text, text[:2000]
    run = _json(gateway, f"/v1/runs/{ok}", "viewer")
    assert run["params"] == {"text": None, "code": None} and run["owner"] == "developer-user"
    assert run["steps"]["say"]["status"] == "succeeded" and run["steps"]["say"]["result"] is None
    assert run["outputs"] == {"out": f"runs/{ok}/out"}  # output refs are metadata
    assert {"params", "steps.say.result"} <= set(run["withheld"])
    broken = _json(gateway, f"/v1/runs/{failed}", "viewer")
    assert broken["error"].startswith("failed (details withheld") and "withheld" in broken["steps"]["say"]["error"]
    for who in ("developer", "operator"):
        mine = _json(gateway, f"/v1/runs/{ok}", who)
        assert mine["params"]["text"] == f"{SECRET} run param" and SECRET in mine["steps"]["say"]["result"]["log"]
        assert "withheld" not in mine and SECRET in _json(gateway, f"/v1/runs/{failed}", who)["error"]


def test_the_console_withholds_the_same_and_hides_anothers_run(gateway: Gateway, finished: dict[str, Any]) -> None:
    def signed_in(who: str) -> str:
        resp = httpx.post(f"{gateway.url}/ui/signin", data={"api_key": gateway.keys[who]}, follow_redirects=False,
                          timeout=60)  # fmt: skip
        assert resp.status_code == 303, resp.text
        return str(resp.cookies[COOKIE])

    viewer, other = signed_in("viewer"), signed_in("developer-b")
    try:
        failed_job, failed_run = finished["jobs"]["failed"], finished["runs"]["failed"]
        for path in (f"/ui/jobs/{failed_job}", "/ui/jobs", f"/ui/runs/{failed_run}", "/ui/runs"):
            page = httpx.get(gateway.url + path, cookies={COOKIE: viewer}, timeout=60)
            assert page.status_code == 200 and SECRET not in page.text, (path, page.text[-2000:])
        assert "RuntimeError (details withheld" in httpx.get(f"{gateway.url}/ui/jobs/{failed_job}",
                                                             cookies={COOKIE: viewer}, timeout=60).text  # fmt: skip
        # another developer's run: 404 as on the API (and as for a run that does not exist), not 403
        for rid in (failed_run, "say-secret-20000101-000000-0000"):
            page = httpx.get(f"{gateway.url}/ui/runs/{rid}", cookies={COOKIE: other}, timeout=60)
            assert page.status_code == 404 and f"run &#39;{rid}&#39; not found" in page.text, page.text[-2000:]
    finally:
        for cookie in (viewer, other):
            httpx.post(f"{gateway.url}/ui/signout", cookies={COOKIE: cookie}, timeout=60)


def test_a_viewers_event_stream_carries_no_error_texts(gateway: Gateway, finished: dict[str, Any]) -> None:
    failed_job, failed_run = finished["jobs"]["failed"], finished["runs"]["failed"]
    seen: dict[str, dict[str, Any]] = {}
    steps: dict[str, Any] = {}  # the failed run's steps as its events told them (each: what changed)
    headers = {"Authorization": f"Bearer {gateway.keys['viewer']}", "Last-Event-ID": "0"}  # from the oldest kept
    with httpx.stream("GET", f"{gateway.url}/v1/events?types=job,run&heartbeat=1", headers=headers,
                      timeout=30) as stream:  # fmt: skip
        deadline = time.monotonic() + 30
        for line in stream.iter_lines():
            if line.startswith("data: ") and '"type"' in line:
                event = json.loads(line[len("data: ") :])
                assert SECRET not in line, event
                seen[f"{event['type']} {event['subject']}"] = event
                if event["subject"] == f"run:{failed_run}":
                    steps |= event["data"].get("steps") or {}
            if {f"job.failed job:{failed_job}", f"run.failed run:{failed_run}"} <= set(seen):
                break
            assert time.monotonic() < deadline, sorted(seen)
    assert "withheld" in seen[f"job.failed job:{failed_job}"]["data"]["error"]
    assert "withheld" in steps["say"]["error"]


def test_event_data_is_withheld_by_ownership() -> None:
    from mnemos.relay.event_stream import for_reader
    from mnemos.soul.identity import Principal

    job = {"type": "job.failed", "subject": "job:j-1", "owner": "alice", "id": 7,
           "data": {"id": "j-1", "status": "failed", "error": f"RuntimeError: {SECRET}"}}  # fmt: skip
    step = {"status": "failed", "error": f"step 's': script exited with 3:\n{SECRET}"}
    run = {"type": "run.failed", "subject": "run:r-1", "owner": "alice", "id": 8,
           "data": {"id": "r-1", "status": "failed", "steps": {"s": step}}}  # fmt: skip
    viewer = Principal("vic", "viewer", "apikey")
    error = for_reader(job, viewer)["data"]["error"]
    assert error == "RuntimeError (details withheld: only the owner and operators read them)"
    shown = for_reader(run, viewer)["data"]
    assert SECRET not in json.dumps(shown) and shown["steps"]["s"]["status"] == "failed"
    for reader in (Principal("alice", "viewer", "apikey"), Principal("olga", "operator", "apikey"), None):
        assert for_reader(job, reader) is job and for_reader(run, reader) is run
    resource = {"type": "resource.created", "subject": "Model/m", "data": {"error": "x"}}
    assert for_reader(resource, viewer) is resource
