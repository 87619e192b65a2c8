"""The observed status of each served Model, written by the relay controller, read by the CLI and HTTP.

A status record (``status/models/<name>.json`` in ENGRAM, and in the gateway's routing table)::

    {name, phase, reason, message, generation, served_generation, digest, engine,
     ready_replicas, desired_replicas, updated, conditions: [{type, status, reason, message, at}]}

``phase`` is ``Pending`` (applied, not reconciled yet), ``Deploying``, ``Ready``, ``Failed`` or
``Stopped`` (``replicas: 0``); a deployed Model whose replicas all died (a node went away) is
``Deploying`` (reason ``NoReadyReplica``) until Serve has replaced one, and one with fewer running
than desired stays ``Ready`` with reason ``ReplicasUnavailable``. ``ready_replicas`` and
``desired_replicas`` are Serve's live counts (:func:`serve_replicas`: RUNNING replicas and the
deployment's target, which autoscaling moves), refreshed by the relay controller every few
seconds, not copied from the spec. ``reason`` is one
word (``ArtifactMissing``, ``DeployFailed``, ``Rolling`` …) and ``message`` says what to do. Each
change is also an event in the ENGRAM log ``events/models`` (``mnemos describe model NAME`` shows
the recent ones).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from mnemos._actors import serve_applications
from mnemos._model import utc_timestamp
from mnemos.engram import Engram
from mnemos.errors import MnemosError, NotFoundError
from mnemos.genome import Model

__all__ = [
    "EVENT_LOG",
    "PHASES",
    "ModelStatusWriter",
    "artifact_digest",
    "artifact_problem",
    "read_events",
    "read_status",
    "serve_replicas",
    "status_key",
    "status_record",
    "status_view",
    "with_replicas",
]

logger = logging.getLogger("mnemos.relay")

PHASES = {"deploying": "Deploying", "ready": "Ready", "failed": "Failed", "stopped": "Stopped"}
EVENT_LOG = "events/models"
# Engines that load no artifact.
_NO_ARTIFACT = frozenset({"echo"})


def status_key(name: str) -> str:
    return f"status/models/{name}.json"


def artifact_digest(model: Model, engram: Engram) -> str | None:
    """The digest being served: ``spec.artifact.sha256``, else what an ``engram://`` ref points at."""
    uri = model.spec.artifact.uri
    if model.spec.artifact.sha256 or not uri.startswith("engram://"):
        return model.spec.artifact.sha256
    target = uri[len("engram://") :]
    try:
        return target if target.startswith("sha256:") else engram.get_ref(target)
    except MnemosError:
        return None


def artifact_problem(model: Model, engram: Engram) -> str | None:
    """Why ``model``'s artifact cannot load (an ``engram://`` ref or blob that does not exist), else None.

    The message names the missing ref and the command that creates it, never where ENGRAM is (a
    folder or bucket): every role reads model status events.
    """
    if model.spec.runtime.engine in _NO_ARTIFACT:
        return None
    uri = model.spec.artifact.uri
    if not uri.startswith("engram://"):
        return None  # other schemes are checked where they load (their replica's node)
    target = uri[len("engram://") :]
    try:
        if target.startswith("sha256:"):
            if engram.has(target):
                return None
            missing = f"ENGRAM has no blob {target}"
        else:
            engram.get_ref(target)
            return None
    except NotFoundError:
        missing = f"ENGRAM has no ref {target!r}"
    except MnemosError as exc:
        return f"artifact {uri} cannot be read: {exc}"
    name = model.name
    how = f"`mnemos model register DIR --name {name}`"
    if target == f"models/{name}":
        how = f"`mnemos model init-tiny DIR --store {name}` (the tiny test model) or {how}"
    return f"artifact {uri} is missing: {missing}; create it with {how}, then the model deploys by itself"


def serve_replicas(deployment: str) -> dict[str, tuple[int, int | None]]:
    """``{application: (ready, desired)}`` of ``deployment`` in every Serve application, from Serve now.

    ``ready`` counts RUNNING replicas; ``desired`` is the deployment's target (its ``num_replicas``,
    or where autoscaling put it).
    """
    counts: dict[str, tuple[int, int | None]] = {}
    for app, info in serve_applications().items():
        dep = (info.get("deployments") or {}).get(deployment)
        if dep is not None:
            ready = sum(1 for r in dep.get("replicas") or () if str(r.get("state", "")).endswith("RUNNING"))
            counts[app] = (ready, dep.get("target_num_replicas"))
    return counts


def with_replicas(route: dict[str, Any], counts: tuple[int, int | None] | None) -> dict[str, Any]:
    """``route`` with Serve's live ``(ready, desired)`` counts (a copy; ``route`` itself when unchanged).

    A model that is not serving (failed, stopped) has 0 ready; ``desired`` keeps the spec's value
    when Serve does not say.
    """
    if route.get("status") not in ("ready", "deploying") or counts is None:
        ready, desired = 0, route.get("desired_replicas")
    else:
        ready = counts[0]
        desired = counts[1] if counts[1] is not None else route.get("desired_replicas")
    if route.get("ready_replicas") == ready and route.get("desired_replicas") == desired:
        return route
    return {**route, "ready_replicas": ready, "desired_replicas": desired}


_MNEMOS_ERROR = re.compile(r"^mnemos\.errors\.\w+: ")
_NOT_LOADED = re.compile(r"^model artifact (?P<uri>\S+): no such (?P<what>file or folder|object or prefix)$")


