"""The SYNKRON commands as a user runs them: `run`, `resume`, `runs`, `spaces search`, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from mnemos.errors import MnemosError


def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the commands as `mnemos.cli.main` does: a MnemosError is `error: …` and its exit code."""
    from mnemos.cli import run, spaces, trace

    app = typer.Typer()
    run.register(app)
    app.add_typer(spaces.app, name="spaces")
    app.add_typer(trace.app, name="trace")
    result = CliRunner().invoke(app, list(args), env=env)
    if isinstance(result.exception, MnemosError):
        return result.exception.exit_code, result.output + f"error: {result.exception.message}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    # A document (-o json|yaml) is stdout's alone: Ray's driver may print a cluster event (a task of
    # another test's actor retried) to stderr meanwhile, which result.output would interleave.
    return result.exit_code, result.stdout if "-o" in args else result.output


def test_run_fail_resume_and_runs(env, pipelines, tmp_path: Path) -> None:
    m, flag = str(pipelines.marker), tmp_path / "flag"
    flag.write_text("x")
    path = pipelines.write(
        [
            {
                "name": "make",
                "call": pipelines.call("produce"),
                "params": {"n": "${count}", "marker": m},
                "outputs": [{"name": "items"}],
            },
            {
                "name": "check",
                "call": pipelines.call("fail_if_exists"),
                "params": {"data": "${items}", "flag": str(flag), "marker": m},
                "outputs": [{"name": "checked"}],
            },
        ],
        params={"count": 1},
    )
    code, out = cli(env, "run", str(path), "--param", "count=2", "--no-progress")
    assert code == 1, out
    run_id = out.split("run ", 1)[1].split()[0]
    assert (f"error: run {run_id} failed (resume it with `mnemos resume {run_id}`): step 'check' failed: "
            f"job {run_id}.check.1 failed") in out  # fmt: skip
    assert "RuntimeError: failing on purpose" in out
    assert f"mnemos resume {run_id}" in out and "Traceback" not in out
    flag.unlink()
    code, out = cli(env, "resume", run_id)  # progress lines (not a terminal): one line per step change
    assert code == 0, out
    assert "step check (python): succeeded" in out and f"run {run_id} succeeded" in out
    assert f"checked: runs/{run_id}/checked" in out
    assert pipelines.executions() == ["produce", "check", "check"]
    code, out = cli(env, "runs", "list", "-o", "json")
    assert code == 0 and any(r["id"] == run_id and r["status"] == "succeeded" for r in json.loads(out))
    code, out = cli(env, "runs", "get", run_id)
    assert code == 0 and "make" in out and "succeeded" in out


def test_run_follow_prints_each_steps_transitions_from_the_event_stream(env, pipelines) -> None:
    m = str(pipelines.marker)
    make = {"name": "make", "call": pipelines.call("produce"), "params": {"n": 2, "marker": m},
            "outputs": [{"name": "items"}]}  # fmt: skip
    shout = {"name": "shout", "call": pipelines.call("upper"), "params": {"data": "${items}", "marker": m},
             "outputs": [{"name": "loud"}]}  # fmt: skip
    talk = {"name": "talk", "needs": ["shout"], "script": "echo 'hello [bold]from the script'\nsleep 1"}
    path = pipelines.write([make, shout, talk], name="follow")
    code, out = cli(env, "run", str(path), "--follow", "--no-cache")
    assert code == 0, out
    assert "talk | hello [bold]from the script" in out.splitlines(), out  # its output, as printed
    steps = [line.split()[:2] for line in out.splitlines() if line.startswith("  ") and ":" not in line]
    # Each step's transitions, in order, once each (from run.* events, not from polling the state).
    for name in ("make", "shout"):
        mine = [status for step, status in steps if step == name]
        assert mine[-1] == "succeeded" and mine.count("succeeded") == 1, out
        assert "running" in mine and mine.index("running") < mine.index("succeeded"), out
    assert steps.index(["make", "succeeded"]) < steps.index(["shout", "running"]), out
    for name in ("make", "shout", "talk"):  # never backwards (an event replayed from before the first read)
        stages = [{"pending": 0, "running": 1}.get(status, 2) for step, status in steps if step == name]
        assert stages == sorted(stages), out
    assert "run " in out and " succeeded" in out.splitlines()[-1]


def test_cli_errors(env, pipelines) -> None:
    code, out = cli(env, "run", "no/such/pipeline.yaml")
    assert (code, out.strip().splitlines()[-1]) == (3, "error: no/such/pipeline.yaml: no such file or directory")
    path = pipelines.write([{"name": "a", "call": pipelines.call("produce"), "params": {"n": 1, "marker": "m"}}])
    code, out = cli(env, "run", str(path), "--param", "oops")
    assert code == 2 and "error: --param 'oops': use NAME=VALUE" in out
    code, out = cli(env, "resume", "no-such-run")
    assert code == 3 and "error: run 'no-such-run' not found" in out
    code, out = cli(env, "spaces", "search", "no-space", "query")
    assert code == 3 and "error: space 'no-space' not found" in out
    code, out = cli(env, "trace", "lineage", "nothing-here")
    assert code == 3 and "error: no lineage for 'nothing-here'" in out


