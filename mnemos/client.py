"""The notebook facade: ``client = mnemos.connect()``.

The client reads and writes GENOME resources in ENGRAM directly and, when connected to a Ray
cluster, publishes each change to the control plane so that controllers (the gateway, the
sync loop) react at once. Component APIs hang off it: ``client.jobs`` (CORTEX),
``client.pipelines`` and ``client.spaces`` (SYNKRON), ``client.lineage(id)`` (TRACE).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mnemos.config import Settings, load_settings
from mnemos.engram import Engram
from mnemos.genome import ApplyResult, Registry, Resource, json_schema, load_paths, parse_resource
from mnemos.genome.registry import event_of

__all__ = ["Client", "connect"]

ApplySource = str | Path | Resource | dict[str, Any] | Iterable[Resource | dict[str, Any]]


def _resources(source: ApplySource) -> list[Resource]:
    if isinstance(source, (str, Path)):
        return load_paths([source])
    if isinstance(source, Resource):
        return [source]
    if isinstance(source, dict):
        return [parse_resource(source)]
    return [r if isinstance(r, Resource) else parse_resource(r) for r in source]


class Client:
    """Entry point to a MNEMOS platform.

    Args:
        settings: configuration (default: ``MNEMOS_*`` and ``mnemos.yaml``).
        connected: whether this process is connected to Ray with the control plane up.
    """

    def __init__(self, settings: Settings | None = None, *, connected: bool = False) -> None:
        self.settings = settings or load_settings()
        self.engram = Engram.from_settings(self.settings)
        self.registry = Registry(self.engram, require_gitops=self.settings.cradle.guardrails.require_gitops)
        self.connected = connected
        self._components: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Client(engram={self.engram.uri!r}, connected={self.connected})"

    # -- resources ---------------------------------------------------------------------------
    def apply(self, source: ApplySource, *, source_tag: str = "apply") -> list[ApplyResult]:
        """Apply files, folders, documents or resources; each result says created/configured/unchanged."""
        results = [self.registry.apply(r, source=source_tag) for r in _resources(source)]
        self._publish([event_of(r.resource, r.action) for r in results if r.action != "unchanged"])
        return results

    def get(self, kind: str, name: str | None = None, *, generation: int | None = None) -> Any:
        """One resource (``name`` given) or the list of a kind."""
        if name is None:
            return self.registry.list(kind)
        return self.registry.get(kind, name, generation)

    def delete(self, kind: str, name: str, *, source_tag: str = "apply") -> Resource:
        resource = self.registry.delete(kind, name, source=source_tag)
        self._publish([event_of(resource, "deleted")])
        return resource

    def history(self, kind: str, name: str) -> list[Resource]:
        return self.registry.history(kind, name)

    @staticmethod
    def validate(source: ApplySource) -> list[Resource]:
        """Parse and schema-check without storing anything."""
        return _resources(source)

    def admit(self, source: ApplySource) -> list[Resource]:
        """Schema and admission checks, without storing anything (``mnemos validate``)."""
        resources = _resources(source)
        for resource in resources:
            self.registry.admit(resource)
        return resources

    @staticmethod
    def schema(kind: str) -> dict[str, Any]:
        return json_schema(kind)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if not events or not self.connected:
            return
        import ray

        from mnemos.genome.service import ACTOR_NAME, NAMESPACE

        with contextlib.suppress(ValueError):  # no control plane: nothing watches
            ray.get(ray.get_actor(ACTOR_NAME, namespace=NAMESPACE).publish.remote(events))

    # -- component APIs (each imported on first use) ------------------------------------------
    @property
    def jobs(self) -> Any:
        """CORTEX jobs: ``client.jobs.submit(fn, *args, queue=, priority=, ...)``."""
        from mnemos.cortex import JobsAPI

        return self._api("jobs", JobsAPI)

    @property
    def pipelines(self) -> Any:
        """SYNKRON runs: ``client.pipelines.run("pipelines/x.yaml")``."""
        from mnemos.synkron import PipelinesAPI

        return self._api("pipelines", PipelinesAPI)

    @property
    def spaces(self) -> Any:
        """Embedding spaces: ``client.spaces.search(space, query, k)``."""
        from mnemos.synkron import SpacesAPI

        return self._api("spaces", SpacesAPI)

    def lineage(self, node_id: str) -> Any:
        """The lineage graph (upstream and downstream) of a run, job, request or artifact."""
        from mnemos.trace.lineage import graph

        return graph(self.engram, node_id)

    def _api(self, name: str, cls: Any) -> Any:
        key = f"api:{name}"
        if key not in self._components:
            self._components[key] = cls(self)
        return self._components[key]

    # -- platform ----------------------------------------------------------------------------
    def component(self, name: str) -> Any:
        """The handle of a control-plane component, started on first use."""
        if name not in self._components:
            from mnemos.cradle import up

            self._components.update(up(self.settings, self.engram, [name]))
        return self._components[name]

    def status(self) -> dict[str, Any]:
        """Cluster, control plane and registry at a glance."""
        counts: dict[str, int] = {}
        for resource in self.registry.list():
            kind = type(resource).__name__
            counts[kind] = counts.get(kind, 0) + 1
        out: dict[str, Any] = {"engram": self.engram.uri, "resources": counts, "connected": self.connected}
        if self.connected:
            import ray

            from mnemos.cradle import actor_states

            out["ray"] = {
                "address": ray.get_runtime_context().gcs_address,
                "resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")},
            }
            out["control_plane"] = actor_states()
        return out


def connect(address: str | None = None, *, settings: Settings | None = None, **overrides: Any) -> Client:
    """Connect to MNEMOS: an embedded local Ray cluster by default.

    Args:
        address: ``ray://host:10001`` or ``host:port``; default ``MNEMOS_RAY_ADDRESS``, then the
            cluster ``mnemos up`` started, then a new cluster inside this process.
        settings: configuration; keyword ``overrides`` build one (``engram={"uri": ...}``).
    """
    from mnemos.cradle import init_ray, up

    settings = settings or load_settings(**overrides)
    init_ray(address, settings)
    client = Client(settings, connected=True)
    client._components.update(up(settings, client.engram, ["genome"]))
    return client
