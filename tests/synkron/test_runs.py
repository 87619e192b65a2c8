"""Pipeline runs on a real Ray cluster: DAG order, parallel steps, interpolation, resume, cache, cancel."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from tests_support import until

from mnemos.errors import ConflictError, NotFoundError, ValidationError


def _lines(client, run, output: str) -> list[dict]:
    return [json.loads(line) for line in run.read(output).decode().splitlines() if line]


def test_steps_run_in_dag_order_and_outputs_are_refs(client, pipelines) -> None:
    m = str(pipelines.marker)
    path = pipelines.write(
        [
            {
                "name": "make",
                "call": pipelines.call("produce"),
                "params": {"n": "${count}", "marker": m, "tag": "${RUN_ID}"},
                "outputs": [{"name": "items"}],
            },
            {
                "name": "shout",
                "call": pipelines.call("upper"),
                "params": {"data": "${items}", "marker": m},
                "outputs": [{"name": "loud"}],
            },
            {
                "name": "join",
                "needs": ["make", "shout"],
                "call": pipelines.call("concat"),
                "params": {"left": "${items}", "right": "${loud}", "marker": m},
                "outputs": [{"name": "joined", "uri": f"file://{pipelines.folder}/copies/${{RUN_ID}}/"}],
            },
        ],
        params={"count": 2},
    )
    run = client.pipelines.run(path, params={"count": 3}, progress=False)
    assert run.status() == "succeeded", run.state()["error"]
    assert pipelines.executions() == ["produce", "upper", "concat"]
    outputs = run.outputs()
    assert outputs == {o: f"runs/{run.id}/{o}" for o in ("items", "loud", "joined")}
    items = _lines(client, run, "items")
    assert [r["text"] for r in items] == [f"{run.id} {i}" for i in range(3)]  # ${RUN_ID} and ${count} (a number)
    assert [r["text"] for r in _lines(client, run, "loud")] == [r["text"].upper() for r in items]
    assert len(_lines(client, run, "joined")) == 6
    assert (pipelines.folder / "copies" / run.id / "joined").read_bytes() == run.read("joined")  # outputs[].uri
    assert client.engram.get_ref(outputs["loud"]) == run.state()["steps"]["shout"]["digests"]["loud"]
    assert client.get("Pipeline", f"p-{pipelines.module[-8:]}").generation == 1  # running a file registers it


def test_independent_steps_run_in_parallel(client, pipelines, tmp_path: Path) -> None:
    m = str(pipelines.marker)
    path = pipelines.write(
        [
            {
                "name": "a",
                "needs": [],
                "call": pipelines.call("rendezvous"),
                "params": {"me": "a", "other": "b", "folder": str(tmp_path), "marker": m},
            },
            {
                "name": "b",
                "needs": [],
                "call": pipelines.call("rendezvous"),
                "params": {"me": "b", "other": "a", "folder": str(tmp_path), "marker": m},
            },
        ]
    )
    state = client.pipelines.run(path, progress=False).state()
    assert state["status"] == "succeeded", state["error"]
    assert {state["steps"][s]["result"]["me"] for s in "ab"} == {"a", "b"}


def test_failed_step_then_resume_does_not_rerun_completed_steps(client, pipelines, tmp_path: Path) -> None:
    m, flag = str(pipelines.marker), tmp_path / "fail.flag"
    flag.write_text("on")
    path = pipelines.write(
        [
            {
                "name": "make",
                "call": pipelines.call("produce"),
                "params": {"n": 2, "marker": m},
                "outputs": [{"name": "items"}],
            },
            {
                "name": "check",
                "call": pipelines.call("fail_if_exists"),
                "params": {"data": "${items}", "flag": str(flag), "marker": m},
                "outputs": [{"name": "checked"}],
            },
            {
                "name": "shout",
                "call": pipelines.call("upper"),
                "params": {"data": "${checked}", "marker": m},
                "outputs": [{"name": "loud"}],
            },
        ]
    )
    run = client.pipelines.run(path, progress=False)
    state = run.state()
    assert state["status"] == "failed"
    assert "failing on purpose" in state["error"] and "check" in state["error"]
    assert [state["steps"][s]["status"] for s in ("make", "check", "shout")] == ["succeeded", "failed", "pending"]
    with pytest.raises(ConflictError):
        run.outputs()
    flag.unlink()
    resumed = client.pipelines.resume(run.id, progress=False)
    assert resumed.id == run.id and resumed.status() == "succeeded", resumed.state()["error"]
    assert pipelines.executions() == ["produce", "check", "check", "upper"]  # make ran once
    assert resumed.state()["resumes"] == 1
    with pytest.raises(ConflictError, match="nothing to resume"):
        client.pipelines.resume(run.id, progress=False)


def test_unchanged_rerun_is_served_from_cache(client, pipelines) -> None:
    m = str(pipelines.marker)
    steps = [
        {
            "name": "make",
            "call": pipelines.call("produce"),
            "params": {"n": "${count}", "marker": m},
            "outputs": [{"name": "items"}],
        },
        {
            "name": "shout",
            "call": pipelines.call("upper"),
            "params": {"data": "${items}", "marker": m},
            "outputs": [{"name": "loud"}],
        },
    ]
    path = pipelines.write(steps, params={"count": 2})
    first = client.pipelines.run(path, progress=False).state()
    second = client.pipelines.run(path, progress=False).state()
    assert first["id"] != second["id"] and second["status"] == "succeeded"
    assert pipelines.executions() == ["produce", "upper"]
    assert [second["steps"][s]["status"] for s in ("make", "shout")] == ["cached", "cached"]
    assert second["steps"]["shout"]["digests"] == first["steps"]["shout"]["digests"]
    assert client.engram.get_ref(f"runs/{second['id']}/loud") == first["steps"]["shout"]["digests"]["loud"]
    # a changed param changes the key: both steps run again (the second sees a new input digest)
    third = client.pipelines.run(path, params={"count": 3}, progress=False).state()
    assert [third["steps"][s]["status"] for s in ("make", "shout")] == ["succeeded", "succeeded"]
    # --no-cache runs everything
    client.pipelines.run(path, progress=False, cache=False)
    assert pipelines.executions() == ["produce", "upper"] * 3


def test_cancel_stops_a_running_step(client, pipelines, tmp_path: Path) -> None:
    m = str(pipelines.marker)
    path = pipelines.write(
        [
            {"name": "stuck", "call": pipelines.call("block"), "params": {"folder": str(tmp_path), "marker": m}},
            {"name": "after", "call": pipelines.call("produce"), "params": {"n": 1, "marker": m}},
        ]
    )
    run = client.pipelines.run(path, progress=False, wait=False)
    blocked = threading.Event()

    def started() -> None:  # the step is running once its file exists
        while not (tmp_path / "blocked").exists():
            blocked.wait(0.05)
        blocked.set()

    watcher = threading.Thread(target=started, daemon=True)
    watcher.start()
    watcher.join(120)
    assert blocked.is_set()
    client.pipelines.cancel(run.id)
    state = run.wait(timeout=120)
    assert state["status"] == "cancelled"
    assert [state["steps"][s]["status"] for s in ("stuck", "after")] == ["cancelled", "cancelled"]
    assert "produce" not in pipelines.executions()
    with pytest.raises(ConflictError):
        client.pipelines.cancel(run.id)


def test_bad_pipelines_are_clear_errors(client, pipelines) -> None:
    m = str(pipelines.marker)
    unknown = pipelines.write(
        [{"name": "a", "call": pipelines.call("produce"), "params": {"n": "${nope}", "marker": m}}]
    )
    with pytest.raises(ValidationError, match=r"unknown variable \$\{nope\}") as err:
        client.pipelines.run(unknown, progress=False)
    assert err.value.param == "spec.steps[0].params.n"
    not_upstream = pipelines.write(
        [
            {
                "name": "a",
                "call": pipelines.call("produce"),
                "params": {"n": 1, "marker": m},
                "outputs": [{"name": "x"}],
            },
            {"name": "b", "needs": [], "call": pipelines.call("upper"), "params": {"data": "${x}", "marker": m}},
        ],
        name="q",
    )
    with pytest.raises(ValidationError, match="add 'a' to needs"):
        client.pipelines.run(not_upstream, progress=False)
    undeclared = pipelines.write(
        [{"name": "a", "call": pipelines.call("produce"), "params": {"n": 1, "marker": m}}], name="r"
    )
    with pytest.raises(ValidationError, match="param 'limit' is not declared"):
        client.pipelines.run(undeclared, params={"limit": 3}, progress=False)
    model = pipelines.write([{"name": "gen", "modelRef": "absent", "input": "data.jsonl"}], name="s")
    with pytest.raises(NotFoundError, match=r"spec.steps\[0\] \(gen\).modelRef: model 'absent' is not registered"):
        client.pipelines.run(model, progress=False)
    with pytest.raises(NotFoundError, match="run 'nope' not found"):
        client.pipelines.get("nope")
    # A param too long for bash's one argument (or an env value): refused at the start, not an OSError on
    # a worker after the run was accepted
    echo = pipelines.write([{"name": "say", "script": "echo ${msg}",
                             "env": [{"name": "MSG", "value": "${msg}"}]}], name="t", params={"msg": "hi"})  # fmt: skip
    with pytest.raises(ValidationError, match=r"spec.steps\[0\] \(say\).script: 200\d{3} bytes once the run's "
                                              "params are put in, more than a program argument may hold"):  # fmt: skip
        client.pipelines.run(echo, params={"msg": "A" * 200_000}, progress=False)
    assert pipelines.executions() == []


@pytest.mark.skipif(shutil.which("podman") is not None, reason="this node has a container runtime: the image is used")
def test_script_step_with_env_inputs_and_an_image_it_cannot_use(client, pipelines, package_settings) -> None:
    import mnemos

    refused = pipelines.write([{"name": "boxed", "image": "ghcr.io/n1x-mnemos/tools:latest", "script": "echo ran",
                                "outputs": []}], name="boxed")  # fmt: skip
    state = client.pipelines.run(refused, progress=False).state()
    assert state["status"] == "failed" and "synkron.allowHostExecution" in state["error"]
    assert "ran" not in state["error"]

    lenient = package_settings.model_copy(deep=True)
    lenient.synkron.allow_host_execution = True
    client = mnemos.connect(settings=lenient)
    m = str(pipelines.marker)
    path = pipelines.write(
        [
            {"name": "make", "call": pipelines.call("produce"), "params": {"n": 3, "marker": m},
             "outputs": [{"name": "items"}]},
            {"name": "count", "image": "ghcr.io/n1x-mnemos/tools:latest", "env": [{"name": "GREETING", "value": "hi"}],
             "script": 'echo "$GREETING $(wc -l < ${items}) ${RUN_ID}" > "$MNEMOS_OUTPUT_SUMMARY"\necho done',
             "outputs": [{"name": "summary"}]},
        ]
    )  # fmt: skip
    run = client.pipelines.run(path, progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert run.read("summary").decode() == f"hi 3 {run.id}\n"
    step = state["steps"]["count"]
    assert step["type"] == "script" and "done" in step["result"]["log"]
    assert step["warnings"] == [
        "image ghcr.io/n1x-mnemos/tools:latest not used: this cluster has no container runtime; "
        "ran in the current environment"
    ]


def test_a_script_sees_only_its_declared_environment_and_quoted_values(client, pipelines, monkeypatch) -> None:
    path = pipelines.write([{
        "name": "env", "env": [{"name": "GREETING", "value": "hi"}],
        "script": 'echo "${GREETING:-} ${AWS_SECRET_ACCESS_KEY:-none} ${MNEMOS_HOME:-none}" > "$MNEMOS_OUTPUT_OUT"\n'
                  'printf "%s\\n" ${text} >> "$MNEMOS_OUTPUT_OUT"',
        "outputs": [{"name": "out"}]}], name="env", params={"text": "a"})  # fmt: skip
    run = client.pipelines.run(path, params={"text": "two words; echo injected $(echo x)"}, progress=False)
    assert run.state()["status"] == "succeeded", run.state()["error"]
    assert run.read("out").decode() == "hi none none\ntwo words; echo injected $(echo x)\n"


def test_a_script_reads_params_that_are_no_strings_as_the_pipeline_spells_them(client, pipelines) -> None:
    """``${flag}`` of a boolean param is ``true`` in a script (``[ ${flag} = true ]`` holds), a list
    is its JSON, null is ``null``: not Python's ``True``, ``['a', 'b']``, ``None``."""
    path = pipelines.write([{
        "name": "say", "script": 'if [ ${flag} = true ]; then echo on; else echo off; fi > "$MNEMOS_OUTPUT_OUT"\n'
                                 'printf "%s\\n" ${items} ${cfg} ${nothing} >> "$MNEMOS_OUTPUT_OUT"',
        "outputs": [{"name": "out"}]}], name="typed",
        params={"flag": False, "items": ["a"], "cfg": {"k": "v"}, "nothing": None})  # fmt: skip
    run = client.pipelines.run(path, params={"flag": True, "items": ["a", "b c"]}, progress=False)
    assert run.state()["status"] == "succeeded", run.state()["error"]
    assert run.read("out").decode() == 'on\n["a", "b c"]\n{"k": "v"}\nnull\n'


