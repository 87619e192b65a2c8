"""The GENOME registry: every generation of every resource, admission-checked, in ENGRAM.

Layout: ``registry/<Kind>/<name>/<generation>.json`` (zero-padded) and, for each delete,
``registry/<Kind>/<name>/deleted-<generation>.json`` naming the generation that was live (older
stores have one ``deleted.json``). A re-apply after a delete continues the generation count, so
history is never rewritten.

Writes never lose an accepted change, however many writers (threads, processes, machines) apply
at once: each generation and each tombstone is an atomic create in ENGRAM (``Engram.create_json``:
a hard link locally, a conditional PUT ``If-None-Match: *`` on S3). A writer that loses the race
for a generation re-reads, re-runs admission and tries the next one. A write may name the
generation it read (``expected_generation``); when the resource moved on it gets ``ConflictError``
(HTTP 409) naming the current generation.
"""

from __future__ import annotations

import builtins
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import create_model

from mnemos._model import utc_timestamp
from mnemos.engram import Engram
from mnemos.errors import ConflictError, MnemosError, NotFoundError, PermissionDeniedError, ValidationError
from mnemos.genome._base import ObjectMeta, Resource, check_name
from mnemos.genome.admission import admit
from mnemos.genome.kinds import KINDS, parse_resource, resolve_kind
from mnemos.genome.pipeline import Pipeline, local_files
from mnemos.genome.policy import Policy

__all__ = ["Action", "ApplyResult", "MAX_ATTEMPTS", "Registry", "StoredState", "api_path", "apply_each", "event_of",
           "plural_of", "stored_as_is", "stored_states", "tombstone"]

Action = Literal["created", "configured", "unchanged", "deleted"]

_log = logging.getLogger(__name__)

