"""Render RayCluster, RayService and RayJob (``ray.io/v1``) from ``KubeRayValues``.

Pod templates are built with the ``kubernetes`` client's typed models (so a wrong field type fails
here, not on the API server) and serialised to the camelCase dicts the API server expects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import yaml

from mnemos.errors import ValidationError
from mnemos.kuberay._deps import require
from mnemos.kuberay._haproxy import WRAPPER, haproxy_init_container, haproxy_mount, haproxy_volume
from mnemos.kuberay._tls import tls_env, tls_init_container, tls_mount, tls_volumes
from mnemos.kuberay._values import KubeRayValues, Resources, Toleration, WorkerGroupValues

__all__ = [
    "API_VERSION",
    "KINDS",
    "cluster_spec",
    "object_name",
    "render_all",
    "render_raycluster",
    "render_rayjob",
    "render_rayservice",
    "serve_config",
]

API_VERSION = "ray.io/v1"
KINDS = ("RayCluster", "RayService", "RayJob")

# Ray's ports; metrics move off 8080 (KubeRay's default) because the Serve proxies listen there.
GCS_PORT, DASHBOARD_PORT, CLIENT_PORT, METRICS_PORT = 6379, 8265, 10001, 8090
POOL_LABEL = "mnemos.dev/pool"


def object_name(values: KubeRayValues, kind: str) -> str:
    """Name of the object of ``kind``: the RayService is ``<name>``, the others get a suffix."""
    return {"RayService": values.name, "RayCluster": f"{values.name}-cluster", "RayJob": f"{values.name}-job"}[kind]


def _labels(values: KubeRayValues, component: str = "ray") -> dict[str, str]:
    return {**_pod_labels(values, component), "app.kubernetes.io/version": values.image.tag}


def _pod_labels(values: KubeRayValues, component: str = "ray") -> dict[str, str]:
    # No version label on pods: a new image tag changes the image, not the selector-relevant labels.
    return {
        "app.kubernetes.io/name": "mnemos",
        "app.kubernetes.io/instance": values.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "mnemos",
        "app.kubernetes.io/managed-by": "mnemos",
        **values.labels,
    }


@lru_cache(maxsize=1)
def _api_client() -> Any:
    return require("kubernetes.client").ApiClient()


def _serialize(model: Any) -> Any:
    return _api_client().sanitize_for_serialization(model)


def serve_config(values: KubeRayValues) -> dict[str, Any]:
    """The Serve config (``serveConfigV2``): the RELAY application on ``host:port`` in the cluster."""
    serve = values.serve
    return {
        "proxy_location": serve.proxy_location,
        "http_options": {"host": serve.host, "port": serve.port},
        "applications": [
            {
                "name": serve.app_name,
                "route_prefix": serve.route_prefix,
                "import_path": serve.import_path,
                "args": dict(serve.args),
            }
        ],
    }


def _spill_system_config(values: KubeRayValues) -> str:
    """``--system-config`` for object spilling to S3, shell-quoted: KubeRay pastes it into `ray start`."""
    spill = {"type": "smart_open", "params": {"uri": values.storage.spill_uri}}
    text = json.dumps({"object_spilling_config": json.dumps(spill, separators=(",", ":"))}, separators=(",", ":"))
    if "'" in text:  # the bucket validator rules this out; keep the quoting sound regardless
        raise ValidationError("storage: the spill URI must not contain a single quote", param="storage.spillPrefix")
    return f"'{text}'"


def _env(values: KubeRayValues) -> list[Any]:
    k8s = require("kubernetes.client")
    # Secrets in ENGRAM: every pod's gateway replica reads the same ones (a pod's own folder would not).
    env = {"MNEMOS_ENGRAM__URI": values.storage.engram_uri, "MNEMOS_SOUL__SECRET_STORE": "engram",
           "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
    if values.storage.endpoint_url:
        env["AWS_ENDPOINT_URL"] = values.storage.endpoint_url
    if values.storage.region:
        env["AWS_DEFAULT_REGION"] = values.storage.region
    if values.serve.high_throughput:
        from mnemos.relay.throughput import HIGH_THROUGHPUT_ENV

        env.update(HIGH_THROUGHPUT_ENV)
    env.update(values.env)
    out = [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()]
    if values.security.master_key_secret:
        # One master key for every process: SOUL's data at rest and ENGRAM's blob tags depend on it.
        ref = k8s.V1SecretKeySelector(name=values.security.master_key_secret, key=values.security.master_key_secret_key)
        out.append(k8s.V1EnvVar(name="MNEMOS_MASTER_KEY", value_from=k8s.V1EnvVarSource(secret_key_ref=ref)))
    return out


def _env_from(values: KubeRayValues) -> list[Any] | None:
    if not values.storage.credentials_secret:
        return None
    k8s = require("kubernetes.client")
    ref = k8s.V1SecretEnvSource(name=values.storage.credentials_secret, optional=True)
    return [k8s.V1EnvFromSource(secret_ref=ref)]


def _container_security() -> Any:
    k8s = require("kubernetes.client")
    return k8s.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=k8s.V1Capabilities(drop=["ALL"]),
        run_as_non_root=True,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _pod_security(values: KubeRayValues) -> Any:
    k8s = require("kubernetes.client")
    sec = values.security
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=sec.run_as_user,
        run_as_group=sec.run_as_group,
        fs_group=sec.fs_group,
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _resources(res: Resources) -> Any:
    k8s = require("kubernetes.client")
    return k8s.V1ResourceRequirements(requests=res.requests or None, limits=res.limits or None)


def _tolerations(items: Iterable[Toleration]) -> list[Any] | None:
    k8s = require("kubernetes.client")
    out = [
        k8s.V1Toleration(
            key=t.key, operator=t.operator, value=t.value, effect=t.effect, toleration_seconds=t.toleration_seconds
        )
        for t in items
    ]
    return out or None


def _ports(named: dict[str, int]) -> list[Any]:
    k8s = require("kubernetes.client")
    return [k8s.V1ContainerPort(name=n, container_port=p, protocol="TCP") for n, p in named.items()]


def _pod_template(
    values: KubeRayValues,
    *,
    container_name: str,
    resources: Resources,
    ports: dict[str, int],
    node_selector: dict[str, str],
    tolerations: Iterable[Toleration],
    scratch: bool = False,
    pre_stop: bool = False,
    head_service: str | None = None,
) -> dict[str, Any]:
    k8s = require("kubernetes.client")
    mounts, volumes = [], []
    env = _env(values)
    head = container_name == "ray-head"
    if scratch:
        mounts.append(k8s.V1VolumeMount(name="scratch", mount_path="/scratch"))
        claim = k8s.V1PersistentVolumeClaimTemplate(
            spec=k8s.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name=values.storage.storage_class,
                resources=k8s.V1VolumeResourceRequirements(requests={"storage": values.storage.scratch_size}),
            )
        )
        volumes.append(k8s.V1Volume(name="scratch", ephemeral=k8s.V1EphemeralVolumeSource(volume_claim_template=claim)))
        env.append(k8s.V1EnvVar(name="HF_HOME", value="/scratch/huggingface"))
    init_containers = []
    if values.tls.enabled:
        env += tls_env()
        mounts.append(tls_mount())
        volumes += tls_volumes(values)
        role = "head" if head else "worker"
        init_containers.append(tls_init_container(values, _container_security(), role=role, service=head_service))
    if values.serve.high_throughput:  # Serve starts HAProxy through the wrapper its init container writes
        env = [e for e in env if e.name != "RAY_SERVE_HAPROXY_BINARY_PATH"]  # one in `env` is the one wrapped
        env.append(k8s.V1EnvVar(name="RAY_SERVE_HAPROXY_BINARY_PATH", value=WRAPPER))
        mounts.append(haproxy_mount())
        volumes.append(haproxy_volume())
        init_containers.append(haproxy_init_container(values, _container_security()))
    lifecycle = None
    if pre_stop:
        stop = k8s.V1LifecycleHandler(_exec=k8s.V1ExecAction(command=["/bin/sh", "-c", "ray stop"]))
        lifecycle = k8s.V1Lifecycle(pre_stop=stop)
    container = k8s.V1Container(
        name=container_name,
        image=values.image.ref,
        image_pull_policy=values.image.pull_policy,
        env=env,
        env_from=_env_from(values),
        ports=_ports(ports),
        resources=_resources(resources),
        security_context=_container_security(),
        volume_mounts=mounts or None,
        lifecycle=lifecycle,
    )
    spec = k8s.V1PodSpec(
        init_containers=init_containers or None,
        containers=[container],
        service_account_name=values.service_account,
        security_context=_pod_security(values),
        node_selector=node_selector or None,
        tolerations=_tolerations(tolerations),
        volumes=volumes or None,
    )
    labels = _pod_labels(values, "ray-head" if head else "ray-worker")
    template = k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels), spec=spec)
    return _serialize(template)


def _worker_group(values: KubeRayValues, group: WorkerGroupValues) -> dict[str, Any]:
    ports = {"serve": values.serve.port, "metrics": METRICS_PORT}
    return {
        "groupName": group.name,
        "replicas": group.replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "labels": {POOL_LABEL: group.name, **group.node_selector, **group.labels},
        "rayStartParams": {"metrics-export-port": str(METRICS_PORT), **group.ray_start_params},
        "template": _pod_template(
            values,
            container_name="ray-worker",
            resources=group.resources,
            ports=ports,
            node_selector=group.node_selector,
            tolerations=group.tolerations,
            scratch=group.scratch,
            pre_stop=True,
        ),
    }


def cluster_spec(
    values: KubeRayValues, *, fault_tolerance: bool = True, head_service: str | None = None
) -> dict[str, Any]:
    """A RayCluster ``spec`` (also a RayService's ``rayClusterConfig`` and a RayJob's ``rayClusterSpec``).

    Args:
        values: what to render.
        fault_tolerance: include GCS fault tolerance when the values enable it (job clusters
            are short-lived and leave it out).
        head_service: the head Service of the owning object (``<name>-head-svc``), named in the
            head's certificate when ``tls.enabled``: workers and clients may dial the head by it.
    """
    head_params = {
        "dashboard-host": "0.0.0.0",
        "metrics-export-port": str(METRICS_PORT),
        "system-config": _spill_system_config(values),
        **values.head.ray_start_params,
    }
    head_ports = {
        "gcs-server": GCS_PORT,
        "dashboard": DASHBOARD_PORT,
        "client": CLIENT_PORT,
        "serve": values.serve.port,
        "metrics": METRICS_PORT,
    }
    spec: dict[str, Any] = {"rayVersion": values.ray_version}
    if values.autoscaling.enabled:
        auto = values.autoscaling
        spec["enableInTreeAutoscaling"] = True
        spec["autoscalerOptions"] = {
            "upscalingMode": auto.upscaling_mode,
            "idleTimeoutSeconds": auto.idle_timeout_seconds,
            "imagePullPolicy": values.image.pull_policy,
            "resources": _serialize(_resources(auto.resources)),
            "securityContext": _serialize(_container_security()),
        }
        if values.tls.enabled:  # the autoscaler reads the cluster's state from GCS over gRPC
            spec["autoscalerOptions"]["env"] = _serialize(tls_env())
            spec["autoscalerOptions"]["volumeMounts"] = [_serialize(tls_mount())]
    ft = values.gcs_fault_tolerance
    if fault_tolerance and ft.enabled:
        options: dict[str, Any] = {"redisAddress": ft.redis_address}
        if ft.password_secret:
            ref = {"name": ft.password_secret.name, "key": ft.password_secret.key}
            options["redisPassword"] = {"valueFrom": {"secretKeyRef": ref}}
        if ft.external_storage_namespace:
            options["externalStorageNamespace"] = ft.external_storage_namespace
        spec["gcsFaultToleranceOptions"] = options
    spec["headGroupSpec"] = {
        "serviceType": values.head.service_type,
        "rayStartParams": head_params,
        "template": _pod_template(
            values,
            container_name="ray-head",
            resources=values.head.resources,
            ports=head_ports,
            node_selector=values.head.node_selector,
            tolerations=values.head.tolerations,
            head_service=head_service,
        ),
    }
    spec["workerGroupSpecs"] = [_worker_group(values, g) for g in values.worker_groups]
    return spec


def _metadata(values: KubeRayValues, kind: str) -> dict[str, Any]:
    return {"name": object_name(values, kind), "namespace": values.namespace, "labels": _labels(values)}


def render_raycluster(values: KubeRayValues | None = None) -> dict[str, Any]:
    """A standing RayCluster: autoscaled, GCS fault tolerant, spilling to S3."""
    values = values or KubeRayValues()
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": _metadata(values, "RayCluster"),
        "spec": cluster_spec(values, head_service=f"{object_name(values, 'RayCluster')}-head-svc"),
    }


def _serve_service(values: KubeRayValues) -> dict[str, Any]:
    """RELAY's Service, ``<name>-relay``: KubeRay fills in the selector of the serving pods."""
    k8s = require("kubernetes.client")
    port = k8s.V1ServicePort(name="serve", port=values.serve.port, target_port="serve", protocol="TCP")
    service = k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name=f"{values.name}-relay", labels=_labels(values, "relay")),
        spec=k8s.V1ServiceSpec(type=values.serve.service_type, ports=[port]),
    )
    return _serialize(service)


