"""What a notebook on the gateway (``mnemos.connect(url, api_key=…)``) does as the embedded client
does: run handles that read outputs (``GET /v1/runs/{id}/outputs/{output}``, owner-only data),
``jobs.submit_many/wait/results``, one-line errors for results JSON cannot carry, ``GET /v1/runs``
without a pipeline (and ``mnemos runs list``), and run ids that cannot name a run answered 404."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests_support import REPO

import mnemos
from mnemos.errors import BadRequestError, NotFoundError, PermissionDeniedError
from mnemos.remote import RemoteRunHandle


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keys(frontdoor: Any) -> dict[str, str]:
    """The package's keys and a second developer's."""
    body = {"name": "dev-two", "role": "developer", "apiKey": True}
    minted = httpx.post(f"{frontdoor.url}/v1/tokens", json=body, headers=_headers(frontdoor.keys["admin"]), timeout=60)
    assert minted.status_code == 201, minted.text
    return {**frontdoor.keys, "developer2": minted.json()["apiKey"]}


@pytest.fixture(scope="module")
def dev_run(frontdoor: Any) -> Iterator[RemoteRunHandle]:
    """A run of ``greet`` started and waited for by a developer, through the remote client."""
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"]) as client:
        handle = client.pipelines.run("greet", {"text": "from a notebook"}, timeout=240)
        yield handle


def test_a_remote_run_is_a_handle_that_reads_its_outputs(dev_run: RemoteRunHandle) -> None:
    assert isinstance(dev_run, RemoteRunHandle)
    assert dev_run.status() == "succeeded" and dev_run["status"] == "succeeded"  # the state's fields, as before
    assert dev_run.outputs() == {"out": f"runs/{dev_run.id}/out"}
    assert dev_run.read("out") == b"from a notebook"
    assert dev_run.wait(5)["status"] == "succeeded"
    assert dev_run.lineage()["nodes"]
    with pytest.raises(NotFoundError, match="no output 'nope'"):  # the gateway's 404, as it answers it
        dev_run.read("nope")


def test_an_outputs_bytes_are_its_runs_data(frontdoor: Any, keys: dict[str, str], dev_run: RemoteRunHandle) -> None:
    path = f"{frontdoor.url}/v1/runs/{dev_run.id}/outputs/out"
    for who in ("developer", "operator", "admin"):  # the owner, operators and admins
        got = httpx.get(path, headers=_headers(keys[who]), timeout=60)
        assert got.status_code == 200, (who, got.text)
        assert got.content == b"from a notebook" and got.headers["content-type"] == "application/octet-stream"
        assert got.headers["x-mnemos-digest"] == "sha256:" + hashlib.sha256(got.content).hexdigest()
    other = httpx.get(path, headers=_headers(keys["developer2"]), timeout=60)  # another developer: no such run
    assert other.status_code == 404 and other.json()["error"]["param"] == "run_id", other.text
    viewer = httpx.get(path, headers=_headers(keys["viewer"]), timeout=60)  # sees the run, not its data
    assert viewer.status_code == 403 and viewer.json()["error"]["param"] == "role", viewer.text
    assert httpx.get(f"{frontdoor.url}/v1/runs/{dev_run.id}", headers=_headers(keys["viewer"]), timeout=60).is_success
    for nope in (f"{path}-nope", f"{path}/deeper", f"{path}%2Fdeeper"):  # a '/' in the name: this route's 404 too
        missing = httpx.get(nope, headers=_headers(keys["developer"]), timeout=60)
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "output", missing.text
    assert httpx.get(path, timeout=60).status_code == 401
    with mnemos.connect(frontdoor.url, api_key=keys["viewer"]) as viewer_client, pytest.raises(PermissionDeniedError):
        viewer_client.pipelines.get(dev_run.id).read("out")
    with mnemos.connect(frontdoor.url, api_key=keys["developer2"]) as stranger, pytest.raises(NotFoundError):
        stranger.pipelines.get(dev_run.id)


@pytest.mark.parametrize("tail", ["", "/cancel", "/resume", "/outputs/out"])
def test_a_run_id_that_cannot_name_a_run_is_404(frontdoor: Any, dev_run: RemoteRunHandle, tail: str) -> None:
    """Over-long ids (past the 255 bytes a file name holds) and ids with characters no run id has are
    unknown runs, never a 500 or an ENGRAM key error (``dev_run`` made ``runs/`` exist)."""
    method = "GET" if tail in ("", "/outputs/out") else "POST"
    for run_id in ("a" * 255, "a" * 256, "r" * 300, "x" * 5000, "%2e%2e", "a%00b", "a%5Cb", "a%20b", ".hidden"):
        answer = httpx.request(method, f"{frontdoor.url}/v1/runs/{run_id}{tail}",
                               headers=_headers(frontdoor.keys["admin"]), timeout=60)  # fmt: skip
        assert answer.status_code == 404, (run_id[:20], len(run_id), answer.status_code, answer.text[:300])
        error = answer.json()["error"]
        assert error["param"] == "run_id" and error["code"] == "not_found" and len(error["message"]) < 300, error


def test_runs_are_listed_without_naming_a_pipeline(frontdoor: Any, keys: dict[str, str],
                                                    dev_run: RemoteRunHandle) -> None:  # fmt: skip
    with mnemos.connect(frontdoor.url, api_key=keys["developer"]) as owner:
        mine = owner.pipelines.list()
        assert dev_run.id in [r["id"] for r in mine]
        assert {r["owner"] for r in mine} == {"developer-user"}
        assert [r["id"] for r in owner.pipelines.list("greet", limit=1)] == [mine[0]["id"]]
    with mnemos.connect(frontdoor.url, api_key=keys["developer2"]) as stranger:
        assert dev_run.id not in [r["id"] for r in stranger.pipelines.list()]
    with mnemos.connect(frontdoor.url, api_key=keys["viewer"]) as viewer:
        seen = viewer.pipelines.list(limit=1000)
        assert dev_run.id in [r["id"] for r in seen] and all("params" not in r for r in seen)
    for query, param in (({"limit": 0}, "limit"), ({"pipeline": "Not_A_Name"}, "pipeline")):
        bad = httpx.get(f"{frontdoor.url}/v1/runs", params=query, headers=_headers(keys["viewer"]), timeout=60)
        assert bad.status_code == 422 and bad.json()["error"]["param"] == param, bad.text


def test_the_cli_lists_runs_over_the_gateway_without_a_pipeline(frontdoor: Any, dev_run: RemoteRunHandle,
                                                                tmp_path: Path) -> None:  # fmt: skip
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MNEMOS_HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "MNEMOS_URL": frontdoor.url, "MNEMOS_API_KEY": frontdoor.keys["developer"]}  # fmt: skip
    listed = subprocess.run([sys.executable, "-m", "mnemos", "runs", "list", "-o", "json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert dev_run.id in [r["id"] for r in json.loads(listed.stdout)]


def test_remote_jobs_submit_many_wait_and_results(frontdoor: Any) -> None:
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
        handles = operator.jobs.submit_many("mnemos.cortex.testing:add", [(1, 2), (3, 4), (5, 6)], priority=1)
        assert len({h.id for h in handles}) == 3
        assert operator.jobs.results(handles, timeout=120) == [3, 7, 11]
        assert [v["status"] for v in operator.jobs.wait([h.id for h in handles], timeout=60)] == ["succeeded"] * 3


def test_a_result_json_cannot_carry_is_a_one_line_error_saying_what_to_do(frontdoor: Any) -> None:
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
        job = operator.jobs.submit("mnemos.cortex.testing:big", 16)  # returns bytes: stored as a pickle
        with pytest.raises(BadRequestError) as err:
            job.result(timeout=120)
        with pytest.raises(BadRequestError):
            operator.jobs.results([job], timeout=60)
    message = str(err.value)
    assert "\n" not in message and err.value.param == "result", message
    assert message.startswith(f"job {job.id}: ") and "pickle" in message
    assert "return JSON-serializable values" in message and "embedded client" in message
