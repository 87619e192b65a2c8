"""Backups: snapshot the registry, refs, logs and reachable blobs to a backup URI, and restore them.

Layout at the backup URI (``engram.backups.destination``; by default ``backups`` next to the
ENGRAM root)::

    blobs/sha256/<2 hex>/<hex>            content-addressed copies, shared by all snapshots
    snapshots/<id>/manifest.json          {documents: {key: digest}, refs: {name: digest}, blobs: [...]}

Every document of the root (``registry/``, ``journal/``, ``lineage/``, ``spaces/``, ``wraith/`` …;
not ``blobs/``, ``refs/``, ``snapshots/``) is stored as a blob, so an unchanged document costs
nothing in the next snapshot. The blobs copied are the ones retention considers reachable.
A snapshot is taken document by document while the platform runs: each document is
consistent, the set is as of the time of the listing.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnemos.engram import Engram
from mnemos.engram.keys import normalize_digest, validate_key
from mnemos.engram.store import CHUNK
from mnemos.errors import (
    AdmissionError,
    ConflictError,
    IntegrityError,
    MnemosError,
    NotFoundError,
    UnavailableError,
    ValidationError,
    redact_userinfo,
)
from mnemos.wraith._store import all_keys, root_path
from mnemos.wraith.retention import reachable_blobs

__all__ = [
    "BackupReport",
    "RestoreReport",
    "backup",
    "default_destination",
    "list_snapshots",
    "load_manifest",
    "options_for",
    "prune_snapshots",
    "read_manifest",
    "restore",
    "same_store",
]

SNAPSHOTS = "snapshots"
_NOT_DOCUMENTS = ("blobs/", "refs/", f"{SNAPSHOTS}/")
_RESTORE_INTO = frozenset({"blobs", SNAPSHOTS})  # all a root that a restore without --force takes may hold
MAX_APPEND_ATTEMPTS = 5  # new generations tried when a restored resource is written concurrently


@dataclass
class BackupReport:
    """One snapshot written."""

    snapshot: str
    destination: str
    documents: int = 0
    refs: int = 0
    blobs: int = 0
    copied_blobs: int = 0
    pruned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "destination": self.destination,
            "documents": self.documents,
            "refs": self.refs,
            "blobs": self.blobs,
            "copiedBlobs": self.copied_blobs,
            "pruned": self.pruned,
        }


@dataclass
class RestoreReport:
    """One snapshot restored."""

    snapshot: str
    target: str
    documents: int = 0
    refs: int = 0
    blobs: int = 0
    reverted: list[str] = field(default_factory=list)  # "model/a: generation 4 (as generation 2)", "model/b: deleted"

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "target": self.target,
            "documents": self.documents,
            "refs": self.refs,
            "blobs": self.blobs,
            "reverted": self.reverted,
        }


def default_destination(engram_uri: str) -> str:
    """``backups`` next to the ENGRAM root: ``/x/engram`` → ``/x/backups``, ``s3://b/root`` → ``s3://b/backups``."""
    if "://" not in engram_uri or engram_uri.startswith("file://"):
        local = engram_uri[7:] if engram_uri.startswith("file://") else engram_uri
        return str(Path(local).expanduser().resolve().parent / "backups")
    protocol, rest = engram_uri.split("://", 1)
    parts = rest.strip("/").split("/")
    if len(parts) < 2:
        raise ValidationError(
            f"the ENGRAM root {engram_uri} is a whole bucket, so backups have no default place next to it: "
            "set engram.backups.destination (MNEMOS_ENGRAM__BACKUPS__DESTINATION)",
            param="engram.backups.destination",
        )
    return f"{protocol}://{'/'.join(parts[:-1] + ['backups'])}"


def options_for(uri: str, engram: Engram) -> dict[str, Any]:
    """The root's fsspec options when ``uri`` uses the same protocol (same S3 endpoint), else none."""

    def protocol(u: str) -> str:
        return u.split("://", 1)[0] if "://" in u and not u.startswith("file://") else "file"

    return dict(engram.storage_options) if protocol(uri) == protocol(engram.uri) else {}