def test_a_scripts_output_is_its_jobs_log_with_secrets_masked(client, pipelines) -> None:
    """Each line a script writes is the step's job output (``job.log`` while it runs: ``mnemos
    run --follow``), not only a tail in the step's result; a secret is masked there as in the result,
    also one of several lines (a PEM key), which no single line holds whole."""
    from mnemos.soul.secrets import secret_store

    pem = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n-----END KEY-----"
    store = secret_store("file", None)
    store.set("step-keys", "TOKEN", "s3cr3t-t0ken-value")
    store.set("step-keys", "PEM", pem)
    path = pipelines.write([{
        "name": "talk", "env": [{"name": "TOKEN", "secretRef": {"name": "step-keys", "key": "TOKEN"}},
                                {"name": "PEM", "secretRef": {"name": "step-keys", "key": "PEM"}}],
        "script": 'echo "line one"\necho "token=$TOKEN"\necho "$PEM"\npython -c "print(\'from python\')"\n'
                  'echo "to stderr" >&2'}], name="talk")  # fmt: skip
    state = client.pipelines.run(path, progress=False).state()
    assert state["status"] == "succeeded", state["error"]
    logs = client.jobs.get(state["steps"]["talk"]["job_ids"][-1]).logs()
    for line in ("line one", "token=***", "from python", "to stderr"):
        assert line in logs and line in state["steps"]["talk"]["result"]["log"], (line, logs)
    for secret in ("s3cr3t-t0ken-value", "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf", "BEGIN KEY"):
        assert secret not in logs and secret not in json.dumps(state), secret


