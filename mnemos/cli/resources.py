"""``mnemos apply|get|delete|validate|schema|history``: declarative resources (CRADLE + GENOME)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mnemos.cli._output import Output, console, emit
from mnemos.cli._session import open_client
from mnemos.genome import resolve_kind

__all__ = ["apply", "delete", "get", "history", "register", "schema", "validate"]


_KINDS = "Model, Policy, Adapter, Pipeline or Function (any case, or the plural)."


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(get)
    app.command()(delete)
    app.command()(validate)
    app.command()(schema)
    app.command()(history)
    app.command()(describe)


def apply(
    file: list[str] = typer.Option(
        ..., "-f", "--file", help="File or folder of YAML resources (repeatable); - reads standard input."
    ),
) -> None:
    """Create or update resources; unchanged ones are reported as such."""
    resources = _load(file_paths(file))
    client = open_client(publish=True)
    for result in client.apply(resources):
        console.print(str(result))


def file_paths(values: list[str]) -> list[Path]:
    """``-f`` values as paths; an empty one is refused (as a path ``""`` is the current folder, and
    ``validate -f ""`` read, ``apply -f ""`` applied, everything under it)."""
    from mnemos.errors import ValidationError

    if any(not value.strip() for value in values):
        raise ValidationError('-f/--file: an empty path: give a file, a folder ("." for the current one) or - for '
                              "standard input", param="file")  # fmt: skip
    return [Path(value) for value in values]


def _load(files: list[Path], verb: str = "apply") -> list[Any]:
    """The resources of ``files``, checked as ``apply`` and ``validate`` check them: schema, no
    kind+name twice, at least one document, and GENOME's checks beyond the schema (for pipelines,
    what ``mnemos run`` checks first), all before the first one is applied. The registry makes
    the same checks on every write (``mnemos.genome.admission``): the same errors over HTTP and
    from the Python API."""
    from mnemos.errors import BadRequestError
    from mnemos.genome.admission import check

    resources = load_files(files)
    if not resources:
        named = ", ".join("standard input" if str(f) == "-" else str(f) for f in files)
        raise BadRequestError(f"no documents in {named} (it is empty, or holds only comments): nothing to {verb}",
                              param="file")  # fmt: skip
    for resource in resources:
        check(resource)
    return resources


def stream_file(path: Path) -> bool:
    """Whether ``path`` is a file that is read as a stream: a device or a pipe (``/dev/null``, ``-f
    <(kustomize build)``), neither a folder nor a regular file."""
    return str(path) != "-" and path.exists() and not path.is_dir() and not path.is_file()


def load_files(files: list[Path], load: Any = None) -> list[Any]:
    """The resources of ``files`` (``load``: how files and folders are read, default
    ``mnemos.genome.load_paths``), a device or a pipe (``stream_file``) read as one file."""
    from mnemos.genome import load_paths, parse_documents
    from mnemos.genome.kinds import STDIN, read_text, refuse_duplicates

    load = load or load_paths
    if not any(stream_file(f) or str(f) == STDIN for f in files):
        return list(load(files))

    def one(f: Path) -> list[Any]:  # standard input is read as load_paths reads it, whatever ``load`` is
        if stream_file(f):
            return parse_documents(read_text(f), str(f))
        return load_paths([f]) if str(f) == STDIN else load([f])

    located = [(r, "stdin" if str(f) == STDIN else str(f)) for f in files for r in one(f)]
    refuse_duplicates(located)
    return [r for r, _ in located]


def get(
    kind: str = typer.Argument(..., help=_KINDS),
    name: str | None = typer.Argument(None),
    generation: int | None = typer.Option(None, "--generation", "-g"),
    output: Output = typer.Option(Output.table, "-o", "--output"),
    watch: bool = typer.Option(False, "-w", "--watch", help="Then print each change as it happens (Ctrl-C stops)."),
) -> None:
    """Show one resource or list a kind; -w keeps watching changes (and, for Models, status)."""
    if generation is not None and name is None:
        from mnemos.errors import ValidationError

        raise ValidationError(f"--generation needs a NAME: mnemos get {kind} NAME --generation {generation}",
                              param="generation")  # fmt: skip
    client = open_client()
    cls = resolve_kind(kind)
    if watch:
        _require_platform("--watch")
    found = client.get(cls.__name__, name, generation=generation)
    items = [found] if name else found
    data = [r.dump() for r in items]
    if cls.__name__ == "Model":
        statuses = _model_statuses(client, [r.name for r in items])
        for doc in data:
            doc["status"] = statuses.get(doc["metadata"]["name"]) or {"phase": "Pending"}
        emit(
            data[0] if name and output is not Output.table else data,
            output,
            ("NAME", "GENERATION", "ENGINE", "READY", "REPLICAS", "REASON"),
            [_model_row(r, statuses.get(r.name)) for r in items],
        )
        if watch:
            _watch(cls.__name__, name)
        return
    emit(
        data[0] if name and output is not Output.table else data,
        output,
        ("KIND", "NAME", "GENERATION", "CREATED"),
        [(cls.__name__, r.name, r.generation, r.metadata.creation_timestamp) for r in items],
    )
    if watch:
        _watch(cls.__name__, name)


def _require_platform(option: str) -> None:
    """Refuse ``option`` when no platform is up: its changes come from the running platform's events
    (an embedded cluster started for the command would have none to tell)."""
    from mnemos.cli._session import platform_up

    if not platform_up():
        from mnemos.errors import UnavailableError

        raise UnavailableError(f"{option}: no platform is up to watch: start one with `mnemos up`, "
                               "or `mnemos login URL`", param=option.lstrip("-"))  # fmt: skip


def _watch(kind: str, name: str | None) -> None:
    """Print changes of ``kind`` (one ``name``, or all) from the event stream until Ctrl-C."""
    client = open_client(connect=True)
    families = ["resource", "model"] if kind == "Model" else ["resource"]
    try:
        for event in client.watch(families):
            data, subject = event.get("data") or {}, str(event.get("subject", ""))
            if event["type"] == "reset":
                console.print("events were missed; listing again", style="yellow")
            elif event["type"] == "model.status" and (name is None or subject == f"model/{name}"):
                console.print(f"model/{data.get('name')}  {data.get('phase') or data.get('status')}  "
                              f"generation {data.get('generation')}  {data.get('reason') or ''}")  # fmt: skip
            elif data.get("kind") == kind and (name is None or data.get("name") == name):
                console.print(f"{kind.lower()}/{data.get('name')}  {data.get('action')}  "
                              f"generation {data.get('generation')}")  # fmt: skip
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # stopped by Ctrl-C, as the shell reports it


def _model_statuses(client: Any, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """The observed status of each Model named: the records the relay controller wrote to ENGRAM
    (with conditions), or over ``--url`` the gateway's (``GET /v1/status``: ``model_status``)."""
    from mnemos.relay.model_status import read_status

    engram = getattr(client, "engram", None)
    try:
        if engram is None:
            served = client.status().get("model_status") or {}
            return {name: served.get(name) for name in names}
        recorded = {name: read_status(engram, name) for name in names}
    except Exception:  # noqa: BLE001 - status is informative: a listing never fails for it
        return dict.fromkeys(names)
    return recorded if _platform_running() else {name: _unknown(status) for name, status in recorded.items()}


