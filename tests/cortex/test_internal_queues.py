"""The platform's own queues are not developers': what a probe sent, ``POST /v1/jobs {"function":
"shout", "queue": "wraith"}`` as a developer, was queued on WRAITH's maintenance queue (200). A job
that would go to an internal queue, named in the body or by its Function, is 403 naming ``queue``
unless an operator or admin submits it (no cluster: ``job_spec`` and the router before CORTEX)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from cortex_support import NoCortex, jobs_routes
from fastapi.testclient import TestClient

from mnemos.cortex.http import INTERNAL_QUEUES, JobCall, build_router, job_spec
from mnemos.errors import PermissionDeniedError
from mnemos.genome import parse_resource

T = "mnemos.cortex.testing"


def _who(role: str) -> Any:
    return SimpleNamespace(subject=f"{role}-user", role=role, team="", scopes=())


class _Catalog:
    """Registered Functions, as ``FunctionCatalog.get`` answers them."""

    def __init__(self, *functions: Any) -> None:
        self.functions = {f.name: f for f in functions}

    def get(self, name: str) -> Any:
        return self.functions[name]


def _function(name: str, queue: str = "default") -> Any:
    return parse_resource({
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": name},
        "spec": {"entrypoint": f"{T}:shout", "queue": queue, "parameters": {
            "type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": False}},
    })  # fmt: skip


CATALOG = _Catalog(_function("shout"), _function("maintain", queue="wraith"))


def test_wraiths_queue_is_internal() -> None:
    from mnemos.wraith.scheduler import QUEUE

    assert QUEUE in INTERNAL_QUEUES


def test_a_developer_may_not_name_an_internal_queue() -> None:
    call = JobCall(function="shout", kwargs={"text": "hi"}, queue="wraith")
    with pytest.raises(PermissionDeniedError) as refused:
        job_spec(call, _who("developer"), CATALOG)
    assert refused.value.param == "queue" and refused.value.status == 403
    assert "'wraith' is internal" in refused.value.message and "operators and admins" in refused.value.message
    for who in (_who("operator"), _who("admin"), None):  # None: authentication off, the local admin
        assert job_spec(call, who, CATALOG).queue == "wraith"
    # a developer's job on a queue of its own choosing, or its Function's, goes on
    assert job_spec(JobCall(function="shout", kwargs={"text": "hi"}), _who("developer"), CATALOG).queue == "default"
    ordinary = JobCall(function="shout", kwargs={"text": "hi"}, queue="limited")
    assert job_spec(ordinary, _who("developer"), CATALOG).queue == "limited"


def test_a_function_on_an_internal_queue_is_for_operators_only() -> None:
    call = JobCall(function="maintain", kwargs={"text": "hi"})
    with pytest.raises(PermissionDeniedError) as refused:
        job_spec(call, _who("developer"), CATALOG)
    assert refused.value.param == "queue" and "function 'maintain' runs on queue 'wraith'" in refused.value.message
    assert job_spec(call, _who("operator"), CATALOG).queue == "wraith"
    # naming another queue moves the developer's call off it
    moved = JobCall(function="maintain", kwargs={"text": "hi"}, queue="default")
    assert job_spec(moved, _who("developer"), CATALOG).queue == "default"


@pytest.fixture()
def http() -> Iterator[TestClient]:
    async def developer() -> Any:
        return _who("developer")

    with jobs_routes(NoCortex(), build_router(auth=developer)) as client:
        yield client


def test_over_http_an_internal_queue_is_403_naming_queue(http: TestClient) -> None:
    resp = http.post("/v1/jobs", json={"function": "shout", "kwargs": {"text": "hi"}, "queue": "wraith"})
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["param"] == "queue" and error["type"] == "permission_error", error
    assert "internal" in error["message"]
    responses = http.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["responses"]
    assert "internal queue" in responses["403"]["description"]
