"""A run's params named like credentials (``hf_token``, ``db_password`` …) are sealed wherever the
run is stored: its state in ENGRAM, the CORTEX jobs of its steps (their calls, kept in the journal),
so a copy of the store (a backup, the bucket) holds no credential in clear; the steps get the values,
at the start, on a resume and after a restart of the runner.

A run with ``-p hf_token=…`` was masked in every view of it, but ``runs/<id>/state.json`` and the
step jobs' pickled calls in ``journal/cortex/`` held the token as given: whoever read the ENGRAM
store (``mnemos wraith backup`` output, the S3 bucket) read it."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path

import pytest
import sealed_support as sealed

from mnemos.errors import IntegrityError
from mnemos.synkron import _state


def test_credential_params_are_sealed_in_the_store_and_reach_the_steps(client, pipelines, package_settings,
                                                                     monkeypatch) -> None:  # fmt: skip
    token, password = sealed.secrets()
    call = sealed.module(pipelines)
    script = 'printf %s "$TOK" | sha256sum | cut -c1-64 > "$MNEMOS_OUTPUT_SEEN"'
    path = pipelines.write([sealed.step(call, "python"),
                            {"name": "script", "script": script, "env": [{"name": "TOK", "value": "${hf_token}"}],
                             "outputs": [{"name": "seen"}]}], name="sealed", params=sealed.PARAMS)  # fmt: skip
    params = sealed.given(token, password)
    run = client.pipelines.run(path, params=params, progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert run.read("python_out") == sealed.expected(token, password)  # the steps got the real values
    assert run.read("seen").decode().strip() == hashlib.sha256(token.encode()).hexdigest()

    assert sealed.leaks(sealed.root(package_settings), (token, password)) == []
    stored = json.loads((sealed.root(package_settings) / "runs" / run.id / "state.json").read_bytes())
    assert set(stored["params"]["hf_token"]) == set(stored["params"]["db"]["db_password"]) == {"$sealed"}
    assert stored["params"]["db"]["host"] == "db1"  # the other params as they were
    # the step's cache key (stored) counts the credential by a keyed hash: no guess is checked against it
    from mnemos.synkron.runner import cache_key

    kept = state["steps"]["python"]["cache_key"]
    assert cache_key(state, "python", {}, params) == kept
    with monkeypatch.context() as patched:  # a reader without the platform's master key
        patched.setenv("MNEMOS_MASTER_KEY", base64.urlsafe_b64encode(b"k" * 32).decode())
        assert cache_key(state, "python", {}, params) != kept

    again = client.pipelines.run(path, params=params, progress=False).state()  # the same credentials: cached
    assert [again["steps"][s]["status"] for s in ("python", "script")] == ["cached", "cached"]
    other = client.pipelines.run(path, params={**params, "hf_token": token + "x"}, progress=False)
    assert other.state()["steps"]["python"]["status"] == "succeeded"  # another credential: run again
    assert other.read("python_out") == sealed.expected(token + "x", password)


def test_a_resumed_run_gets_its_sealed_credentials(client, pipelines, package_settings, tmp_path: Path) -> None:
    failed = sealed.failed_run(client, pipelines, tmp_path, "sealed-resume")
    failed.flag.unlink()
    resumed = client.pipelines.resume(failed.run.id, progress=False)
    assert resumed.status() == "succeeded", resumed.state()["error"]
    assert resumed.read("second_out") == sealed.expected(failed.token, failed.password)
    assert sealed.leaks(sealed.root(package_settings), (failed.token, failed.password)) == []


def test_a_run_taken_up_after_a_restart_of_the_runner_gets_its_sealed_credentials(
    client, pipelines, package_settings, tmp_path: Path
) -> None:
    import ray

    token, password = sealed.secrets()
    call, go, started = sealed.module(pipelines), tmp_path / "go", tmp_path / "started"
    path = pipelines.write([sealed.step(call, "slow", wait=str(go), started=str(started)), sealed.step(call, "after")],
                           name="sealed-restart", params=sealed.PARAMS)  # fmt: skip
    params = sealed.given(token, password)
    run = client.pipelines.run(path, params=params, progress=False, wait=False)
    while not started.exists():  # the slow step is running
        threading.Event().wait(0.05)
    ray.kill(ray.get_actor("synkron", namespace="mnemos"), no_restart=False)  # Ray restarts it; it resumes the run
    go.write_text("now")
    state = run.wait(timeout=300)
    assert state["status"] == "succeeded", state["error"]
    assert state["resumes"] == 1
    assert run.read("after_out") == sealed.expected(token, password)  # a step the new runner submitted
    assert sealed.leaks(sealed.root(package_settings), (token, password)) == []


def test_a_url_inputs_credentials_are_sealed_and_the_step_reads_it(served, package_settings, tmp_path: Path) -> None:
    """An infer input ``http://user:password@host/p.jsonl?X-Amz-Signature=…`` (a presigned URL), a param
    not named like a credential, was kept in clear in the run's params and as the key of its
    ``inputs``: in ENGRAM, and in ``GET /v1/runs/{id}`` for the owner and operators. It is sealed as a
    credential is, shown as lineage shows it; the step still reads the snapshot."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from mnemos.synkron.http import mask_run_secrets

    password, signature = sealed.secrets()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "p.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        www = f"127.0.0.1:{server.server_address[1]}"
        doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "sealed-url"},
               "spec": {"params": {"src": "data/none.jsonl"},
                        "steps": [{"name": "gen", "runtime": "neuron-llm", "modelRef": "echo-syn", "input": "${src}",
                                   "outputs": [{"name": "results"}]}]}}  # fmt: skip
        url = f"http://user:{password}@{www}/p.jsonl?X-Amz-Signature={signature}&X-Amz-Expires=60"
        run = served.client.pipelines.run(doc, params={"src": url}, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert [json.loads(line)["prompt"] for line in run.read("results").decode().splitlines()] == ["one", "two"]
    shown = f"http://***@{www}/p.jsonl?X-Amz-Signature=***&X-Amz-Expires=***"
    assert mask_run_secrets(state)["params"] == {"src": shown}  # GET /v1/runs/{id}, `mnemos runs get`
    (key,) = state["inputs"]
    assert key.startswith(shown + "#") and state["steps"]["gen"]["inputs"] == [key]
    assert sealed.leaks(sealed.root(package_settings), (password, signature)) == []


def test_a_url_params_credentials_are_masked_in_a_scripts_output(client, pipelines, package_settings) -> None:
    """A script printing a URL param (``src``, not named like a credential) wrote its password and its
    presigned signature into the step's job log and ``result.log``, kept in ENGRAM: masked now, as a
    credential param's values are."""
    password, signature = sealed.secrets()
    path = pipelines.write([{"name": "show", "script": 'echo "fetching $SRC"',
                             "env": [{"name": "SRC", "value": "${src}"}]}],
                           name="sealed-url-log", params={"src": ""})  # fmt: skip
    url = f"https://user:{password}@data.example/p.jsonl?X-Amz-Signature={signature}&X-Amz-Expires=60"
    state = client.pipelines.run(path, params={"src": url}, progress=False).state()
    assert state["status"] == "succeeded", state["error"]
    assert "fetching https://***@data.example/p.jsonl?X-Amz-Signature=***&X-Amz-Expires=60" in \
        state["steps"]["show"]["result"]["log"]  # fmt: skip
    log = client.jobs.get(state["steps"]["show"]["job_ids"][-1]).logs()
    assert "X-Amz-Signature=***" in log and password not in log and signature not in log
    assert sealed.leaks(sealed.root(package_settings), (password, signature)) == []


def test_a_sealed_param_opens_only_in_its_run_and_place() -> None:
    params = {"api_key": "k-secret", "hosts": [{"aws_secret_access_key": "s3cr3t"}], "limit": 3, "bos_token": "<s>",
              "src": "s3://bucket/x.jsonl?X-Amz-Signature=sig", "data": {"$sealed": "a caller's value"}}  # fmt: skip
    sealed = _state.seal_params("p-1", params)
    assert not [t for t in ("k-secret", "s3cr3t", "Signature=sig", "a caller's value") if t in json.dumps(sealed)]
    assert sealed["limit"] == 3 and sealed["bos_token"] == "<s>"  # a tokenizer's token is no credential
    assert _state.shown_params(sealed) == {**params, "api_key": "***", "hosts": [{"aws_secret_access_key": "***"}],
                                           "src": "s3://bucket/x.jsonl?X-Amz-Signature=***", "data": "***"}  # fmt: skip
    assert _state.unseal_params("p-1", sealed) == params
    with pytest.raises(IntegrityError):  # another run's sealed value does not open in this one
        _state.unseal_params("p-2", sealed)
    with pytest.raises(IntegrityError):  # nor one param's under another's name
        _state.unseal_params("p-1", {"api_key": sealed["hosts"][0]["aws_secret_access_key"]})
    assert _state.unseal_params("p-1", {"api_key": "clear"}) == {"api_key": "clear"}  # a run stored before sealing
