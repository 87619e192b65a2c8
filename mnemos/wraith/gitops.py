"""GitOps: keep the registry equal to what a folder of a Git repository declares.

``sync`` fetches the repository with ``git``, loads the resources under ``path``, and applies
them through the registry with ``source="gitops"`` (the only source the ``require_gitops``
guardrail admits). Resources it applies carry three annotations::

    mnemos.dev/managed-by: gitops
    mnemos.dev/git-repo:   <repository, credentials removed>
    mnemos.dev/git-path:   <file inside the repository>

so that ``prune`` removes only resources that this repository and folder created. A resource
that exists but that no sync created (``mnemos apply``) is a conflict: ``adopt=True`` takes it
over (and from then on ``prune`` may delete it). A resource this source synced and someone
changed outside Git (drift) is put back by the next sync and reported as ``reverted``. Each
sync is recorded in lineage (``sync:<id>`` with the commit sha and the diff), and its state
(commit, what each resource looked like) in ENGRAM under ``wraith/gitops/``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from mnemos.config import default_home
from mnemos.errors import ConflictError, MnemosError, NotFoundError, ValidationError
from mnemos.genome import Policy, Resource, admit, load_paths
from mnemos.genome.kinds import hidden, refuse_duplicates
from mnemos.trace.lineage import record
from mnemos.wraith._git import checkout, normalize_repo, redact

__all__ = [
    "ANNOTATION_MANAGED_BY",
    "ANNOTATION_PATH",
    "ANNOTATION_REPO",
    "DiffEntry",
    "MAX_FILE_BYTES",
    "SyncReport",
    "diff",
    "load_resources",
    "resource_files",
    "sync",
    "sync_loop",
]

ANNOTATION_MANAGED_BY = "mnemos.dev/managed-by"
ANNOTATION_REPO = "mnemos.dev/git-repo"
ANNOTATION_PATH = "mnemos.dev/git-path"
MANAGER = "gitops"
_APPLY_ORDER = {"Policy": 0, "Adapter": 1, "Model": 2, "Pipeline": 3}
_MAX_DIFF = 256 * 1024
MAX_FILE_BYTES = 4 * 1024 * 1024  # a resource file of the repository at most (a gateway body is 1 MiB)


@dataclass(frozen=True)
class DiffEntry:
    """What applying one resource would do: ``create``, ``configure``, ``unchanged`` or ``delete``."""

    kind: str
    name: str
    action: str
    diff: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} {self.action}"


@dataclass
class SyncReport:
    """One sync: the commit applied and what happened to each resource (``kind/name`` lists)."""

    sync_id: str
    repo: str
    path: str
    ref: str
    commit: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    diff: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "syncId": self.sync_id,
            "repo": self.repo,
            "path": self.path,
            "ref": self.ref,
            "commit": self.commit,
            "added": self.added,
            "changed": self.changed,
            "reverted": self.reverted,
            "pruned": self.pruned,
            "unchanged": self.unchanged,
            "orphaned": self.orphaned,
        }

    def summary(self) -> str:
        parts = [f"{len(getattr(self, k))} {k}" for k in ("added", "changed", "reverted", "pruned", "unchanged")]
        if self.orphaned:
            parts.append(f"{len(self.orphaned)} orphaned (pass --prune to delete)")
        return f"synced {self.repo} {self.path} at {self.commit[:12]}: " + ", ".join(parts)


def _ident(resource: Resource) -> str:
    return f"{type(resource).__name__}/{resource.name}"


def _comparable(resource: Resource) -> dict[str, Any]:
    """The document without what the registry sets (generation, creation time)."""
    doc = resource.dump()
    meta = {k: v for k, v in doc["metadata"].items() if k not in ("generation", "creationTimestamp")}
    return {**doc, "metadata": meta}


def _fingerprint(resource: Resource) -> str:
    return hashlib.sha256(json.dumps(_comparable(resource), sort_keys=True).encode()).hexdigest()


def _yaml_diff(live: Resource | None, desired: Resource | None, label: str) -> str:
    before = yaml.safe_dump(_comparable(live), sort_keys=True) if live is not None else ""
    after = yaml.safe_dump(_comparable(desired), sort_keys=True) if desired is not None else ""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), f"live/{label}", f"git/{label}"
    )
    return "".join(lines)


def _live(client: Any, resource: Resource) -> Resource | None:
    """The stored resource: from the registry (embedded) or the gateway's API (a ``RemoteClient``)."""
    registry = getattr(client, "registry", None)
    try:
        if registry is None:
            return client.get(type(resource).__name__, resource.name)  # type: ignore[no-any-return]
        return registry.get(type(resource).__name__, resource.name)
    except NotFoundError:
        return None