def _copy_blob(source: Engram, target: Engram, digest: str) -> bool:
    """Copy a blob (verified on the way) unless the target has it; ``True`` when copied."""
    if target.has(digest):
        return False
    with source.open(digest) as stream:
        copied = target.put(stream)
    if copied != digest:  # the reader raises IntegrityError first; this guards the contract
        raise ValidationError(f"blob {digest} changed while it was copied", param="digest")
    return True


def _snapshot_documents(engram: Engram, dest: Engram) -> dict[str, str]:
    """Store every document of the root in ``dest``; ``{key: digest}``.

    A document that vanishes while we read it (a log segment merged by a concurrent compaction)
    makes the pass start again with a fresh listing, so the snapshot never holds both a merged
    segment and its originals, nor loses records.
    """
    for _attempt in range(5):
        documents: dict[str, str] = {}
        try:
            for key in all_keys(engram):
                if not key.startswith(_NOT_DOCUMENTS):
                    documents[key] = dest.put(engram.read_bytes(key))
            return documents
        except NotFoundError:
            continue
    raise ConflictError("the ENGRAM root kept changing while it was backed up; try again", param="snapshot")


def backup(
    engram: Engram,
    destination: str | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    keep_days: float | None = None,
    now: float | None = None,
) -> BackupReport:
    """Write one snapshot of ``engram`` to ``destination``.

    Args:
        engram: the store to back up.
        destination: the backup URI (default: ``backups`` next to the root).
        storage_options: fsspec options of the destination (default: the root's).
        keep_days: when set, snapshots older than this are pruned afterwards (the newest stays).
        now: the current time (for tests).
    """
    now = time.time() if now is None else now
    destination = destination or default_destination(engram.uri)
    dest = Engram(destination, options_for(destination, engram) if storage_options is None else storage_options)
    if same_store(engram, dest, inside=True):  # its files would be documents of every snapshot, the next one's too
        raise ValidationError(
            f"the backup URI {destination} is inside the ENGRAM root {engram.uri}: each backup would copy the "
            "earlier ones again; set engram.backups.destination (MNEMOS_ENGRAM__BACKUPS__DESTINATION) to a place "
            "outside it (the default is `backups` next to it)",
            param="engram.backups.destination",
        )
    try:
        dest.check()
    except UnavailableError as exc:  # Engram.check names engram.uri: here the bucket is the backup URI's
        if not (exc.param == "engram.uri" and isinstance(exc.__cause__, FileNotFoundError)):
            raise
        raise UnavailableError(
            f"the backup URI {redact_userinfo(destination)}: {exc.__cause__}: create it, or set "
            "engram.backups.destination (MNEMOS_ENGRAM__BACKUPS__DESTINATION) to a bucket that exists",
            param="engram.backups.destination",
        ) from exc.__cause__  # (the CLI names the store by its flag or setting from the cause)
    # The time, then its milliseconds and a random part: ids sort by age (``latest`` is the newest)
    # even for two backups within one second.
    millis = int(now * 1000) % 1000
    snapshot = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + f"-{millis:03d}{uuid.uuid4().hex[:3]}"
    report = BackupReport(snapshot=snapshot, destination=destination)
    started = f"{SNAPSHOTS}/{snapshot}/{_STARTED}"
    dest.write_json(started, {"started": time.time()})  # a prune meanwhile deletes no blob (prune_snapshots)
    blobs = sorted(reachable_blobs(engram))
    present = [d for d in blobs if engram.has(d)]
    for digest in present:
        report.copied_blobs += _copy_blob(engram, dest, digest)
    documents = _snapshot_documents(engram, dest)
    refs = engram.refs()
    for digest in set(refs.values()) - set(present):
        report.copied_blobs += _copy_blob(engram, dest, digest)  # set while we copied
    manifest: dict[str, Any] = {
        "id": snapshot,
        "created": now,
        "source": engram.uri,
        "documents": documents,
        "refs": refs,
        "blobs": sorted(set(present) | set(refs.values())),
    }
    dest.write_json(f"{SNAPSHOTS}/{snapshot}/manifest.json", manifest)
    dest.delete(started)
    missing = (set(manifest["blobs"]) | set(documents.values())) - {d for d, _size, _mtime in dest.blobs()}
    if missing:  # a prune that began before this backup did deleted them before the manifest named them
        report.copied_blobs += _store_again(engram, dest, snapshot, documents, missing)
    report.documents, report.refs, report.blobs = len(documents), len(refs), len(manifest["blobs"])
    if keep_days is not None:  # snapshots in the root itself: its blobs are retention's to delete, not a prune's
        report.pruned = prune_snapshots(dest, keep_days, now=now, blobs=not same_store(engram, dest))
    return report