def test_a_broken_pipeline_file_fails_before_any_cluster_is_reached(tmp_path: Path) -> None:
    """``mnemos run FILE`` reads the file and its ``--param`` values first: a typo, a file nested
    thousands deep, a date that is none, an integer too long to read or a value that is not YAML
    is an error naming it, with no traceback, and no Ray cluster is started or dialled for it
    (the address given here has nothing listening: reaching for it would fail differently)."""
    import os
    import subprocess
    import sys

    from synkron_support import REPO

    typo = tmp_path / "typo.yaml"
    typo.write_text("apiVersion: synkron.mnemos.dev/v1\nkind: Pipeline\nmetadata: {name: t}\n"
                    "spec: {stepz: []}\n")  # fmt: skip
    deep = tmp_path / "deep.yaml"
    deep.write_text("spec: " + "[" * 5000 + "]" * 5000 + "\n")
    no_date = tmp_path / "no-date.yaml"
    no_date.write_text("metadata: {name: t, created: 2024-13-45}\n")  # YAML reads it as a date: none is
    long_int = tmp_path / "long.yaml"
    long_int.write_text("spec: {retries: " + "9" * 5000 + "}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MNEMOS_"))}
    env.update(MNEMOS_HOME=str(tmp_path / "home"), MNEMOS_RAY_ADDRESS="127.0.0.1:9")
    cases = [([typo], f"error: {typo}", "stepz"), ([deep], f"error: {deep}", "nests too deeply"),
             ([no_date], f"error: {no_date}", "month must be in 1..12"),
             ([long_int], f"error: {long_int}", "longer than 4300 digits"),
             ([typo, "--param", "x=["], "error: --param 'x=['", "quote it: --param 'x=\"[\"'"),
             ([typo, "--param", "d=2024-13-45"], "error: --param 'd=", "month must be in 1..12")]  # fmt: skip
    for args, starts, says in cases:
        proc = subprocess.run([sys.executable, "-m", "mnemos", "run", *map(str, args)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.startswith(starts) and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "home").exists()


def test_spaces_search_cli(env, served, tmp_path: Path) -> None:
    from synkron_support import model_pipeline

    code, out = cli(env, "run", str(model_pipeline(tmp_path, space="cli-space", limit=24)), "--no-progress")
    assert code == 0, out
    code, out = cli(env, "spaces", "search", "cli-space", "baking bread at home", "-k", "2", "-o", "json")
    assert code == 0, out
    hits = json.loads(out)
    assert [h["id"] for h in hits][0] == "sourdough" and len(hits) == 2
    code, out = cli(env, "spaces", "search", "cli-space", "stock market and interest rates", "-k", "1")
    assert code == 0 and "inflation" in out and "space:cli-space/inflation" in out
    code, out = cli(env, "trace", "lineage", "space:cli-space/inflation")
    assert code == 0 and "model:echo-syn@" in out and "prompts.jsonl" in out, out


def test_python_m_mnemos_run_in_a_process_of_its_own(env, pipelines) -> None:
    """What `ray job submit -- python -m mnemos run FILE` runs: a fresh process joining the cluster."""
    import os
    import subprocess
    import sys

    from synkron_support import REPO

    m = str(pipelines.marker)
    path = pipelines.write(
        [{"name": "make", "call": pipelines.call("produce"), "params": {"n": 2, "marker": m},
          "outputs": [{"name": "items"}]}]
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "mnemos", "run", str(path), "--no-progress"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "succeeded" in proc.stdout and "items: runs/" in proc.stdout
    assert pipelines.executions() == ["produce"]


def test_param_values_yaml_reads_as_no_json_stay_text(env, pipelines) -> None:
    """``-p day=2024-01-01`` (YAML: a date) and ``-p ratio=.inf`` were a traceback ("Object of type
    date is not JSON serializable"); ``-p tag=#x`` (YAML: a comment) was null. Such a value stays the
    text as written; the param's declared type then decides (a string takes it, a number is refused
    naming the param)."""
    from mnemos.cli.run import parse_params

    assert parse_params(["d=2024-01-01", "r=.inf", "t=#x", "n=null", "z=~", "i=3", "l=[1, 2]"]) == {
        "d": "2024-01-01", "r": ".inf", "t": "#x", "n": None, "z": None, "i": 3, "l": [1, 2]}  # fmt: skip
    path = pipelines.write([{"name": "say", "script": 'echo ${day} ${tag} > "$MNEMOS_OUTPUT_OUT"',
                             "outputs": [{"name": "out"}]}], name="dates",
                           params={"day": "today", "tag": "none", "ratio": 0.5})  # fmt: skip
    code, out = cli(env, "run", str(path), "-p", "day=2024-01-01", "-p", "tag=#x", "--no-progress")
    assert code == 0 and "succeeded" in out, out
    code, out = cli(env, "run", str(path), "-p", "ratio=.inf", "--no-progress")
    assert code == 2 and "error: param 'ratio': expected a number" in out and "Traceback" not in out, out


def test_a_run_id_that_is_a_path_is_no_run_and_reaches_no_other_endpoint(tmp_path: Path) -> None:
    """Over a gateway ``mnemos runs cancel ../jobs/J`` was ``POST /v1/runs/../jobs/J/cancel``, which the
    HTTP client sends as ``/v1/jobs/J/cancel`` (another endpoint: a job cancelled), and ``runs get
    ../pipelines/p/runs`` a traceback (``KeyError: 'id'``). An id no run can have is the gateway's 404
    for it, before any request (the URL here has nothing listening: a request would fail otherwise)."""
    import os
    import subprocess
    import sys

    from synkron_support import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MNEMOS_"))}
    env.update(MNEMOS_HOME=str(tmp_path / "home"), MNEMOS_URL="http://127.0.0.1:9", MNEMOS_API_KEY="mk_x_y")
    for args in (["runs", "cancel", "../jobs/j.1"], ["runs", "get", "../pipelines/p/runs"], ["resume", "../jobs/j"],
                 ["runs", "get", "a/b"]):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 3, (args, proc.stdout + proc.stderr)
        assert proc.stderr.strip() == f"error: run {args[-1]!r} not found", (args, proc.stderr)
