"""What the gateway answers a remote notebook for a queue nobody declared (422 naming ``queue``, not
an empty page or a 404), and what ``RemoteRunHandle.read`` reads: every output the gateway serves,
a failed run's completed ones too, with the gateway's own refusal otherwise."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import mnemos
from mnemos.errors import ConflictError, NotFoundError, ValidationError

FAILING = {
    "apiVersion": "synkron.mnemos.dev/v1",
    "kind": "Pipeline",
    "metadata": {"name": "half-done"},
    "spec": {
        "steps": [
            {"name": "first", "script": 'printf "kept" > "$MNEMOS_OUTPUT_FIRST"', "outputs": [{"name": "first"}]},
            {"name": "second", "script": "echo breaking >&2\nexit 3", "outputs": [{"name": "second"}]},
        ]
    },
}


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _queue_error(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "queue" and error["code"] == "validation_error", error
    assert "'nope' is not declared; declared queues: default, wraith" in error["message"], error
    assert "cortex.queues" in error["message"], error  # the fix: where queues are declared
    return str(error["message"])


def test_an_undeclared_queue_is_422_naming_it(frontdoor: Any) -> None:
    url, key = frontdoor.url, frontdoor.keys["developer"]
    body = {"function": "mnemos.cortex.testing:noop", "queue": "nope"}
    _queue_error(httpx.post(f"{url}/v1/jobs", json=body, headers=_headers(frontdoor.keys["admin"]), timeout=60))
    _queue_error(httpx.get(f"{url}/v1/jobs", params={"queue": "nope"}, headers=_headers(key), timeout=60))
    assert httpx.get(f"{url}/v1/jobs", params={"queue": "default"}, headers=_headers(key), timeout=60).is_success
    with mnemos.connect(url, api_key=frontdoor.keys["admin"]) as client:
        with pytest.raises(ValidationError, match="'nope' is not declared") as refused:
            client.jobs.submit("mnemos.cortex.testing:noop", queue="nope")
        assert refused.value.param == "queue"
        with pytest.raises(ValidationError, match="'nope' is not declared"):
            client.jobs.list(queue="nope")


def test_a_failed_runs_completed_outputs_are_read(frontdoor: Any) -> None:
    frontdoor.client.apply([FAILING])
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"]) as client:
        remote = client.pipelines.run("half-done", timeout=240)
        assert remote.status() == "failed", remote.state()
        embedded = frontdoor.client.pipelines.get(remote.id)  # the embedded handle reads as the gateway does
        for run in (remote, embedded):
            assert run.read("first") == b"kept"  # its step completed before the run failed
            with pytest.raises(ConflictError, match="output 'second' of run .* is not written yet: step 'second'"):
                run.read("second")
            with pytest.raises(NotFoundError, match="has no output 'nope'") as missing:
                run.read("nope")
            assert missing.value.param == "output"