def same_store(a: Engram, b: Engram, *, inside: bool = False) -> bool:
    """Whether ``a`` and ``b`` are one root, however their URIs spell it (``inside``: whether ``b``
    is a folder strictly inside ``a`` instead)."""

    def protocol(e: Engram) -> str:
        return "file" if e.is_local else e.uri.split("://", 1)[0]

    if protocol(a) != protocol(b):
        return False
    return root_path(b).startswith(root_path(a) + "/") if inside else root_path(a) == root_path(b)


def _store_again(engram: Engram, dest: Engram, snapshot: str, documents: dict[str, str], missing: set[str]) -> int:
    """Copy ``missing`` blobs of ``snapshot`` again; one no longer in ``engram`` as it was (a document
    changed since) makes the snapshot void: it is deleted and the backup is to be taken again."""
    copied = 0
    for key, digest in documents.items():
        if digest in missing:
            try:
                same = dest.put(engram.read_bytes(key)) == digest
            except NotFoundError:
                same = False
            if not same:
                dest.delete_prefix(f"{SNAPSHOTS}/{snapshot}")
                raise ConflictError(f"snapshot {snapshot}: a backup beside it pruned {key} while it was written, "
                                    "and it has changed since: take the backup again", param="snapshot")  # fmt: skip
            missing.discard(digest)
            copied += 1
    return copied + sum(_copy_blob(engram, dest, digest) for digest in missing)


def list_snapshots(dest: Engram) -> list[str]:
    """Snapshot ids at a backup URI, oldest first."""
    return [k.split("/")[1] for k in dest.list(SNAPSHOTS) if k.endswith("/manifest.json") and k.count("/") == 2]


def read_manifest(dest: Engram, snapshot: str) -> dict[str, Any]:
    """The manifest of ``snapshot`` (``latest``: the newest); ``NotFoundError`` lists what exists."""
    ids = list_snapshots(dest)
    if snapshot == "latest":
        if not ids:
            raise NotFoundError(f"no snapshot at {dest.uri}", param="snapshot")
        # The newest by the time its id begins with: a folder copied there by hand ("prod-copy", "é")
        # sorts after every backup's id, and `latest` once named it while good snapshots were there.
        snapshot = ([i for i in ids if _BACKUP_ID.match(i)] or ids)[-1]
    if snapshot not in ids:
        known = ", ".join(ids[-5:]) or "none"
        shown = repr(snapshot) if len(snapshot) <= 200 else f"{snapshot[:200]!r}… ({len(snapshot)} characters)"
        raise NotFoundError(f"snapshot {shown} not found at {dest.uri} (latest: {known})", param="snapshot")
    return load_manifest(dest, snapshot)


_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z(-|$)")
"""How the id of a snapshot a backup wrote begins: its UTC time (``20261201T155347Z-417d01``)."""


def load_manifest(dest: Engram, snapshot: str) -> dict[str, Any]:
    """The manifest of the listed ``snapshot``; ``IntegrityError`` when it is not one a backup
    writes (truncated, not JSON, keys or digests it never writes): the snapshot is damaged."""
    try:
        manifest: dict[str, Any] = json.loads(dest.read_bytes(f"{SNAPSHOTS}/{snapshot}/manifest.json"))
    except (ValueError, UnicodeDecodeError) as exc:  # truncated, or not JSON at all
        raise _damaged(dest, snapshot, f"its manifest is not JSON ({exc})") from None
    _check_manifest(dest, snapshot, manifest)
    return manifest


def _damaged(dest: Engram, snapshot: str, what: str) -> IntegrityError:
    return IntegrityError(
        f"snapshot {snapshot} at {dest.uri} is damaged: {what}: restore another snapshot "
        "(`mnemos wraith snapshots` lists them)",
        param="snapshot",
    )


