"""The control plane: named detached actors in namespace ``mnemos``, started by ``mnemos up``.

Each component contributes an ``ensure(settings, engram)`` that gets or creates its actors
(``get_if_exists``), and a ``stop()`` for ``mnemos down``. They are listed here by import path so
that importing MNEMOS never imports every component.
"""

from __future__ import annotations

import importlib
from typing import Any

from mnemos._actors import CONTROL_PLANE, NAMESPACE
from mnemos.config import Settings
from mnemos.engram import Engram

__all__ = ["ACTORS", "COMPONENTS", "actor_states", "down", "up"]

# (component, "module:function" of its ensure) in start order.
COMPONENTS: list[tuple[str, str]] = [
    ("trace", "mnemos.trace.telemetry:ensure"),
    ("metrics", "mnemos.trace.metrics:ensure"),
    ("genome", "mnemos.genome.service:ensure"),
    ("soul", "mnemos.soul.ratelimit:ensure"),
    ("cortex", "mnemos.cortex:ensure"),
    ("relay", "mnemos.relay:ensure"),
    ("synkron", "mnemos.synkron.service:ensure"),
    ("wraith", "mnemos.wraith.scheduler:ensure"),
]

# Named actors of the control plane, for status and for `down`.
ACTORS = list(CONTROL_PLANE)


def _call(path: str, *args: Any) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)(*args)


def up(settings: Settings, engram: Engram, components: list[str] | None = None) -> dict[str, Any]:
    """Ensure the control-plane actors exist; returns their handles by component name."""
    return {
        name: _call(path, settings, engram)
        for name, path in COMPONENTS
        if components is None or name in components
    }


def actor_states() -> dict[str, str]:
    """``{actor name: state}`` of the control-plane actors (``MISSING`` when absent)."""
    import ray
    from ray.util.state import list_actors

    states = {name: "MISSING" for name in ACTORS}
    # the cluster this process is connected to: with no address, Ray's state API picks the newest on the machine
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    try:
        for actor in list_actors(address=address, filters=[("ray_namespace", "=", NAMESPACE)], limit=1000):
            if actor.name in states and (states[actor.name] != "ALIVE"):
                states[actor.name] = actor.state
    except Exception:  # noqa: BLE001 - the state API needs the dashboard; fall back to handles
        for name in ACTORS:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
                states[name] = "ALIVE"
            except ValueError:
                pass
    return states


def down() -> list[str]:
    """Kill the control-plane actors and shut Serve down; returns what was stopped."""
    import ray

    stopped = []
    try:
        from ray import serve

        serve.shutdown()
        stopped.append("serve")
    except Exception:  # noqa: BLE001 - Serve was not running
        pass
    for name in ACTORS:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
            stopped.append(name)
        except ValueError:
            continue
    return stopped
