"""The GENOME registry: every generation of every resource, admission-checked, in ENGRAM.

Layout: ``registry/<Kind>/<name>/<generation>.json`` (zero-padded) and, after a delete,
``registry/<Kind>/<name>/deleted.json`` naming the last generation. A re-apply after a delete
continues the generation count, so history is never rewritten.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any, Literal

from mnemos.engram import Engram
from mnemos.errors import NotFoundError, PermissionDeniedError
from mnemos.genome._base import Resource
from mnemos.genome.admission import admit
from mnemos.genome.kinds import KINDS, parse_resource, resolve_kind
from mnemos.genome.policy import Policy

Action = Literal["created", "configured", "unchanged", "deleted"]


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


def _identity(resource: Resource) -> dict[str, object]:
    """What decides whether an apply is a change: spec, labels and annotations."""
    meta = resource.metadata
    return {"spec": resource.spec_dump(), "labels": meta.labels, "annotations": meta.annotations}


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

    def _generations(self, kind: str, name: str) -> list[int]:
        gens = []
        for key in self.engram.list(self._dir(kind, name)):
            stem = key.rsplit("/", 1)[-1].removesuffix(".json")
            if stem.isdigit():
                gens.append(int(stem))
        return sorted(gens)

    def _deleted_at(self, kind: str, name: str) -> int | None:
        key = f"{self._dir(kind, name)}/deleted.json"
        return int(self.engram.read_json(key)["generation"]) if self.engram.exists(key) else None

    def _load(self, kind: str, name: str, gen: int) -> Resource:
        doc = self.engram.read_json(f"{self._dir(kind, name)}/{gen:08d}.json")
        return parse_resource(doc, f"registry/{kind}/{name}")

    def admit(self, resource: Resource) -> None:
        """Run admission (Policy rules) without storing anything."""
        admit(resource, self.list("Policy"))  # type: ignore[arg-type]

    def apply(self, resource: Resource, *, source: str = "apply") -> ApplyResult:
        """Store ``resource``: a new generation when it changed, nothing when it did not."""
        self._guard(source, "apply")
        kind = type(resource).__name__
        with self._lock:
            self.admit(resource)
            gens = self._generations(kind, resource.name)
            deleted = self._deleted_at(kind, resource.name)
            live = bool(gens) and (deleted is None or deleted < gens[-1])
            if live:
                current = self._load(kind, resource.name, gens[-1])
                if _identity(current) == _identity(resource):
                    return ApplyResult(current, "unchanged")
            gen = (gens[-1] if gens else 0) + 1
            stored = resource.model_copy(deep=True)
            stored.metadata.generation = gen
            stored.metadata.creation_timestamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            self.engram.write_json(f"{self._dir(kind, resource.name)}/{gen:08d}.json", stored.dump())
            if deleted is not None:
                self.engram.delete(f"{self._dir(kind, resource.name)}/deleted.json")
            return ApplyResult(stored, "configured" if live else "created")

    def get(self, kind: str, name: str, generation: int | None = None) -> Resource:
        """The latest (or a given) generation; ``NotFoundError`` when absent or deleted."""
        kind = resolve_kind(kind).__name__
        gens = self._generations(kind, name)
        deleted = self._deleted_at(kind, name)
        if generation is not None:
            if generation not in gens:
                raise NotFoundError(f"{kind.lower()}/{name} has no generation {generation}", param="generation")
            return self._load(kind, name, generation)
        if not gens or (deleted is not None and deleted >= gens[-1]):
            raise NotFoundError(f"{kind.lower()}/{name} not found", param="name")
        return self._load(kind, name, gens[-1])

    def list(self, kind: str | None = None) -> list[Resource]:
        """The live resources of a kind (or of every kind), sorted by kind and name."""
        kinds = [resolve_kind(kind).__name__] if kind else list(KINDS)
        out: list[Resource] = []
        for k in kinds:
            names = sorted({key.split("/")[2] for key in self.engram.list(f"registry/{k}")})
            for name in names:
                try:
                    out.append(self.get(k, name))
                except NotFoundError:
                    continue
        return out

    def policies(self) -> list[Policy]:
        return [p for p in self.list("Policy") if isinstance(p, Policy)]

    def delete(self, kind: str, name: str, *, source: str = "apply") -> Resource:
        """Delete a resource (its history stays); returns the generation that was live."""
        self._guard(source, "delete")
        kind = resolve_kind(kind).__name__
        with self._lock:
            current = self.get(kind, name)
            self.engram.write_json(f"{self._dir(kind, name)}/deleted.json", {"generation": current.generation})
            return current

    def history(self, kind: str, name: str) -> list[Resource]:
        """Every stored generation, oldest first."""
        kind = resolve_kind(kind).__name__
        gens = self._generations(kind, name)
        if not gens:
            raise NotFoundError(f"{kind.lower()}/{name} not found", param="name")
        return [self._load(kind, name, g) for g in gens]


def event_of(resource: Any, action: str) -> dict[str, Any]:
    return {
        "action": action,
        "kind": type(resource).__name__,
        "name": resource.name,
        "generation": resource.generation,
    }
