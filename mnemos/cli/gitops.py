"""``mnemos sync|diff|restore``: GitOps sync, what an apply would change, and restoring a backup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mnemos.cli._output import Output, console, emit, err_console

__all__ = ["backup_store", "diff", "register", "restore", "sync"]


def register(app: typer.Typer) -> None:
    app.command()(sync)
    app.command()(diff)
    app.command()(restore)


def _seconds(value: str, option: str) -> float:
    from pydantic import TypeAdapter
    from pydantic import ValidationError as PydanticValidationError

    from mnemos._model import Duration
    from mnemos.errors import ValidationError

    try:
        seconds = float(TypeAdapter(Duration).validate_python(value))
    except PydanticValidationError:
        raise ValidationError(f"{option}: {value!r} is not a duration (e.g. 30s, 5m, 1h)", param=option) from None
    if seconds <= 0:
        raise ValidationError(f"{option}: must be positive", param=option)
    return seconds


def _print_report(report: Any, output: Output) -> None:
    if output is not Output.table:
        emit({**report.as_dict(), "diff": report.diff}, output)
        return
    console.print(report.summary())
    for action in ("added", "changed", "reverted", "pruned", "orphaned"):
        for ident in getattr(report, action):
            console.print(f"  {ident.lower()} {action}")


def sync(
    repo: str = typer.Option(..., "--repo", help="Git URL or local path of the ops repository."),
    path: str = typer.Option(..., "--path", help="Folder of the repository to apply, e.g. environments/dev."),
    prune: bool = typer.Option(False, "--prune", help="Delete resources this source created that Git no longer has."),
    ref: str = typer.Option("main", "--ref", help="Branch, tag or commit."),
    interval: str | None = typer.Option(None, "--interval", help="Sync again every INTERVAL (e.g. 5m)."),
    count: int | None = typer.Option(None, "--count", min=1, help="With --interval: stop after COUNT syncs."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Make the registry equal to a folder of a Git repository; revert drift; record it in lineage."""
    from mnemos.cli._session import open_client
    from mnemos.errors import MnemosError
    from mnemos.wraith.gitops import sync as run_sync
    from mnemos.wraith.gitops import sync_loop

    client = open_client(publish=True)
    if interval is None:
        _print_report(run_sync(client, repo, path, prune=prune, ref=ref), output)
        return

    def on_error(exc: Exception) -> None:
        if not isinstance(exc, MnemosError):
            raise exc
        err_console.print(f"error: {exc.message}")

    try:
        sync_loop(
            client,
            repo,
            path,
            interval=_seconds(interval, "--interval"),
            count=count,
            prune=prune,
            ref=ref,
            on_report=lambda r: _print_report(r, output),
            on_error=on_error,
        )
    except KeyboardInterrupt:
        console.print("sync: stopped")


def diff(
    file: list[Path] = typer.Option(..., "-f", "--file", help="File or folder of YAML resources (repeatable)."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Show what applying these files would change, as unified diffs of the YAML (values*.yaml skipped)."""
    from mnemos.cli._session import open_client
    from mnemos.wraith.gitops import diff as compute_diff
    from mnemos.wraith.gitops import load_resources

    client = open_client()
    entries = compute_diff(client, load_resources(file))
    if output is not Output.table:
        emit([{"kind": e.kind, "name": e.name, "action": e.action, "diff": e.diff} for e in entries], output)
        return
    for entry in entries:
        console.print(str(entry))
        if entry.diff:
            print(entry.diff, end="" if entry.diff.endswith("\n") else "\n")


def backup_store(source: str | None) -> Any:
    """The backup store: ``source``, else ``engram.backups.destination``, else next to the root."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.wraith.backup import default_destination, options_for

    settings = load_settings()
    root = Engram.from_settings(settings)
    uri = source or settings.engram.backups.destination or default_destination(root.uri)
    return Engram(uri, options_for(uri, root))


def restore(
    snapshot: str = typer.Argument(..., help="Snapshot id (see `mnemos wraith snapshots`) or 'latest'."),
    to: str | None = typer.Option(None, "--to", help="ENGRAM root to restore into (default: the configured one)."),
    source: str | None = typer.Option(None, "--from", help="Backup URI (default: engram.backups.destination)."),
    force: bool = typer.Option(False, "--force", help="Restore into a root that is not empty."),
) -> None:
    """Restore a WRAITH backup: registry, refs, logs and their blobs."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.wraith.backup import options_for
    from mnemos.wraith.backup import restore as run_restore

    settings = load_settings()
    root = Engram.from_settings(settings)
    target = Engram(to, options_for(to, root)) if to else root
    report = run_restore(backup_store(source), snapshot, target, force=force)
    console.print(
        f"restored snapshot {report.snapshot} into {report.target}: "
        f"{report.documents} documents, {report.refs} refs, {report.blobs} blobs"
    )
