"""Code execution over HTTP: only registered Functions and Pipelines run for developers and
viewers; arbitrary code (references, pickles, shell through parameters, the gateway's environment
through an Adapter) is refused and leaves no trace."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from security_support import Capture, Gateway, T


def _error(resp: Any, status: int, *needles: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    for needle in needles:
        assert needle in error["message"], error
    return dict(error)


def _attacks(marker: Path) -> list[dict[str, Any]]:
    touch = f"open({str(marker)!r}, 'w').write('pwned')"
    return [
        {"function": "timeit:timeit", "kwargs": {"stmt": touch, "number": 1}},
        {"function": "cProfile:run", "args": [touch]},
        {"function": "os:system", "args": [f"touch {marker}"]},
        {"function": "builtins:exec", "args": [touch]},
        {"function": f"{T}:add", "kwargs": {"a": 1, "b": 2}},  # harmless, but not registered: still execute
    ]


def _pickle(marker: Path) -> str:
    from ray import cloudpickle

    def attack() -> None:
        marker.write_text("pwned")

    return base64.b64encode(cloudpickle.dumps((attack, (), {}))).decode()


@pytest.mark.parametrize("who", ["developer", "viewer"])
def test_arbitrary_code_is_refused_without_a_trace(gateway: Gateway, who: str) -> None:
    marker = gateway.markers / f"jobs-{who}"
    before = {j["id"] for j in gateway.admin_jobs()}
    for attack in _attacks(marker):
        resp = gateway.call("POST", "/v1/jobs", who, json=attack)
        # a viewer lacks `submit` itself; a developer lacks `execute`
        _error(resp, 403, "submit" if who == "viewer" else "execute")
    pickled = gateway.call("POST", "/v1/jobs", who, json={"function": "attack", "payload": _pickle(marker)})
    _error(pickled, 403, "submit" if who == "viewer" else "execute")
    time.sleep(1.0)  # had anything been queued, a worker would have picked it up by now
    assert not marker.exists()
    assert {j["id"] for j in gateway.admin_jobs()} == before  # no job was created


def test_execute_is_what_operators_hold(gateway: Gateway) -> None:
    """The positive control: the same kind of call is accepted with `execute` (and really runs)."""
    marker = gateway.markers / "operator"
    job = gateway.call("POST", "/v1/jobs", "operator", json={"function": f"{T}:add", "kwargs": {"a": 1, "b": 2}})
    assert job.status_code == 200, job.text
    done = gateway.call("GET", f"/v1/jobs/{job.json()['id']}", "operator", params={"wait": 120}).json()
    assert done["status"] == "succeeded" and done["result"]["value"] == 3 and done["owner"] == "operator-user"
    pickled = gateway.call("POST", "/v1/jobs", "operator", json={"function": "attack", "payload": _pickle(marker)})
    assert pickled.status_code == 200, pickled.text
    done = gateway.call("GET", f"/v1/jobs/{pickled.json()['id']}", "operator", params={"wait": 120}).json()
    assert done["status"] == "succeeded", done
    assert marker.read_text() == "pwned"  # execute really is cluster root


def test_developers_call_registered_functions_by_name(gateway: Gateway) -> None:
    job = gateway.call("POST", "/v1/jobs", "developer", json={"function": "adder", "kwargs": {"a": 20, "b": 22}})
    assert job.status_code == 200, job.text
    assert job.json()["function"] == f"{T}:add" and job.json()["owner"] == "developer-user"
    done = gateway.call("GET", f"/v1/jobs/{job.json()['id']}", "developer", params={"wait": 120}).json()
    assert done["result"]["value"] == 42
    bad = gateway.call("POST", "/v1/jobs", "developer", json={"function": "adder", "kwargs": {"a": "x", "b": 1}})
    assert _error(bad, 422, "kwargs.a")["param"] == "kwargs.a"
    extra = gateway.call("POST", "/v1/jobs", "developer",
                         json={"function": "adder", "kwargs": {"a": 1, "b": 2, "stmt": "import os"}})  # fmt: skip
    _error(extra, 422, "stmt")
    _error(gateway.call("POST", "/v1/jobs", "developer", json={"function": "ops-only"}), 403, "ops-only")
    _error(gateway.call("POST", "/v1/jobs", "developer", json={"function": "missing"}), 404, "missing")
    assert gateway.call("POST", "/v1/jobs", "operator", json={"function": "ops-only"}).status_code == 200


def _run(gateway: Gateway, who: str, params: dict[str, Any]) -> Any:
    return gateway.call("POST", "/v1/pipelines/echo-text/runs", who, json={"params": params})


def test_pipeline_parameters_cannot_inject_shell(gateway: Gateway) -> None:
    marker = gateway.markers / "pipeline"
    for text in (f"x; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"x' ; touch '{marker}",
                 f"x\ntouch {marker}"):  # fmt: skip
        started = _run(gateway, "developer", {"text": text})
        if started.status_code == 422:  # a value naming a path of the platform: refused outright
            assert "params.text" in started.text
            continue
        assert started.status_code == 202, started.text
        state = gateway.finished_run(started.json()["id"], "developer")
        assert state["status"] == "succeeded", state["error"]
        out = gateway.client.engram.get(gateway.client.engram.get_ref(state["outputs"]["out"]))
        assert out.decode() == text  # the value arrived as one word of data
    assert not marker.exists()


def test_pipeline_parameters_cannot_name_platform_files(gateway: Gateway) -> None:
    from mnemos.config import default_home

    for value in ("/etc/passwd", str(default_home()), "file:///etc/passwd", "s3://bucket/key", "../../etc"):
        _error(_run(gateway, "developer", {"text": value}), 422, "params.text")
    _error(_run(gateway, "viewer", {"text": "hi"}), 403, "submit")


def test_adapters_cannot_send_the_gateways_environment_upstream(gateway: Gateway) -> None:
    """An Adapter naming an environment variable (not allowlisted) gets no value from it."""
    import ray

    from mnemos.relay.controller import get_controller

    with Capture() as upstream:
        gateway.client.apply([{
            "apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "leaky"},
            "spec": {"baseUrl": f"{upstream.url}/v1", "models": ["leaky-model"], "retries": 0,
                     "auth": {"secretRef": {"name": "nothing", "key": "MNEMOS_HOME"}}},
        }])  # fmt: skip
        ray.get(get_controller().wait_synced.remote(None, 240))
        resp = gateway.call(
            "POST",
            "/v1/chat/completions",
            "developer",
            json={"model": "leaky-model", "messages": [{"role": "user", "content": "hi"}]},
        )
        _error(resp, 503, "relay.adapterEnvAllowlist")
        assert upstream.requests == []  # nothing was sent upstream, with or without the variable
        assert str(Path.home()) not in resp.text and "mnemos-test-home" not in resp.text
        gateway.client.delete("Adapter", "leaky")
    # Applying resources (Adapters included) is `apply`: developers and viewers are refused.
    for who in ("developer", "viewer"):
        doc = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "mine"},
               "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": ["m"],
                        "auth": {"secretRef": {"name": "x", "key": "AWS_SECRET_ACCESS_KEY"}}}}  # fmt: skip
        _error(gateway.call("POST", "/apis/genome.mnemos.dev/v1/adapters", who, json=doc), 403, "apply")
        _error(
            gateway.call(
                "POST",
                "/apis/genome.mnemos.dev/v1/functions",
                who,
                json={**doc, "kind": "Function", "spec": {"entrypoint": "os:system"}},
            ),
            403,
            "apply",
        )
