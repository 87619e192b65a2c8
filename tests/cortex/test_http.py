"""``/v1/jobs`` over HTTP: the router mounted in a plain FastAPI app, served by httpx's TestClient."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

T = "mnemos.cortex.testing"


def _error(response: Any, status: int, code: str, param: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    if param is not None:
        assert error["param"] == param
    return str(error["message"])


def test_submit_get_wait_list_and_logs(http: TestClient) -> None:
    created = http.post("/v1/jobs", json={"function": f"{T}:shout", "args": ["over http"], "priority": 3})
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["object"] == "job" and job["status"] in ("queued", "running", "succeeded") and job["priority"] == 3
    done = http.get(f"/v1/jobs/{job['id']}", params={"wait": 60}).json()
    assert done["status"] == "succeeded" and isinstance(done["result"]["value"], int)
    assert http.get(f"/v1/jobs/{job['id']}/logs").json()["logs"].startswith("over http\n")
    listed = http.get("/v1/jobs", params={"status": "succeeded", "limit": 5}).json()
    assert listed["object"] == "list" and job["id"] in {j["id"] for j in listed["data"]}
    add = http.post("/v1/jobs", json={"function": f"{T}:add", "kwargs": {"a": 2, "b": 3}, "labels": {"team": "web"}})
    assert http.get(f"/v1/jobs/{add.json()['id']}", params={"wait": 60}).json()["result"]["value"] == 5


def test_cancel_over_http(http: TestClient, tmp_path: Any) -> None:
    gate = tmp_path / "gate"
    job = http.post("/v1/jobs", json={"function": f"{T}:wait_for_file", "args": [str(gate)], "queue": "serial"}).json()
    cancelled = http.delete(f"/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    gate.touch()
    assert "already cancelled" in _error(http.delete(f"/v1/jobs/{job['id']}"), 409, "conflict", "id")


def test_errors_have_the_openai_shape(http: TestClient) -> None:
    assert "job 'nope' not found" in _error(http.get("/v1/jobs/nope"), 404, "not_found", "id")
    _error(
        http.post("/v1/jobs", json={"function": f"{T}:noop", "priority": "high"}), 422, "validation_error", "priority"
    )
    _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "retries": 2}), 422, "validation_error", "retries")
    _error(http.post("/v1/jobs", json={"args": [1]}), 422, "validation_error", "function")
    _error(http.post("/v1/jobs", json={"function": "no reference"}), 422, "validation_error", "function")
    _error(
        http.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}), 400, "bad_request"
    )
    job = b'{"function": "mnemos.cortex.testing:noop"}'
    for declared in ("text/plain", "application/x-www-form-urlencoded", None):  # a browser's form; curl -d; none
        headers = {"content-type": declared} if declared else {}
        message = _error(http.post("/v1/jobs", content=job, headers=headers), 415, "unsupported_media_type",
                         "content-type")  # fmt: skip
        assert "Content-Type: application/json" in message
    # Without authentication the caller is the local admin, who holds `execute`: a reference is
    # accepted and fails on the worker; the refusals for other roles are in tests/security/.
    assert "no registered Function named 'nope'" in _error(
        http.post("/v1/jobs", json={"function": "nope"}), 404, "not_found", "function"
    )
    refused = _error(
        http.post("/v1/jobs", json={"function": f"{T}:noop", "resources": {"gpus": 2}}), 403, "admission_refused"
    )
    assert "rule resources.gpus" in refused
    undeclared = _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "queue": "nope"}), 422,
                        "validation_error", "queue")  # fmt: skip
    assert "'nope' is not declared; declared queues: default, limited, serial, wraith" in undeclared
    assert "cortex.queues" in undeclared  # how to declare one
    # a queue nobody declared is a mistake, not an empty page
    assert undeclared == _error(http.get("/v1/jobs", params={"queue": "nope"}), 422, "validation_error", "queue")
    assert http.get("/v1/jobs", params={"queue": "serial"}).status_code == 200
    _error(http.get("/v1/jobs", params={"status": "weird"}), 422, "validation_error", "status")
    _error(http.get("/v1/jobs/x", params={"wait": 9999}), 422, "validation_error", "wait")


def test_the_body_has_json_types_as_published(http: TestClient) -> None:
    """What the published schema calls invalid is refused (strings for numbers, booleans for
    integers, a payload that is not base64), and what it calls valid is taken (an integral number
    such as 2.0 or 1e1 is an integer in JSON Schema; a pickled call's function is only its name)."""
    import base64

    from mnemos.neuron.codec import pickle_call

    _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "resources": {"gpus": "1"}}), 422,
           "validation_error", "resources.gpus")  # fmt: skip
    _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "priority": True}), 422, "validation_error",
           "priority")  # fmt: skip
    _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "maxAttempts": 1.5}), 422, "validation_error",
           "maxAttempts")  # fmt: skip
    _error(http.post("/v1/jobs", json={"function": f"{T}:noop\n"}), 422, "validation_error", "function")
    _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "id": "x\n"}), 422, "validation_error", "id")
    for bad in ("j7qOhoiD=", "not base64!", "", "AAAA\n"):
        message = _error(http.post("/v1/jobs", json={"function": "f", "payload": bad}), 422, "validation_error",
                         "payload")  # fmt: skip
        assert "not base64" in message
    _error(http.post("/v1/jobs", json=[{"function": f"{T}:noop"}]), 400, "bad_request")
    taken = http.post("/v1/jobs", json={"function": f"{T}:add", "kwargs": {"a": 2, "b": 3}, "maxAttempts": 2.0,
                                        "priority": 1e1})  # fmt: skip
    assert taken.status_code == 200, taken.text
    assert taken.json()["priority"] == 10 and isinstance(taken.json()["priority"], int)
    payload = base64.b64encode(pickle_call(max, (2, 3), {})).decode()
    pickled = http.post("/v1/jobs", json={"function": "tests:outer.<locals>.f", "payload": payload})
    assert pickled.status_code == 200, pickled.text
    assert pickled.json()["function"] == "tests:outer.<locals>.f"
    assert http.get(f"/v1/jobs/{pickled.json()['id']}", params={"wait": 60}).json()["result"]["value"] == 3


