"""``mnemos wraith list|run|snapshots``: WRAITH's schedules, runs now, and backups."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import typer

from mnemos.cli._output import Output, console, emit
from mnemos.cli._session import require_local
from mnemos.cli._storage import check_store, storage_errors

__all__ = ["NEEDS_PLATFORM", "USES_PLATFORM", "app", "list_tasks", "run", "snapshots"]

# Tasks that reach the platform's actors: `--local` joins the running cluster for them.
USES_PLATFORM = frozenset({"replay-events", "gitops-sync"})
NEEDS_PLATFORM = frozenset({"replay-events"})  # CORTEX's jobs: no platform, nothing to replay

app = typer.Typer(
    help="WRAITH background tasks: log compaction, dead-job replay, retention, backups, GitOps sync.",
    no_args_is_help=True,
)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(float(t), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _next_run(item: dict[str, Any]) -> str:
    if not item["enabled"]:
        return "disabled"
    return f"never: {item['scheduleError']}" if item["scheduleError"] else _when(item["nextRun"])


@app.command("list")
def list_tasks(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Each task: schedule, last run (and how it ended), next run (or why it has none)."""
    require_local("wraith list")
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.wraith.schedule import entries_from_settings, read_state

    settings = load_settings()
    engram = Engram.from_settings(settings)
    state = read_state(engram)
    now = time.time()
    items: list[dict[str, Any]] = []
    for entry in entries_from_settings(settings):
        current = state.get(entry.name, {})
        finished = (
            engram.read_json(f"wraith/runs/{entry.name}.json")
            if engram.exists(f"wraith/runs/{entry.name}.json")
            else {}
        )
        if finished and float(finished.get("started") or 0) < float(current.get("lastRun") or 0):
            finished = {}  # the run before the last: the last one, submitted after it, has not ended
        next_run = current.get("nextRun") if current.get("lastSlot") is not None else None
        error = entry.error or current.get("error")
        if entry.enabled and next_run is None and error is None:
            try:
                next_run = entry.next_after(now)
            except Exception as exc:  # noqa: BLE001 - shown on its line; the other entries still list
                error = f"cannot plan {entry.name}: {exc}"
        items.append(
            {
                "name": entry.name,
                "schedule": entry.every,
                "enabled": entry.enabled,
                "lastRun": current.get("lastRun") or finished.get("started"),
                "lastJob": current.get("lastJob"),
                "lastStatus": finished.get("status") if finished else current.get("lastStatus"),
                "lastError": finished.get("error"),
                "nextRun": next_run if entry.enabled and error is None else None,
                "scheduleError": error if entry.enabled else None,
            }
        )
    emit(
        items,
        output,
        ("NAME", "SCHEDULE", "LAST RUN", "STATUS", "NEXT RUN"),
        [
            (
                i["name"],
                i["schedule"],
                _when(i["lastRun"]),
                i["lastStatus"] or "-",
                _next_run(i),
            )
            for i in items
        ],
    )


