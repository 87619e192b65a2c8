"""The Ray names of MNEMOS, in one table: the namespace, each named actor, each Serve application.

Every component takes its names from here (``from mnemos._actors import NAMESPACE, CORTEX``), so
``mnemos down``, ``mnemos status`` and the docs list the same actors the components start.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_PLANE",
    "CORTEX",
    "EVENTS",
    "GATEWAY_APP",
    "GENOME",
    "METRICS",
    "MODEL_APP_PREFIX",
    "NAMESPACE",
    "NEURON_PREFIX",
    "RATELIMIT",
    "RELAY_CONTROLLER",
    "SYNKRON",
    "TRACE_COLLECTOR",
    "WRAITH",
    "model_app",
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


def model_app(model: str) -> str:
    """The Serve application that serves ``model``."""
    return f"{MODEL_APP_PREFIX}{model}"
