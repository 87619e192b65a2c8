"""What a refusal echoes: a job id of any length is cut (with an ellipsis), never echoed whole, and so
are the selector and pool an admission refusal names; a job that names a declared pool is told what
that pool lacks, not that the other pools are not it; a job id that is no string is a ValidationError
(retry too); another's job id, even archived, is not taken over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cortex_support import PrivateCortex, T
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mnemos.config import PoolConfig
from mnemos.cortex.admission import check_resources
from mnemos.cortex.http import cortex_handle
from mnemos.cortex.job import Job
from mnemos.engram import Engram
from mnemos.errors import AdmissionError, NotFoundError, ValidationError
from mnemos.neuron.pools import PoolSet

CPU = PoolConfig(name="cpu-a", selector={"accelerator": "cpu"}, size=2, num_cpus=1)
GPU = PoolConfig(name="gpu-a", selector={"accelerator": "nvidia"}, size=1, num_cpus=0, num_gpus=1)


def _cut(message: str, job_id: str) -> None:
    assert job_id not in message and f"'{job_id[:80]}'…" in message and len(message) < 120, message


@pytest.mark.parametrize("length", [129, 5000])  # no job id is longer than 128: 404 before CORTEX is asked
def test_a_long_job_id_is_cut_in_the_404_of_every_route(http: TestClient, length: int) -> None:
    job_id = "a" * length
    for method, path in (("GET", ""), ("GET", "/logs"), ("DELETE", ""), ("POST", "/retry")):
        response = http.request(method, f"/v1/jobs/{job_id}{path}")
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["param"] == "id" and error["code"] == "not_found"
        _cut(error["message"], job_id)


def test_an_id_that_could_be_a_job_is_cut_where_cortex_answers(http: TestClient, client: Any) -> None:
    job_id = "b" * 128  # the longest id a job may have: CORTEX itself says it is not there
    response = http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404, response.text
    _cut(response.json()["error"]["message"], job_id)
    for long in (job_id, "c" * 5000):  # the Python client (and the CLI beside the cluster) asks CORTEX directly
        for call in (client.jobs.get, client.jobs.logs, client.jobs.cancel, client.jobs.retry):
            with pytest.raises(NotFoundError) as refused:
                call(long)
            _cut(str(refused.value), long)


def _refusal(pools: PoolSet, **resources: Any) -> AdmissionError:
    with pytest.raises(AdmissionError) as refused:
        check_resources(Job(id="j", queue="default", function="m:f", resources=resources), pools)
    return refused.value


def test_a_job_that_names_a_declared_pool_is_told_what_that_pool_lacks(local_engram: Engram) -> None:
    pools = PoolSet([CPU, GPU], local_engram, 1024)
    refused = _refusal(pools, pool="cpu-a", selector={"accelerator": "nvidia"})
    assert refused.param == "resources.selector"
    assert "asks for selector accelerator=nvidia and pool 'cpu-a' does not offer it (cpu-a: selector)" in str(refused)
    refused = _refusal(pools, pool="cpu-a", gpus=1)
    assert refused.param == "resources.gpus" and "asks for 1 GPU and pool 'cpu-a' does not offer it" in str(refused)
    refused = _refusal(pools, pool="gpu-a", cpus=2)
    assert refused.param == "resources.cpus" and "2 CPUs per worker and pool 'gpu-a'" in str(refused)
    # as before: a pool that is not declared, and a request no pool fits, name every pool
    refused = _refusal(pools, pool="nope")
    assert refused.param == "resources.pool"
    assert "asks for pool 'nope' and no declared pool offers it (cpu-a: pool; gpu-a: pool)" in str(refused)
    refused = _refusal(pools, selector={"accelerator": "tpu"})
    assert refused.param == "resources.selector" and "(cpu-a: selector; gpu-a: selector)" in str(refused)


def test_a_refusal_cuts_the_selector_and_pool_it_echoes(local_engram: Engram) -> None:
    """Neither is bounded in a body (up to relay.maxBodyBytes): the 403 once echoed 300 KB."""
    pools = PoolSet([CPU, GPU], local_engram, 1024)
    for resources in ({"selector": {"x": "y" * 300_000}}, {"selector": {f"k{i}": "v" for i in range(20_000)}},
                      {"pool": "p" * 100_000}):  # fmt: skip
        message = str(_refusal(pools, **resources))
        assert len(message) < 400 and "characters)" in message, message[:500]


def test_a_job_id_that_is_no_string_is_refused_naming_job_id_and_cut(client: Any) -> None:
    for call in (client.jobs.get, client.jobs.logs, client.jobs.cancel, client.jobs.retry):
        for bad in (123, ["x" * 5000]):
            with pytest.raises(ValidationError) as refused:
                call(bad)
            assert refused.value.param == "job_id" and len(str(refused.value)) < 200, str(refused.value)[:300]


def test_the_id_of_anothers_job_that_left_memory_is_not_taken_over(
    ray_cluster: None, cortex_settings: Any, tmp_path: Path
) -> None:
    """An id is an idempotency key while its job is in memory; after that the archive still answers
    for the job, so a job of another owner submitted under its id would have hidden it (and taken
    its lineage node ``job:<id>``). Over HTTP that is a 409, as while the job is in memory."""
    from fastapi import Header

    from mnemos.cortex.http import build_router
    from mnemos.soul.identity import Principal

    cortex = PrivateCortex(tmp_path, cortex_settings, retention=0)

    async def who(x_who: str = Header()) -> Principal:
        return Principal(x_who, "admin", "apikey")

    app = FastAPI()
    app.include_router(build_router(auth=who, settings=cortex_settings))
    app.dependency_overrides[cortex_handle] = lambda: cortex.actor
    body = {"function": f"{T}:add", "args": [1, 2], "id": "alices-job"}
    try:
        with TestClient(app) as http:
            assert http.post("/v1/jobs", json=body, headers={"x-who": "alice"}).status_code == 200
            done = http.get("/v1/jobs/alices-job", params={"wait": 60}, headers={"x-who": "alice"}).json()
            assert done["result"]["value"] == 3
            cortex.call("checkpoint")
            assert cortex.call("stats")["memory"]["jobs"] == 0  # it left memory: the archive holds it
            taken = http.post("/v1/jobs", json={**body, "args": [5, 5]}, headers={"x-who": "bob"})
            assert taken.status_code == 409 and taken.json()["error"]["param"] == "id", taken.text
            again = http.get("/v1/jobs/alices-job", headers={"x-who": "alice"}).json()
            assert (again["owner"], again["result"]["value"]) == ("alice", 3)
    finally:
        cortex.close()


def test_an_empty_job_name_is_refused_naming_it(http: TestClient) -> None:
    """``"name": ""`` replaced the Function's name: the job showed a blank NAME in ``mnemos jobs list``."""
    refused = http.post("/v1/jobs", json={"function": "mnemos.cortex.testing:add", "args": [1, 2], "name": ""})
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "name", refused.text
