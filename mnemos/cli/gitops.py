"""``mnemos sync|diff|restore``: GitOps sync, what an apply would change, and restoring a backup."""

from __future__ import annotations

from typing import Any

import typer

from mnemos.cli._output import Output, console, emit, err_console
from mnemos.cli._storage import storage_errors

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
    adopt: bool = typer.Option(
        False, "--adopt", help="Take over resources that exist but were not created by GitOps (e.g. `mnemos apply`)."
    ),
    ref: str = typer.Option("main", "--ref", help="Branch, tag or commit (a short sha too)."),
    interval: str | None = typer.Option(None, "--interval", help="Sync again every INTERVAL (e.g. 5m)."),
    count: int | None = typer.Option(None, "--count", min=1, help="With --interval: stop after COUNT syncs."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Make the registry equal to a folder of a Git repository; revert drift; record it in lineage.

    Runs on the platform's own machine (it keeps its state in ENGRAM): not over --url.
    """
    from mnemos.cli._session import open_client, require_local
    from mnemos.errors import MnemosError, ValidationError
    from mnemos.wraith.gitops import sync as run_sync
    from mnemos.wraith.gitops import sync_loop

    require_local("sync")
    if count is not None and interval is None:
        raise ValidationError("--count needs --interval: pass both, or neither for one sync", param="count")
    seconds = _seconds(interval, "--interval") if interval is not None else None
    client = open_client(publish=True)
    if seconds is None:
        _print_report(run_sync(client, repo, path, prune=prune, ref=ref, adopt=adopt), output)
        return
    failures: list[MnemosError] = []

    def on_error(exc: Exception) -> None:
        if not isinstance(exc, MnemosError):
            raise exc
        failures.append(exc)
        err_console.print(f"error: {exc.message}")

    try:
        done = sync_loop(
            client,
            repo,
            path,
            interval=seconds,
            count=count,
            prune=prune,
            ref=ref,
            adopt=adopt,
            on_report=lambda r: _print_report(r, output),
            on_error=on_error,
        )
    except KeyboardInterrupt:
        console.print("sync: stopped")
        done = None
    if failures:
        of = f" of {done}" if done is not None else ""
        err_console.print(f"error: {len(failures)}{of} syncs failed")
        raise typer.Exit(failures[-1].exit_code)
    if done is None:
        raise typer.Exit(130)  # stopped by Ctrl-C, as the shell reports it


def diff(
    file: list[str] = typer.Option(..., "-f", "--file", help="File or folder of YAML resources (repeatable)."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Show what applying these files would change, as unified diffs of the YAML (values*.yaml skipped).

    Over --url the live resources are read through the gateway's API.
    """
    from mnemos.cli._session import open_client
    from mnemos.cli.resources import file_paths, load_files
    from mnemos.errors import BadRequestError
    from mnemos.wraith.gitops import diff as compute_diff
    from mnemos.wraith.gitops import load_resources

    paths = file_paths(file)
    resources = load_files(paths, load_resources)  # a pipe too: mnemos diff -f <(kustomize build)
    if not resources:
        raise BadRequestError(f"-f/--file: no resources in {', '.join(map(str, file))}: nothing to diff "
                              "(YAML or JSON files, .yaml/.yml/.json)", param="file")  # fmt: skip
    client = open_client()
    client.admit(resources)  # what apply would refuse (a check, a Policy) is refused here, not shown as a change
    entries = compute_diff(client, resources)
    if output is not Output.table:
        emit([{"kind": e.kind, "name": e.name, "action": e.action, "diff": e.diff} for e in entries], output)
        return
    for entry in entries:
        console.print(str(entry))
        if entry.diff:
            print(entry.diff, end="" if entry.diff.endswith("\n") else "\n")


def given(value: str | None, option: str) -> str | None:
    """``value`` of ``option`` (``--to``, ``--from``), refused when it is given empty: ``--to "$DEST"``
    with ``DEST`` unset is no choice of the default (the configured root, for a forced restore)."""
    if value is not None and not value.strip():
        from mnemos.errors import ValidationError

        raise ValidationError(f"{option}: empty: give a local folder or a URI, or leave {option} out for the default",
                              param=option.lstrip("-"))  # fmt: skip
    return value


def backup_store(source: str | None) -> Any:
    """The backup store: ``source`` (``--from``), else ``engram.backups.destination``, else next to the root."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.wraith.backup import default_destination, options_for

    source = given(source, "--from")
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
    """Restore a WRAITH backup: registry, refs, logs and their blobs (on the platform's own machine)."""
    from mnemos.cli._session import require_local
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.wraith.backup import options_for, same_store
    from mnemos.wraith.backup import restore as run_restore

    require_local("restore")
    to = given(to, "--to")
    settings = load_settings()
    root = Engram.from_settings(settings)
    target = Engram(to, options_for(to, root)) if to else root
    dest = backup_store(source)
    stores = {"--to" if to else "the ENGRAM root": target, "--from" if source else "the backup store": dest}
    for name, store in stores.items():  # each first on its own: an error then names the one that failed
        with storage_errors({name: store.uri}, store.storage_options):
            store.exists("registry")  # a missing package, credentials or endpoint fail here (read-only)
    # however --to spells it (a trailing /, file://, ..); a folder inside the root is the root's too
    # (its copies of registry/ and soul/ would be the live root's, and every later backup's)
    if same_store(target, root) or same_store(root, target, inside=True):
        from mnemos.cradle import read_cluster
        from mnemos.errors import ConflictError

        if read_cluster():  # its actors would write the root while it is restored
            raise ConflictError(
                f"the platform is up on {root.uri}: stop it with `mnemos down` first, or restore elsewhere with "
                "--to (outside that root)",
                param="to",
            )
    with storage_errors({name: store.uri for name, store in stores.items()}, root.storage_options):
        report = run_restore(dest, snapshot, target, force=force)
    console.print(
        f"restored snapshot {report.snapshot} into {report.target}: "
        f"{report.documents} documents, {report.refs} refs, {report.blobs} blobs"
    )
    for line in report.reverted:
        console.print(f"reverted to the snapshot: {line}")
