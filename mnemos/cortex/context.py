"""What the components above CORTEX (SYNKRON, WRAITH) need of the platform, without the notebook
``Client`` (which sits above them all): settings, ENGRAM, the registry and CORTEX jobs.

The ``Client`` has the same attributes, so code written against a ``PlatformContext`` accepts
either; the actors and HTTP routes of those components build a ``PlatformContext``.
"""

from __future__ import annotations

from typing import Any

from mnemos.config import Settings, load_settings
from mnemos.engram import Engram
from mnemos.errors import UnavailableError
from mnemos.genome import ApplyResult, Registry, Resource
from mnemos.genome.registry import event_of

__all__ = ["PlatformContext"]


class PlatformContext:
    """Settings, ENGRAM, the registry (changes published to watchers) and CORTEX jobs.

    Args:
        settings: the platform's settings (default: ``MNEMOS_*`` and ``mnemos.yaml``).
        connected: whether this process is connected to Ray with the control plane up.
    """

    def __init__(self, settings: Settings | None = None, *, connected: bool = True) -> None:
        self.settings = settings or load_settings()
        self.engram = Engram.from_settings(self.settings)
        self.registry = Registry(self.engram, require_gitops=self.settings.cradle.guardrails.require_gitops)
        self.connected = connected
        self._components: dict[str, Any] = {}  # component handles and APIs, as the Client keeps them

    def __repr__(self) -> str:
        return f"{type(self).__name__}(engram={self.engram.uri!r}, connected={self.connected})"

    @property
    def jobs(self) -> Any:
        """CORTEX jobs (``JobsAPI``)."""
        from mnemos.cortex.api import JobsAPI

        return self._api("jobs", JobsAPI)

    def connect_ray(self) -> None:
        """Check that this process is in Ray: the actors and routes that build a context are."""
        import ray

        if not ray.is_initialized():
            raise UnavailableError("this process is not connected to Ray: run it on the platform (mnemos up)")

    def apply(self, resource: Resource, *, source_tag: str) -> list[ApplyResult]:
        """Store one resource and tell the watchers (as ``Client.apply`` does)."""
        result = self.registry.apply(resource, source=source_tag)
        if result.action != "unchanged":
            self._publish([event_of(result.resource, result.action)])
        return [result]

    def delete(self, kind: str, name: str, *, source_tag: str) -> Resource:
        """Delete a resource and tell the watchers."""
        resource = self.registry.delete(kind, name, source=source_tag)
        self._publish([event_of(resource, "deleted")])
        return resource

    def _publish(self, events: list[dict[str, Any]]) -> None:
        if events and self.connected:
            from mnemos.genome.service import publish_changes

            publish_changes(events)

    def _api(self, name: str, cls: Any) -> Any:
        key = f"api:{name}"
        if key not in self._components:
            self._components[key] = cls(self)
        return self._components[key]
