"""``mnemos jobs submit|list|get|cancel|retry|logs|stats``: CORTEX jobs from the shell.

``submit`` connects to the platform (``MNEMOS_RAY_ADDRESS``, ``RAY_ADDRESS`` — set inside
``ray job submit`` — or the cluster ``mnemos up`` started; else an embedded one). ``list``,
``get`` and ``logs`` ask CORTEX when a platform is up, and otherwise read the journal in ENGRAM.

    mnemos jobs submit mnemos.cortex.testing:add 2 3 --wait
    mnemos jobs submit word-count -k text='one two' --wait     # a registered Function, by name
                                                               # (deployments/local/functions.yaml)
    ray job submit --address http://127.0.0.1:8265 -- python -m mnemos jobs submit pkg.mod:fn '{"a": 1}' --wait
"""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from mnemos.cli._output import Output, console, emit, waiting_for
from mnemos.errors import UnavailableError, ValidationError

__all__ = ["app", "cancel", "get", "list_jobs", "logs", "retry", "stats", "submit"]

app = typer.Typer(help="CORTEX jobs: submit, list, get, cancel, retry, logs, stats.", no_args_is_help=True)

_COLUMNS = ("ID", "NAME", "QUEUE", "PRIORITY", "STATUS", "ATTEMPTS", "WORKER", "FUNCTION")
Page = tuple[list[dict[str, Any]], bool]  # a page of job views, and whether more follow


class _NotStrictJSON(ValueError):
    """``NaN``, ``Infinity``: Python's json reads them, JSON has none (the argument is a string)."""


def _constant(text: str) -> Any:
    raise _NotStrictJSON(text)


def _value(text: str, where: str) -> Any:
    """A command-line argument: strict JSON when it parses (``2``, ``"x"``, ``{"a": 1}``), else the
    string; a number JSON cannot carry (``1e999``) is an error naming ``where``."""

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise ValidationError(f"{where}: {number} is too large for a JSON number; quote it for a string: "
                                  f"'\"{number}\"'", param=where.split()[0].lstrip("-"))  # fmt: skip
        return value

    try:
        return json.loads(text, parse_constant=_constant, parse_float=finite)
    except (json.JSONDecodeError, _NotStrictJSON):
        return text
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ValidationError(f"{where}: {str(exc).split(';')[0]}", param=where.split()[0].lstrip("-")) from None


def _pairs(items: list[str], option: str, parse: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"{option}: {item!r} is not NAME=VALUE", param=option)
        if key in out:
            raise ValidationError(f"{option} {key!r} is given twice: give each name once", param=option)
        out[key] = _value(value, f"{option} {key}") if parse else value
    return out


def _amount(value: float | None, option: str) -> float | None:
    """A resource amount from the command line: a finite number, 0 or more (JSON has no nan or inf)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValidationError(f"{option}: {value} is not a finite number of 0 or more, e.g. {option} 1",
                              param=option.lstrip("-"))  # fmt: skip
    return value


def _jobs() -> Any:
    """``client.jobs`` of a connected client."""
    from mnemos.cli._session import open_client

    return open_client(connect=True).jobs


def _reader() -> Any:
    """Something with ``get/list/logs``: the gateway when a URL is configured, CORTEX when a platform
    is up, else the journal."""
    from mnemos.cli._session import platform_up, remote_url

    if remote_url():
        return _Remote(_jobs())
    if platform_up():
        jobs = _jobs()
        return _Live(jobs)
    from mnemos.config import load_settings
    from mnemos.cortex.journal import JournalView
    from mnemos.engram import Engram

    settings = load_settings()
    return _Journal(JournalView(Engram.from_settings(settings), queues=settings.cortex.queues))


class _Live:
    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self.jobs._call("get", job_id))

    def list(self, queue: str | None, status: str | None, limit: int, after: str | None) -> Page:
        views = list(self.jobs.list(queue=queue, status=status, limit=limit + 1, after=after))
        return views[:limit], len(views) > limit

    def logs(self, job_id: str) -> str:
        return str(self.jobs._call("logs", job_id))


class _Remote:
    """``get/list/logs`` over the gateway's ``/v1/jobs``."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self.jobs.get(job_id).info())

    def list(self, queue: str | None, status: str | None, limit: int, after: str | None) -> Page:
        params = {"queue": queue, "status": status, "limit": limit, "after": after}
        answer = self.jobs._client.request("GET", "/v1/jobs", params=params)
        return list(answer["data"]), bool(answer.get("has_more"))

    def logs(self, job_id: str) -> str:
        return str(self.jobs.logs(job_id))


