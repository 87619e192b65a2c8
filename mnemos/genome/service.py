"""The GENOME control-plane actor: the registry over Ray, plus a watch of changes.

Writers (the client, the CLI, the gateway's API) store through ``Registry`` and publish what
changed here; controllers (RELAY's model reconciler, WRAITH's sync) ``watch`` for changes, a
long-poll that returns as soon as something is published. After a restart of this actor the
revision starts again at 0 and a watcher whose ``since`` is ahead is told to re-list.
"""

from __future__ import annotations

import threading
from typing import Any

import ray

from mnemos._actors import GENOME, NAMESPACE
from mnemos.engram import Engram
from mnemos.genome.registry import Registry, event_of
from mnemos.trace.events import publish as announce

__all__ = ["ACTOR_NAME", "GenomeService", "NAMESPACE", "ensure", "publish_changes"]

ACTOR_NAME = GENOME


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=64)
class GenomeService:
    """Named ``genome`` actor in namespace ``mnemos``."""

    def __init__(self, engram: Engram, require_gitops: bool = False) -> None:
        self.registry = Registry(engram, require_gitops=require_gitops)
        self._revision = 0
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def publish(self, events: list[dict[str, Any]]) -> int:
        """Record changes (``{action, kind, name, generation}``) and wake the watchers."""
        with self._cond:
            for event in events:
                self._revision += 1
                self._events.append({**event, "revision": self._revision})
                announce(f"resource.{event['action']}", f"{event['kind']}/{event['name']}", **event)
            del self._events[:-1000]
            self._cond.notify_all()
            return self._revision

    def watch(self, since: int, timeout: float = 30.0) -> dict[str, Any]:
        """Changes after revision ``since``; waits up to ``timeout`` s for the first one.

        Returns ``{"revision": n, "events": [...]}``, or ``{"revision": n, "events": None}``
        when ``since`` is unknown (this actor restarted, or events were dropped): re-list.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._revision != since, timeout=timeout)
            oldest = self._events[0]["revision"] if self._events else self._revision + 1
            if since > self._revision or (since + 1 < oldest and since != self._revision):
                return {"revision": self._revision, "events": None}
            return {"revision": self._revision, "events": [e for e in self._events if e["revision"] > since]}

    def revision(self) -> int:
        return self._revision

    def root(self) -> tuple[str, bool]:
        """The ENGRAM root and guardrail this actor serves."""
        return self.registry.engram.uri, self.registry.require_gitops

    # Remote access to the registry for callers that hold no ENGRAM credentials. Through this one
    # actor the platform's own writers (RELAY's control API, the serve config) are serialized.
    def apply(
        self, doc: dict[str, Any], source: str = "apply", expected_generation: int | None = None
    ) -> dict[str, Any]:
        """Apply one document; ``{"action", "resource"}`` (see ``Registry.apply``)."""
        from mnemos.genome.kinds import parse_resource

        result = self.registry.apply(parse_resource(doc), source=source, expected_generation=expected_generation)
        if result.action != "unchanged":
            self.publish([event_of(result.resource, result.action)])
        return {"action": result.action, "resource": result.resource.dump()}

    def delete(
        self, kind: str, name: str, source: str = "apply", expected_generation: int | None = None
    ) -> dict[str, Any]:
        resource = self.registry.delete(kind, name, source=source, expected_generation=expected_generation)
        self.publish([event_of(resource, "deleted")])
        return resource.dump()

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.dump() for r in self.registry.list(kind)]

    def get(self, kind: str, name: str, generation: int | None = None) -> dict[str, Any]:
        return self.registry.get(kind, name, generation).dump()

    def history(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [r.dump() for r in self.registry.history(kind, name)]


def ensure(settings: Any, engram: Engram) -> Any:
    """Get or create the detached ``genome`` actor for this ENGRAM root.

    An actor left serving another root (or another guardrail) is replaced: one platform serves
    one root, and its watchers re-list after a replacement.
    """
    wanted = (engram.uri, settings.cradle.guardrails.require_gitops)
    options = {"name": ACTOR_NAME, "namespace": NAMESPACE, "lifetime": "detached", "get_if_exists": True}
    actor = GenomeService.options(**options).remote(*_args(engram, settings))
    if tuple(ray.get(actor.root.remote())) != wanted:
        ray.kill(actor, no_restart=True)
        _wait_name_released(ACTOR_NAME)
        actor = GenomeService.options(**options).remote(*_args(engram, settings))
    return actor


def publish_changes(events: list[dict[str, Any]]) -> None:
    """Tell the ``genome`` actor what a writer changed (watchers react); nothing when none runs."""
    if not events:
        return
    try:
        actor = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:  # no control plane: nothing watches
        return
    ray.get(actor.publish.remote(events))


def _wait_name_released(name: str, timeout: float = 30.0) -> None:
    """``ray.kill`` returns before the actor's name is free; a new actor needs it free."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.05)


def _args(engram: Engram, settings: Any) -> tuple[Engram, bool]:
    return engram, settings.cradle.guardrails.require_gitops
