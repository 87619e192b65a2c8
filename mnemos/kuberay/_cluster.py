"""Apply, inspect and delete KubeRay objects on a cluster through ``CustomObjectsApi``.

Apply is server-side apply (field manager ``mnemos``, forced, strict field validation), so it
creates or updates and a re-apply of the same manifest is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mnemos.errors import (
    AuthenticationError,
    ConflictError,
    MnemosError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    ValidationError,
)
from mnemos.kuberay._deps import require
from mnemos.kuberay._validate import validate_manifest

__all__ = ["FIELD_MANAGER", "PLURALS", "apply", "connect", "delete", "missing_secrets", "secrets_used", "status"]

FIELD_MANAGER = "mnemos"
GROUP, VERSION = "ray.io", "v1"
PLURALS = {"RayCluster": "rayclusters", "RayService": "rayservices", "RayJob": "rayjobs", "RayCronJob": "raycronjobs"}
_APPLY = "application/apply-patch+yaml"


def connect(kubeconfig: str | Path | None = None, context: str | None = None) -> Any:
    """A ``CustomObjectsApi`` from the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``) or in-cluster.

    Raises:
        UnavailableError: no usable Kubernetes configuration.
    """
    k8s_config = require("kubernetes.config")
    client = require("kubernetes.client")
    try:
        k8s_config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context)
    except Exception as first:  # ConfigException, missing file, bad YAML
        problem: Any = first
        if not isinstance(first, (k8s_config.ConfigException, OSError)):  # a TypeError: a file of another shape
            problem = f"{kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'} is not a kubeconfig file"
        try:
            k8s_config.load_incluster_config()
        except Exception:
            raise UnavailableError(
                f"no Kubernetes configuration: {problem} (set KUBECONFIG or pass --kubeconfig)"
            ) from None
    return client.CustomObjectsApi()


def _target(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    kind = str(obj.get("kind"))
    if kind not in PLURALS or obj.get("apiVersion") != f"{GROUP}/{VERSION}":
        raise ValidationError(f"not a ray.io/v1 object: {obj.get('apiVersion')}/{kind}", param="kind")
    meta = obj.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    if not name:
        raise ValidationError(f"{kind}: metadata.name is required", param="metadata.name")
    return kind, PLURALS[kind], str(namespace), str(name)


def _translate(exc: Exception, what: str) -> MnemosError:
    """A Kubernetes client error as one of ours (the message of the API server kept)."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    body = getattr(exc, "body", None)
    detail = reason
    if isinstance(body, (str, bytes)) and body:
        import json

        try:
            detail = json.loads(body).get("message") or reason
        except (ValueError, AttributeError):
            detail = reason
    message = f"{what}: {detail}"
    if status == 404:
        return NotFoundError(f"{message} (are the KubeRay CRDs installed?)" if "could not find" in detail else message)
    errors: dict[int, type[MnemosError]] = {
        401: AuthenticationError,
        403: PermissionDeniedError,
        409: ConflictError,
        400: ValidationError,
        422: ValidationError,
    }
    if status in errors:
        return errors[status](message)
    return UnavailableError(f"{what}: the Kubernetes API is unreachable or failed ({detail})")


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


def apply(
    objects: Iterable[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    api: Any = None,
    crd_dir: str | Path | None = None,
    validate: bool = True,
) -> list[dict[str, Any]]:
    """Server-side apply each object; returns what the API server stored (or the input on ``dry_run``).

    Args:
        objects: ``ray.io/v1`` objects, e.g. from :func:`render_all`.
        dry_run: validate and return the objects without contacting any cluster.
        api: a ``CustomObjectsApi``; default: :func:`connect`.
        crd_dir: CRD folder for the local strict validation.
        validate: validate locally first (skipped quietly when no CRD folder is found; the API
            server still rejects unknown fields because apply asks for strict field validation).

    Raises:
        ValidationError: an object is invalid; NotFoundError: KubeRay is not installed;
        PermissionDeniedError, UnavailableError: the cluster refused or could not be reached.
    """
    items = [dict(obj) for obj in objects]
    for obj in items:
        _target(obj)
        if validate:
            try:
                validate_manifest(obj, crd_dir)
            except NotFoundError:
                if crd_dir is not None:
                    raise
    if dry_run:
        return items
    api = api or connect()
    applied = []
    for obj in items:
        kind, plural, namespace, name = _target(obj)
        try:
            result = api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                obj,
                field_manager=FIELD_MANAGER,
                force=True,
                field_validation="Strict",
                _content_type=_APPLY,
            )
        except Exception as exc:
            raise _translate(exc, f"apply {kind}/{name}") from None
        applied.append(result if isinstance(result, dict) else obj)
    return applied