def render_rayservice(values: KubeRayValues | None = None) -> dict[str, Any]:
    """The RayService running RELAY (``mnemos.relay:build_app``) on its own cluster."""
    values = values or KubeRayValues()
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": _metadata(values, "RayService"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(values), sort_keys=False),
            "serveService": _serve_service(values),
            "rayClusterConfig": cluster_spec(values, head_service=f"{object_name(values, 'RayService')}-head-svc"),
        },
    }


def _submitter_template(values: KubeRayValues) -> dict[str, Any]:
    k8s = require("kubernetes.client")
    container = k8s.V1Container(
        name="ray-job-submitter",
        image=values.image.ref,
        image_pull_policy=values.image.pull_policy,
        resources=_resources(
            Resources(requests={"cpu": "200m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "1Gi"})
        ),
        security_context=_container_security(),
    )
    spec = k8s.V1PodSpec(
        containers=[container],
        restart_policy="Never",
        service_account_name=values.service_account,
        security_context=_pod_security(values),
    )
    template = k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=_pod_labels(values, "submitter")), spec=spec)
    return _serialize(template)


def render_rayjob(values: KubeRayValues | None = None) -> dict[str, Any]:
    """A RayJob running the example pipeline on a cluster that goes away when it finishes."""
    values = values or KubeRayValues()
    job = values.job
    spec: dict[str, Any] = {
        "entrypoint": job.entrypoint,
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": job.shutdown_after_job_finishes,
        "backoffLimit": job.backoff_limit,
    }
    if job.shutdown_after_job_finishes:
        spec["ttlSecondsAfterFinished"] = job.ttl_seconds_after_finished
    if job.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = job.active_deadline_seconds
    if job.working_dir:
        spec["runtimeEnvYAML"] = yaml.safe_dump({"working_dir": job.working_dir}, sort_keys=False)
    head_service = f"{object_name(values, 'RayJob')}-head-svc"
    spec["rayClusterSpec"] = cluster_spec(values, fault_tolerance=False, head_service=head_service)
    spec["submitterPodTemplate"] = _submitter_template(values)
    return {"apiVersion": API_VERSION, "kind": "RayJob", "metadata": _metadata(values, "RayJob"), "spec": spec}


_RENDERERS = {"RayCluster": render_raycluster, "RayService": render_rayservice, "RayJob": render_rayjob}


def render_all(values: KubeRayValues | None = None, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """RayCluster, RayService and RayJob (or only ``kinds``), in that order."""
    values = values or KubeRayValues()
    wanted = list(kinds) if kinds is not None else list(KINDS)
    unknown = [k for k in wanted if k not in _RENDERERS]
    if unknown:
        raise ValidationError(f"unknown kind {unknown[0]!r}: valid kinds are {', '.join(KINDS)}", param="kind")
    return [_RENDERERS[k](values) for k in KINDS if k in wanted]
