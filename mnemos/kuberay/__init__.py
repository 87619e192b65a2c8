"""KubeRay: render, validate and apply the RayCluster / RayService / RayJob that run MNEMOS.

Example::

    from mnemos.kuberay import KubeRayValues, apply, render_all, validate_manifest

    objects = render_all(KubeRayValues(namespace="ml"), kinds=["RayService"])
    for obj in objects:
        validate_manifest(obj)          # strict, against the KubeRay CRDs
    apply(objects)                      # server-side apply with the kubernetes client

The same objects are checked in as ``kuberay/*.yaml`` and rendered by the Helm chart in
``deployments/helm/mnemos``, whose ``values.schema.json`` is :func:`chart_schema_json`.
"""

from mnemos.kuberay._chart import ChartValues, PoolValues, chart_schema, chart_schema_json
from mnemos.kuberay._cluster import FIELD_MANAGER, apply, connect, delete, missing_secrets, secrets_used, status
from mnemos.kuberay._load import load_values
from mnemos.kuberay._render import (
    API_VERSION,
    KINDS,
    cluster_spec,
    object_name,
    render_all,
    render_raycluster,
    render_rayjob,
    render_rayservice,
    serve_config,
)
from mnemos.kuberay._validate import find_crd_dir, load_schema, strict_schema, validate_manifest
from mnemos.kuberay._values import (
    GcsFaultToleranceValues,
    HeadValues,
    ImageValues,
    JobValues,
    KubeRayValues,
    ServeValues,
    StorageValues,
    TlsValues,
    WorkerGroupValues,
)
from mnemos.kuberay._yaml import dump_yaml, write_manifests

__all__ = [
    "API_VERSION",
    "ChartValues",
    "FIELD_MANAGER",
    "GcsFaultToleranceValues",
    "HeadValues",
    "ImageValues",
    "JobValues",
    "KINDS",
    "KubeRayValues",
    "PoolValues",
    "ServeValues",
    "StorageValues",
    "TlsValues",
    "WorkerGroupValues",
    "apply",
    "chart_schema",
    "chart_schema_json",
    "cluster_spec",
    "connect",
    "delete",
    "dump_yaml",
    "find_crd_dir",
    "load_schema",
    "load_values",
    "missing_secrets",
    "object_name",
    "render_all",
    "render_raycluster",
    "render_rayjob",
    "render_rayservice",
    "secrets_used",
    "serve_config",
    "status",
    "strict_schema",
    "validate_manifest",
    "write_manifests",
]