def diff(client: Any, resources: Iterable[Resource]) -> list[DiffEntry]:
    """What ``apply`` of ``resources`` would change, each with a unified diff of the YAML."""
    out: list[DiffEntry] = []
    for resource in resources:
        live = _live(client, resource)
        label = _ident(resource).lower()
        if live is None:
            action = "create"
        elif _fingerprint(live) == _fingerprint(resource):
            action = "unchanged"
        else:
            action = "configure"
        text = "" if action == "unchanged" else _yaml_diff(live, resource, label)
        out.append(DiffEntry(type(resource).__name__, resource.name, action, text))
    return out


def resource_files(root: Path) -> list[Path]:
    """The YAML/JSON files under ``root`` (a folder or a file) that hold resources, sorted.

    ``values*.yaml`` files are an environment's Helm values, not resources: they are skipped, as is
    what hidden files and folders hold (a repository's ``.github/workflows/*.yml``).
    """
    if not root.exists():
        raise NotFoundError(f"{root}: no such file or directory", param="file")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not hidden(p.relative_to(root))) if root.is_dir() \
        else [root]  # fmt: skip
    return [f for f in files if f.suffix in (".yaml", ".yml", ".json") and not (root.is_dir() and _is_values_file(f))]


def load_resources(paths: Iterable[str | Path]) -> list[Resource]:
    """Resources from files and folders, as ``mnemos sync`` reads them (``values*.yaml`` skipped)."""
    return [r for p in paths for f in resource_files(Path(p)) for r in load_paths([f])]


def _desired(folder: Path, path: str, repo_id: str) -> list[Resource]:
    """The resources under ``path`` of the working copy, annotated as managed by this source."""
    relative = PurePosixPath(path.strip("/") or ".")
    if relative.is_absolute() or ".." in relative.parts:
        raise ValidationError(f"path {path!r} must be a folder inside the repository", param="path")
    root, inside = folder / relative, folder.resolve()
    try:
        exists = root.exists()
    except OSError:  # a name no file may have (over 255 bytes): named as given, not as the working copy's
        exists = False
    if not exists:
        raise NotFoundError(f"path {path[:200]!r} does not exist in the repository", param="path")
    if not root.resolve().is_relative_to(inside):
        raise ValidationError(f"path {path!r} is a symbolic link that leads outside the repository: GitOps "
                              "reads the repository's own files only; pass a folder of it", param="path")  # fmt: skip
    files = resource_files(root)
    for file in files:
        _check_file(file, file.relative_to(folder).as_posix(), inside)
    try:
        located = [(r, f.relative_to(folder).as_posix()) for f in files for r in load_paths([f])]
    except MnemosError as exc:  # name the file inside the repository, not the working copy's path
        exc.message = exc.message.replace(f"{folder}/", "")
        exc.args = (exc.message,)
        raise
    refuse_duplicates(located)
    resources: list[Resource] = []
    for resource, where in located:
        annotated = resource.model_copy(deep=True)
        annotated.metadata.annotations = {
            **resource.metadata.annotations,
            ANNOTATION_MANAGED_BY: MANAGER,
            ANNOTATION_REPO: repo_id,
            ANNOTATION_PATH: where,
        }
        resources.append(annotated)
    return sorted(resources, key=lambda r: (_APPLY_ORDER.get(type(r).__name__, 9), r.name))


