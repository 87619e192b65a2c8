"""The Ray nodes NEURON's workers and model replicas run on, as ``mnemos status`` shows them.

A node that left the cluster (killed, lost, scaled in) stays listed as ``dead`` with Ray's reason
until the GCS forgets it, so an operator sees that it went and, once one is added, that it came
back. Labels are the user's (``accelerator: nvidia``: what pool and Model selectors match);
Ray's own ``ray.io/*`` labels are left out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cluster_nodes", "node_view"]

_RESOURCES = ("CPU", "GPU", "memory")


def node_view(node: dict[str, Any]) -> dict[str, Any]:
    """One node of ``ray.nodes()`` as MNEMOS shows it: id, state, address, labels, resources."""
    alive = bool(node.get("Alive"))
    resources = node.get("Resources") or {}
    view: dict[str, Any] = {
        "id": node.get("NodeID", ""),
        "state": "alive" if alive else "dead",
        "address": node.get("NodeManagerAddress", ""),
        "head": "node:__internal_head__" in resources,
        "labels": {k: v for k, v in sorted((node.get("Labels") or {}).items()) if not k.startswith("ray.io/")},
        "resources": {k: resources[k] for k in _RESOURCES if k in resources},
    }
    if not alive and node.get("DeathReasonMessage"):
        view["reason"] = node["DeathReasonMessage"]
    return view


def cluster_nodes() -> list[dict[str, Any]]:
    """Every node the connected Ray cluster knows, alive ones first (head first among them)."""
    import ray

    views = [node_view(n) for n in ray.nodes()]
    return sorted(views, key=lambda v: (v["state"] != "alive", not v["head"], v["id"]))