def secrets_used(objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(namespace, name)`` of every Secret the objects' pods mount (``secret.secretName``) or read
    (``secretKeyRef``, ``secretRef``) and do not mark ``optional``: the master key, the Ray CA, a
    Redis password …"""
    found: dict[tuple[str, str], None] = {}

    def walk(node: Any, namespace: str) -> None:
        if isinstance(node, Mapping):
            name = node.get("secretName")
            if isinstance(name, str) and not node.get("optional"):
                found[(namespace, name)] = None
            for key, value in node.items():
                if key in ("secretKeyRef", "secretRef") and isinstance(value, Mapping) and value.get("name"):
                    if not value.get("optional"):
                        found[(namespace, str(value["name"]))] = None
                else:
                    walk(value, namespace)
        elif isinstance(node, list):
            for item in node:
                walk(item, namespace)

    for obj in objects:
        walk(obj.get("spec") or {}, str((obj.get("metadata") or {}).get("namespace") or "default"))
    return list(found)


def missing_secrets(objects: Iterable[Mapping[str, Any]], core: Any = None) -> list[tuple[str, str]]:
    """The Secrets of :func:`secrets_used` that do not exist: the pods would wait for them in
    ``ContainerCreating``. One the caller may not read (RBAC) is not reported: it may exist.

    Args:
        core: a ``CoreV1Api``; default: one over the configuration :func:`connect` loaded.
    """
    core = core or require("kubernetes.client").CoreV1Api()
    missing = []
    for namespace, name in secrets_used(objects):
        try:
            core.read_namespaced_secret(name, namespace)
        except Exception as exc:
            if _is_not_found(exc):
                missing.append((namespace, name))
            elif getattr(exc, "status", None) not in (401, 403):
                raise _translate(exc, f"read Secret {namespace}/{name}") from None
    return missing


def _summary(kind: str, found: Mapping[str, Any]) -> str:
    status = found.get("status") or {}
    if kind == "RayCluster":
        return str(status.get("state") or _condition(status) or "pending")
    if kind == "RayService":
        return str(status.get("serviceStatus") or _condition(status) or "pending")
    if kind == "RayJob":
        return str(status.get("jobStatus") or status.get("jobDeploymentStatus") or "pending")
    return _condition(status) or "unknown"


def _condition(status: Mapping[str, Any]) -> str | None:
    true = [c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"]
    return ",".join(str(t) for t in true) or None


def status(objects: Iterable[Mapping[str, Any]], *, api: Any = None) -> list[dict[str, Any]]:
    """The live ``.status`` of each object: ``{kind, name, namespace, state, status}``.

    An object that does not exist has state ``absent`` (not an error).
    """
    api = api or connect()
    out = []
    for obj in objects:
        kind, plural, namespace, name = _target(obj)
        try:
            found = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except Exception as exc:
            if _is_not_found(exc):
                out.append({"kind": kind, "name": name, "namespace": namespace, "state": "absent", "status": {}})
                continue
            raise _translate(exc, f"get {kind}/{name}") from None
        out.append(
            {
                "kind": kind,
                "name": name,
                "namespace": namespace,
                "state": _summary(kind, found),
                "status": dict(found.get("status") or {}),
            }
        )
    return out


def delete(objects: Iterable[Mapping[str, Any]], *, api: Any = None) -> list[dict[str, str]]:
    """Delete each object (foreground); one already gone is reported ``absent``, not an error."""
    api = api or connect()
    out = []
    for obj in objects:
        kind, plural, namespace, name = _target(obj)
        try:
            api.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, propagation_policy="Foreground"
            )
            state = "deleted"
        except Exception as exc:
            if not _is_not_found(exc):
                raise _translate(exc, f"delete {kind}/{name}") from None
            state = "absent"
        out.append({"kind": kind, "name": name, "namespace": namespace, "state": state})
    return out
