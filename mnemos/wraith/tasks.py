"""The WRAITH tasks: functions CORTEX runs on the ``wraith`` queue (``mnemos.wraith.tasks:<task>``).

Each takes ``(engram_uri, storage_options, options)`` positionally (the ENGRAM root, its
non-secret fsspec options, and a dict of the task's options, validated), returns a
JSON-able report, records the run in ``wraith/runs/<task>.json`` and in lineage
(``wraith:<task>:<id>``). They also run in-process (``mnemos wraith run NAME --local``).

Credentials never travel in job arguments (they would reach the CORTEX journal): the caller
passes ``public_options(...)`` and the worker adds the secret options of its own settings when
the URI is its configured root, or takes them from its environment (``AWS_*`` for S3).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from mnemos._model import CoreModel, to_validation_error
from mnemos.engram import Engram
from mnemos.errors import ConflictError, MnemosError, NotFoundError, UnavailableError, ValidationError
from mnemos.trace import metrics
from mnemos.trace.lineage import record

__all__ = [
    "TASKS",
    "backup",
    "compact_logs",
    "gitops_sync",
    "public_options",
    "replay_events",
    "retention",
    "run_local",
    "task_function",
    "task_options",
]

# task name (as in settings.wraith.cronjobs; the same names as mnemos.config.WRAITH_TASKS) -> function name
TASKS: dict[str, str] = {
    "compact-logs": "compact_logs",
    "replay-events": "replay_events",
    "retention": "retention",
    "backup": "backup",
    "gitops-sync": "gitops_sync",
}
_O = TypeVar("_O", bound=CoreModel)
_SECRET_WORDS = ("secret", "key", "token", "password", "credential", "session")


def task_function(name: str) -> str:
    """``module:function`` of a task; an unknown name lists the valid ones."""
    if name not in TASKS:
        raise NotFoundError(f"unknown WRAITH task {name!r}: valid tasks are {', '.join(TASKS)}", param="name")
    return f"{__name__}:{TASKS[name]}"


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """fsspec options without credentials (``key``, ``secret``, ``token`` … at any depth)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        lowered = str(k).lower()
        if any(word in lowered for word in _SECRET_WORDS) and lowered != "endpoint_url":
            continue
        out[k] = public_options(v) if isinstance(v, dict) else v
    return out


def _engram(uri: str, storage_options: dict[str, Any] | None, task: str = "", actor: str | None = None) -> Engram:
    """The store at ``uri``; for a job that WRAITH actor ``actor`` submitted, checked to be that
    actor's root first (``_check_platform_root``)."""
    options = dict(storage_options or {})
    try:
        from mnemos.config import load_settings

        settings = load_settings()
        if settings.engram.root() == uri:
            options = {**settings.engram.storage_options, **options}
    except MnemosError:
        pass  # no usable local settings: the options given (and the environment) must do
    engram = Engram(uri, options)
    if actor is not None:
        _check_platform_root(task, engram, actor)
    return engram


def _check_platform_root(task: str, engram: Engram, actor: str) -> None:
    """Refuse a job WRAITH submitted for another platform's root: a job that was running when a
    snapshot was taken (the backup that took it, always) runs again on the platform restored from
    it, and would work on the root it came from: back up a lost root, the newest snapshot then, or
    compact the logs of one that another platform writes. The platform's root is its WRAITH actor's."""
    import ray

    from mnemos._actors import NAMESPACE
    from mnemos.wraith.backup import same_store

    try:
        root = ray.get(ray.get_actor(actor, namespace=NAMESPACE).root.remote(), timeout=60)
    except Exception as exc:  # noqa: BLE001 - no actor (yet), or it does not answer: run nothing
        raise UnavailableError(
            f"{task}: this job is for the platform's own ENGRAM root, and its WRAITH actor, which says which root "
            f"that is, did not answer ({type(exc).__name__}): nothing was done (as for a job restored from a "
            "snapshot that runs before WRAITH is up); WRAITH runs it again on its schedule",
            param="engram_uri",
        ) from None
    if not same_store(Engram(str(root)), engram):
        raise ConflictError(
            f"{task}: this job is for the ENGRAM root {engram.uri}, not this platform's root {root}: it was running "
            "when a snapshot of that root was taken, and this platform was restored from it (jobs that were running "
            f"then run again), so it does nothing; WRAITH runs {task} on this root on its schedule",
            param="engram_uri",
        )