def _check_file(file: Path, where: str, inside: Path) -> None:
    """Refuse, before reading it, a file that is a link out of the repository (it would read the
    platform machine's files: keys, configuration) or that is too large to be resources."""
    if not file.resolve().is_relative_to(inside):
        raise ValidationError(f"{where}: a symbolic link to a file outside the repository: GitOps reads the "
                              "repository's own files only; commit the file itself", param="path")  # fmt: skip
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValidationError(f"{where}: {size} bytes, over the limit of {MAX_FILE_BYTES} bytes for a file "
                              "of resources: split it (data belongs in ENGRAM, not here)", param="path")  # fmt: skip


def _is_values_file(file: Path) -> bool:
    """``values*.yaml``: environment settings (Helm-style values), not resources."""
    return file.name.startswith("values") and file.suffix in (".yaml", ".yml")


def _same_repo(recorded: str | None, repo_id: str) -> bool:
    """Whether ``recorded`` (a resource's ``git-repo``) names the repository ``repo_id`` does: the URL
    without its userinfo, so that moving a token out of the URL (into a credential helper) or rotating
    it leaves the repository the same source (``https://***@host/x`` is ``https://host/x``)."""
    return recorded is not None and _repo_key(recorded) == _repo_key(repo_id)


def _repo_key(repo_id: str) -> str:
    """A repository URL without its userinfo (credentials, or an ssh user): what names the source."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1", redact(repo_id))


def _in_scope(resource: Resource, repo_id: str, path: str) -> bool:
    notes = resource.metadata.annotations
    prefix = path.strip("/")
    file = notes.get(ANNOTATION_PATH, "")
    return (
        notes.get(ANNOTATION_MANAGED_BY) == MANAGER
        and _same_repo(notes.get(ANNOTATION_REPO), repo_id)
        and (not prefix or prefix == "." or file == prefix or file.startswith(prefix + "/"))
    )


def _not_ours(live: Resource | None, synced: dict[str, str]) -> bool:
    """A resource that exists but no sync created (``mnemos apply``), nor this source synced before."""
    if live is None or live.metadata.annotations.get(ANNOTATION_MANAGED_BY) == MANAGER:
        return False
    return _ident(live) not in synced  # one this source synced and someone re-applied by hand is drift


def _check_owner(live: Resource | None, repo_id: str, path: str) -> None:
    if live is None or live.metadata.annotations.get(ANNOTATION_MANAGED_BY) != MANAGER:
        return  # absent, or not created by GitOps (see _not_ours)
    if not _in_scope(live, repo_id, path):
        notes = live.metadata.annotations
        raise ConflictError(
            f"{_ident(live)} is managed by another GitOps source ({notes.get(ANNOTATION_REPO)} "
            f"{notes.get(ANNOTATION_PATH)}): declare it in one place only",
            param="path",
        )


def _preadmit(client: Any, desired: list[Resource], doomed: set[str]) -> None:
    """Admission of every desired resource against the policies as they will be after the sync."""
    policies = {p.name: p for p in client.registry.policies() if _ident(p) not in doomed}
    policies.update({r.name: r for r in desired if isinstance(r, Policy)})
    for resource in desired:
        admit(resource, policies.values())


def _state_key(repo_id: str, path: str) -> str:
    return "wraith/gitops/" + hashlib.sha256(f"{_repo_key(repo_id)}#{path}".encode()).hexdigest()[:16] + ".json"


def _read_state(engram: Any, repo_id: str, path: str) -> dict[str, Any]:
    """What the last sync of this source applied; also under the key of a version that named a source
    by its URL with ``***@`` (before the credentials' form stopped changing the source)."""
    legacy = "wraith/gitops/" + hashlib.sha256(f"{repo_id}#{path}".encode()).hexdigest()[:16] + ".json"
    for key in (_state_key(repo_id, path), legacy):
        if engram.exists(key):
            return engram.read_json(key)  # type: ignore[no-any-return]
    return {"resources": {}}


def sync(
    client: Any,
    repo: str,
    path: str,
    *,
    prune: bool = False,
    ref: str = "main",
    home: Path | None = None,
    adopt: bool = False,
) -> SyncReport:
    """Make the registry equal to ``path`` of ``repo`` at ``ref``; see the module docstring.

    Nothing is applied when any document is invalid or refused by admission, or when one of them
    exists but this source did not create it and ``adopt`` is not set (``ConflictError``).
    """
    repo_id = redact(normalize_repo(repo))
    path = path.strip("/") or "."
    state_key = _state_key(repo_id, path)
    state = _read_state(client.engram, repo_id, path)
    with checkout(repo, ref, home or default_home()) as (folder, commit):
        desired = _desired(folder, path, repo_id)
    report = SyncReport(uuid.uuid4().hex[:12], repo_id, path, ref, commit)
    wanted = {_ident(r) for r in desired}
    orphans = [r for r in client.registry.list() if _in_scope(r, repo_id, path) and _ident(r) not in wanted]
    foreign = []
    for resource in desired:
        live = _live(client, resource)
        _check_owner(live, repo_id, path)
        if _not_ours(live, state["resources"]):
            foreign.append(_ident(resource).lower())
    if foreign and not adopt:
        raise ConflictError(
            f"{', '.join(foreign)}: exists, not managed by this source (made by `mnemos apply`?): "
            "sync with --adopt to take it over",
            param="adopt",
        )
    _preadmit(client, desired, {_ident(r) for r in orphans} if prune else set())
    diffs: list[str] = []
    applied: list[Resource] = []
    for resource in desired:
        ident = _ident(resource)
        live = _live(client, resource)
        result = client.apply(resource, source_tag="gitops")[0]
        if result.action == "unchanged":
            report.unchanged.append(ident)
            continue
        applied.append(result.resource)
        diffs.append(_yaml_diff(live, resource, ident.lower()))
        known = state["resources"].get(ident)
        if known is not None and known == _fingerprint(resource):
            report.reverted.append(ident)  # Git did not change: the live resource drifted
        elif result.action == "created" and known is None:
            report.added.append(ident)
        else:
            report.changed.append(ident)
    for orphan in orphans:
        if prune:
            client.delete(type(orphan).__name__, orphan.name, source_tag="gitops")
            diffs.append(_yaml_diff(orphan, None, _ident(orphan).lower()))
            report.pruned.append(_ident(orphan))
        else:
            report.orphaned.append(_ident(orphan))
    report.diff = "".join(diffs)
    client.engram.write_json(
        state_key,
        {
            "repo": repo_id,
            "path": path,
            "ref": ref,
            "commit": commit,
            "synced": time.time(),
            "resources": {_ident(r): _fingerprint(r) for r in desired},
        },
    )
    _record(client, report, applied)
    return report


def _record(client: Any, report: SyncReport, applied: list[Resource]) -> None:
    """The sync in lineage: ``sync:<id>`` from ``git:<repo>@<sha>``, parent of what it applied."""
    text = report.diff
    if len(text) > _MAX_DIFF:
        text = text[:_MAX_DIFF] + f"\n... diff truncated ({len(report.diff)} characters in all)\n"
    record(
        client.engram,
        f"sync:{report.sync_id}",
        "execution",
        parents=[f"git:{report.repo}@{report.commit}"],
        operation="gitops-sync",
        **{k: v for k, v in report.as_dict().items() if k != "syncId"},
        diff=text,
    )
    for resource in applied:
        record(
            client.engram,
            f"resource:{_ident(resource)}@{resource.generation}",
            "result",
            parents=[f"sync:{report.sync_id}"],
            commit=report.commit,
        )


def sync_loop(
    client: Any,
    repo: str,
    path: str,
    *,
    interval: float,
    count: int | None = None,
    prune: bool = False,
    ref: str = "main",
    adopt: bool = False,
    on_report: Callable[[SyncReport], None] = lambda r: None,
    on_error: Callable[[Exception], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Sync every ``interval`` seconds, ``count`` times (forever when ``None``); returns syncs done.

    An error of one sync (an unreachable remote) is passed to ``on_error`` and the loop goes on;
    without ``on_error`` it is raised.
    """
    if interval <= 0:
        raise ValidationError("interval must be positive", param="interval")
    done = 0
    while count is None or done < count:
        started = time.monotonic()
        try:
            on_report(sync(client, repo, path, prune=prune, ref=ref, adopt=adopt))
        except Exception as exc:
            if on_error is None:
                raise
            on_error(exc)
        done += 1
        if count is None or done < count:
            sleep(max(0.0, interval - (time.monotonic() - started)))
    return done