def _platform_running(note: bool = True) -> bool:
    """Whether a platform is up to serve models (else a recorded status is the last one it saw)."""
    from mnemos.cli._session import NOTES, platform_up

    up = platform_up()
    line = ("note: no platform is up (`mnemos up`, or `mnemos login URL` for a remote one): model statuses are "
            "unknown; the last ones recorded are in -o json (last_recorded)")  # fmt: skip
    if not up and note and line not in NOTES:
        NOTES.append(line)
    return up


def _unknown(recorded: dict[str, Any] | None) -> dict[str, Any]:
    """A Model's status while no platform runs: ``Unknown`` (``PlatformDown``), not the phase the
    controller last recorded (``Ready`` before ``mnemos down``), which is kept as ``last_recorded``."""
    last = f"the last status recorded was {recorded.get('phase')}" if recorded else "no status was recorded"
    status: dict[str, Any] = {"phase": "Unknown", "reason": "PlatformDown", "ready_replicas": 0,
                              "message": f"no platform is up, so nothing serves this model ({last})"}  # fmt: skip
    if recorded:
        status["desired_replicas"] = recorded.get("desired_replicas")
        status["last_recorded"] = recorded
    return status


def _model_row(model: Any, status: dict[str, Any] | None) -> tuple[Any, ...]:
    status = status or {"phase": "Pending"}
    phase = status.get("phase", "Pending")
    ready = "True" if phase == "Ready" and status.get("ready_replicas", 1) else "False"  # no replica up: not ready
    ready = "Unknown" if phase == "Unknown" else ready
    desired = status.get("desired_replicas")
    replicas = f"{status.get('ready_replicas', 0)}/{desired if desired is not None else '-'}"
    reason = status.get("reason") or phase
    reason = "" if reason == "Ready" else reason  # a Ready model's other reasons show: Rolling …
    served = status.get("served_generation")
    generation = model.generation if served in (None, model.generation) else f"{model.generation} (serving {served})"
    return (model.name, generation, model.spec.runtime.engine, ready, replicas, reason)


