"""Sealed credentials, second round: what the first left open.

- An input named by a presigned URL became a file on the worker named after the URL's last part,
  query and all (``inputs/0-p.jsonl_X-Amz-Signature_<signature>``): ``/proc``, tracebacks and a
  step's output showed the signature.
- ``RunHandle.state()`` (and ``wait()``, ``client.pipelines.get(...)``, ``cancel``) handed a notebook
  user the raw ``{"$sealed": …}`` markers (a URL's too), where ``GET /v1/runs/{id}`` shows ``***``.
- A run stored before params were sealed kept its credentials in clear after a resume.
- A credential default in a Pipeline file's ``spec.params`` was stored as written, in the registry
  and in every run's document."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sealed_support as sealed
import yaml
from tests_support import run_cli

from mnemos.errors import ValidationError
from mnemos.synkron import _state


def test_an_input_file_on_the_worker_is_named_without_the_urls_credentials(local_engram: Any, tmp_path: Path) -> None:
    from mnemos.synkron._infer import _input_digest
    from mnemos.synkron.steps import _materialize

    password, signature = sealed.secrets()
    url = f"https://user:{password}@data.example/p.jsonl?X-Amz-Signature={signature}&X-Amz-Expires=60"
    digest = local_engram.put(b'{"prompt": "one"}\n')
    paths = _materialize({"engram": local_engram, "inputs": {url: digest, "runs/r-1/prompts": digest}}, tmp_path)
    assert Path(paths[url]).name == "0-p.jsonl"  # named by the path's last part, as before
    assert Path(paths[url]).read_bytes() == b'{"prompt": "one"}\n'
    assert not [p for p in paths.values() if password in p or signature in p or "Signature" in p]
    assert Path(paths["runs/r-1/prompts"]).name == "1-prompts"
    with pytest.raises(ValidationError) as refused:  # an input the step does not have: named as a run shows it
        _input_digest({"inputs": {}}, url, "step 'gen'.input")
    assert password not in refused.value.message and signature not in refused.value.message
    assert "https://***@data.example/p.jsonl?X-Amz-Signature=***" in refused.value.message


def test_the_python_api_shows_a_runs_credentials_as_the_gateway_does(client, pipelines) -> None:
    token, password = sealed.secrets()
    call = sealed.module(pipelines)
    path = pipelines.write([sealed.step(call, "python", flag="${src}")], name="sealed-shown",
                           params={**sealed.PARAMS, "src": ""})  # fmt: skip
    url = f"https://user:{password}@data.example/p.jsonl?X-Amz-Signature={token}"
    params = {**sealed.given(token, password), "src": url}
    run = client.pipelines.run(path, params=params, progress=False)
    shown = {"hf_token": "***", "db": {"db_password": "***", "host": "db1"},
             "src": "https://***@data.example/p.jsonl?X-Amz-Signature=***"}  # fmt: skip
    for state in (run.state(), run.wait(), client.pipelines.get(run.id).state()):
        assert state["status"] == "succeeded", state["error"]
        assert state["params"] == shown
        assert "$sealed" not in json.dumps(state) and token not in json.dumps(state)
    assert run.status() == "succeeded" and run.outputs() == {"python_out": f"runs/{run.id}/python_out"}
    assert run.read("python_out") == sealed.expected(token, password)  # the handle still reads the run's outputs


def _clear(package_settings: Any, run_id: str, params: dict[str, Any]) -> None:
    """Make the stored state of ``run_id`` as a run prepared before sealing stored it."""
    key = sealed.root(package_settings) / "runs" / run_id / "state.json"
    stored = json.loads(key.read_bytes())
    key.write_text(json.dumps({**stored, "params": params}))


def test_a_run_stored_before_sealing_resumes_and_is_stored_sealed(client, pipelines, package_settings,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    failed = sealed.failed_run(client, pipelines, tmp_path, "sealed-old")
    run, params = failed.run, failed.params
    _clear(package_settings, run.id, params)
    assert run.state()["params"] == {"hf_token": "***", "db": {"db_password": "***", "host": "db1"}}
    failed.flag.unlink()
    resumed = client.pipelines.resume(run.id, progress=False)
    assert resumed.status() == "succeeded", resumed.state()["error"]
    assert resumed.read("second_out") == sealed.expected(failed.token, failed.password)  # the steps got the values
    stored = json.loads((sealed.root(package_settings) / "runs" / run.id / "state.json").read_bytes())
    assert set(stored["params"]["hf_token"]) == set(stored["params"]["db"]["db_password"]) == {"$sealed"}
    assert _state.unseal_params(run.id, stored["params"]) == params
    assert sealed.leaks(sealed.root(package_settings) / "runs" / run.id, (failed.token, failed.password)) == []


def test_sealing_a_stored_run_again_keeps_what_is_sealed_and_seals_what_is_not() -> None:
    url = "https://u:pw-old@data.example/p.jsonl?X-Amz-Signature=sig-old"
    shown = "https://***@data.example/p.jsonl?X-Amz-Signature=***"
    params = {"api_key": "k-old", "src": url, "limit": 3}
    state = {"id": "p-old", "params": dict(params), "inputs": {url: {"digest": "sha256:x"}},
             "steps": {"gen": {"inputs": [url]}}}  # fmt: skip
    _state.seal_stored(state)
    assert not [t for t in ("k-old", "pw-old", "sig-old") if t in json.dumps(state)]
    assert _state.unseal_params("p-old", state["params"]) == params
    (key,) = state["inputs"]
    assert key.startswith(shown + "#") and state["steps"]["gen"]["inputs"] == [key]
    again = json.loads(json.dumps(state))
    _state.seal_stored(again)
    assert again == state  # sealed values, and the inputs' names, stay as they are


def _pipeline(tmp_path: Path, params: dict[str, Any]) -> Path:
    name = f"cred-default-{uuid.uuid4().hex[:6]}"
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": name},
           "spec": {"params": params, "steps": [{"name": "s", "script": "echo hi"}]}}  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_pipeline_with_a_credential_default_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    secret = f"pw-{uuid.uuid4().hex}"
    path = _pipeline(tmp_path, {"limit": 3, "db": {"host": "db1", "db_password": secret}})
    out, err = run_cli(capsys, "validate", "-f", str(path), code=2)
    assert "spec.params.db.db_password: a param named like a credential has a default" in err
    assert "secretRef" in err and secret not in err + out and len(err.strip().splitlines()) == 1
    for params in ({"hf_token": "", "db": {"db_password": "", "host": "db1"}, "bos_token": "<s>", "limit": 3},
                   {"api_key": None}):  # fmt: skip
        run_cli(capsys, "validate", "-f", str(_pipeline(tmp_path, params)))
