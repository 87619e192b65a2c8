"""``mnemos jobs submit <Function name>``: the probe's ``mnemos jobs submit shout -k text=hi --wait``
was refused before anything was sent (``'shout' is not a function reference``), though a developer
may only call registered Functions. Over the gateway the name goes to ``POST /v1/jobs`` as
``function`` (the Function's queue applies unless ``--queue`` names one); embedded, the local
registry resolves it as the gateway does."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mnemos.cli import jobs as jobs_cli
from mnemos.errors import NotFoundError, ValidationError

T = "mnemos.cortex.testing"
root = typer.Typer()
root.add_typer(jobs_cli.app, name="jobs")


def _run(*args: str) -> Any:
    return CliRunner().invoke(root, ["jobs", *args], catch_exceptions=True)


class _Gateway:
    """``RemoteClient.request`` as the gateway answers ``/v1/jobs``: what was sent is kept."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, json_body: Any = None, params: Any = None, timeout: Any = None) -> Any:
        self.sent.append((method, path, json_body))
        view = {"id": "job-1", "object": "job", "status": "queued", "function": f"{T}:shout"}
        if method == "GET":
            view.update(status="succeeded", result={"encoding": "json", "value": 4242})
        return view


@pytest.fixture()
def gateway(monkeypatch: pytest.MonkeyPatch) -> _Gateway:
    from mnemos.remote import RemoteJobs

    fake = _Gateway()
    monkeypatch.setattr(jobs_cli, "_jobs", lambda: RemoteJobs(fake))  # type: ignore[arg-type]
    monkeypatch.setenv("MNEMOS_URL", "http://127.0.0.1:9")  # a gateway is configured: no platform of this machine
    return fake


def test_over_the_gateway_a_functions_name_is_sent_as_function(gateway: _Gateway) -> None:
    result = _run("submit", "shout", "-k", "text=hi", "-k", "name=x", "--wait")
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.output.strip() == "4242"
    method, path, body = gateway.sent[0]
    assert (method, path) == ("POST", "/v1/jobs")
    # no queue: the Function's own applies; `name` is the Function's argument, not the job's name
    assert body == {"function": "shout", "args": [], "kwargs": {"text": "hi", "name": "x"}, "priority": 0}
    gateway.sent.clear()
    result = _run("submit", f"{T}:add", "2", "3", "-q", "limited", "--max-attempts", "2", "-l", "team=a")
    assert result.exit_code == 0, (result.output, result.exception)
    assert gateway.sent[0][2] == {"function": f"{T}:add", "args": [2, 3], "kwargs": {}, "queue": "limited",
                                  "priority": 0, "maxAttempts": 2, "labels": {"team": "a"}}  # fmt: skip


def test_a_malformed_reference_is_still_refused_before_sending(gateway: _Gateway) -> None:
    result = _run("submit", "pkg.mod:not a name")
    assert isinstance(result.exception, ValidationError) and result.exception.param == "function"
    assert gateway.sent == []


def test_embedded_a_functions_name_runs_its_entrypoint(client: Any, cortex_settings: Any) -> None:
    from mnemos.engram import Engram
    from mnemos.genome import Registry, parse_resource

    Registry(Engram.from_settings(cortex_settings)).apply(parse_resource({
        "apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": "shouter"},
        "spec": {"entrypoint": f"{T}:shout", "queue": "limited", "parameters": {
            "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
            "additionalProperties": False}},
    }))  # fmt: skip
    result = _run("submit", "shouter", "-k", "text=hi", "--wait", "-o", "json")
    assert result.exit_code == 0, (result.output, result.exception)
    view = json.loads(result.output)
    assert view["status"] == "succeeded" and isinstance(view["value"], int)
    assert (view["function"], view["queue"], view["name"]) == (f"{T}:shout", "limited", "shouter")
    queued = _run("submit", "shouter", "-k", "text=there", "-q", "default", "-o", "json")
    assert json.loads(queued.output)["queue"] == "default"  # --queue overrides the Function's

    missing = _run("submit", "no-such-function")
    assert isinstance(missing.exception, NotFoundError) and missing.exception.param == "function"
    positional = _run("submit", "shouter", "hi")
    assert isinstance(positional.exception, ValidationError) and positional.exception.param == "args"
    bad = _run("submit", "shouter", "-k", "text=1")
    assert isinstance(bad.exception, ValidationError) and bad.exception.param == "kwargs.text"
