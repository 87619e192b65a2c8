"""The Ray names of MNEMOS, in one table: the namespace, each named actor, each Serve application.

Every component takes its names from here (``from mnemos._actors import NAMESPACE, CORTEX``), so
``mnemos down``, ``mnemos status`` and the docs list the same actors the components start.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = [
    "CONTROL_PLANE",
    "CORTEX",
    "EVENTS",
    "GATEWAY_APP",
    "GENOME",
    "METRICS",
    "MODEL_APP_PREFIX",
    "MODEL_DEPLOYMENT",
    "NAMESPACE",
    "NEURON_PREFIX",
    "RATELIMIT",
    "RELAY_CONTROLLER",
    "SYNKRON",
    "TRACE_COLLECTOR",
    "WRAITH",
    "any_loop_handle",
    "model_app",
    "serve_applications",
]

NAMESPACE = "mnemos"
"""The Ray namespace of every named actor."""

# Named actors: (module that defines it)
GENOME = "genome"  # mnemos/genome/service.py: publishes registry changes to watchers
CORTEX = "cortex"  # mnemos/cortex/scheduler.py: queues, admission, dispatch, journal
SYNKRON = "synkron"  # mnemos/synkron/service.py: drives pipeline runs
WRAITH = "wraith"  # mnemos/wraith/scheduler.py: cron schedules
RELAY_CONTROLLER = "relay-controller"  # mnemos/relay/controller.py: deploys model-<name> apps
RATELIMIT = "ratelimit"  # mnemos/soul/_ratelimit_actor.py: token buckets, budgets, usage
TRACE_COLLECTOR = "trace-collector"  # mnemos/trace/telemetry.py: the latest traces
METRICS = "metrics"  # mnemos/trace/metrics.py: sums every process's metrics
EVENTS = "events"  # mnemos/trace/events.py: the event stream's bus
NEURON_PREFIX = "neuron-"  # mnemos/neuron/pools.py: workers neuron-<pool>-<id>

CONTROL_PLANE = (WRAITH, SYNKRON, RELAY_CONTROLLER, CORTEX, GENOME, TRACE_COLLECTOR, METRICS, RATELIMIT)
"""The control plane's named actors, in the order ``mnemos down`` stops them."""

# Serve applications
GATEWAY_APP = "mnemos"  # mnemos/relay/app.py: the gateway, on /
MODEL_APP_PREFIX = "model-"  # mnemos/relay/model_server.py: one application per Model
MODEL_DEPLOYMENT = "ModelServer"  # the deployment of each model application (NEURON runtime or Ray Serve LLM)


def model_app(model: str) -> str:
    """The Serve application that serves ``model``."""
    return f"{MODEL_APP_PREFIX}{model}"


_HANDLES: dict[str, Any] = {}
_HANDLES_LOCK = threading.Lock()


def any_loop_handle(model: str) -> Any:
    """A Serve handle of ``model``'s deployment that works from any thread and any event loop:
    ``.remote(…).result()`` in a plain thread, ``await`` in any loop (one per process and model).

    Serve's own handles (``serve.get_app_handle`` …) are cached per process and, in its
    high-throughput mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED``, which ``relay.highThroughput`` turns
    on), bound to the event loop of their first caller: from a thread without a loop they refuse
    to start, and from another loop they fail ("attached to a different loop", "Event loop is
    closed"). This one routes on Serve's own loop thread, as Ray Serve LLM's calls from threads do.
    The gateway's request path keeps Serve's loop-bound handles (one hop less per request).
    """
    from ray.serve.handle import DeploymentHandle

    app = model_app(model)
    with _HANDLES_LOCK:
        handle = _HANDLES.get(app)
        if handle is None:
            handle = DeploymentHandle(MODEL_DEPLOYMENT, app)
            handle._init(_run_router_in_separate_loop=True)
            _HANDLES[app] = handle
    return handle


def serve_applications() -> dict[str, dict[str, Any]]:
    """Serve's applications now, as the Serve controller reports them (``{}`` when Serve is not running).

    Each is a dict: ``status`` (``RUNNING``, ``DEPLOYING``, ``DEPLOY_FAILED`` …), ``message``,
    ``deployments: {name: {status, message, replicas: [{state, …}], target_num_replicas}}``. This is
    the data ``serve.status()`` is built from, read without rebuilding its pydantic models: that
    re-pickles every deployment's request-router class, about 0.1 s of CPU per call on 2 cores,
    which the controller's polling paid 4 times a second during every deploy.
    """
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return {}
    return dict(client.get_serve_details().get("applications") or {})
