"""Strict validation of KubeRay objects against the CRDs' ``openAPIV3Schema``.

The published CRD schemas do not forbid unknown fields, so a misspelled key (``replica:``) would
pass; here every object schema that lists ``properties`` and does not set
``x-kubernetes-preserve-unknown-fields`` gets ``additionalProperties: false``. A few of KubeRay's
own admission rules, which live in the operator rather than in the schema, are checked as well
(unique worker group names that are DNS-1123 labels, replica bounds, GCS fault tolerance).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mnemos._model import yaml_problem
from mnemos.errors import BadRequestError, NotFoundError, ValidationError
from mnemos.kuberay._deps import require

__all__ = ["find_crd_dir", "load_schema", "strict_schema", "validate_manifest"]

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_MAX_NAME = {"RayCluster": 53, "RayService": 47, "RayJob": 47, "RayCronJob": 47}


def find_crd_dir(path: str | Path | None = None) -> Path:
    """Where the KubeRay CRDs are: ``path``, ``$MNEMOS_KUBERAY_CRDS``, or ``../shared/kuberay-crds``.

    The last is relative to the repository holding this package (CI keeps it there).

    Raises:
        NotFoundError: the folder does not exist.
    """
    candidates = [path, os.environ.get("MNEMOS_KUBERAY_CRDS")]
    repo = Path(__file__).resolve().parents[2]
    candidates.append(repo.parent / "shared" / "kuberay-crds")
    for candidate in candidates:
        if candidate:
            found = Path(candidate).expanduser()
            if found.is_dir():
                return found
            if candidate is path or candidate == os.environ.get("MNEMOS_KUBERAY_CRDS"):
                raise NotFoundError(f"KubeRay CRD folder {found} does not exist", param="crd_dir")
    raise NotFoundError(
        "KubeRay CRDs not found: pass crd_dir, set MNEMOS_KUBERAY_CRDS, or extract them with "
        "`helm template kuberay-operator kuberay/kuberay-operator --include-crds`",
        param="crd_dir",
    )


def strict_schema(schema: Any) -> Any:
    """Copy of ``schema`` where objects with ``properties`` reject unknown keys."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k == "properties" else strict_schema(v)) for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict_schema(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            out["additionalProperties"] = False
    return out


def load_schema(kind: str, directory: str | Path | None = None) -> dict[str, Any]:
    """The strict ``v1`` schema of ``kind`` (``RayCluster`` …), parsed once per folder and kind.

    Raises:
        NotFoundError: no CRD in the folder defines ``kind``.
        BadRequestError: a YAML file in the folder cannot be read or parsed (names the file).
    """
    folder = find_crd_dir(directory).resolve()
    key = (str(folder), kind)
    with _LOCK:
        if key not in _CACHE:
            _CACHE.update(_load_folder(folder))
        if key not in _CACHE:
            known = sorted(k for d, k in _CACHE if d == str(folder))
            raise NotFoundError(f"no CRD for kind {kind!r} in {folder}; found: {', '.join(known)}", param="kind")
        return _CACHE[key]


