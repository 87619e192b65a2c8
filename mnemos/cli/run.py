"""``mnemos run FILE``, ``mnemos resume RUN_ID`` and ``mnemos runs list|get|cancel`` (SYNKRON).

``python -m mnemos run pipelines/x.yaml`` is the same command, so that
``ray job submit -- python -m mnemos run pipelines/x.yaml`` runs a pipeline on a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from mnemos.cli._output import Output, console, emit, waiting_for
from mnemos.errors import BadRequestError, ConflictError, ValidationError

__all__ = ["cancel_run", "get_run", "list_runs", "parse_params", "register", "resume", "run", "runs_app"]

_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
runs_app = typer.Typer(help="Pipeline runs: list, get, cancel, resume.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("resume")(resume)
    app.add_typer(runs_app, name="runs")


_NULLS = frozenset({"null", "Null", "NULL", "~"})


def parse_params(pairs: list[str], example: str = "limit=8") -> dict[str, Any]:
    """``["k=v", …]`` → ``{k: v}`` with YAML scalars (``n=3`` is a number); a pair that is not one
    is an error naming it (``example``: what the message shows as a good one). A value YAML reads
    as something JSON cannot carry (a date ``2024-01-01``, ``.inf``, aliases) or as null without
    saying ``null`` (``#x``, a comment) stays the text as written: the run's params are JSON, and
    the pipeline's declared types decide what the text is."""
    import yaml

    from mnemos.synkron._plan import json_problem

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadRequestError(f"--param {pair!r}: use NAME=VALUE, e.g. --param {example}", param="param")
        if key.strip() in params:
            raise BadRequestError(f"--param {key.strip()!r} is given twice: give each name once", param="param")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except (yaml.YAMLError, ValueError) as exc:  # "[" is no YAML; 2024-13-45 is a date that is none
            why = getattr(exc, "problem", None) or str(exc)
            raise BadRequestError(f"--param {pair!r}: the value is not YAML ({why}); for a string, quote it: "
                                  f"--param '{key.strip()}=\"{value}\"'", param="param") from None  # fmt: skip
        text = json_problem(parsed) is not None or (parsed is None and value.strip() not in _NULLS)
        params[key.strip()] = value if text else parsed
    return params


def _client() -> Any:
    """A connected client. With no platform up, this process starts an embedded cluster and the
    control plane in it for the length of the command (runs start CORTEX, the runner and the
    model reconciler they need themselves)."""
    import ray

    from mnemos.cli._session import open_client, platform_address, remote_url
    from mnemos.cradle import up

    if remote_url():
        return open_client()  # the gateway runs registered pipelines (a file is applied first)
    embedded = platform_address() is None and not ray.is_initialized()
    client = open_client(connect=True)
    if embedded:
        up(client.settings, client.engram)
    return client


def _is_path(file: str) -> bool:
    """Whether ``file`` names an existing file or folder (a name too long for a path names none)."""
    try:
        return Path(file).exists()
    except OSError:
        return False


def _check_local(file: str | None = None, run_id: str | None = None, params: dict[str, Any] | None = None
                 ) -> dict[str, Any] | None:  # fmt: skip
    """Before an embedded cluster starts for it: ``file`` (no file) names a registered Pipeline whose
    models are registered, and ``run_id`` a stored run (its stored state is returned). Over a gateway,
    the gateway checks."""
    from mnemos.cli._session import open_client, remote_url

    if remote_url():
        return None
    client = open_client()
    state = None
    if run_id is not None:
        from mnemos.synkron import _state

        state = _state.load(client.engram, run_id)  # NotFoundError: run '…' not found
    if file is not None:
        from mnemos.synkron._plan import load_pipeline

        try:  # what the run would say: no such file, pipeline/NAME not found
            pipeline, _, _ = load_pipeline(client, file)
        except OSError as exc:  # a name too long for a path
            shown = file if len(file) <= 200 else f"{file[:200]}… ({len(file)} characters)"
            raise BadRequestError(f"FILE {shown!r}: {exc.strerror}: pass a pipeline YAML file or the name of a "
                                  "registered pipeline (mnemos get Pipeline)", param="file") from None  # fmt: skip
        _check_models(pipeline, params or {}, client)
    return state


def _check_models(pipeline: Any, params: dict[str, Any], client: Any = None) -> None:
    """Before an embedded cluster starts for it: every model step's ``modelRef`` names a registered
    Model (read from ENGRAM's registry, as the run's own check does), the one the run's params choose
    too. Over a gateway, the gateway checks."""
    from mnemos.cli._session import open_client, remote_url
    from mnemos.synkron._plan import build_steps, check_registered, chosen_model, merge_params, step_label

    if remote_url():
        return
    merged = merge_params(pipeline, params)
    _, steps = build_steps(pipeline, merged)
    for i, spec_step in enumerate(pipeline.spec.steps):
        step = steps[spec_step.name]
        ref = step["definition"].get("modelRef")
        if not ref or step["type"] not in ("infer", "index"):
            continue
        if "${RUN_ID}" in str(ref) or "${PIPELINE}" in str(ref):  # known once the run starts: its own check
            continue
        where = step_label(i, spec_step.name)
        ref = chosen_model(str(ref), merged, where, i)
        client = client or open_client()
        check_registered(client, ref, where, i)


def _run_id(run_id: str) -> str:
    """``run_id`` when it may name a run, else the gateway's 404 (``run '…' not found``): an id with
    ``/`` or ``..`` would otherwise be a path of another endpoint once in a URL (``../jobs/J`` would
    cancel the job ``J``)."""
    from mnemos.synkron.http import check_run_id

    return check_run_id(run_id)


def _report(state: dict[str, Any]) -> None:
    from mnemos.synkron.steps import StepFailedError

    if state["status"] == "succeeded":
        for name, ref in state["outputs"].items():
            console.print(f"  {name}: {ref}")
        console.print(f"run {state['id']} succeeded")
        return
    # the hint first: the error may end in the lines a script printed last
    raise StepFailedError(f"run {state['id']} {state['status']} (resume it with `mnemos resume {state['id']}`): "
                          f"{state.get('error') or 'no error recorded'}")  # fmt: skip


def run(
    file: str = typer.Argument(..., help="Pipeline file (YAML), or the name of a registered pipeline."),
    param: list[str] = typer.Option([], "--param", "-p", help="Pipeline param NAME=VALUE (repeatable)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Print only the result."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step, even unchanged ones."),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Start the run, print its id and return (a platform must be up: `mnemos up`)."
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print each step's transitions and output as they happen (the event stream)."
    ),
) -> None:
    """Run a pipeline: steps as CORTEX jobs in DAG order, with live progress."""
    from mnemos.cli._session import event_position, platform_up

    params = parse_params(param)
    if _is_path(file):  # a broken file fails now, not after an embedded cluster has started for it
        from mnemos.synkron._plan import check_pipeline, load_pipeline

        pipeline, base_dir, _ = load_pipeline(None, file)
        check_pipeline(pipeline, params, base_dir=base_dir, inputs=True)  # params' types, input files
        _check_models(pipeline, params)
    else:
        _check_local(file=file, params=params)
    lasting = platform_up()  # else the run lives in an embedded cluster that ends with this command
    if detach and not lasting:  # "started", then left `running` once this command's cluster stopped
        raise ValidationError("--detach: no platform is up to go on with the run once this command returns (without "
                              "one, the run lives in this command's embedded cluster): start one with `mnemos up` "
                              "(or `mnemos login URL`), or run it without --detach", param="detach")  # fmt: skip
    client = _client()
    after = event_position(client) if follow and not detach else None  # before the run starts: nothing missed
    handle = client.pipelines.run(file, params, progress=False, wait=False, cache=not no_cache)
    console.print(f"run {handle.id} started")
    if detach:
        return
    with waiting_for("run", handle.id, lasting, _orphaned(handle.id)):
        state = _follow(client, handle, after) if follow else handle.wait(progress=not no_progress)
    _report(state)


def _orphaned(run_id: str) -> str:
    """What to do with a run whose embedded cluster stopped with an interrupted command."""
    return (f"`mnemos resume {run_id}` goes on with it, `mnemos runs cancel {run_id}` cancels it "
            "(and `mnemos up` starts a platform, which resumes it)")  # fmt: skip


_STAGE = {"pending": 0, "running": 1}
"""A step's stages in order (any other status is an end)."""
_FOLLOW_CHECK_S = 30.0
"""How often ``--follow`` also reads the run's state (should the event stream miss its end)."""
_HASHED_JOB = re.compile(r"[0-9a-f]{40}")
"""A step job's id where ``<run>.<step>.<n>`` would be too long (``synkron._jobs.job_key``)."""
_HELD_JOBS, _HELD_LINES = 64, 1000
"""At most this many such jobs' lines (this many each) are held until the run names their step."""


def _follow(client: Any, handle: Any, after: int | None) -> dict[str, Any]:
    """Print the run's step transitions from the event stream (``run.*`` events) as they happen,
    and what its steps print (their jobs' ``job.log`` lines, as ``STEP | line``); returns the
    run's final state."""
    seen: dict[str, str] = {}
    jobs = f"job:{handle.id}."  # a step's job is <run>.<step>.<n> ...
    steps_of: dict[str, str] = {}  # ... or, where that is too long, a hash (``_jobs.job_key``): the run names it
    held: dict[str, list[str]] = {}  # the lines of such a job printed before the run named it

    def log(step: str, line: Any) -> None:
        print(f"{step} | {line}", flush=True)  # as printed, no markup

    def show(view: dict[str, Any]) -> bool:
        for name, step in (view.get("steps") or {}).items():
            for job in step.get("job_ids") or ():
                steps_of.setdefault(str(job), name)
                for line in held.pop(str(job), ()):
                    log(name, line)
            status = str(step.get("status"))
            # a step only moves forward: an event replayed from before the state read first is old news
            if seen.get(name) != status and _STAGE.get(status, 2) >= _STAGE.get(seen.get(name, "pending"), 2):
                seen[name] = status
                took = ""
                if step.get("started") and step.get("finished"):
                    took = f"  {float(step['finished']) - float(step['started']):.1f} s"
                console.print(f"  {name:<16} {status}{took}{'  (cache hit)' if step.get('cached') else ''}")
        return str(view.get("status")) in _TERMINAL

    state = handle.state()
    while not show(state):
        for event in client.watch(["run", "job.log"], after=after, timeout=_FOLLOW_CHECK_S):
            if isinstance(event.get("id"), int):
                after = event["id"]
            subject = str(event.get("subject", ""))
            line = (event.get("data") or {}).get("line", "")
            if event["type"] == "job.log" and subject.startswith(jobs):
                log(subject[len(jobs) :].rsplit(".", 1)[0], line)
            elif event["type"] == "job.log" and subject[4:] in steps_of:
                log(steps_of[subject[4:]], line)
            elif event["type"] == "job.log" and _HASHED_JOB.fullmatch(subject[4:]) and len(held) < _HELD_JOBS:
                lines = held.setdefault(subject[4:], [])  # perhaps a step's, which the run names next
                if len(lines) < _HELD_LINES:
                    lines.append(line)
            elif event["type"] == "reset" or (subject == f"run:{handle.id}" and show(event.get("data") or {})):
                break
        state = handle.state()
    return state


def resume(
    run_id: str = typer.Argument(..., help="The run to resume."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Print only the result."),
) -> None:
    """Resume a failed, cancelled or interrupted run from the steps that did not complete."""
    from mnemos.cli._session import platform_up

    stored = _check_local(run_id=_run_id(run_id))
    lasting = platform_up()
    client = _client()
    if not lasting and stored is not None and stored["status"] not in _TERMINAL:
        # the run stopped with the embedded cluster of an interrupted command: this one's runner takes
        # it up again (its `synkron` actor may have done so already) from the steps that completed
        handle = client.pipelines.adopt(run_id) or client.pipelines.resume(run_id, progress=False, wait=False)
    else:
        handle = client.pipelines.resume(run_id, progress=False, wait=False)
    console.print(f"run {run_id} resumed")
    with waiting_for("run", run_id, lasting, _orphaned(run_id)):
        state = handle.wait(progress=not no_progress)
    _report(state)


runs_app.command("resume")(resume)  # `mnemos runs resume`, beside `runs cancel`, is `mnemos resume`


def _named_pipeline(value: str | None) -> str | None:
    """``--pipeline``: an empty one (``"$P"`` unset) listed every pipeline's runs, as no filter does."""
    if value is not None and not value.strip():
        raise typer.BadParameter("empty: give a pipeline's name, or leave --pipeline out for every pipeline's runs")
    return value


@runs_app.command("list")
def list_runs(
    pipeline: str | None = typer.Option(
        None, "--pipeline", callback=_named_pipeline, help="Only runs of this pipeline."),  # fmt: skip
    limit: int = typer.Option(20, "--limit", min=1),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Recent runs, newest first."""
    from mnemos.cli._session import open_client

    runs = open_client().pipelines.list(pipeline, limit)
    rows = [(r["id"], r["pipeline"], r["status"], " ".join(f"{k}={v}" for k, v in r["steps"].items())) for r in runs]
    emit(runs, output, ("RUN", "PIPELINE", "STATUS", "STEPS"), rows)


@runs_app.command("get")
def get_run(run_id: str, output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """A run's state: steps, jobs, outputs."""
    from mnemos.cli._session import open_client
    from mnemos.synkron import _state
    from mnemos.synkron._progress import rows, title

    _run_id(run_id)
    client = open_client()
    remote = not hasattr(client, "engram")
    if remote:  # (the gateway masks the credential params: mnemos.synkron.http.run_for)
        state = client.pipelines.get(run_id).state()
    else:
        from mnemos.synkron.http import mask_run_secrets

        state = mask_run_secrets(_state.load(client.engram, run_id))  # as the gateway shows it
    if output is not Output.table:
        emit(state, output)
        return
    console.print(title(state))
    emit(state, output, ("STEP", "KIND", "STATUS", "ITEMS", "ITEMS/S", "TIME"), rows(state))
    written = {o for s in state["steps"].values() if s.get("status") in ("succeeded", "cached") for o in s["outputs"]}
    for name, ref in state["outputs"].items():
        if name in written:  # a step that did not complete wrote no output: its ref names nothing yet
            console.print(f"  {name}: {ref}")
    if state.get("error"):
        console.print(f"error: {state['error']}")


@runs_app.command("cancel")
def cancel_run(run_id: str) -> None:
    """Cancel a running run."""
    from mnemos.cli._session import platform_up

    _run_id(run_id)
    if not platform_up():
        # nothing drives the run: it stopped with the embedded cluster of an interrupted command
        stored = _check_local(run_id=run_id)
        if stored is not None and stored["status"] in _TERMINAL:
            raise ConflictError(f"run {run_id!r} is not running (status {stored['status']})", param="run_id")
        # an embedded cluster cancels its steps' jobs, which CORTEX would run again when it starts
        client = _client()
        client.pipelines.cancel(run_id)
        state = client.pipelines.get(run_id).wait()  # before this command's cluster stops with its runner
        console.print(f"run {state['id']} {state['status']}")
        return
    state = _client().pipelines.cancel(run_id)
    console.print(f"run {state['id']} cancelling")