def _check_manifest(dest: Engram, snapshot: str, manifest: Any) -> None:
    """``IntegrityError`` unless ``manifest`` is one ``backup`` writes: documents (keys outside
    ``blobs/``, ``refs/`` and ``snapshots/``) and refs naming digests, and every ref's blob listed."""
    try:
        if not isinstance(manifest, dict):
            raise ValueError("it is not an object")
        documents, refs, blobs = manifest.get("documents"), manifest.get("refs"), manifest.get("blobs")
        if not isinstance(documents, dict) or not isinstance(refs, dict) or not isinstance(blobs, list):
            raise ValueError("it lacks documents, refs or blobs")
        created = manifest.get("created")
        if manifest.get("id") != snapshot or not _is_time(created):
            raise ValueError("its id or creation time is not the snapshot's")
        for key, digest in documents.items():
            if validate_key(key).startswith(_NOT_DOCUMENTS):
                raise ValueError(f"document {key!r} is not a document (blobs/, refs/ and snapshots/ are not)")
            normalize_digest(digest)
        listed = {normalize_digest(d) for d in blobs}
        for name, digest in refs.items():
            validate_key(name, what="ref")
            if normalize_digest(digest) not in listed:
                raise ValueError(f"ref {name!r} names {digest}, which is not among its blobs")
    except (ValueError, TypeError, MnemosError) as exc:  # InvalidKeyError: a key or digest a backup never writes
        reason = exc.message if isinstance(exc, MnemosError) else str(exc)
        raise _damaged(dest, snapshot, f"its manifest is not one a backup writes: {reason}") from None


