"""The RELAY reconciler: the named detached actor ``relay-controller``.

It watches the ``genome`` actor (a long-poll, ``watch(since)``) and makes Serve match the
registry: a Model that is applied gets (or updates) its Serve application ``model-<name>``; a
Model that is deleted loses it. Adapters are read into the routing table. On start, and whenever
the watch says to, it re-lists the registry (and adopts model applications that already run the
right generation, so a restarted controller does not reload every model).

Gateway replicas follow the routing table with ``watch_routes(version, watcher)``, another
long-poll: a change reaches every replica at once, and no request reads the registry.
``wait_synced(revision)`` returns once a GENOME revision is reconciled and every gateway replica
has the resulting table (tests and ``mnemos apply --wait`` use it).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import defaultdict
from typing import Any

import ray

from mnemos._actors import NAMESPACE, RELAY_CONTROLLER, any_loop_handle, serve_applications
from mnemos.config import Settings
from mnemos.engram import Engram
from mnemos.errors import NotFoundError, UnavailableError
from mnemos.genome import Model, Registry
from mnemos.genome.model import GATEWAY_FIELDS
from mnemos.relay.model_server import APP_PREFIX, DEPLOYMENT_NAME, app_name, model_application
from mnemos.relay.model_status import (
    ModelStatusWriter,
    artifact_problem,
    serve_replicas,
    status_record,
    with_replicas,
)
from mnemos.trace.events import publish as announce

__all__ = ["CONTROLLER_NAME", "NAMESPACE", "RelayController", "ensure_controller", "get_controller"]

CONTROLLER_NAME = RELAY_CONTROLLER
DEPLOY_TIMEOUT_S = 900.0
"""How long a model may take to become ready (load included) before it is marked failed."""
_WATCH_TIMEOUT_S = 10.0
_WATCHER_TTL_S = 45.0
_LOADED_TIMEOUT_S = 60.0
_RETRY_MISSING_S = 5.0
"""How often a Model failed for a missing artifact is checked again (it turns Ready once the artifact exists)."""
_REPLICA_POLL_S = 2.0
"""How often Serve's live replica counts are read into the models' status (ready/desired replicas)."""

logger = logging.getLogger("mnemos.relay")


class _Superseded(Exception):
    """The Model changed while it was being deployed: start over with the new state."""


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64)  # type: ignore[call-overload]
class RelayController:
    """Reconciles Models to Serve applications and publishes the gateway's routing table.

    Args:
        engram: the ENGRAM root holding the registry (and ``engram://`` artifacts).
        settings: MNEMOS settings (``cradle.guardrails``, ``relay``).
    """

    def __init__(self, engram: Engram, settings: Settings) -> None:
        self._engram = engram
        self._settings = settings
        self._registry = Registry(engram)
        self._cond = threading.Condition()
        self._models: dict[str, dict[str, Any]] = {}
        self._adapters: dict[str, dict[str, Any]] = {}
        # Versions start from the clock: a restarted controller never repeats an earlier one.
        self._version = time.time_ns() // 1_000_000
        self._loaded = threading.Event()
        self._seen_revision = -1
        self._pending: list[concurrent.futures.Future[None]] = []
        self._acks: dict[str, tuple[int, float]] = {}
        self._changed: dict[str, threading.Event] = defaultdict(threading.Event)
        self._model_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="relay-deploy")
        self._statuses = ModelStatusWriter(engram)
        self._last_retry = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-watch", daemon=True)
        self._thread.start()
        self._replicas = threading.Thread(target=self._watch_replicas, name="relay-replicas", daemon=True)
        self._replicas.start()

    # -- the gateway's side -------------------------------------------------------------------
    def routes(self) -> dict[str, Any]:
        """The routing table: ``{version, models: {name: route}, adapters: {name: Adapter doc}}``.

        After a (re)start it is answered once the registry was listed and running models adopted,
        so that gateways never swap their table for an empty one.
        """
        self._loaded.wait(_LOADED_TIMEOUT_S)
        with self._cond:
            return self._snapshot()

    def watch_routes(self, since: int, watcher: str = "", timeout: float = 30.0) -> dict[str, Any]:
        """The routing table once its version differs from ``since`` (or after ``timeout`` s).

        Calling with ``since=v`` also tells the controller that ``watcher`` has applied version v.
        """
        self._loaded.wait(_LOADED_TIMEOUT_S)
        with self._cond:
            if watcher:
                self._acks[watcher] = (since, time.monotonic())
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._version != since or self._stop.is_set(), timeout=timeout)
            return self._snapshot()

    def forget_watcher(self, watcher: str) -> None:
        """A gateway replica that stops calls this so ``wait_synced`` does not wait for it."""
        with self._cond:
            self._acks.pop(watcher, None)
            self._cond.notify_all()

    def wait_synced(self, revision: int | None = None, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until GENOME ``revision`` (default: the current one) is reconciled and every
        gateway replica has the resulting routing table. Returns :meth:`status`.

        Raises:
            UnavailableError: not synced within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        if revision is None:
            revision = ray.get(self._genome().revision.remote(), timeout=timeout)
        with self._cond:
            if not self._cond.wait_for(lambda: self._seen_revision >= revision, timeout=timeout):
                raise UnavailableError(f"relay controller did not see GENOME revision {revision} within {timeout}s")
            pending = list(self._pending)
        done, not_done = concurrent.futures.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        if not_done:
            raise UnavailableError(f"model deployments still running after {timeout}s")
        with self._cond:
            ok = self._cond.wait_for(self._watchers_current, timeout=max(0.0, deadline - time.monotonic()))
            if not ok:
                raise UnavailableError(f"gateway replicas did not pick up routing version {self._version}")
        return self.status()

    def status(self) -> dict[str, Any]:
        """Models (with their status and message), adapters, routing version, GENOME revision."""
        with self._cond:
            return {
                "version": self._version,
                "revision": self._seen_revision,
                "models": {name: dict(route) for name, route in self._models.items()},
                "adapters": sorted(self._adapters),
                "watchers": len(self._live_watchers()),
            }

    def resync(self) -> None:
        """Re-list the registry and reconcile everything (also done on start)."""
        self._dispatch_all()

    def shutdown(self, delete_apps: bool = True) -> list[str]:
        """Stop watching and (by default) delete every model application; returns their names."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        names = [app_name(name) for name in self._models]
        if delete_apps:
            from ray import serve

            names = sorted(set(names) | set(_model_apps()))
            for name in names:
                _delete_app(serve, name)
        return names

    # -- internals ----------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": self._version,
            "models": {name: dict(route) for name, route in self._models.items()},
            "adapters": dict(self._adapters),
        }

    def _live_watchers(self) -> dict[str, int]:
        now = time.monotonic()
        return {w: v for w, (v, seen) in self._acks.items() if now - seen < _WATCHER_TTL_S}

    def _watchers_current(self) -> bool:
        return all(v == self._version for v in self._live_watchers().values())

    def _publish(self, name: str, route: dict[str, Any] | None) -> None:
        if route is not None:
            route = with_replicas(route, self._live_replicas().get(route["app"]))
        with self._cond:
            if route is None:
                if self._models.pop(name, None) is None:
                    return
            else:
                if self._models.get(name) == route:
                    return
                self._models[name] = route
            self._version += 1
            self._cond.notify_all()
        self._report(name, route)

    def _report(self, name: str, route: dict[str, Any] | None) -> None:
        """Write Model ``name``'s status record and announce it (``model.status``: the routing entry
        with the record's ``phase``, ``reason``, ``message`` and live replica counts on top)."""
        self._statuses.write(name, route)
        data = {**route, **status_record(name, route)} if route is not None else {"name": name, "status": "deleted"}
        announce("model.status", f"model/{name}", **data)

    @staticmethod
    def _live_replicas() -> dict[str, tuple[int, int | None]]:
        try:
            return serve_replicas(DEPLOYMENT_NAME)
        except Exception:  # noqa: BLE001 - Serve is not up (yet): no live counts
            return {}

    def _watch_replicas(self) -> None:
        """Keep every model's ready/desired replicas equal to Serve's live counts (see ``model_status``)."""
        while not self._stop.wait(_REPLICA_POLL_S):
            with self._cond:
                serving = any(r.get("status") in ("ready", "deploying") for r in self._models.values())
            if not serving:
                continue
            counts = self._live_replicas()
            changed = []
            with self._cond:
                for name, route in list(self._models.items()):
                    updated = with_replicas(route, counts.get(route["app"]))
                    if updated is not route:
                        self._models[name] = updated
                        changed.append((name, updated))
                if changed:
                    self._version += 1
                    self._cond.notify_all()
            for name, _ in changed:
                with self._cond:
                    current = self._models.get(name)  # a reconcile may have published since
                if current is not None:
                    self._report(name, current)

    def _genome(self) -> Any:
        from mnemos.genome.service import ensure

        return ensure(self._settings, self._engram)

    def _run(self) -> None:
        since: int | None = None
        while not self._stop.is_set():
            try:
                genome = self._genome()
                if since is None:
                    revision = ray.get(genome.revision.remote(), timeout=60)
                    self._dispatch_all()
                    since = revision
                else:
                    result = ray.get(genome.watch.remote(since, _WATCH_TIMEOUT_S), timeout=_WATCH_TIMEOUT_S + 60)
                    if result["events"] is None:
                        since = None
                        continue
                    for event in result["events"]:
                        self._dispatch(event.get("kind", ""), event.get("name", ""))
                    since = int(result["revision"])
                with self._cond:
                    self._seen_revision = since
                    self._cond.notify_all()
                self._retry_missing()
            except Exception:  # noqa: BLE001 - the GENOME actor restarted or is unreachable: re-list
                logger.warning("relay controller: GENOME watch failed; re-listing", exc_info=True)
                since = None
                self._loaded.set()  # serve what is known rather than nothing
                self._stop.wait(1.0)

    def _retry_missing(self) -> None:
        """Deploy again the Models that failed for a missing artifact, once it exists (checked every few s)."""
        now = time.monotonic()
        if now - self._last_retry < _RETRY_MISSING_S:
            return
        self._last_retry = now
        with self._cond:
            waiting = [n for n, r in self._models.items() if r.get("reason") == "ArtifactMissing"]
        for name in waiting:
            try:
                model: Model = self._registry.get("Model", name)  # type: ignore[assignment]
            except NotFoundError:
                continue
            if artifact_problem(model, self._engram) is None:
                self._submit(name)

    def _dispatch_all(self) -> None:
        adapters = {a.name: a.dump() for a in self._registry.list("Adapter")}
        with self._cond:
            if adapters != self._adapters:
                self._adapters = adapters
                self._version += 1
                self._cond.notify_all()
        models = {m.name: m for m in self._registry.list("Model")}
        apps = {app[len(APP_PREFIX) :] for app in _model_apps()}
        if not self._loaded.is_set():
            self._adopt(models, apps)
        for name in sorted(set(models) | set(self._models) | apps):
            self._submit(name)
        self._loaded.set()

    def _adopt(self, models: dict[str, Any], apps: set[str]) -> None:
        """Take over model applications that already run the registry's generation (no reload)."""
        for name in sorted(apps & set(models)):
            info = _running_info(name)
            if info is not None and _serves(info, models[name]):
                self._publish(name, _route(models[name], "ready", info=info))

    def _dispatch(self, kind: str, name: str) -> None:
        if kind == "Model":
            self._submit(name)
        elif kind == "Adapter":
            try:
                doc: dict[str, Any] | None = self._registry.get("Adapter", name).dump()
            except NotFoundError:
                doc = None
            with self._cond:
                if doc is None and name not in self._adapters:
                    return
                if doc is None:
                    self._adapters.pop(name, None)
                else:
                    self._adapters[name] = doc
                self._version += 1
                self._cond.notify_all()

    def _submit(self, name: str) -> None:
        self._changed[name].set()
        future = self._executor.submit(self._sync_model, name)
        with self._cond:
            self._pending = [f for f in self._pending if not f.done()] + [future]

    def _sync_model(self, name: str) -> None:
        with self._model_locks[name]:
            while not self._stop.is_set():
                self._changed[name].clear()
                try:
                    self._reconcile(name)
                    return
                except _Superseded:
                    continue
                except Exception:  # noqa: BLE001 - keep the controller alive; the route says why
                    logger.exception("relay controller: reconciling model %s failed", name)
                    return

    def _reconcile(self, name: str) -> None:
        from ray import serve

        try:
            model: Model | None = self._registry.get("Model", name)  # type: ignore[assignment]
        except NotFoundError:
            model = None
        app = app_name(name)
        current = self._models.get(name)
        if model is None:
            self._publish(name, None)
            _delete_app(serve, app)
            return
        spec = model.spec
        if spec.replicas == 0 and spec.autoscaling is None:
            self._publish(name, _route(model, "stopped", message="replicas is 0", reason="ScaledToZero"))
            _delete_app(serve, app)
            return
        problem = artifact_problem(model, self._engram)
        if problem is not None:
            logger.warning("relay controller: model %s: %s", name, problem)
            self._publish(name, _route(model, "failed", message=problem, reason="ArtifactMissing"))
            _delete_app(serve, app)
            return
        if current and current["generation"] == model.generation and current["status"] == "ready":
            return
        if current and current.get("reason") == "Ready" and current.get("fingerprint") == model.serving_fingerprint():
            # Only what the gateway reads changed (pricing, limits, cache): the running replicas serve it.
            self._publish(name, _route(model, "ready", info=current))
            return
        if current is None and (info := _running_info(name)) and _serves(info, model):
            self._publish(name, _route(model, "ready", info=info))  # adopted after a controller restart
            return
        if current is None or current["status"] != "ready":
            self._publish(name, _route(model, "deploying", reason="Deploying"))
        elif current["generation"] != model.generation:
            rolling = f"rolling to generation {model.generation}; generation {current['generation']} serves meanwhile"
            self._publish(name, {**current, "reason": "Rolling", "message": rolling})
        try:
            serve._run(_application(model, self._engram), _blocking=False, name=app, route_prefix=None)
            info = self._wait_running(app, model)
        except _Superseded:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed load is reported on the route
            message = (str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}")[:2000]
            logger.warning("relay controller: model %s failed to deploy: %s", name, message)
            self._publish(name, _route(model, "failed", message=message, reason="DeployFailed"))
            _delete_app(serve, app)
            return
        self._publish(name, _route(model, "ready", info=info))

    def _wait_running(self, app: str, model: Model) -> dict[str, Any]:
        """Wait until ``app`` runs ``model``'s generation; returns the replica's ``info()``."""
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while True:
            status = serve_applications().get(app) or {}
            state = str(status.get("status") or "NOT_STARTED")
            if state.endswith("RUNNING"):
                info = _running_info(model.name)
                if info is not None and info.get("generation") == model.generation:
                    return info
            elif state.endswith("DEPLOY_FAILED") or state.endswith("UNHEALTHY"):
                raise RuntimeError(_failure_reason(status) or state)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {DEPLOY_TIMEOUT_S:.0f}s: {status.get('message') or ''}")
            if self._changed[model.name].wait(0.25) or self._stop.is_set():
                raise _Superseded()


