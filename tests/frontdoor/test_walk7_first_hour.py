"""A newcomer's first hour, continued: a new shell finds the gateway `mnemos up` serves on another
port; the Python client explains a gateway URL with a query or a path as the CLI does; `mnemos jobs
submit` (no --wait) and `mnemos run` of a pipeline whose model is not registered are refused with no
platform up before an embedded cluster starts for nothing; `mnemos --url URL up|down` is refused
(they act on this machine's platform), while a stored or exported gateway URL leaves them working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests_support import REPO, free_port

import mnemos
from mnemos.errors import ValidationError

KEY = "mk_0123456789abcdef_not-a-real-secret-at-all"


def _mnemos(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home / "mnemos"),
            "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(home / "rt")}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env={**base, **env}, cwd=home,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr and not proc.stdout, proc
    (line,) = proc.stderr.strip().splitlines()
    return line


def _no_ray_started(home: Path) -> bool:
    """No Ray session was created under the command's RAY_TMPDIR (no embedded cluster started)."""
    return not (home / "rt").exists() or not any((home / "rt").rglob("session_*"))


def test_a_new_shell_without_the_port_variable_finds_the_gateway_up_serves(tmp_path: Path) -> None:
    """After `MNEMOS_RELAY__PORT=24000 mnemos up`, a shell with MNEMOS_API_KEY but no port variable
    sent every command to http://127.0.0.1:8080: the served URL was nowhere but in Serve."""
    (tmp_path / "mnemos").mkdir()
    port = free_port()  # nothing listens: the error names the URL the command went to
    record = {"address": "127.0.0.1:1", "pid": os.getpid(), "gateway": f"http://127.0.0.1:{port}"}
    (tmp_path / "mnemos" / "cluster.json").write_text(json.dumps(record))
    proc = _mnemos(tmp_path, "get", "model", MNEMOS_API_KEY=KEY)
    assert proc.returncode != 0
    assert f"the MNEMOS gateway at http://127.0.0.1:{port} is not reachable" in _one_line(proc), proc
    # a platform that is no longer up is forgotten: the settings' port again
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "mnemos" / "cluster.json").write_text(json.dumps(record | {"pid": gone.pid}))
    other = free_port()
    proc = _mnemos(tmp_path, "get", "model", MNEMOS_API_KEY=KEY, MNEMOS_RELAY__PORT=str(other))
    assert f"the MNEMOS gateway at http://127.0.0.1:{other} is not reachable" in _one_line(proc), proc


@pytest.mark.parametrize("tail", ["?x=1", "/?token=abc#top"])
def test_connect_to_a_url_with_a_query_is_refused_before_any_request(tail: str) -> None:
    """`mnemos.connect("http://host:port?x=1")` was `NotFoundError: Not Found` at the first call."""
    root = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ValidationError) as caught:
        mnemos.connect(root + tail, api_key=KEY)
    assert f"{root + tail!r} has a query ('?…')" in caught.value.message
    assert caught.value.message.endswith(f"use {root}") and caught.value.param == "url"


def test_connect_to_a_url_below_the_gateways_root_names_the_root(frontdoor: Any) -> None:
    """`mnemos.connect("http://host:port/base")` was `NotFoundError: Not Found` at the first call."""
    client = mnemos.connect(f"{frontdoor.url}/base", api_key=frontdoor.keys["developer"])
    with pytest.raises(ValidationError) as caught:
        client.get("Model")
    assert caught.value.message.startswith(f"{frontdoor.url}/base: the gateway has no route under /base ")
    assert f"use {frontdoor.url} " in caught.value.message and caught.value.param == "url"
    root = mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"])
    with pytest.raises(mnemos.errors.NotFoundError, match="job 'nope' not found"):  # a route's own 404 stands
        root.jobs.get("nope")