def _is_time(value: Any) -> bool:
    """Whether ``value`` is a time a backup writes (``time.time()``): a finite number of seconds
    since 1970, before the year 10000 (JSON's ``1e400``, ``NaN`` or ``true`` are not)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value < _YEAR_10000)  # fmt: skip


_YEAR_10000 = 253402300800.0


def _verify_snapshot(dest: Engram, manifest: dict[str, Any]) -> None:
    """Check, before a restore writes anything, that every document of a snapshot is there and
    intact (read to its end: verified against its digest) and that every blob is there (a blob is
    verified as it is copied, before any document is written): ``IntegrityError`` naming the first
    one missing or altered."""
    for key, digest in sorted(manifest["documents"].items()):
        try:
            with dest.open(digest) as stream:
                while stream.read(CHUNK):
                    pass
        except (NotFoundError, IntegrityError) as exc:
            raise _damaged(dest, manifest["id"], f"document {key} ({digest}) is {_how(exc)}") from None
    for digest in manifest["blobs"]:
        if not dest.has(digest):
            raise _damaged(dest, manifest["id"], f"blob {digest} is missing")


def _how(exc: MnemosError) -> str:
    return "missing" if isinstance(exc, NotFoundError) else "altered (its bytes no longer match its digest)"


def restore(dest: Engram, snapshot: str, target: Engram, *, force: bool = False) -> RestoreReport:
    """Restore ``snapshot`` from the backup store ``dest`` into ``target``.

    The target must hold nothing but blobs (and snapshots) unless ``force``: then documents
    and refs of the snapshot overwrite what is there, nothing else is removed, and each resource of
    the snapshot's registry that changed since (applied again, deleted, or deleted then) gets its
    snapshot state back as a new registry entry, so that the registry's history stays append-only:
    a new generation with the snapshot's spec, or a tombstone (``RestoreReport.reverted``).
    Resources created after the snapshot stay.

    A forced restore writes into a live registry, so the resources it would put there (new, or
    different from what is live) go through GENOME admission first, as ``mnemos apply`` would put
    them: schema, the kind's checks, then the Policies that will be live after the restore (the
    snapshot's, and the target's others). When one is refused nothing at all is written: an
    ``AdmissionError`` names every refused resource with its reason. (A restore into an empty root
    is a copy of the snapshot as it was, with no admission: nothing is live there to bypass.)
    """
    manifest = read_manifest(dest, snapshot)
    # Anything else would mix with the snapshot: a newer CORTEX checkpoint left there, say, is the
    # one CORTEX would load, and the jobs of the restored journal would be lost.
    if not force and (held := [name for name in sorted(_top_level(target) - _RESTORE_INTO) if target.list(name)]):
        raise ConflictError(
            f"the target {target.uri} is not empty (it has {held[0]}/): restore into an empty root, "
            "or pass --force to overwrite",
            param="to",
        )
    target.check()
    _verify_snapshot(dest, manifest)  # before the first write: a damaged snapshot restores nothing
    if force:
        _admit_restored(dest, manifest, target)  # before the first write: a refused restore writes nothing
    revoked = _revocations(dest, manifest, target)
    report = RestoreReport(snapshot=manifest["id"], target=target.uri)
    for digest in manifest["blobs"]:
        try:
            _copy_blob(dest, target, digest)
        except (NotFoundError, IntegrityError) as exc:  # no document written yet: the target holds blobs only
            raise _damaged(dest, manifest["id"], f"blob {digest} is {_how(exc)}") from None
        report.blobs += 1
    for key, digest in sorted(manifest["documents"].items()):
        target.write_bytes(key, _still_revoked(key, dest.get(digest), revoked))
        report.documents += 1
    for name, digest in sorted(manifest["refs"].items()):
        target.set_ref(name, digest)
        report.refs += 1
    if force:
        report.reverted = _revert_registry(dest, manifest, target)
    return report


_CREDENTIALS = ("soul/apikeys/", "soul/tokens/")  # SOUL's records of API keys and tokens: {…, revoked_at}
_REVOKED = "soul/revoked/"  # SOUL's revocations, one per credential: {id, revoked_at, …}


def _credential_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def _revocations(dest: Engram, manifest: dict[str, Any], target: Engram) -> dict[str, Any]:
    """``{credential id: revoked_at}`` of every API key and token revoked in ``target`` now or in the
    snapshot. A restore never makes one active again: the gateway refuses it by ``soul/revoked/``, which
    a restore leaves as it is, so the record it writes back must say revoked too (a snapshot taken before
    the revocation has it active: ``mnemos token list`` showed a key the gateway refuses as active)."""
    revoked: dict[str, Any] = {}
    in_snapshot = _snapshot_reader(dest, manifest["documents"])

    def note(key: str, read: Callable[[str], Any]) -> None:
        try:
            doc = read(key)
        except (NotFoundError, ValueError):  # gone meanwhile, or not JSON: nothing it says counts
            return
        if isinstance(doc, dict) and doc.get("revoked_at"):
            revoked.setdefault(_credential_id(key), doc["revoked_at"])

    for key in target.list(_REVOKED.rstrip("/")):
        note(key, target.read_json)
    for key in manifest["documents"]:
        if key.startswith(_CREDENTIALS):  # a live record revoked whose marker retention dropped (expired)
            note(key, target.read_json)
        if key.startswith(_REVOKED):  # a snapshot taken between a revocation's two writes
            note(key, in_snapshot)
    return revoked


def _still_revoked(key: str, data: bytes, revoked: dict[str, Any]) -> bytes:
    """A credential's record ``data`` with its ``revoked_at`` when ``revoked`` holds it (see ``_revocations``)."""
    if not key.startswith(_CREDENTIALS) or _credential_id(key) not in revoked:
        return data
    try:
        doc = json.loads(data)
    except ValueError:
        return data
    if not isinstance(doc, dict) or doc.get("revoked_at"):
        return data
    doc["revoked_at"] = revoked[_credential_id(key)]
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()  # as Engram.write_json writes it


def _top_level(engram: Engram) -> set[str]:
    """The names of the root's top-level folders and files (temporary files left out)."""
    try:
        entries = engram.fs.ls(root_path(engram), detail=False)
    except FileNotFoundError:
        return set()
    names = {str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries}
    return {name for name in names if name and not name.startswith((".tmp-", ".part-"))}


