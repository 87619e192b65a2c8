"""`POST /v1/pipelines/{name}/runs` and `GET /v1/runs/{id}`: the router the gateway includes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient


@pytest.fixture()
def http(client: Any, package_settings: Any) -> TestClient:
    from mnemos.synkron.http import build_router

    app = FastAPI()
    app.include_router(build_router(settings=package_settings))
    return TestClient(app)


def test_start_and_follow_a_run_over_http(http: TestClient, client: Any, pipelines, tmp_path: Path) -> None:
    # A registered pipeline has no folder of its own: its steps call importable functions.
    (tmp_path / "prompts.txt").write_text("".join(f"prompt {i}\n" for i in range(9)))
    path = pipelines.write(
        [
            {
                "name": "make",
                "call": "mnemos.synkron.steps:prepare_prompts",
                "params": {"source": str(tmp_path / "prompts.txt"), "limit": "${count}"},
                "outputs": [{"name": "items"}],
            }
        ],
        params={"count": 1},
    )
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    client.apply(path)
    started = http.post(f"/v1/pipelines/{name}/runs", json={"params": {"count": 4}})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.json()["pipeline"] == {"name": name, "generation": 1}
    client.pipelines.get(run_id).wait(timeout=300)
    state = http.get(f"/v1/runs/{run_id}").json()
    assert state["status"] == "succeeded" and state["outputs"] == {"items": f"runs/{run_id}/items"}
    assert state["params"] == {"count": 4}
    assert len(client.pipelines.get(run_id).read("items").decode().splitlines()) == 4
    listed = http.get(f"/v1/pipelines/{name}/runs").json()
    assert listed["object"] == "list" and listed["data"][0]["id"] == run_id
    cancel = http.post(f"/v1/runs/{run_id}/cancel")
    assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "conflict"
    resume = http.post(f"/v1/runs/{run_id}/resume")
    assert resume.status_code == 409 and "nothing to resume" in resume.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/pipelines/absent/runs", {}, 404, None),
        ("/v1/pipelines/absent/runs", {"params": 3}, 422, "params"),
        ("/v1/pipelines/absent/runs", {"parms": {}}, 422, "parms"),
        ("/v1/pipelines/absent/runs", b"{not json", 400, None),
        ("/v1/pipelines/%2e%2e/runs", {}, 422, "name"),  # named as the path's name, not a registry key
        ("/v1/pipelines/a%5Cb/runs", {}, 422, "name"),
        ("/v1/pipelines/Upper/runs", {}, 422, "name"),
    ],
)
def test_bad_requests_are_openai_errors(http: TestClient, path: str, body: Any, status: int, field: str | None) -> None:
    as_json = {"content-type": "application/json"}
    response = http.post(path, content=body, headers=as_json) if isinstance(body, bytes) else http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["param"] == field if field else error["message"]
    assert http.get("/v1/runs/no-such-run").status_code == 404


def test_a_run_request_not_declared_as_json_is_415(http: TestClient) -> None:
    """A browser's form (text/plain) or `curl -d` (form-urlencoded) carrying JSON: 415 naming the header."""
    for declared in ("text/plain", "application/x-www-form-urlencoded"):
        response = http.post("/v1/pipelines/absent/runs", content=b"{}", headers={"content-type": declared})
        assert response.status_code == 415, response.text
        assert response.json()["error"]["param"] == "content-type"


def test_a_viewer_may_not_start_cancel_or_resume_runs(package_settings: Any) -> None:
    from mnemos.soul.identity import Principal
    from mnemos.synkron.http import build_router

    async def viewer() -> Principal:
        return Principal(subject="ann", role="viewer", kind="token")

    app = FastAPI()
    app.include_router(build_router(auth=viewer, settings=package_settings))
    http = TestClient(app)
    for path in ("/v1/pipelines/anything/runs", "/v1/runs/run-1/cancel", "/v1/runs/run-1/resume"):
        refused = http.post(path, json={})
        assert refused.status_code == 403, (path, refused.text)
        error = refused.json()["error"]
        assert "role 'viewer' may not 'submit'" in error["message"] and error["param"] == "role"


def test_a_pipelines_runs_are_its_own_not_those_of_pipelines_its_name_prefixes(tmp_path: Path) -> None:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.synkron import _state
    from mnemos.synkron.http import build_router

    settings = load_settings(engram={"uri": str(tmp_path / "engram")})
    engram = Engram.from_settings(settings)
    runs = {"text-gen": "text-gen-20260101-000000-aaaa",
            "text-gen-artifacts": "text-gen-artifacts-20260101-000001-bbbb"}  # fmt: skip
    for pipeline, run_id in runs.items():
        engram.write_json(_state.state_key(run_id), {"id": run_id, "pipeline": {"name": pipeline, "generation": 1},
                                                      "status": "succeeded", "principal": "ann", "created": 1.0,
                                                      "steps": {}})  # fmt: skip
    assert [s["id"] for s in _state.list_runs(engram, "text-gen")] == [runs["text-gen"]]
    assert [s["id"] for s in _state.list_runs(engram, "text-gen-artifacts")] == [runs["text-gen-artifacts"]]
    assert len(_state.list_runs(engram)) == 2
    app = FastAPI()
    app.include_router(build_router(settings=settings))
    listed = TestClient(app).get("/v1/pipelines/text-gen/runs")
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["data"]] == [runs["text-gen"]]


def test_a_param_given_as_text_json_cannot_carry_is_422_naming_it(http: TestClient, client: Any, pipelines) -> None:
    """A list or mapping param sent as YAML text is read as its type; text that YAML reads into what
    no run's params can hold (stored and shown as JSON) was a 500: a date, an infinity, bytes,
    nesting thousands deep, and aliases of aliases (a few hundred bytes standing for gigabytes of
    JSON, which held the gateway's replica). Each is 422 naming the param, at once."""
    import time

    path = pipelines.write([{"name": "say", "script": "echo ${tags} ${opts}"}], name="texts",
                           params={"tags": ["a"], "opts": {"k": "v"}})  # fmt: skip
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    client.apply(path)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]  # 10^12 items
    cases = {"tags": ["[2024-01-01]", "[.inf]", "[!!binary aGk=]", "[" * 20000 + "]" * 20000],
             "opts": ["{when: 2024-01-01 10:00:00}", "{" + ", ".join(levels) + "}", "{1: one}"]}  # fmt: skip
    for param, texts in cases.items():
        for text in texts:
            started = time.monotonic()
            refused = http.post(f"/v1/pipelines/{name}/runs", json={"params": {param: text}})
            assert refused.status_code == 422, (text[:80], refused.text)
            error = refused.json()["error"]
            assert error["param"] == f"params.{param}" and error["message"].startswith(f"param '{param}': "), error
            assert time.monotonic() - started < 10, text[:80]
    ok = http.post(f"/v1/pipelines/{name}/runs", json={"params": {"tags": "[b, '2024-01-01']", "opts": "{k: w}"}})
    assert ok.status_code == 202, ok.text
    assert ok.json()["params"] == {"tags": ["b", "2024-01-01"], "opts": {"k": "w"}}
    client.pipelines.get(ok.json()["id"]).wait(timeout=120)
