"""A run's params named like credentials (``hf_token``, ``db_password`` …) are masked wherever the
run is shown, as lineage masks them; the step that needs one still gets its value.

A developer's run with ``-p hf_token=…`` showed the token in clear to every operator reading
``GET /v1/runs/{id}`` (and in the answer to an operator's cancel), and in the script's output kept
in the step's result and its job's log."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from mnemos.soul.identity import Principal

TOKEN = "hf_Zq7SECRETvalue0123456789"
PEOPLE = {
    "dev": Principal("dana", "developer", "apikey", credential_id="k-dana"),
    "op": Principal("opal", "operator", "apikey", credential_id="k-opal"),
}


@pytest.fixture()
def http(client: Any, package_settings: Any) -> TestClient:
    from mnemos.synkron.http import build_router

    async def who(request: Request) -> Principal:
        return PEOPLE[request.headers["x-who"]]

    app = FastAPI()
    app.include_router(build_router(auth=who, settings=package_settings))
    return TestClient(app)


def test_credential_params_are_masked_for_the_owner_and_operators_but_reach_the_step(
    http: TestClient, client: Any, pipelines
) -> None:
    path = pipelines.write(
        [
            {
                "name": "fetch",
                "script": 'echo "using token $TOK for $REPO"; printf %s "$TOK" > "$MNEMOS_OUTPUT_SEEN"',
                "env": [{"name": "TOK", "value": "${hf_token}"}, {"name": "REPO", "value": "${repo}"}],
                "outputs": [{"name": "seen"}],
            }
        ],
        name="secret",
        params={"hf_token": "", "repo": "org/model", "db": {"db_password": "", "host": "db1"}},
    )
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    client.apply(path)
    params = {"hf_token": TOKEN, "repo": "org/model", "db": {"db_password": "pw-" + TOKEN[::-1], "host": "db1"}}
    started = http.post(f"/v1/pipelines/{name}/runs", json={"params": params}, headers={"x-who": "dev"})
    assert started.status_code == 202, started.text
    assert TOKEN not in started.text and started.json()["params"]["hf_token"] == "***"
    run_id = started.json()["id"]
    final = client.pipelines.get(run_id).wait(timeout=300)
    assert final["status"] == "succeeded", final["error"]
    assert client.pipelines.get(run_id).read("seen").decode() == TOKEN  # the step got the real value

    for who in ("dev", "op"):  # the owner and an operator
        shown = http.get(f"/v1/runs/{run_id}", headers={"x-who": who})
        assert shown.status_code == 200, shown.text
        assert TOKEN not in shown.text and TOKEN[::-1] not in shown.text, who
        body = shown.json()
        assert body["params"] == {"hf_token": "***", "repo": "org/model", "db": {"db_password": "***", "host": "db1"}}
        assert body["doc"]["spec"]["params"]["repo"] == "org/model"
        assert "using token *** for org/model" in body["steps"]["fetch"]["result"]["log"]  # the script's output
    job_id = final["steps"]["fetch"]["job_ids"][-1]
    log = client.jobs.get(job_id).logs()
    assert "using token *** for org/model" in log and TOKEN not in log
