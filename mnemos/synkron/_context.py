"""What SYNKRON needs of the platform, without the notebook ``Client`` (which sits above SYNKRON).

The ``synkron`` actor and the HTTP routes build a ``RunContext`` from the settings; in a notebook
the ``Client`` plays the same part (it has the same attributes), so ``PipelinesAPI``,
``RunExecutor`` and ``prepare`` accept either.
"""

from __future__ import annotations

from typing import Any

from mnemos.cortex.context import PlatformContext

__all__ = ["RunContext"]


class RunContext(PlatformContext):
    """A ``PlatformContext`` (settings, ENGRAM, registry, jobs) plus ``pipelines`` and ``lineage``."""

    @property
    def pipelines(self) -> Any:
        """SYNKRON runs (``PipelinesAPI``), as ``client.pipelines``."""
        from mnemos.synkron.api import PipelinesAPI

        return self._api("pipelines", PipelinesAPI)

    def serve_models(self) -> None:
        """Nothing to do: inside the platform (the gateway's routes, the ``synkron`` actor) RELAY's
        controller already runs (``mnemos up`` started it). ``Client.serve_models`` starts it."""

    def lineage(self, node_id: str) -> dict[str, Any]:
        """The lineage graph of a run, job, request, artifact or space item."""
        from mnemos.synkron.spaces import LINEAGE_RESOLVERS
        from mnemos.trace.lineage import graph

        return graph(self.engram, node_id, resolvers=LINEAGE_RESOLVERS)