def _deploy_failure(name: str, message: str | None) -> tuple[str, str | None]:
    """The reason and message of a replica that failed to start (the last line of its traceback):
    ``ArtifactMissing``, naming the URI and how to provide it, when the artifact was not found where
    it was loaded (a ``file://`` or ``s3://`` one: only its replica's node can tell); else
    ``DeployFailed`` with the error's own text (``mnemos.errors.NotFoundError: `` left off)."""
    text = _MNEMOS_ERROR.sub("", message or "")
    missing = _NOT_LOADED.match(text)
    if missing is None:
        return "DeployFailed", text or message
    uri = missing["uri"]
    where = "on the node of each replica" if missing["what"] == "file or folder" else "in its bucket"
    return "ArtifactMissing", (
        f"artifact {uri} is missing: no such {missing['what']} {where}; put the model there, or store it in "
        f"ENGRAM with `mnemos model register DIR --name {name}` (the Model then loads the stored copy)"
    )


def status_record(name: str, route: dict[str, Any] | None) -> dict[str, Any]:
    """The status record of Model ``name`` from its routing entry (``None``: Pending)."""
    if route is None:
        return {"name": name, "phase": "Pending", "reason": "NotReconciled", "message": None,
                "ready_replicas": 0, "desired_replicas": None}  # fmt: skip
    phase = PHASES.get(str(route.get("status")), "Pending")
    desired = route.get("desired_replicas")
    ready = int(route.get("ready_replicas") or 0)
    reason, message = route.get("reason"), route.get("message")
    if reason == "DeployFailed":
        reason, message = _deploy_failure(name, message)
    if phase == "Ready" and desired and ready < desired:
        # Deployed, but Serve has fewer replicas running than it wants (one died, a node went away):
        # with none left nothing answers until Serve replaces them, so the model is not Ready.
        reason = "NoReadyReplica" if ready == 0 else "ReplicasUnavailable"
        message = f"{ready} of {desired} replicas are running; Serve is starting the others"
        phase = "Deploying" if ready == 0 else phase
    return {
        "name": name,
        "phase": phase,
        "reason": reason,
        "message": message,
        "generation": route.get("generation"),
        "served_generation": route.get("generation") if phase == "Ready" else None,
        "digest": route.get("digest"),
        "engine": route.get("engine"),
        "serving": route.get("serving"),
        "ready_replicas": ready,
        "desired_replicas": desired,
    }


class ModelStatusWriter:
    """Writes each Model's status record and a change event to ENGRAM (best effort: never raises)."""

    def __init__(self, engram: Engram) -> None:
        self.engram = engram
        self._last: dict[str, tuple[Any, ...]] = {}

    def write(self, name: str, route: dict[str, Any] | None) -> None:
        try:
            if route is None:
                self.engram.delete(status_key(name))
                self._event(name, {"phase": "Deleted", "reason": "Deleted", "message": None})
                self._last.pop(name, None)
                return
            record = status_record(name, route)
            previous = self._conditions(name)
            record["updated"] = utc_timestamp()
            record["conditions"] = self._next_conditions(previous, record)
            self.engram.write_json(status_key(name), record)
            key = (record["phase"], record["reason"], record["generation"], record["message"])
            if self._last.get(name) != key:
                self._last[name] = key
                self._event(name, record)
        except Exception:  # noqa: BLE001 - status is best effort; serving goes on
            logger.warning("relay: writing the status of model %s failed", name, exc_info=True)

    def _conditions(self, name: str) -> list[dict[str, Any]]:
        try:
            return list(self.engram.read_json(status_key(name)).get("conditions") or [])
        except (NotFoundError, ValueError, AttributeError):
            return []

    @staticmethod
    def _next_conditions(previous: list[dict[str, Any]], record: dict[str, Any]) -> list[dict[str, Any]]:
        """``Ready`` and ``ArtifactAvailable`` conditions, their ``at`` kept while their value holds."""
        ready = record["phase"] == "Ready"
        artifact = record["reason"] != "ArtifactMissing"
        wanted = {
            "Ready": ("True" if ready else "False", record["reason"], record["message"]),
            "ArtifactAvailable": ("True" if artifact else "False", None if artifact else "ArtifactMissing",
                                  None if artifact else record["message"]),  # fmt: skip
        }
        old = {c.get("type"): c for c in previous}
        out = []
        for kind, (value, reason, message) in wanted.items():
            prior = old.get(kind)
            at = prior["at"] if prior and prior.get("status") == value and prior.get("at") else utc_timestamp()
            out.append({"type": kind, "status": value, "reason": reason, "message": message, "at": at})
        return out

    def _event(self, name: str, record: dict[str, Any]) -> None:
        self.engram.append(EVENT_LOG, [{
            "at": utc_timestamp(), "kind": "Model", "name": name, "phase": record.get("phase"),
            "reason": record.get("reason"), "message": record.get("message"), "generation": record.get("generation"),
        }])  # fmt: skip


def read_status(engram: Engram, name: str) -> dict[str, Any] | None:
    """The last status record written for Model ``name`` (None when there is none)."""
    try:
        record = engram.read_json(status_key(name))
    except NotFoundError:
        return None
    return record if isinstance(record, dict) else None


def status_view(engram: Engram, name: str) -> dict[str, Any]:
    """Model ``name``'s status as ``GET /apis/…/models/{name}/status`` answers it: its last record
    (``Pending`` before the controller wrote one), with ``conditions``, and its recent ``events``."""
    record = read_status(engram, name) or {"name": name, "phase": "Pending"}
    return {"object": "status", **record, "events": read_events(engram, name)}


def read_events(engram: Engram, name: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """The most recent model events (of Model ``name`` when given), oldest first."""
    events = [e for e in engram.read_log(EVENT_LOG) if name is None or e.get("name") == name]
    return events[-limit:]