def describe(kind: str = typer.Argument(..., help="Model."), name: str = typer.Argument(...)) -> None:
    """A Model's spec summary, status, conditions and recent events."""
    from mnemos.errors import ValidationError

    cls = resolve_kind(kind)
    if cls.__name__ != "Model":
        raise ValidationError(f"describe supports Model only (got {cls.__name__}); use `mnemos get {kind} {name}`",
                              param="kind")  # fmt: skip
    client = open_client()
    model = client.get("Model", name)
    status = client.model_status(name)
    if getattr(client, "engram", None) is not None and not _platform_running(note=False):
        status = {**_unknown(status), "events": (status or {}).get("events")}  # what happened before stays true
    spec = model.spec
    console.print(f"Name:        {model.name}")
    console.print(f"Generation:  {model.generation}   Engine: {spec.runtime.engine}   Artifact: {spec.artifact.uri}")
    console.print(f"Phase:       {status.get('phase')}   Reason: {status.get('reason') or '-'}")
    ready, desired = status.get("ready_replicas", 0), status.get("desired_replicas", "-")
    console.print(f"Replicas:    {ready} ready / {desired} desired")
    served, digest = status.get("served_generation") or "-", status.get("digest") or "-"
    console.print(f"Served:      generation {served}  digest {digest}")
    if status.get("message"):
        console.print(f"Message:     {status['message']}")
    console.print("Conditions:")
    for cond in status.get("conditions") or []:
        console.print(f"  {cond['type']:<18} {cond['status']:<6} {cond.get('reason') or '':<16} {cond.get('at', '')}")
    if not status.get("conditions"):
        console.print("  (none)")
    console.print("Events:")
    events = status.get("events") or []
    for event in events:
        console.print(f"  {event.get('at', '')}  {event.get('phase', ''):<10} {event.get('reason') or '':<16} "
                      f"{(event.get('message') or '')[:120]}")  # fmt: skip
    if not events:
        console.print("  (none)")


def delete(kind: str = typer.Argument(..., help=_KINDS), name: str = typer.Argument(...)) -> None:
    """Delete a resource (its history is kept)."""
    resource = open_client(publish=True).delete(kind, name)
    console.print(f"{type(resource).__name__.lower()}/{resource.name} deleted (generation {resource.generation})")


def validate(
    file: list[str] = typer.Option(
        ..., "-f", "--file", help="File or folder of YAML resources (repeatable); - reads standard input."
    ),
) -> None:
    """Check schema, pipeline steps and admission without applying."""
    resources = _load(file_paths(file), "validate")
    for resource in open_client().admit(resources):
        console.print(f"{type(resource).__name__.lower()}/{resource.name} valid")


def schema(kind: str = typer.Argument(..., help=_KINDS)) -> None:
    """Print the JSON Schema of a kind."""
    from mnemos.client import Client

    print(json.dumps(Client.schema(kind), indent=2))


def history(
    kind: str = typer.Argument(..., help=_KINDS),
    name: str = typer.Argument(...),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Every generation of a resource (DELETED: when a generation was deleted)."""
    items = open_client().history(kind, name)
    emit(
        [r.dump() for r in items],
        output,
        ("GENERATION", "CREATED", "DELETED"),
        [(r.generation, r.metadata.creation_timestamp, r.metadata.deletion_timestamp or "") for r in items],
    )