def test_a_script_past_its_timeout_is_stopped_with_its_children(client, pipelines, tmp_path: Path) -> None:
    marker = tmp_path / "late"
    script = f"echo started\n(sleep 4; touch {marker}) &\nsleep 30"
    path = pipelines.write([{"name": "slow", "timeout": 1, "script": script}], name="slow")
    state = client.pipelines.run(path, progress=False).state()
    assert state["status"] == "failed" and "timed out after 1s" in state["error"]
    import time

    time.sleep(5)
    assert not marker.exists()  # the script's background child went with it


def test_a_failing_script_reports_its_output(client, pipelines) -> None:
    path = pipelines.write([{"name": "bad", "script": "echo about to fail >&2\nexit 3"}])
    state = client.pipelines.run(path, progress=False).state()
    assert state["status"] == "failed"
    assert "script exited with 3" in state["error"] and "about to fail" in state["error"]


def test_a_step_is_retried_by_cortex(client, pipelines) -> None:
    m = str(pipelines.marker)
    path = pipelines.write([{"name": "shaky", "call": pipelines.call("flaky"), "params": {"marker": m}, "retries": 1,
                             "outputs": [{"name": "out"}]}])  # fmt: skip
    run = client.pipelines.run(path, progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    assert pipelines.executions() == ["flaky", "flaky"]  # two attempts of one job
    assert len(state["steps"]["shaky"]["job_ids"]) == 1 and run.read("out") == b"ok"


def test_runs_survive_a_restart_of_the_runner(client, pipelines, tmp_path: Path) -> None:
    import ray

    m, go = str(pipelines.marker), tmp_path / "go"
    path = pipelines.write(
        [
            {"name": "first", "call": pipelines.call("produce"), "params": {"n": 1, "marker": m}},
            {"name": "slow", "call": pipelines.call("wait_for"), "params": {"path": str(go), "marker": m},
             "outputs": [{"name": "out"}]},
        ]
    )  # fmt: skip
    run = client.pipelines.run(path, progress=False, wait=False)
    until(lambda: "wait" in pipelines.executions(), "the slow step to run", timeout=300)
    ray.kill(ray.get_actor("synkron", namespace="mnemos"), no_restart=False)  # Ray restarts it; it resumes the run
    go.write_text("now")
    state = run.wait(timeout=300)
    assert state["status"] == "succeeded", state["error"]
    assert state["resumes"] == 1 and state["steps"]["first"]["executions"] == 1  # the completed step kept
    assert pipelines.executions().count("produce") == 1


def test_a_runs_events_carry_the_steps_that_changed(client, pipelines) -> None:
    """A run of 1,000 steps sent all of them in each of its ~3,000 events, and the event bus kept
    gigabytes of them: each event now carries the steps that changed since the run's previous one
    (its first, every step); applied in order they give the run's steps as its state has them."""
    import ray

    from mnemos.trace.events import bus, watch

    after = ray.get(bus().last.remote())
    path = pipelines.write([{"name": f"s{i}", "script": "true"} for i in range(4)], name="deltas")  # a chain
    run = client.pipelines.run(path, progress=False)
    assert run.state()["status"] == "succeeded"
    events = []
    for event in watch(["run"], subject=f"run:{run.id}", after=after, timeout=60):
        events.append(event)
        if event["type"] == "run.succeeded":
            break
    assert events and events[-1]["type"] == "run.succeeded", [e["type"] for e in events]
    shown = [list(e["data"]["steps"]) for e in events]
    assert len(shown[0]) == 4 and len(events) >= 8, shown  # (a start, and each step running and done)
    # every step once per process that announces the run (the one that started it, the runner), after
    # that only what changed
    assert sum(len(names) == 4 for names in shown) <= 2 and all(names for names in shown[1:-1]), shown
    seen: dict[str, str] = {}
    for event in events:
        seen |= {name: step["status"] for name, step in event["data"]["steps"].items()}
    assert seen == {name: step["status"] for name, step in run.state()["steps"].items()} == dict.fromkeys(
        [f"s{i}" for i in range(4)], "succeeded")


def test_a_step_runs_on_the_pool_its_resources_name(client, pipelines) -> None:
    """A step's `resources` take what a job's do: `pool` and `selector` too (it was {name: number},
    so a step could not be pinned to the labelled nodes of a pool: `resources.pool: Input should be
    a valid number`). A key a job has not is refused when the pipeline is written."""
    path = pipelines.write([{"name": "here", "script": "true", "resources": {"cpus": 0.1, "pool": "cpu-a",
                                                                             "selector": {"accelerator": "cpu"}}}],
                           name="pinned")  # fmt: skip
    run = client.pipelines.run(path, progress=False)
    state = run.state()
    assert state["status"] == "succeeded", state["error"]
    job = client.jobs.get(state["steps"]["here"]["job_ids"][-1]).info()
    assert job["resources"]["pool"] == "cpu-a" and job["resources"]["selector"] == {"accelerator": "cpu"}, job
    assert job["pool"] == "cpu-a", job
    bad = pipelines.write([{"name": "x", "script": "true", "resources": {"memory": 2}}], name="badres")
    with pytest.raises(ValidationError, match=r"resources\.memory"):
        client.pipelines.run(bad, progress=False)