def _load_folder(folder: Path) -> dict[tuple[str, str], Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: dict[tuple[str, str], Any] = {}
    for file in sorted(folder.glob("*.y*ml")):
        try:
            docs = list(yaml.load_all(file.read_text(), Loader=loader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise BadRequestError(
                f"KubeRay CRD folder {folder}: cannot read {file.name}{where}: {problem}", param="crd_dir"
            ) from None
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"].get("versions", []):
                if version.get("name") == "v1":
                    found[(str(folder), kind)] = strict_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return found


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _describe(err: Any) -> tuple[str, str]:
    """(path, message) of a jsonschema error, naming the offending field itself."""
    parts = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in known)
        if extra:
            close = difflib.get_close_matches(extra[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return _path([*parts, extra[0]]), f"unknown field{hint}"
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        if missing:
            return _path([*parts, missing[0]]), "required field is missing"
    return _path(parts), err.message


def validate_manifest(obj: Mapping[str, Any], crd_dir: str | Path | None = None) -> None:
    """Validate one ``ray.io/v1`` object strictly against its CRD, then KubeRay's own rules.

    Args:
        obj: a RayCluster, RayService, RayJob or RayCronJob as a dict.
        crd_dir: folder of CRD YAML files (default: see :func:`find_crd_dir`).

    Raises:
        ValidationError: the first problem, its path in ``param`` (``spec.workerGroupSpecs[0].replica``).
    """
    if not isinstance(obj, Mapping):
        raise ValidationError(f"a manifest must be a mapping, got {type(obj).__name__}")
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if api_version != "ray.io/v1":
        raise ValidationError(f"apiVersion: expected 'ray.io/v1', got {api_version!r}", param="apiVersion")
    jsonschema = require("jsonschema")
    schema = load_schema(str(kind), crd_dir)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(dict(obj)), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        where, message = _describe(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValidationError(f"{kind} {where}: {message}{more}", param=where)
    _check_metadata(obj)
    spec = obj.get("spec") or {}
    cluster = {"RayCluster": spec, "RayService": spec.get("rayClusterConfig"), "RayJob": spec.get("rayClusterSpec")}
    prefix = {"RayCluster": "spec", "RayService": "spec.rayClusterConfig", "RayJob": "spec.rayClusterSpec"}
    nested = cluster.get(str(kind))
    if nested:
        _check_cluster(nested, prefix[str(kind)], str(kind))
    service_name = (
        ((spec.get("serveService") or {}).get("metadata") or {}).get("name") if kind == "RayService" else None
    )
    if isinstance(service_name, str) and (not _DNS_1035.fullmatch(service_name) or len(service_name) > 63):
        # KubeRay creates the Service as named: the API server refuses a longer name (in the operator log).
        raise ValidationError(
            f"RayService spec.serveService.metadata.name: {service_name!r} must be a DNS-1035 label of at most "
            "63 characters (a Service name)",
            param="spec.serveService.metadata.name",
        )
    if kind == "RayService" and "serveConfigV2" in spec:
        try:
            serve = yaml.safe_load(spec["serveConfigV2"])
        except yaml.YAMLError as exc:
            raise ValidationError(
                f"RayService spec.serveConfigV2: not valid YAML: {yaml_problem(exc)}", param="spec.serveConfigV2"
            ) from None
        if not isinstance(serve, dict) or not isinstance(serve.get("applications"), list):
            raise ValidationError(
                "RayService spec.serveConfigV2: needs an `applications` list", param="spec.serveConfigV2"
            )


def _check_metadata(obj: Mapping[str, Any]) -> None:
    meta = obj.get("metadata")
    kind = str(obj.get("kind"))
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
        raise ValidationError(f"{kind} metadata.name: required", param="metadata.name")
    name = meta["name"]
    limit = _MAX_NAME.get(kind, 63)
    if not _DNS_1035.fullmatch(name) or len(name) > limit:
        raise ValidationError(
            f"{kind} metadata.name: {name!r} must be a DNS-1035 label of at most {limit} characters",
            param="metadata.name",
        )


def _check_cluster(spec: Mapping[str, Any], prefix: str, kind: str) -> None:
    """KubeRay's operator-side rules (``ValidateRayClusterSpec``) that the schema cannot express."""

    def fail(where: str, message: str) -> NoReturn:
        raise ValidationError(f"{kind} {prefix}.{where}: {message}", param=f"{prefix}.{where}")

    head = spec.get("headGroupSpec", {})
    if not head.get("template", {}).get("spec", {}).get("containers"):
        fail("headGroupSpec.template.spec.containers", "the head needs at least one container")
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    groups = [("headGroupSpec", head)]
    names: dict[str, int] = {}
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        where = f"workerGroupSpecs[{i}]"
        groups.append((where, group))
        name = group.get("groupName")
        if not isinstance(name, str) or not _DNS_1123.fullmatch(name):
            fail(f"{where}.groupName", f"{name!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
                 "at most 63 characters): pods and Services are named after it")  # fmt: skip
        if name in names:
            fail(f"{where}.groupName", f"{name!r} is also workerGroupSpecs[{names[name]}].groupName; the KubeRay "
                 "operator refuses duplicate group names")  # fmt: skip
        names[name] = i
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (low is None or high is None):
            fail(where, "minReplicas and maxReplicas are required when autoscaling is off")
        if low is not None and high is not None and low > high:
            fail(where, f"minReplicas {low} is greater than maxReplicas {high}")
    for where, group in groups:
        params = group.get("rayStartParams") or {}
        if "labels" in params:
            fail(f"{where}.rayStartParams.labels", "use the group's `labels` field instead")
        if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            fail(f"{where}.resources", "set resources either here or in rayStartParams, not both")
    head_env = {
        e.get("name")
        for c in head.get("template", {}).get("spec", {}).get("containers", [])[:1]
        for e in c.get("env") or []
    }
    if spec.get("gcsFaultToleranceOptions"):
        if (head.get("rayStartParams") or {}).get("redis-password"):
            fail("headGroupSpec.rayStartParams.redis-password", "use gcsFaultToleranceOptions.redisPassword")
        for var in ("REDIS_PASSWORD", "RAY_REDIS_ADDRESS"):
            if var in head_env:
                fail("headGroupSpec.template.spec.containers[0].env", f"{var} conflicts with gcsFaultToleranceOptions")
    elif "RAY_REDIS_ADDRESS" in head_env:
        fail("headGroupSpec.template.spec.containers[0].env", "RAY_REDIS_ADDRESS needs gcsFaultToleranceOptions")