def _content(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored generation without what each generation has of its own (number, creation time)."""
    meta = {k: v for k, v in doc.get("metadata", {}).items() if k not in ("generation", "creationTimestamp")}
    return {**doc, "metadata": meta}


def _snapshot_reader(dest: Engram, documents: dict[str, str]) -> Callable[[str], dict[str, Any]]:
    """Reads a registry record of a snapshot (its key → its blob's digest in ``documents``)."""
    return lambda key: json.loads(dest.get(documents[key]))


def _live_documents(keys: list[str], read: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(kind, name): stored document}`` of the live generation of each resource in ``keys``
    (registry keys), read with ``read(key)``; an older store's single ``deleted.json`` counts."""
    from mnemos.genome.registry import stored_states

    return {(kind, name): read(f"registry/{kind}/{name}/{state.last:08d}.json")
            for (kind, name), state in stored_states(keys, read).items() if state.live}  # fmt: skip


def _admit_restored(dest: Engram, manifest: dict[str, Any], target: Engram) -> None:
    """Run GENOME admission on what a forced restore would make live in ``target`` (see ``restore``);
    an ``AdmissionError`` naming each refused resource and why, before anything is written."""
    from mnemos.genome import Policy, admit, parse_resource
    from mnemos.genome.registry import stored_states

    documents = manifest["documents"]
    read = _snapshot_reader(dest, documents)
    snapshot = _live_documents(sorted(documents), read)
    in_snapshot = set(stored_states(documents, read))
    now = _live_documents(target.list("registry"), target.read_json)
    after = {key: doc for key, doc in now.items() if key not in in_snapshot} | snapshot  # the registry then
    refused: list[str] = []
    written: list[Any] = []  # what the restore makes live that is not live now
    policies: list[Any] = []  # the Policies live after the restore: those admission applies
    for (kind, name), doc in sorted(after.items()):
        new = (kind, name) in snapshot and (now.get((kind, name)) is None or _content(now[kind, name]) != _content(doc))
        try:
            resource = _stored_windows_floored(parse_resource(doc, f"registry/{kind}/{name}"))
        except ValidationError as exc:
            if new:  # one already live stays as it is, left out by the registry as now
                refused.append(f"{kind.lower()}/{name}: {exc.message}")
            continue
        if isinstance(resource, Policy):
            policies.append(resource)
        if new:  # a Policy too: its own checks (admit applies no Policy to a Policy)
            written.append(resource)
    for resource in written:
        try:
            admit(resource, policies)
        except MnemosError as exc:  # ValidationError (the kind's checks) or AdmissionError (a Policy's rule)
            label = f"{type(resource).__name__.lower()}/{resource.name}: "
            refused.append(exc.message if exc.message.startswith(label) else label + exc.message)
    if refused:
        raise AdmissionError(
            f"restore of snapshot {manifest['id']} refused: {len(refused)} of its resources fail admission, as "
            "`mnemos apply` would refuse them; nothing was restored:\n  " + "\n  ".join(refused),
            param="snapshot",
        )


def _stored_windows_floored(resource: Any) -> Any:
    """``resource`` with each budget window under ``MIN_BUDGET_WINDOW_S`` read as that floor, as the
    live platform reads one stored before shorter ones were refused: admission refuses a new one,
    not one a snapshot holds (the restore writes it as it was stored)."""
    from mnemos.genome import Adapter, Model, Policy
    from mnemos.soul.limits import floor_budget_window

    spec = resource.spec
    if isinstance(resource, Policy):
        spec = spec.model_copy(update={"limits": [floor_budget_window(rule) for rule in spec.limits]})
    elif isinstance(resource, (Model, Adapter)) and spec.limits is not None:
        spec = spec.model_copy(update={"limits": floor_budget_window(spec.limits)})
    return resource.model_copy(update={"spec": spec})


def _revert_registry(dest: Engram, manifest: dict[str, Any], target: Engram) -> list[str]:
    """Give each resource of the snapshot its snapshot state in ``target`` by appending to its history."""
    from mnemos._model import utc_timestamp
    from mnemos.genome.registry import StoredState, stored_states, tombstone

    reverted = []
    documents = manifest["documents"]
    read = _snapshot_reader(dest, documents)
    for (kind, name), then in sorted(stored_states(documents, read).items()):
        folder = f"registry/{kind}/{name}"
        now = stored_states(target.list(folder), target.read_json).get((kind, name), StoredState([], {}))
        if not now.generations:
            continue
        was_live, is_live, gens, last = then.live, now.live, then.generations, now.last
        if not was_live:
            if is_live:  # deleted at the snapshot, applied again since: delete it again
                target.create_json(*tombstone(folder, last))
                reverted.append(f"{kind.lower()}/{name}: deleted (as in the snapshot)")
            continue
        doc = read(f"{folder}/{gens[-1]:08d}.json")
        if is_live and _content(target.read_json(f"{folder}/{last:08d}.json")) == _content(doc):
            continue  # the live generation is the snapshot's (or a restored copy of it)
        for gen in range(last + 1, last + 1 + MAX_APPEND_ATTEMPTS):
            doc.setdefault("metadata", {})["generation"] = gen
            doc["metadata"]["creationTimestamp"] = utc_timestamp()
            if target.create_json(f"{folder}/{gen:08d}.json", doc):
                reverted.append(f"{kind.lower()}/{name}: generation {gen} (the snapshot's generation {gens[-1]})")
                break
        else:
            raise ConflictError(
                f"{kind.lower()}/{name} kept changing while it was restored; stop the writers", param="to"
            )
    return reverted


_STARTED = "started.json"
"""Marks a snapshot being written (deleted once its manifest is): ``{"started": <time>}``."""
_DIED_S = 86400.0
"""A snapshot still being written after this long belongs to a backup that died."""


def _being_written(dest: Engram, now: float) -> list[str]:
    """Snapshots being written now (a marker, no manifest yet); a marker older than ``_DIED_S`` is a
    backup that died: it is deleted."""
    keys = set(dest.list(SNAPSHOTS))
    writing = []
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != _STARTED or f"{SNAPSHOTS}/{parts[1]}/manifest.json" in keys:
            continue
        try:
            started = float(dest.read_json(key).get("started", 0.0))
        except (NotFoundError, ValueError, AttributeError):
            continue  # it ended meanwhile (or is not ours to read)
        if started < now - _DIED_S:
            dest.delete(key)
        else:
            writing.append(parts[1])
    return writing


def prune_snapshots(
    dest: Engram, keep_days: float, *, now: float | None = None, min_blob_age: float = 86400.0, blobs: bool = True
) -> list[str]:
    """Delete snapshots older than ``keep_days`` (never the newest) and (``blobs``) the blobs only they used.

    A blob of the backup store is deleted only when no remaining manifest names it and it is
    older than ``min_blob_age`` seconds, and none is while another snapshot is being written (its
    ``started.json``): that backup may have found a blob stored already and be about to name it.
    (A prune that began before it did is caught by the backup itself: once its manifest is
    written, it stores again whatever of it is missing.)
    """
    now = time.time() if now is None else now
    ids = list_snapshots(dest)
    pruned = []
    for snapshot in ids[:-1]:
        try:
            created = float(load_manifest(dest, snapshot)["created"])
        except IntegrityError:  # a damaged snapshot restores nothing: it goes by the time in its id
            created = _created_by_id(snapshot, now)
        if created < now - keep_days * 86400.0:
            dest.delete_prefix(f"{SNAPSHOTS}/{snapshot}")
            pruned.append(snapshot)
    writing = _being_written(dest, now)
    if blobs and pruned and not writing:  # blobs that only pruned snapshots used go, unless a backup is being
        used: set[str] = set()  # written: it may be about to name them (a later prune deletes them)
        for snapshot in list_snapshots(dest):
            try:
                manifest = load_manifest(dest, snapshot)
            except IntegrityError:  # which blobs it names is not known: none is deleted this time
                return pruned
            used |= set(manifest["documents"].values()) | set(manifest["refs"].values()) | set(manifest["blobs"])
        for digest, _size, mtime in list(dest.blobs()):
            if digest not in used and mtime < now - min_blob_age:
                dest.delete_blob(digest)
    return pruned


def _created_by_id(snapshot: str, default: float) -> float:
    """The time a snapshot id begins with (``20261201T155347Z-…``); ``default`` when it has none."""
    import calendar

    try:
        return float(calendar.timegm(time.strptime(snapshot.split("-", 1)[0], "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return default