class _Journal:
    """``get/list/logs`` from the journal in ENGRAM (no platform up)."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self.view.get(job_id))

    def list(self, queue: str | None, status: str | None, limit: int, after: str | None) -> Page:
        views = self.view.list(queue, status, limit + 1, after=after)
        return views[:limit], len(views) > limit

    def logs(self, job_id: str) -> str:
        return str(self.view.logs(job_id))


def _row(view: dict[str, Any]) -> tuple[Any, ...]:
    return (
        view["id"],
        view.get("name") or "",
        view["queue"],
        view["priority"],
        view["status"],
        f"{view['attempts']}/{view['maxAttempts']}",
        view.get("worker") or "",
        view["function"],
    )


def _show(view: dict[str, Any], output: Output) -> None:
    if output is not Output.table:
        emit(view, output)
        return
    rows = [(key, json.dumps(value) if isinstance(value, (dict, list)) else value) for key, value in view.items()]
    emit(view, output, ("FIELD", "VALUE"), [(k, "" if v is None else v) for k, v in rows])


@app.command()
def submit(
    function: str = typer.Argument(
        ..., help="A registered Function's name (kwargs only), or 'package.module:function' (verb execute)."
    ),
    args: list[str] = typer.Argument(None, help="Positional arguments, each read as JSON (else as a string)."),
    kwarg: list[str] = typer.Option([], "--kwarg", "-k", help="Keyword argument NAME=JSON (repeatable)."),
    queue: str | None = typer.Option(
        None, "--queue", "-q", help="A queue of settings.cortex.queues (default: the Function's, else default)."
    ),
    priority: int = typer.Option(0, "--priority", "-p", help="Higher runs first."),
    gpus: float | None = typer.Option(None, "--gpus", help="GPUs the job needs."),
    cpus: float | None = typer.Option(None, "--cpus", help="CPUs per worker the job needs."),
    pool: str | None = typer.Option(None, "--pool", help="Run only on this NEURON pool."),
    label: list[str] = typer.Option([], "--label", "-l", help="Label NAME=VALUE (repeatable), e.g. team=vision."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", help="Attempts before the job fails."),
    timeout: str | None = typer.Option(None, "--timeout", help="Per attempt: seconds or 30s, 5m …"),
    name: str | None = typer.Option(None, "--name", help="A display name."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Wait for the result and print it."),
    wait_timeout: float | None = typer.Option(
        None, "--wait-timeout", help="With --wait: give up waiting after this many seconds (the job goes on); "
        "default: wait until it ends."
    ),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Queue FUNCTION(ARGS…, -k NAME=VALUE…): a registered Function by name, or MODULE:FUNCTION;
    prints the job id, or with --wait its result."""
    gpus, cpus = _amount(gpus, "--gpus"), _amount(cpus, "--cpus")
    if wait_timeout is not None and not (wait and math.isfinite(wait_timeout) and wait_timeout > 0):
        problem = "needs --wait" if not wait else f"{wait_timeout} is not a number of seconds above 0"
        raise ValidationError(f"--wait-timeout: {problem}: e.g. --wait --wait-timeout 60", param="wait_timeout")
    resources = {k: v for k, v in (("gpus", gpus), ("cpus", cpus), ("pool", pool)) if v is not None}
    options: dict[str, Any] = {"queue": queue, "priority": priority, "resources": resources or None,
                               "max_attempts": max_attempts, "timeout": timeout,
                               "labels": _pairs(label, "--label", parse=False), "name": name}  # fmt: skip
    call_args = [_value(a, f"ARGS[{i}]") for i, a in enumerate(args or [])]
    kwargs = _pairs(kwarg, "--kwarg", parse=True)
    if ":" in function:
        from mnemos.neuron.codec import validate_reference

        validate_reference(function)  # a clear error before anything is sent
    from mnemos.cli._session import platform_up
    from mnemos.remote import RemoteJobs

    lasting = platform_up()  # else the job runs in an embedded cluster that ends with this command
    if not wait and not lasting:  # "queued", then left `running` once this command's cluster stopped
        raise ValidationError("--wait: no platform is up to run the job once this command returns (without one, "
                              "it would run in this command's embedded cluster, stop with it, and run again from "
                              "the start at the next `mnemos up`): start one with `mnemos up` (or `mnemos login "
                              "URL`), or submit it with --wait", param="wait")  # fmt: skip
    jobs = _jobs()
    if isinstance(jobs, RemoteJobs):  # over the gateway: it resolves a Function's name (and checks the caller)
        handle = _submit_remote(jobs, function, call_args, kwargs, options)
    else:
        handle = _submit_embedded(jobs, function, call_args, kwargs, options)
    if not wait:
        if output is Output.table:
            console.print(f"job {handle.id} queued")
        else:
            emit(handle.info(), output)
        return
    with waiting_for("job", handle.id, lasting, "`mnemos up` starts one that keeps jobs running"):
        view = handle.wait(wait_timeout)
    # raises when it failed, was cancelled or is unfinished
    value = handle.result(wait_timeout) if hasattr(handle, "result") and not hasattr(handle._api, "value_of") \
        else handle._api.value_of(view, wait_timeout)
    if output is Output.table:
        print(json.dumps(value, default=repr))
    else:
        emit({**{k: v for k, v in view.items() if k != "result"}, "value": value}, output)


