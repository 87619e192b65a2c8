"""Start, find and stop the ``cortex`` actor (``mnemos up`` / ``mnemos down`` call these)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from mnemos._actors import CORTEX, NAMESPACE
from mnemos.config import Settings
from mnemos.engram import Engram
from mnemos.errors import ConflictError, UnavailableError

__all__ = ["ACTOR_NAME", "NAMESPACE", "ensure", "fingerprint", "get_cortex", "stop"]

ACTOR_NAME = CORTEX
HEAD_RESOURCE = "node:__internal_head__"
"""A resource only Ray's head node has: CORTEX is placed there."""


def fingerprint(settings: Settings, engram: Engram) -> str:
    """A digest of what a CORTEX is started with (ENGRAM root, queues, pools)."""
    doc = {
        "engram": [engram.uri, engram.storage_options],
        "cortex": settings.cortex.model_dump(mode="json"),
        "neuron": settings.neuron.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _existing() -> Any:
    import ray

    try:
        return ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
    except ValueError:
        return None


def ensure(settings: Settings, engram: Engram) -> Any:
    """Get the ``cortex`` actor, creating it if absent.

    A CORTEX started with other settings (another ENGRAM root, other queues or pools) is
    replaced when it has no active job; with active jobs this is a ``ConflictError``.
    """

    from mnemos.cortex.scheduler import CortexActor

    wanted = fingerprint(settings, engram)
    actor = _existing()
    if actor is not None:
        info = _info(actor, 120)
        if info is not None:
            if info["fingerprint"] == wanted:
                return actor
            if info["active"]:
                raise ConflictError(
                    f"CORTEX is running with other settings (ENGRAM {info['engram']}) and has {info['active']} active "
                    "jobs: wait for them, or stop it with `mnemos down`",
                    param="cortex",
                )
            _kill(actor)
    for _ in range(3):
        actor = CortexActor.options(
            name=ACTOR_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,  # Ray restarts it; it rebuilds its queues from the journal
            max_concurrency=10_000,  # waiters (result, wait) hold a slot each while they wait
            num_cpus=0,
            resources={HEAD_RESOURCE: 0.001},  # on the head: losing a worker node never takes CORTEX
        ).remote(settings.cortex, settings.neuron, engram, wanted)
        info = _info(actor, 300)
        if info is None:
            continue  # we got the handle of the one just killed: its name was not yet released
        if info["fingerprint"] == wanted:
            return actor
        _kill(actor)
    raise UnavailableError("could not start the cortex actor")


def _info(actor: Any, timeout: float) -> dict[str, Any] | None:
    """The actor's ``info()``; waits while Ray restarts it; ``None`` when it is dead for good."""
    import time

    import ray

    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get(actor.info.remote(), timeout=max(1.0, deadline - time.monotonic()))  # type: ignore[no-any-return]
        except ray.exceptions.ActorUnavailableError:  # restarting (e.g. its node was lost)
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        except ray.exceptions.RayActorError:
            return None  # dead for good: its name is being released
        except ray.exceptions.GetTimeoutError:
            break
    raise UnavailableError("the cortex actor does not answer (it may be restarting): try again")


def _kill(actor: Any) -> None:
    """Kill an actor for good and wait until it is dead (its name is then free)."""
    import ray

    ray.kill(actor, no_restart=True)
    with contextlib.suppress(ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        ray.get(actor.info.remote(), timeout=60)


def get_cortex(settings: Settings | None = None) -> Any:
    """The running ``cortex`` actor, started with ``settings`` (default: loaded) when absent."""
    actor = _existing()
    if actor is not None:
        return actor
    from mnemos.config import load_settings

    settings = settings or load_settings()
    return ensure(settings, Engram.from_settings(settings))


def stop() -> bool:
    """Kill the ``cortex`` actor (its NEURON workers die with it); ``False`` if none ran."""
    actor = _existing()
    if actor is None:
        return False
    _kill(actor)
    return True
