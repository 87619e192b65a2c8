"""Building and starting RELAY: ``build_app`` for Serve (YAML or Python) and ``ensure`` for ``mnemos up``.

From a Serve config (``deployments/serve/mnemos.yaml``)::

    applications:
      - name: mnemos
        route_prefix: /
        import_path: mnemos.relay:build_app
        args: {engram_uri: "", models: [deployments/local/models.yaml]}

From Python: ``serve.run(mnemos.relay.build_app({"engram_uri": ...}), name="mnemos")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnemos._actors import GATEWAY_APP
from mnemos.config import Settings, load_settings
from mnemos.engram import Engram
from mnemos.errors import ValidationError

__all__ = ["APP_NAME", "build_app", "ensure", "stop", "sync"]

APP_NAME = GATEWAY_APP
_ARGS = ("engram_uri", "storage_options", "models", "settings", "num_replicas", "num_cpus")


def _documents(models: Any) -> list[dict[str, Any]]:
    """Model/Adapter documents from paths (files or folders) or inline mappings."""
    from mnemos.genome import load_paths, parse_resource

    if models is None:
        return []
    items = models if isinstance(models, list) else [models]
    docs: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            docs.append(parse_resource(item, "args.models").dump())
        elif isinstance(item, (str, Path)):
            docs.extend(r.dump() for r in load_paths([Path(item).expanduser()]))
        else:
            raise ValidationError(f"args.models: {item!r} is neither a path nor a document", param="args.models")
    return docs


def build_app(args: dict[str, Any] | Settings | None = None) -> Any:
    """The RELAY Serve application (ingress deployment); the controller starts with it.

    Args:
        args: a mapping (the ``args`` of a Serve config) with optional keys ``engram_uri``,
            ``storage_options``, ``models`` (paths or documents applied on start), ``settings``
            (overrides, as in ``mnemos.yaml``), ``num_replicas`` (ingress replicas, default 1),
            ``num_cpus`` (per ingress replica, default 0.5); or a ``Settings``.

    Raises:
        ValidationError: an unknown argument or a bad value (names it).
    """
    from mnemos.relay.ingress import RelayIngress

    if isinstance(args, Settings):
        settings, args = args, {}
    else:
        args = dict(args or {})
        unknown = sorted(set(args) - set(_ARGS))
        if unknown:
            raise ValidationError(f"args.{unknown[0]}: unknown argument; valid: {', '.join(_ARGS)}",
                                  param=f"args.{unknown[0]}")  # fmt: skip
        overrides = dict(args.get("settings") or {})
        if args.get("engram_uri") or args.get("storage_options"):
            store = dict(overrides.get("engram") or {})
            if args.get("engram_uri"):
                store["uri"] = args["engram_uri"]
            if args.get("storage_options"):
                store["storage_options"] = args["storage_options"]
            overrides["engram"] = store
        settings = load_settings(**overrides)
    engram = Engram.from_settings(settings)
    options: dict[str, Any] = {"num_replicas": args.get("num_replicas", 1),
                               "logging_config": {"enable_access_log": settings.relay.access_log}}  # fmt: skip
    if args.get("num_cpus") is not None:
        options["ray_actor_options"] = {"num_cpus": float(args["num_cpus"])}
    return RelayIngress.options(**options).bind(  # type: ignore[attr-defined]
        settings, engram, _documents(args.get("models"))
    )


def ensure(settings: Settings, engram: Engram) -> Any:
    """Start Serve on ``relay.host:relay.port``, the controller and the gateway; returns the controller.

    Idempotent: a running gateway is left as it is.
    """
    from ray import serve

    from mnemos.relay.controller import ensure_controller

    serve.start(http_options={"host": settings.relay.host, "port": settings.relay.port})
    controller = ensure_controller(settings, engram)
    status = serve.status().applications.get(APP_NAME)
    if status is None or not str(status.status).endswith("RUNNING"):
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    return controller


def sync(timeout: float = 300.0) -> dict[str, Any]:
    """Wait until every registry change so far is served (models deployed or removed, every
    gateway replica routing to them); returns the controller's status (each model's state).

    Raises:
        UnavailableError: no relay controller runs, or it did not catch up within ``timeout``.
    """
    import ray

    from mnemos.errors import UnavailableError
    from mnemos.relay.controller import get_controller

    try:
        controller = get_controller()
    except ValueError:
        raise UnavailableError("RELAY is not running: start it with `mnemos up`") from None
    return ray.get(controller.wait_synced.remote(None, timeout))  # type: ignore[no-any-return]


def stop(*, shutdown_serve: bool = False) -> list[str]:
    """Delete the gateway and every model application, and stop the controller.

    Returns the Serve applications deleted. With ``shutdown_serve`` Serve itself is shut down.
    """
    import ray
    from ray import serve

    from mnemos.relay.controller import get_controller

    deleted: list[str] = []
    try:
        if APP_NAME in serve.status().applications:
            serve.delete(APP_NAME)
            deleted.append(APP_NAME)
    except Exception:  # noqa: BLE001 - Serve is not running
        pass
    try:
        controller = get_controller()
    except ValueError:
        controller = None
    if controller is not None:
        try:
            deleted += list(ray.get(controller.shutdown.remote(True), timeout=120))
        finally:
            ray.kill(controller, no_restart=True)
    if shutdown_serve:
        serve.shutdown()
    return deleted
