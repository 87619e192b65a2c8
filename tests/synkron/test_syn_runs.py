"""Runs whose runner stopped while a step ran: taken up again, resumed and cancelled without
running a step twice or leaving its job behind in CORTEX."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests_support import free_port, until

from mnemos.errors import ConflictError


def test_a_run_no_runner_drives_is_cancelled_with_its_steps_job(client, pipelines, tmp_path) -> None:
    """A run left ``running`` by a runner that stopped (the embedded cluster of an interrupted
    ``mnemos run``) was "not running" to cancel (409), and its step's job ran on in CORTEX."""
    from mnemos.synkron import _state
    from mnemos.synkron._plan import prepare

    m, go = str(pipelines.marker), tmp_path / "go"
    path = pipelines.write(
        [{"name": "slow", "call": pipelines.call("wait_for"), "params": {"path": str(go), "marker": m}},
         {"name": "after", "call": pipelines.call("produce"), "params": {"n": 1, "marker": m}}]
    )  # fmt: skip
    state = prepare(client, str(path), {})  # stored, never handed to the runner
    job = client.jobs.submit("mnemos.cortex.testing:wait_for_file", str(go), job_id=f"{state['id']}.slow.1")
    until(lambda: job.status() == "running", "the step's job runs", timeout=300)
    state["status"] = "running"
    state["steps"]["slow"].update(status="running", job_ids=[job.id], executions=1)
    _state.save(client.engram, state)

    cancelled = client.pipelines.cancel(state["id"])
    assert cancelled["status"] == "cancelled"
    stored = client.pipelines.get(state["id"]).state()
    assert stored["status"] == "cancelled"
    assert [stored["steps"][s]["status"] for s in ("slow", "after")] == ["cancelled", "cancelled"]
    assert job.status() == "cancelled"
    assert "produce" not in pipelines.executions()
    with pytest.raises(ConflictError):
        client.pipelines.cancel(state["id"])
    go.write_text("now")  # ends the job's thread, which a cancel leaves running


def test_resume_takes_up_a_run_interrupted_with_the_embedded_cluster(tmp_path: Path) -> None:
    """``mnemos run`` with no platform up, Ctrl-C'd while a step ran: ``mnemos resume RUN`` said
    ``run … is still running: wait for it or cancel it`` (the embedded cluster it started had
    taken the run up), and ``mnemos runs cancel RUN`` that no platform is up. Now ``resume`` goes
    on with the run (the step's job that CORTEX re-queued, not a second one) to its end."""
    import os
    import signal
    import subprocess
    import sys

    from synkron_support import REPO

    marker, go = tmp_path / "marker.txt", tmp_path / "go"
    pipeline = tmp_path / "interrupted.yaml"
    pipeline.write_text(
        "apiVersion: synkron.mnemos.dev/v1\nkind: Pipeline\nmetadata: {name: interrupted}\nspec:\n  steps:\n"
        "    - name: slow\n      outputs: [{name: out}]\n      script: |\n"
        f"        echo wait >> {marker}\n"
        f"        while [ ! -e {go} ]; do sleep 0.05; done\n"
        '        echo done > "$MNEMOS_OUTPUT_OUT"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MNEMOS_"))}
    env.update(MNEMOS_HOME=str(tmp_path / "home"), MNEMOS_RELAY__PORT=str(free_port()),
               MNEMOS_RAY__DASHBOARD_PORT=str(free_port()))  # fmt: skip

    def mnemos(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    proc = subprocess.Popen([sys.executable, "-m", "mnemos", "run", str(pipeline), "--no-progress"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        until(lambda: marker.exists() or proc.poll() is not None, "the step runs", timeout=600)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    run_id = out.split("run ", 1)[1].split()[0]

    go.write_text("now")
    done = mnemos("resume", run_id, "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run {run_id} succeeded" in done.stdout and "Traceback" not in done.stderr
    got = mnemos("runs", "get", run_id, "-o", "json")
    import json

    state = json.loads(got.stdout)
    assert state["status"] == "succeeded" and state["steps"]["slow"]["job_ids"] == [f"{run_id}.slow.1"]
    refused = mnemos("runs", "cancel", run_id)  # a finished run: no cluster started to say so
    assert refused.returncode == 4 and refused.stderr.strip() == (
        f"error: run {run_id!r} is not running (status succeeded)"
    ), refused.stderr
    assert f"`mnemos resume {run_id}` goes on with it, `mnemos runs cancel {run_id}` cancels it" in err, err


def test_runs_get_lists_only_written_outputs_and_runs_resume_resumes(client, package_settings, pipelines, tmp_path):
    """``mnemos runs get`` of a failed or cancelled run listed every declared output, as if written
    (``checked: runs/<run>/checked``, a ref that names nothing); ``mnemos runs resume`` (beside
    ``runs cancel``) was "No such command"."""
    import ray
    import typer
    from typer.testing import CliRunner

    from mnemos.cli import run as run_cli

    app = typer.Typer()
    run_cli.register(app)
    env = {"MNEMOS_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "MNEMOS_ENGRAM__URI": package_settings.engram.uri, "MNEMOS_RELAY__AUTH": "false"}  # fmt: skip
    m, flag = str(pipelines.marker), tmp_path / "flag"
    flag.write_text("x")
    path = pipelines.write(
        [{"name": "make", "call": pipelines.call("produce"), "params": {"n": 1, "marker": m},
          "outputs": [{"name": "items"}]},
         {"name": "check", "call": pipelines.call("fail_if_exists"),
          "params": {"data": "${items}", "flag": str(flag), "marker": m}, "outputs": [{"name": "checked"}]}]
    )  # fmt: skip
    run = client.pipelines.run(path, progress=False)
    assert run.status() == "failed"
    shown = CliRunner().invoke(app, ["runs", "get", run.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert f"items: runs/{run.id}/items" in shown.output and "checked:" not in shown.output
    flag.unlink()
    resumed = CliRunner().invoke(app, ["runs", "resume", run.id, "--no-progress"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert f"run {run.id} succeeded" in resumed.output and f"checked: runs/{run.id}/checked" in resumed.output


def test_local_runs_get_masks_credential_params_as_the_gateway_does(client, package_settings):
    """Over a gateway ``mnemos runs get`` masks params named like credentials (``run_for``); on the
    platform's machine it printed them from the stored state as they were."""
    import json

    import ray
    import typer
    from typer.testing import CliRunner

    from mnemos.cli import run as run_cli
    from mnemos.synkron import _state

    params = {"hf_token": "hf_not_for_show", "db": {"db_password": "pw-not-for-show"}, "limit": 3}
    state = {"id": "masked-run-1", "pipeline": "masked", "status": "succeeded", "steps": {}, "outputs": {},
             "params": params}  # fmt: skip
    client.engram.write_json(_state.state_key("masked-run-1"), state)
    app = typer.Typer()
    run_cli.register(app)
    env = {"MNEMOS_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "MNEMOS_ENGRAM__URI": package_settings.engram.uri, "MNEMOS_RELAY__AUTH": "false"}  # fmt: skip
    shown = CliRunner().invoke(app, ["runs", "get", "masked-run-1", "-o", "json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["params"] == {"hf_token": "***", "db": {"db_password": "***"}, "limit": 3}
    assert "not_for_show" not in shown.output and "not-for-show" not in shown.output