def test_jobs_submit_without_wait_and_no_platform_is_refused_before_a_cluster_starts(tmp_path: Path) -> None:
    """It started an embedded cluster, printed "job … queued", and the job stopped with the cluster
    (left `running`; the next `mnemos up` ran it again from the start)."""
    proc = _mnemos(tmp_path, "jobs", "submit", "math:sqrt", "16")
    assert proc.returncode == 2, proc
    line = _one_line(proc)
    assert line.startswith("error: --wait: no platform is up") and "next `mnemos up`" in line, line
    assert "`mnemos up`" in line and "with --wait" in line
    assert _no_ray_started(tmp_path)
    listed = _mnemos(tmp_path, "jobs", "list", "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed


def test_run_of_a_pipeline_with_an_unregistered_model_is_refused_before_a_cluster_starts(tmp_path: Path) -> None:
    """It spent 10-40 s starting an embedded cluster, then said the model was not registered."""
    pipeline = tmp_path / "chat.yaml"
    pipeline.write_text("""apiVersion: synkron.mnemos.dev/v1
kind: Pipeline
metadata: {name: chat}
spec:
  params: {prompt: hello}
  steps:
    - {name: ask, script: 'printf "%s" ${prompt} > "$MNEMOS_OUTPUT_Q"', outputs: [{name: q}]}
    - {name: answer, runtime: neuron-llm, modelRef: tiny-chat, input: "${q}"}
""")
    proc = _mnemos(tmp_path, "run", str(pipeline))
    assert proc.returncode == 3, proc
    line = _one_line(proc)
    assert line == "error: spec.steps[1] (answer).modelRef: model 'tiny-chat' is not registered", line
    assert _no_ray_started(tmp_path)


@pytest.mark.parametrize(("given", "said", "code"), [
    ([], "error: spec.steps[1] (answer).modelRef: model 'tiny-chat' is not registered", 3),
    (["-p", "model=other-chat"], "error: spec.steps[1] (answer).modelRef: model 'other-chat' is not registered", 3),
    (["-p", "model=../x"], "error: spec.steps[1] (answer).modelRef: '../x' (from the run's params) is not a model "
                           "name: give the name of a registered Model", 2),
])  # fmt: skip
def test_a_model_the_runs_params_choose_is_checked_before_a_cluster_starts(
    tmp_path: Path, given: list[str], said: str, code: int
) -> None:
    """A ``modelRef: ${model}`` was left to the run's own check, after an embedded cluster had started."""
    pipeline = tmp_path / "chat.yaml"
    pipeline.write_text("""apiVersion: synkron.mnemos.dev/v1
kind: Pipeline
metadata: {name: chat}
spec:
  params: {model: tiny-chat, prompt: hello}
  steps:
    - {name: ask, script: 'printf "%s" ${prompt} > "$MNEMOS_OUTPUT_Q"', outputs: [{name: q}]}
    - {name: answer, runtime: neuron-llm, modelRef: "${model}", input: "${q}"}
""")
    proc = _mnemos(tmp_path, "run", str(pipeline), *given)
    assert (proc.returncode, _one_line(proc)) == (code, said), proc
    assert _no_ray_started(tmp_path)


@pytest.mark.parametrize("command", ["up", "down"])
def test_url_on_the_command_line_is_refused_for_up_and_down(tmp_path: Path, command: str) -> None:
    """`mnemos --url URL down` stopped this machine's platform, whatever URL said."""
    url = f"http://127.0.0.1:{free_port()}"
    proc = _mnemos(tmp_path, "--url", url, command)
    assert proc.returncode == 2, proc
    line = _one_line(proc)
    assert line.startswith(f"error: --url: `mnemos {command}` acts on this machine's platform"), line


def test_a_stored_gateway_url_leaves_down_working(tmp_path: Path) -> None:
    """People log in to their own platform's gateway: MNEMOS_URL (or `mnemos login`) is no --url."""
    proc = _mnemos(tmp_path, "down", MNEMOS_URL=f"http://127.0.0.1:{free_port()}", MNEMOS_API_KEY=KEY)
    assert proc.returncode == 0, proc
    assert "ray: no local cluster was running" in proc.stdout