def test_an_unknown_function_fails_the_job_without_retries(http: TestClient) -> None:
    job = http.post("/v1/jobs", json={"function": f"{T}:not_there", "maxAttempts": 3}).json()
    done = http.get(f"/v1/jobs/{job['id']}", params={"wait": 60}).json()
    assert done["status"] == "failed" and done["attempts"] == 1  # retrying would not help
    assert "has no attribute 'not_there'" in done["error"]


def test_a_registered_function_is_called_by_name(http: TestClient, cortex_settings: Any) -> None:
    from mnemos.engram import Engram
    from mnemos.genome import Registry, parse_resource

    Registry(Engram.from_settings(cortex_settings)).apply(parse_resource({
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": "adder"},
        "spec": {"entrypoint": f"{T}:add", "queue": "limited", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"], "additionalProperties": False}},
    }))  # fmt: skip
    job = http.post("/v1/jobs", json={"function": "adder", "kwargs": {"a": 2, "b": 40}}).json()
    assert job["function"] == f"{T}:add" and job["queue"] == "limited" and job["name"] == "adder"
    assert http.get(f"/v1/jobs/{job['id']}", params={"wait": 60}).json()["result"]["value"] == 42
    assert "kwargs.a" in _error(
        http.post("/v1/jobs", json={"function": "adder", "kwargs": {"a": "2", "b": 1}}), 422, "validation_error",
        "kwargs.a",
    )
    _error(http.post("/v1/jobs", json={"function": "adder", "kwargs": {"a": 1, "b": 2, "c": 3}}), 422,
           "validation_error", "kwargs")  # fmt: skip
    _error(http.post("/v1/jobs", json={"function": "adder", "args": [1, 2]}), 422, "validation_error", "args")


def test_priority_and_max_attempts_are_bounded(http: TestClient) -> None:
    """What a probe sent (priority 1e12, maxAttempts 1e6) is a 422 naming the field and its range."""
    for body, param, words in (({"priority": 1e12}, "priority", "between -1000 and 1000"),
                               ({"priority": -1001}, "priority", "between -1000 and 1000"),
                               ({"maxAttempts": 1e6}, "maxAttempts", "between 1 and 20"),
                               ({"maxAttempts": 0}, "maxAttempts", "between 1 and 20")):  # fmt: skip
        message = _error(http.post("/v1/jobs", json={"function": f"{T}:noop", **body}), 422, "validation_error", param)
        assert words in message, message
    schema = http.app.openapi()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert (schema["properties"]["priority"]["minimum"], schema["properties"]["priority"]["maximum"]) == (-1000, 1000)
    assert schema["properties"]["maxAttempts"]["maximum"] == 20
    # the local admin may use the whole range (priorities above 100 are operators' and admins')
    taken = http.post("/v1/jobs", json={"function": f"{T}:noop", "priority": 1000, "maxAttempts": 20})
    assert taken.status_code == 200 and taken.json()["maxAttempts"] == 20, taken.text


def test_parents_must_exist(http: TestClient) -> None:
    """A parent is a lineage node that exists: a job CORTEX knows, a run or artifact lineage holds."""
    message = _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "parents": ["job:no-such-job"]}), 404,
                     "not_found", "parents[0]")  # fmt: skip
    assert "'job:no-such-job'" in message
    parent = http.post("/v1/jobs", json={"function": f"{T}:add", "args": [1, 2]}).json()
    for parents, status, param in ((["run:no-such-run"], 404, "parents[1]"),
                                   ([f"artifact:sha256:{'0' * 64}"], 404, "parents[1]"),
                                   (["not a node"], 422, "parents[1]"),
                                   (["job:"], 422, "parents[1]")):  # fmt: skip
        body = {"function": f"{T}:noop", "parents": [f"job:{parent['id']}", *parents]}
        _error(http.post("/v1/jobs", json=body), status, "not_found" if status == 404 else "validation_error", param)
    _error(http.post("/v1/jobs", json={"function": f"{T}:noop", "parents": ["job:x"] * 33}), 422, "validation_error",
           "parents")  # fmt: skip
    child = http.post("/v1/jobs", json={"function": f"{T}:noop", "parents": [f"job:{parent['id']}"]})
    assert child.status_code == 200, child.text
    assert http.get(f"/v1/jobs/{child.json()['id']}", params={"wait": 60}).json()["status"] == "succeeded"