def _client(engram: Engram) -> Any:
    """A platform context over ``engram`` that publishes registry changes when this process is in Ray."""
    from mnemos.config import load_settings
    from mnemos.cortex.context import PlatformContext

    settings = load_settings(engram={"uri": engram.uri, "storage_options": engram.storage_options})
    import ray

    return PlatformContext(settings, connected=ray.is_initialized())


def _run(
    name: str,
    engram: Engram,
    body: Callable[[], dict[str, Any]],
    summary: Callable[[dict[str, Any]], dict[str, Any]] = lambda report: report,
) -> dict[str, Any]:
    """Run ``body``, recording its outcome (``summary`` of its report) in ``wraith/runs/<name>.json`` and lineage."""
    run_id = uuid.uuid4().hex[:12]
    started = time.time()
    status, error, report = "succeeded", None, {}
    try:
        report = body()
        return report
    except Exception as exc:
        status = "failed"
        error = exc.message if isinstance(exc, MnemosError) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        outcome: dict[str, Any] = {
            "task": name,
            "run": run_id,
            "started": started,
            "finished": time.time(),
            "status": status,
        }
        if error is not None:
            outcome["error"] = error
        recorded = summary(report) if report else report
        metrics.WRAITH_CRON_RUNS.inc(job=name, status=status)
        engram.write_json(f"wraith/runs/{name}.json", {**outcome, "report": recorded})
        record(engram, f"wraith:{name}:{run_id}", "execution", **outcome, report=recorded)


class _TaskOptions(CoreModel):
    wraith_actor: str | None = Field(
        None,
        description="The WRAITH actor that submitted the job (namespace mnemos): it runs only on that actor's root "
        "(a job that ran when a snapshot was taken runs again on a platform restored from it, whose root is another).",
    )


class CompactOptions(_TaskOptions):
    logs: list[str] | None = Field(None, description="Logs to compact; default lineage and every journal.")
    min_age: float = Field(300.0, ge=0, description="Only segments older than this (seconds) are merged.")
    max_records: int = Field(100_000, ge=2, description="Records per compacted segment at most.")


class RetentionOptions(_TaskOptions):
    retention_days: float = Field(30.0, gt=0, description="Minimum age of an unreferenced blob to delete.")
    dry_run: bool = False
    now: float | None = Field(None, description="The current time (tests).")


class BackupOptions(_TaskOptions):
    destination: str | None = Field(None, description="Backup URI; default: backups next to the root.")
    keep_days: float | None = Field(None, gt=0, description="Prune snapshots older than this.")


class ReplayOptions(_TaskOptions):
    limit: int = Field(1000, ge=1, description="Dead jobs replayed per run at most.")


class GitOpsOptions(_TaskOptions):
    repo: str = Field(description="Git URL or local path.")
    path: str = Field(description="Folder of the repository holding the resources.")
    prune: bool = False
    ref: str = "main"


def _options(cls: type[_O], options: dict[str, Any] | None) -> _O:
    try:
        return cls.model_validate(options or {})
    except PydanticValidationError as exc:
        raise to_validation_error(exc, prefix="options") from None


