"""What a ``POST /v1/jobs`` body may ask for, as the probe tried it: a ``timeout`` past any clock
(``1e300``), an empty label key, and labels under a MNEMOS domain (``synkron.mnemos.dev/run``, which
SYNKRON sets on the step jobs of a run); refused before CORTEX is asked, published in the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cortex_support import NoCortex, jobs_routes
from fastapi.testclient import TestClient

from mnemos.cortex.http import FunctionCatalog, JobCall, build_router, job_spec
from mnemos.cortex.job import MAX_JOB_TIMEOUT_S, MAX_SUBMITTED_LABELS, JobSubmission

T = "mnemos.cortex.testing"


@pytest.fixture()
def http() -> Iterator[TestClient]:
    with jobs_routes(NoCortex(), build_router()) as client:
        yield client


def _refused(http: TestClient, param: str, **body: Any) -> str:
    resp = http.post("/v1/jobs", json={"function": f"{T}:add", "args": [1, 2], **body})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["param"] == param, error
    return str(error["message"])


def test_a_timeout_is_at_most_thirty_days(http: TestClient) -> None:
    for timeout, shown in ((1e300, "1e+300 s"), (MAX_JOB_TIMEOUT_S + 1, "2592001s"), ("31d", "31d"), ("745h", "745h")):
        assert _refused(http, "timeout", timeout=timeout).endswith(f"must be at most 30d (2592000 s), not {shown}")
    assert job_spec(JobCall(function=f"{T}:add", timeout="30d"), None, FunctionCatalog()).timeout == MAX_JOB_TIMEOUT_S


@pytest.mark.parametrize("key", ["", "/run", "-x", "x-", "a b", "x" * 64, "Example.com/x", "a/b/c", "team/",
                                 "mnemos.dev/team", "synkron.mnemos.dev/run", "cortex.mnemos.dev/x",
                                 "a.b.mnemos.dev/y"])  # fmt: skip
def test_label_keys_are_kubernetes_keys_outside_mnemos_domains(http: TestClient, key: str) -> None:
    _refused(http, f"labels.{key}", labels={key: "v"})


def test_label_values_are_bounded_and_ordinary_labels_pass(http: TestClient) -> None:
    _refused(http, "labels.team", labels={"team": "x" * 64})
    labels = {"team": "web", "example.com/stage": "x" * 63, "notmnemos.dev/a": "", "mnemos.dev.example/b": "c",
              "A_b.c-9": "d"}  # fmt: skip
    submission = job_spec(JobCall(function=f"{T}:add", labels=labels), None, FunctionCatalog())
    assert submission.labels == labels


def test_a_job_carries_at_most_64_labels_and_its_selector_64(http: TestClient) -> None:
    """A 1 MB body of tiny labels was kept with the job, journaled and listed: 64 labels (and 64 selector
    labels) are the bound, the team label MNEMOS adds on top allowed."""
    many = {f"k{i}": "v" for i in range(MAX_SUBMITTED_LABELS + 1)}
    assert _refused(http, "labels", labels=many) == "labels: at most 64 labels, not 65"
    assert "at most 64" in _refused(http, "resources.selector", resources={"selector": many})
    most = {f"k{i}": "v" for i in range(MAX_SUBMITTED_LABELS)}
    team = type("P", (), {"team": "web", "role": "developer", "subject": "dev"})()
    submission = job_spec(JobCall(function=f"{T}:add", labels=most, resources={"selector": most}), team,
                          FunctionCatalog())  # fmt: skip
    assert len(submission.labels) == MAX_SUBMITTED_LABELS + 1 and submission.resources.selector == most


def test_mnemos_sets_its_own_labels_through_the_python_api() -> None:
    # SYNKRON's step jobs and the gateway's team label go through JobSubmission, not the HTTP body
    labels = {"synkron.mnemos.dev/run": "r" * 63, "synkron.mnemos.dev/step": "say", "mnemos.dev/team": "a@b:c" * 20}
    submission = JobSubmission.model_validate({"function": f"{T}:add", "labels": labels, "timeout": 3600})
    assert submission.labels == labels


def test_the_published_schema_states_the_bounds(http: TestClient) -> None:
    op = http.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["timeout"]["anyOf"][0]["maximum"] == MAX_JOB_TIMEOUT_S
    labels = schema["properties"]["labels"]
    assert labels["additionalProperties"] == {"type": "string", "maxLength": 63}
    assert labels["maxProperties"] == MAX_SUBMITTED_LABELS
    assert "mnemos" in labels["propertyNames"]["not"]["pattern"] and labels["propertyNames"]["pattern"]