# Attempts of one write that keeps losing the race for the next generation, before a 409.
MAX_ATTEMPTS = 200


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did: ``created``, ``configured`` (new generation) or ``unchanged``."""

    resource: Resource
    action: Action

    @property
    def kind(self) -> str:
        return type(self.resource).__name__

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.resource.name} {self.action} (generation {self.resource.generation})"


def apply_each(resources: Iterable[Resource], apply_one: Callable[[Resource], ApplyResult],
               results: list[ApplyResult]) -> list[ApplyResult]:  # fmt: skip
    """Apply ``resources`` in order with ``apply_one``, appending each result to ``results``. One
    refused (admission, a conflict) stops the rest, and its error says which were applied before it:
    they stay applied (each write is its own), and an error saying nothing of them read as if none was."""
    try:
        for resource in resources:
            results.append(apply_one(resource))
    except MnemosError as exc:
        if results:
            exc.message = f"{exc.message} [applied before it: {', '.join(map(str, results))}; nothing after it]"
            exc.args = (exc.message,)
        raise
    return results


@dataclass(frozen=True)
class StoredState:
    """What is stored for one resource: its generations (sorted) and its tombstones (a deleted
    generation → the key that marks its deletion)."""

    generations: list[int]
    tombstones: dict[int, str]

    @property
    def deleted(self) -> int | None:
        """The last generation deleted."""
        return max(self.tombstones) if self.tombstones else None

    @property
    def last(self) -> int:
        return self.generations[-1] if self.generations else 0

    @property
    def live(self) -> bool:
        return bool(self.generations) and (self.deleted is None or self.deleted < self.generations[-1])

    @property
    def current(self) -> int:
        """The live generation, or 0 when the resource does not exist (never, or deleted)."""
        return self.last if self.live else 0


def stored_states(keys: Iterable[str], read: Callable[[str], dict[str, Any]]) -> dict[tuple[str, str], StoredState]:
    """``{(kind, name): StoredState}`` from registry keys (``registry/KIND/NAME/00000003.json``,
    ``…/deleted-00000003.json``); ``read(key)`` reads the single ``deleted.json`` marker of older
    stores, which holds the generation it deleted. Other keys are left out."""
    gens: dict[tuple[str, str], list[int]] = {}
    deleted: dict[tuple[str, str], dict[int, str]] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "registry" or not parts[3].endswith(".json"):
            continue
        resource, stem = (parts[1], parts[2]), parts[3].removesuffix(".json")
        if stem.isdigit():
            gens.setdefault(resource, []).append(int(stem))
        elif stem.startswith("deleted-") and stem[8:].isdigit():
            deleted.setdefault(resource, {})[int(stem[8:])] = key
        elif stem == "deleted":
            deleted.setdefault(resource, {})[int(read(key).get("generation", 0))] = key
    return {resource: StoredState(sorted(gens.get(resource, [])), deleted.get(resource, {}))
            for resource in gens.keys() | deleted.keys()}  # fmt: skip


def _identity(resource: Resource) -> dict[str, object]:
    """What decides whether an apply is a change: spec, labels and annotations."""
    meta = resource.metadata
    return {"spec": resource.spec_dump(), "labels": meta.labels, "annotations": meta.annotations}


def tombstone(folder: str, generation: int) -> tuple[str, dict[str, Any]]:
    """The key and record that mark ``generation`` of the resource stored in ``folder`` deleted now
    (what ``history`` reads as its ``deletionTimestamp``)."""
    return f"{folder}/deleted-{generation:08d}.json", {"generation": generation, "deleted": utc_timestamp()}


def _backoff(attempt: int) -> None:
    """A short, jittered pause after a lost race (spreads writers that collide repeatedly)."""
    time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))


class Registry:
    """Versioned, admission-checked resources persisted in ENGRAM.

    Args:
        engram: the store.
        require_gitops: the ``cradle.guardrails.require_gitops`` guardrail: applies and deletes
            are refused unless their ``source`` is ``"gitops"`` (the sync loop).
    """

    def __init__(self, engram: Engram, *, require_gitops: bool = False) -> None:
        self.engram = engram
        self.require_gitops = require_gitops
        self._lock = threading.Lock()

    def _guard(self, source: str, verb: str) -> None:
        if self.require_gitops and source != "gitops":
            raise PermissionDeniedError(
                f"direct {verb} refused: the guardrail require_gitops is on; commit the change to the GitOps "
                "repository and let `mnemos sync` apply it",
                param="cradle.guardrails.requireGitops",
            )

    def _dir(self, kind: str, name: str) -> str:
        return f"registry/{kind}/{name}"

    def _state(self, kind: str, name: str) -> StoredState:
        """One listing of the resource's folder: generations and tombstones."""
        found = stored_states(self.engram.list(self._dir(kind, name)), self.engram.read_json)
        return found.get((kind, name), StoredState([], {}))

    def _deleted_at(self, key: str) -> str | None:
        """When the tombstone ``key`` was written: its ``deleted`` time, or (tombstones of older
        releases record none) the stored object's modification time."""
        try:
            when = self.engram.read_json(key).get("deleted")
            seconds = 0.0 if when else self.engram.modified(key)
        except (OSError, ValueError, TypeError):
            return None
        return str(when) if when else utc_timestamp(seconds) if seconds else None

    def _load(self, kind: str, name: str, gen: int) -> Resource:
        """Generation ``gen`` as a resource; a record that no longer validates (stored by an older
        release, or before a check was added) is a ``ValidationError`` saying how to repair it."""
        doc = self.engram.read_json(f"{self._dir(kind, name)}/{gen:08d}.json")
        try:
            return parse_resource(doc, f"registry/{kind}/{name}")
        except ValidationError as exc:
            raise ValidationError(
                f"{exc.message} (generation {gen} is stored but no longer valid: apply a corrected version with "
                f"`mnemos apply -f FILE`, or delete it with `mnemos delete {kind.lower()} {name}`)",
                param=exc.param,
            ) from None

    def _load_as_stored(self, kind: str, name: str, gen: int) -> Resource:
        """Generation ``gen`` validated when it still validates, else as stored (for a delete)."""
        try:
            return self._load(kind, name, gen)
        except ValidationError:
            doc = self.engram.read_json(f"{self._dir(kind, name)}/{gen:08d}.json")
            return stored_as_is(kind, name, gen, doc)

    @staticmethod
    def _check_expected(kind: str, name: str, state: StoredState, expected: int | None) -> None:
        if expected is not None and expected != state.current:
            now = f"generation {state.current}" if state.current else "absent"
            raise ConflictError(
                f"{kind.lower()}/{name} is {now}, not generation {expected}: it changed since it was read; "
                "get it again and re-apply your change",
                param="metadata.generation",
                current_generation=state.current,
            )

    def admit(self, resource: Resource) -> None:
        """Run admission (Policy rules) without storing anything."""
        admit(resource, self.list("Policy"))  # type: ignore[arg-type]

    def apply(
        self, resource: Resource, *, source: str = "apply", expected_generation: int | None = None
    ) -> ApplyResult:
        """Store ``resource``: a new generation when it changed, nothing when it did not.

        Args:
            resource: the resource (its ``metadata.generation`` is ignored; see ``expected_generation``).
            source: who applies (``gitops`` passes the ``require_gitops`` guardrail).
            expected_generation: the generation the caller read (0: the resource must not exist);
                ``None`` applies over whatever is there.

        Raises:
            ConflictError: the resource is not at ``expected_generation`` (409), or the write lost
                the race for a new generation ``MAX_ATTEMPTS`` times in a row.
            AdmissionError: a Policy refuses it.
        """
        self._guard(source, "apply")
        self._store_files(resource)
        kind = type(resource).__name__
        folder = self._dir(kind, resource.name)
        with self._lock:  # writers in this process take turns; other processes race below
            for attempt in range(MAX_ATTEMPTS):
                self.admit(resource)
                state = self._state(kind, resource.name)
                self._check_expected(kind, resource.name, state, expected_generation)
                if state.live:
                    try:
                        current = self._load(kind, resource.name, state.last)
                    except ValidationError:  # stored but no longer valid: this apply repairs it
                        current = None
                    if current is not None and _identity(current) == _identity(resource):
                        return ApplyResult(current, "unchanged")
                gen = state.last + 1
                stored = resource.model_copy(deep=True)
                stored.metadata.generation = gen
                stored.metadata.creation_timestamp = utc_timestamp()
                stored.metadata.deletion_timestamp = None  # history's mark, never a client's
                if self.engram.create_json(f"{folder}/{gen:08d}.json", stored.dump()):
                    return ApplyResult(stored, "configured" if state.live else "created")
                _backoff(attempt)  # another writer took this generation: re-read, re-admit, retry
        raise ConflictError(
            f"{kind.lower()}/{resource.name}: too many concurrent writers, the apply lost the race "
            f"{MAX_ATTEMPTS} times; retry it",
            param="metadata.name",
        )

    def _store_files(self, resource: Resource) -> None:
        """Store a pipeline's ``spec.files`` from the local files it was loaded beside (a digest
        already stored is not read again; one whose file no longer hashes to it is refused); a
        digest with no local file (a document sent over HTTP) must already be in ENGRAM (uploaded)."""
        if not isinstance(resource, Pipeline):
            return
        local = local_files(resource)
        for path, digest in resource.spec.files.items():
            if digest in local:
                if self.engram.put_file(local[digest], digest=digest) != digest:
                    raise ConflictError(f"spec.files[{path!r}]: {local[digest]} changed since the pipeline was "
                                        "loaded; apply again", param=f"spec.files.{path}")  # fmt: skip
            elif not self.engram.has(digest):
                raise ValidationError(
                    f"spec.files[{path!r}]: no file with digest {digest} was uploaded: apply the pipeline from its "
                    f"file, with {path} beside it (the client uploads it), or upload the bytes first with "
                    f"PUT /v1/files/{digest}",
                    param=f"spec.files.{path}",
                )

    def get(self, kind: str, name: str, generation: int | None = None) -> Resource:
        """The latest (or a given) generation; ``NotFoundError`` when absent or deleted."""
        kind = resolve_kind(kind).__name__
        check_name(kind, name)
        if generation is not None and generation < 1:
            raise ValidationError(f"generation: {generation!r} is no generation: generations count from 1 "
                                  f"(`mnemos history {kind.lower()} {name}` lists them)",
                                  param="generation")  # fmt: skip
        state = self._state(kind, name)
        if generation is not None:
            if generation not in state.generations:
                raise NotFoundError(f"{kind.lower()}/{name} has no generation {generation}", param="generation")
            return self._load(kind, name, generation)
        if not state.live:
            raise NotFoundError(f"{kind.lower()}/{name} not found" + (
                f": it was deleted at generation {state.last} (`mnemos history {kind.lower()} {name}` shows "
                "its generations)" if state.generations else ""), param="name")  # fmt: skip
        return self._load(kind, name, state.last)

    def list(self, kind: str | None = None) -> builtins.list[Resource]:
        """The live resources of a kind (or of every kind), sorted by kind and name.

        A stored resource that no longer validates is left out with a warning naming it (logger
        ``mnemos.genome.registry``), so that one bad record never hides the others.
        """
        kinds = [resolve_kind(kind).__name__] if kind else list(KINDS)
        out: builtins.list[Resource] = []
        for k in kinds:
            names = sorted({key.split("/")[2] for key in self.engram.list(f"registry/{k}")})
            for name in names:
                try:
                    out.append(self.get(k, name))
                except NotFoundError:
                    continue
                except ValidationError as exc:
                    _log.warning("warning: skipped: %s", exc.message)
        return out

    def policies(self) -> builtins.list[Policy]:
        return [p for p in self.list("Policy") if isinstance(p, Policy)]

    def delete(
        self, kind: str, name: str, *, source: str = "apply", expected_generation: int | None = None
    ) -> Resource:
        """Delete a resource (its history stays); returns the generation that was live.

        Raises:
            NotFoundError: it does not exist (or another writer deleted it first).
            ConflictError: it is not at ``expected_generation``.
        """
        self._guard(source, "delete")
        kind = resolve_kind(kind).__name__
        check_name(kind, name)
        with self._lock:
            state = self._state(kind, name)
            self._check_expected(kind, name, state, expected_generation)
            if not state.live:
                raise NotFoundError(f"{kind.lower()}/{name} not found", param="name")
            current = self._load_as_stored(kind, name, state.last)  # a delete never needs a valid spec
            if not self.engram.create_json(*tombstone(self._dir(kind, name), state.last)):
                raise NotFoundError(f"{kind.lower()}/{name} not found (deleted by another writer)", param="name")
            # An apply may have taken the next generation meanwhile; whether it came before or after
            # the tombstone cannot be told, so the delete is not acknowledged: the resource is live.
            after = self._state(kind, name)
            if after.last > state.last:
                raise ConflictError(
                    f"{kind.lower()}/{name} was applied (generation {after.last}) while it was being deleted; "
                    "it is live: delete it again if you mean to",
                    param="metadata.generation",
                    current_generation=after.last,
                )
            return current

    def history(self, kind: str, name: str) -> builtins.list[Resource]:
        """Every stored generation, oldest first; one that no longer validates is left out with a
        warning. A generation that was deleted carries ``metadata.deletionTimestamp``."""
        kind = resolve_kind(kind).__name__
        check_name(kind, name)
        state = self._state(kind, name)
        if not state.generations:
            raise NotFoundError(f"{kind.lower()}/{name} not found", param="name")
        out: builtins.list[Resource] = []
        for gen in state.generations:
            try:
                resource = self._load(kind, name, gen)
            except ValidationError as exc:
                _log.warning("warning: skipped: %s", exc.message)
                continue
            if gen in state.tombstones:
                resource.metadata.deletion_timestamp = self._deleted_at(state.tombstones[gen])
            out.append(resource)
        return out