def compact_logs(
    engram_uri: str, storage_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the sealed segments of the logs (default: ``lineage`` and every ``journal/<name>``)."""
    from mnemos.wraith.compaction import compact_log

    opts = _options(CompactOptions, options)
    engram = _engram(engram_uri, storage_options, "compact-logs", opts.wraith_actor)

    def body() -> dict[str, Any]:
        names = opts.logs if opts.logs is not None else _default_logs(engram)
        return {
            "logs": [
                compact_log(engram, log, min_age=opts.min_age, max_records=opts.max_records).as_dict() for log in names
            ]
        }

    return _run("compact-logs", engram, body)


def _default_logs(engram: Engram) -> list[str]:
    from mnemos.cortex.checkpoint import archive_logs

    journals = sorted({key.split("/")[1] for key in engram.list("journal") if key.count("/") >= 2})
    return ["lineage", *(f"journal/{name}" for name in journals), *archive_logs(engram)]


def retention(
    engram_uri: str, storage_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Delete blobs older than ``retentionDays`` that nothing reaches, and the records of credentials
    that expired (``mnemos.soul.store.prune_credentials``: console sign-ins write one each)."""
    from mnemos.soul.store import prune_credentials
    from mnemos.wraith.retention import retain

    opts = _options(RetentionOptions, options)
    engram = _engram(engram_uri, storage_options, "retention", opts.wraith_actor)

    def body() -> dict[str, Any]:
        report = retain(engram, opts.retention_days, now=opts.now, dry_run=opts.dry_run).as_dict()
        return report | {"credentialsPruned": 0 if opts.dry_run else prune_credentials(engram, now=opts.now)}

    return _run("retention", engram, body, summary=_retention_summary)


def _retention_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the deleted digests: a document naming them would make them reachable."""
    return {**{k: v for k, v in report.items() if k != "deleted"}, "deletedCount": len(report.get("deleted", []))}


def backup(
    engram_uri: str, storage_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Snapshot the root to ``destination`` (default: ``backups`` next to it); prune old snapshots."""
    from mnemos.wraith.backup import backup as take_backup

    opts = _options(BackupOptions, options)
    engram = _engram(engram_uri, storage_options, "backup", opts.wraith_actor)
    return _run("backup", engram, lambda: take_backup(engram, opts.destination, keep_days=opts.keep_days).as_dict())


def replay_events(
    engram_uri: str, storage_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Submit again the jobs that ended dead-lettered (attempts exhausted), once each."""
    from mnemos.wraith.replay import replay_dead_jobs

    opts = _options(ReplayOptions, options)
    engram = _engram(engram_uri, storage_options, "replay-events", opts.wraith_actor)
    return _run("replay-events", engram, lambda: replay_dead_jobs(_client(engram), limit=opts.limit))


def gitops_sync(
    engram_uri: str, storage_options: dict[str, Any] | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``mnemos sync`` as a task: make the registry equal to ``path`` of ``repo``."""
    from mnemos.wraith.gitops import sync

    opts = _options(GitOpsOptions, options)
    engram = _engram(engram_uri, storage_options, "gitops-sync", opts.wraith_actor)
    return _run(
        "gitops-sync",
        engram,
        lambda: sync(_client(engram), _configured_repo(opts.repo), opts.path, prune=opts.prune, ref=opts.ref).as_dict(),
    )


def _configured_repo(repo: str) -> str:
    """The repository URL to fetch: ``repo`` as given, or, when its credentials were removed
    (``https://***@host/…``, ``?access_token=***``, as ``task_options`` passes them),
    ``wraith.gitops.repo`` of this worker's settings, which holds them."""
    from mnemos.config import load_settings
    from mnemos.wraith._git import redact

    if "***" not in repo:
        return repo
    configured = load_settings().wraith.gitops.repo
    if configured and redact(configured) == repo:
        return configured
    raise ValidationError(
        f"options.repo: {repo}: its credentials were left out of the job (they would reach the CORTEX journal), "
        "and this worker's wraith.gitops.repo is not that repository: give the workers the same "
        "wraith.gitops.repo (MNEMOS_WRAITH__GITOPS__REPO) as the WRAITH actor",
        param="options.repo",
    )


def task_options(settings: Any, name: str) -> dict[str, Any]:
    """The options a task takes from ``settings`` (retention days, backup place, GitOps source)."""
    task_function(name)
    if name == "retention":
        return {"retention_days": settings.engram.retention_days}
    if name == "backup":
        backups = settings.engram.backups
        return {"destination": backups.destination, "keep_days": backups.retention_days}
    if name == "gitops-sync":
        gitops = settings.wraith.gitops
        if not gitops.repo:
            raise NotFoundError(
                "gitops-sync needs wraith.gitops.repo (and path) in the settings", param="wraith.gitops"
            )
        from mnemos.wraith._git import redact

        # The URL's credentials (its userinfo, its query's values) stay out of the job (its arguments
        # reach the CORTEX journal, and backups): the worker takes them from its own wraith.gitops.repo
        # (``_configured_repo``).
        return {"repo": redact(gitops.repo), "path": gitops.path, "prune": gitops.prune, "ref": gitops.ref}
    return {}


def run_local(settings: Any, name: str, **overrides: Any) -> dict[str, Any]:
    """Run a task in this process against the settings' ENGRAM root."""
    import importlib

    module, _, attr = task_function(name).partition(":")
    fn = getattr(importlib.import_module(module), attr)
    options = {**task_options(settings, name), **overrides}
    return fn(settings.engram.root(), settings.engram.storage_options, options)