def test_listing_pages_with_a_cursor(http: TestClient) -> None:
    """``limit`` and ``after`` page through every job, newest first, each once; ``has_more`` ends it."""
    ids = [http.post("/v1/jobs", json={"function": f"{T}:noop", "queue": "limited"}).json()["id"] for _ in range(5)]
    first = http.get("/v1/jobs", params={"queue": "limited", "limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True and len(first["data"]) == 2
    assert (first["first_id"], first["last_id"]) == (first["data"][0]["id"], first["data"][-1]["id"])
    seen, page = [], first
    while True:
        seen += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            break
        page = http.get("/v1/jobs", params={"queue": "limited", "limit": 2, "after": page["last_id"]}).json()
    assert len(seen) == len(set(seen)) and seen[:5] == ids[::-1]  # newest first, none twice
    every = http.get("/v1/jobs", params={"queue": "limited", "limit": 10_000}).json()
    assert [j["id"] for j in every["data"]] == seen and every["has_more"] is False
    last = http.get("/v1/jobs", params={"queue": "limited", "after": seen[-1]}).json()
    assert last == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    _error(http.get("/v1/jobs", params={"after": "no-such-job"}), 404, "not_found", "after")
    _error(http.get("/v1/jobs", params={"after": "bad id!"}), 422, "validation_error", "after")