@app.command()
def run(
    name: str = typer.Argument(..., help="compact-logs, replay-events, retention, backup or gitops-sync."),
    local: bool = typer.Option(
        False,
        "--local",
        help="Run in this process, not as a CORTEX job (replay-events and gitops-sync join a running platform; "
        "replay-events needs one).",
    ),
    output: Output | None = typer.Option(
        None, "-o", "--output",
        help="json or yaml: the report ({task, job, status} for a submitted task). Default: --local's report as "
        "yaml, else one line.",
    ),
) -> None:
    """Run a task now: through the WRAITH actor and CORTEX, or here with --local."""
    require_local("wraith run")
    from mnemos.cli._session import open_client, platform_address
    from mnemos.config import load_settings
    from mnemos.errors import ConflictError, UnavailableError
    from mnemos.wraith.tasks import run_local, task_function

    task_function(name)  # an unknown name lists the valid ones
    settings = load_settings()
    if local:
        if name in USES_PLATFORM:  # it talks to CORTEX / the controllers: join the running cluster
            address = platform_address()
            if address:
                from mnemos.cradle import init_ray

                init_ray(address, settings)
            elif name in NEEDS_PLATFORM:
                raise UnavailableError(
                    f"{name} needs the platform's CORTEX even with --local: start it with `mnemos up`",
                    param="local",
                )
        with storage_errors(_stores(settings, name), settings.engram.storage_options):
            result = run_local(settings, name)
        emit(result, output if output in (Output.json, Output.yaml) else Output.yaml)
        return

    if not platform_address():
        raise UnavailableError("no platform is up: start one with `mnemos up`, or pass --local", param="local")
    import ray

    from mnemos.wraith.scheduler import ensure

    client = open_client(connect=True)
    result = ray.get(ensure(client.settings, client.engram).run_now.remote(name))
    if str(result["status"]).startswith("skipped"):  # its runs never overlap: this one waits for the last
        raise ConflictError(f"wraith: {name}: {result['status']}: run it again once that job has ended", param="name")
    if result["status"] != "submitted":
        raise UnavailableError(f"wraith: {name}: {result['status']}", param="name")
    if output in (Output.json, Output.yaml):  # -o json printed the line, no document
        emit(result, output)
        return
    console.print(f"wraith: {name} submitted as job {result['job']}")


def _stores(settings: Any, task: str) -> dict[str, str]:
    """The stores task ``task`` works on, by the setting that names each (for its errors)."""
    from mnemos.wraith.backup import default_destination

    root = settings.engram.root()
    check_store("engram.uri", root)  # before a default next to it is made up (s3:// alone: "a whole bucket")
    if task != "backup":
        return {"engram.uri": root}
    return {"engram.uri": root, "engram.backups.destination": settings.engram.backups.destination
            or default_destination(root)}  # fmt: skip


@app.command()
def snapshots(
    source: str | None = typer.Option(None, "--from", help="Backup URI (default: engram.backups.destination)."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """The snapshots at the backup URI, oldest first."""
    require_local("wraith snapshots")
    import os

    from mnemos.cli.gitops import backup_store
    from mnemos.errors import IntegrityError, NotFoundError
    from mnemos.wraith.backup import list_snapshots, load_manifest

    local = source and ("://" not in source or source.startswith("file://"))
    if source and local and not os.path.exists(os.path.expanduser(source.removeprefix("file://"))):
        # a mistyped folder would list nothing
        shown = source if len(source) <= 200 else f"{source[:200]}… ({len(source)} characters)"
        raise NotFoundError(f"--from {shown}: no such folder; pass the backup URI (engram.backups.destination)",
                            param="from")  # fmt: skip
    dest = backup_store(source)
    items: list[dict[str, Any]] = []
    with storage_errors({"--from" if source else "engram.backups.destination": dest.uri}, dest.storage_options):
        for snapshot in list_snapshots(dest):
            try:
                manifest = load_manifest(dest, snapshot)
            except IntegrityError as exc:  # listed as such; the others still list
                items.append({"snapshot": snapshot, "created": None, "documents": None, "refs": None,
                              "blobs": None, "error": exc.message})  # fmt: skip
                continue
            items.append(
                {
                    "snapshot": snapshot,
                    "created": manifest["created"],
                    "documents": len(manifest["documents"]),
                    "refs": len(manifest["refs"]),
                    "blobs": len(manifest["blobs"]),
                }
            )
    emit(
        items,
        output,
        ("SNAPSHOT", "CREATED", "DOCUMENTS", "REFS", "BLOBS"),
        [
            (i["snapshot"], _when(i["created"]), i["documents"], i["refs"], i["blobs"])
            if "error" not in i
            else (i["snapshot"], "damaged (-o json says why)", "-", "-", "-")
            for i in items
        ],
    )