def _submit_remote(jobs: Any, function: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> Any:
    """``POST /v1/jobs`` with the call as given: a Function's name or a reference, its keyword
    arguments apart from the job's options (so that ``-k name=…`` is an argument, not the job's name)."""
    from mnemos.remote import RemoteJobHandle

    camel = {"max_attempts": "maxAttempts"}
    body: dict[str, Any] = {"function": function, "args": args, "kwargs": kwargs}
    body.update({camel.get(k, k): v for k, v in options.items() if v is not None and v != {}})
    return RemoteJobHandle(jobs, jobs._client.request("POST", "/v1/jobs", json_body=body))


def _submit_embedded(jobs: Any, function: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> Any:
    """Submit to this platform's CORTEX (the local admin): a reference as it is; a Function's name
    as the gateway calls it (``JobsAPI._registered``: ``mnemos.cortex.http.job_spec``), with ``kwargs``
    its arguments whatever their names (``-k name=…`` is not the job's name)."""
    if ":" not in function:
        return jobs._submit([jobs._registered(function, tuple(args), kwargs, options)])[0]
    job_options = jobs._options(options["queue"] or "default", options["priority"], options["resources"],
                                options["max_attempts"], options["timeout"], options["labels"], options["name"],
                                None, ())  # fmt: skip
    return jobs._submit([jobs._submission(function, tuple(args), kwargs, job_options)])[0]


@app.command("list")
def list_jobs(
    queue: str | None = typer.Option(None, "--queue", "-q"),
    status: str | None = typer.Option(
        None, "--status", "-s", help="queued, running, retrying, succeeded, failed (dead), cancelled."
    ),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    after: str | None = typer.Option(None, "--after", help="A job id: the page of older jobs after it."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Jobs, newest first, a page of --limit at a time (the next page: --after <last id>)."""
    views, more = _reader().list(queue, status, limit, after)
    emit(views, output, _COLUMNS, [_row(v) for v in views])
    if more and output is Output.table:
        console.print(f"more: mnemos jobs list --after {views[-1]['id']}", style="dim")


def _job_id(value: str) -> str:
    """A JOB argument: an empty one (``"$JOB"`` unset) names no job (the gateway answered only "Not Found")."""
    if not value.strip():
        raise typer.BadParameter("empty: give a job id (`mnemos jobs list` lists them)")
    return value


_JOB = typer.Argument(..., metavar="JOB_ID", callback=_job_id, help="The job's id (`mnemos jobs list`).")


@app.command()
def get(job_id: str = _JOB, output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """One job: status, attempts, worker, timestamps, error, result."""
    _show(_reader().get(job_id), output)


@app.command()
def cancel(job_id: str = _JOB, output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Cancel a queued, retrying or running job."""
    from mnemos.cli._session import platform_up

    if not platform_up():
        raise UnavailableError("no platform is up to cancel the job on: start one with `mnemos up`")
    view = _jobs().get(job_id).cancel()
    if output is Output.table:
        console.print(f"job {view['id']} {view['status']}")
    else:
        emit(view, output)


@app.command()
def retry(job_id: str = _JOB, output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Submit a failed or cancelled job again, as a new job (owned by you): prints its id."""
    from mnemos.cli._session import platform_up

    if not platform_up():
        raise UnavailableError("no platform is up to retry the job on: start one with `mnemos up`")
    handle = _jobs().retry(job_id)
    if output is Output.table:
        console.print(f"job {handle.id} queued (a retry of {job_id})")
    else:
        emit(handle.info(), output)


@app.command()
def stats(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Queues, worker pools (a pool with no workers says why) and job counts: no job's data."""
    from mnemos.cli._session import platform_up

    if not platform_up():
        raise UnavailableError("no platform is up to ask: start one with `mnemos up`, or `mnemos login URL`")
    data = _jobs().stats()
    rows = [(f"queue {name}", f"queued {q['queued']}  running {q['running']}/{q['concurrency']}")
            for name, q in data["queues"].items()]  # fmt: skip
    for pool in data["pools"]:
        size = f"{len(pool['workers'])} workers ({pool['minWorkers']}-{pool['maxWorkers']})"
        rows.append((f"pool {pool['name']}", f"{size}  {pool['reason']}" if pool.get("reason") else size))
    rows.append(("jobs", "  ".join(f"{status} {n}" for status, n in data["jobs"].items())))
    emit(data, output, ("", ""), rows)


@app.command()
def logs(
    job_id: str = _JOB,
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing lines as the job prints them."),
) -> None:
    """What the job printed (stdout and stderr, every attempt); -f follows it live."""
    from mnemos.cli._session import platform_up

    if follow and not platform_up():
        raise UnavailableError("--follow: no platform is up to follow the job on: start one with `mnemos up` or "
                               "`mnemos login URL` (without -f: what the journal holds)", param="follow")  # fmt: skip
    after = _event_position() if follow else None
    text = _reader().logs(job_id)
    print(text, end="" if text.endswith("\n") or not text else "\n")
    if follow and not _job_finished(job_id):
        _follow_logs(job_id, after)


def _event_position() -> int | None:
    """Where the event stream is now (taken before the logs so far are read: no line is missed)."""
    from mnemos.cli._session import event_position, open_client

    return event_position(open_client(connect=True))


def _job_finished(job_id: str) -> bool:
    return _reader().get(job_id)["status"] in ("succeeded", "failed", "cancelled")


def _follow_logs(job_id: str, after: int | None) -> None:
    """Print ``job.log`` lines of the job from the event stream until it ends (Ctrl-C stops); over
    the gateway's ``/v1/events`` when a URL is configured."""
    from mnemos.cli._session import open_client

    try:
        for event in open_client(connect=True).watch(["job"], subject=f"job:{job_id}", after=after):
            if event["type"] == "job.log":
                print(event["data"]["line"], flush=True)
            elif event["type"] in ("job.succeeded", "job.failed", "job.cancelled"):
                console.print(f"{job_id} {event['type'][4:]}", style="dim")
                return
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # stopped by Ctrl-C, as the shell reports it