def _application(model: Model, engram: Engram) -> Any:
    """Ray Serve LLM's ``LLMServer`` for ``engine: vllm``, a NEURON runtime in ``ModelServer`` otherwise."""
    if model.spec.runtime.engine == "vllm":
        from mnemos.relay._llm_server import llm_application  # imports vLLM: only where a vLLM model is built

        return llm_application(model, engram)
    return model_application(model, engram)


def _failure_reason(status: dict[str, Any]) -> str:
    """The deployment's own error (its last traceback line), else the application's message."""
    deployment = (status.get("deployments") or {}).get(DEPLOYMENT_NAME) or {}
    message = str(deployment.get("message") or "")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "Traceback" in message and lines:
        return lines[-1]
    return message or str(status.get("message") or "")


def _route(
    model: Model,
    status: str,
    *,
    info: dict[str, Any] | None = None,
    message: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The routing entry of ``model``: what the gateway needs, and the status everyone reads."""
    info = info or {}
    spec = model.spec
    desired = spec.autoscaling.min_replicas if spec.autoscaling else spec.replicas
    return {
        "name": model.name,
        "type": "serve",
        "app": app_name(model.name),
        "deployment": DEPLOYMENT_NAME,
        "status": status,
        "message": message,
        "reason": reason or ("Ready" if status == "ready" else None),
        "desired_replicas": desired,
        "serving": "llm" if spec.runtime.engine == "vllm" else "runtime",
        "generation": model.generation,
        "engine": model.spec.runtime.engine,
        "kind": info.get("kind", "embed" if model.spec.runtime.engine == "embedding" else "generate"),
        "digest": info.get("digest") or model.spec.artifact.sha256,
        "max_tokens": model.spec.runtime.params.max_tokens,
        "fingerprint": model.serving_fingerprint(),
        "created": _created(model),
        # metering (mnemos.relay._metering): price, per-model limits, response cache
        **{k: getattr(model.spec, k).dump() for k in sorted(GATEWAY_FIELDS) if getattr(model.spec, k)},
    }


def _created(model: Model) -> int:
    import datetime as dt

    stamp = model.metadata.creation_timestamp
    try:
        return int(dt.datetime.fromisoformat(stamp).timestamp()) if stamp else 0
    except ValueError:
        return 0


def _model_apps() -> list[str]:
    try:
        return [name for name in serve_applications() if name.startswith(APP_PREFIX)]
    except Exception:  # noqa: BLE001 - Serve is not running
        return []


def _serves(info: dict[str, Any], model: Model) -> bool:
    """Whether the replica that answered ``info()`` serves ``model`` as it is: its generation, or an
    earlier one that differs only in what the gateway reads (``GATEWAY_FIELDS``)."""
    return info.get("generation") == model.generation or info.get("fingerprint") == model.serving_fingerprint()


def _running_info(model: str) -> dict[str, Any] | None:
    """The ``info()`` of ``model``'s replica when its application runs (else None)."""
    app = app_name(model)
    status = serve_applications().get(app)
    if status is None or not str(status.get("status")).endswith("RUNNING"):
        return None
    try:
        # (a handle for this thread, which has no event loop: Serve's own, in its high-throughput
        # mode, refused to start here, and every model stayed "Deploying")
        return any_loop_handle(model).info.remote().result(timeout_s=30)  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - an application we cannot ask is redeployed
        logger.warning("relay controller: asking %s for its model failed: %s: %s", app, type(exc).__name__, exc)
        return None


def _delete_app(serve: Any, app: str) -> None:
    try:
        if app in serve_applications():
            serve.delete(app)
    except Exception:  # noqa: BLE001 - already gone, or Serve is down
        logger.warning("relay controller: deleting %s failed", app, exc_info=True)


def get_controller() -> Any:
    """The running ``relay-controller`` actor (``ValueError`` when there is none)."""
    return ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)


def ensure_controller(settings: Settings, engram: Engram) -> Any:
    """Get or create the detached ``relay-controller`` actor."""
    return RelayController.options(  # type: ignore[attr-defined]
        name=CONTROLLER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(engram, settings)