@functools.cache
def _stand_in(kind: str) -> type[Resource]:
    """A model of ``kind``'s envelope whose spec is kept as stored (not validated)."""
    return create_model(kind, __base__=Resource, kind=(str, kind))  # type: ignore[call-overload,no-any-return]


def stored_as_is(kind: str, name: str, gen: int, doc: Any) -> Resource:
    """A stored record that no longer validates, as a resource carrying its name and generation."""
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    cls = _stand_in(kind)
    return cls.model_construct(
        api_version=KINDS[kind].API_VERSION,
        kind=kind,
        metadata=ObjectMeta.model_construct(
            name=name, generation=gen, labels={}, annotations={},
            creation_timestamp=meta.get("creationTimestamp") if isinstance(meta, dict) else None,
        ),
        spec=doc.get("spec") if isinstance(doc, dict) else None,
    )


def plural_of(kind: str) -> str:
    """The plural of a kind in API paths: ``Model`` → ``models``, ``Policy`` → ``policies``."""
    low = kind.lower()
    return low[:-1] + "ies" if low.endswith("y") else low + "s"


def api_path(kind: str, name: str | None = None) -> str:
    """The control-plane API path of a kind (``/apis/genome.mnemos.dev/v1/models``) or of one resource;
    a name that is none (``../tokens``, ``a?b``) is a ``ValidationError``, never another path."""
    cls = resolve_kind(kind)
    base = f"/apis/{cls.API_VERSION}/{plural_of(cls.__name__)}"
    return f"{base}/{check_name(cls.__name__, name)}" if name is not None else base


def event_of(resource: Any, action: str) -> dict[str, Any]:
    return {
        "action": action,
        "kind": type(resource).__name__,
        "name": resource.name,
        "generation": resource.generation,
    }
