"""Mutual TLS between Ray processes, in the pods :mod:`mnemos.kuberay` renders (``tls.enabled``).

The same pieces as the Helm chart's ``templates/_raytls.tpl``: the init container ``ray-tls`` runs
``_ray_tls_cert.py`` to write the pod's key and a certificate signed by the CA into an in-memory
``emptyDir``; every container that runs Ray gets Ray's TLS variables and mounts that folder only.
The CA's Secret is mounted into the init container alone, so user code in the Ray containers never
reads the CA's key. KubeRay copies the Ray container's env and mounts into the ``wait-gcs-ready``
init container it adds to workers (after ours), so that health check speaks TLS as well.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from mnemos.kuberay._deps import require
from mnemos.kuberay._values import KubeRayValues

__all__ = ["CA_DIR", "TLS_DIR", "cert_script", "tls_env", "tls_init_container", "tls_mount", "tls_volumes"]

CA_DIR = "/etc/mnemos/ray-ca"
"""The CA Secret's mount, in the init container only."""
TLS_DIR = "/etc/mnemos/ray-tls"
"""The pod's tls.key, tls.crt and ca.crt, which the Ray containers read."""
_TLS_VOLUME, _CA_VOLUME = "ray-tls", "ray-ca"


@lru_cache(maxsize=1)
def cert_script() -> str:
    """The init container's program: the text of ``_ray_tls_cert.py`` (the chart ships a copy)."""
    return resources.files("mnemos.kuberay").joinpath("_ray_tls_cert.py").read_text(encoding="utf-8")


def tls_env() -> list[Any]:
    """Ray's TLS variables (docs.ray.io, "TLS Authentication"), naming the init container's files."""
    k8s = require("kubernetes.client")
    env = {
        "RAY_USE_TLS": "1",
        "RAY_TLS_SERVER_CERT": f"{TLS_DIR}/tls.crt",
        "RAY_TLS_SERVER_KEY": f"{TLS_DIR}/tls.key",
        "RAY_TLS_CA_CERT": f"{TLS_DIR}/ca.crt",
    }
    return [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()]


def tls_mount() -> Any:
    return require("kubernetes.client").V1VolumeMount(name=_TLS_VOLUME, mount_path=TLS_DIR, read_only=True)


def tls_volumes(values: KubeRayValues) -> list[Any]:
    """The pod's key and certificate in memory (never on the node's disk), and the CA's Secret."""
    k8s = require("kubernetes.client")
    return [
        k8s.V1Volume(name=_TLS_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit="1Mi")),
        k8s.V1Volume(
            name=_CA_VOLUME, secret=k8s.V1SecretVolumeSource(secret_name=values.tls.ca_secret, default_mode=0o440)
        ),
    ]


def tls_init_container(values: KubeRayValues, security: Any, *, role: str, service: str | None = None) -> Any:
    """The init container ``ray-tls`` of a ``head`` or ``worker`` pod.

    Args:
        values: the image and the CA.
        security: the container security context every container of the pod gets.
        role: ``head`` or ``worker``.
        service: a head's Service that KubeRay's RAY_IP / FQ_RAY_IP do not name (a RayService's or
            RayJob's own ``<name>-head-svc``), also put in the head's certificate.
    """
    k8s = require("kubernetes.client")

    def field(path: str) -> Any:
        return k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path=path))

    env = [
        k8s.V1EnvVar(name="POD_IP", value_from=field("status.podIP")),
        k8s.V1EnvVar(name="POD_NAMESPACE", value_from=field("metadata.namespace")),
        k8s.V1EnvVar(name="MNEMOS_RAY_CA_DIR", value=CA_DIR),
        k8s.V1EnvVar(name="MNEMOS_RAY_TLS_DIR", value=TLS_DIR),
    ]
    if service:
        env.append(k8s.V1EnvVar(name="MNEMOS_RAY_TLS_SERVICES", value=service))
    return k8s.V1Container(
        name="ray-tls",
        image=values.image.ref,
        image_pull_policy=values.image.pull_policy,
        command=["python", "-c", cert_script()],
        args=[role],
        env=env,
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "64Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
        ),
        security_context=security,
        volume_mounts=[
            k8s.V1VolumeMount(name=_CA_VOLUME, mount_path=CA_DIR, read_only=True),
            k8s.V1VolumeMount(name=_TLS_VOLUME, mount_path=TLS_DIR),
        ],
    )
