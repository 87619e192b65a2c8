"""Walking the Kubernetes guide: names the chart derives from a long release name stay within what
Kubernetes and KEDA accept, and values that would render an invalid object fail with their path."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from mnemos.errors import ValidationError
from mnemos.kuberay import validate_manifest

from .support import CHART, by_kind, crd_dir, helm_template, one, run_helm

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SCHEMA_ERROR = "don't meet the specifications of the schema"
# Helm's longest release name (53 characters).
LONG_RELEASE = "inference-platform-production-eu-west-1-blue-green-01"


def _template(release: str, *sets: str) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", "mnemos"]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def test_a_long_release_name_gives_a_relay_service_name_kubernetes_accepts() -> None:
    """`<release>-mnemos-relay` was 66 characters for a 53-character release: KubeRay's Service create
    fails (a Service name is a DNS label of at most 63) and RELAY gets no Service."""
    objects = _template(LONG_RELEASE)
    service = one(objects, "RayService")["spec"]["serveService"]["metadata"]["name"]
    assert DNS_LABEL.fullmatch(service) and len(service) <= 63, service
    ingress = one(objects, "Ingress")
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {service}
    validate_manifest(one(objects, "RayService"), crd_dir())


def test_keda_names_fit_keda_for_a_long_release_name() -> None:
    """KEDA names the HPA keda-hpa-<ScaledObject> and labels it with the name: over 54 characters the
    ScaledObject is refused (or never gets its HPA)."""
    objects = _template(LONG_RELEASE, "neuron.keda.enabled=true")
    scaled = by_kind(objects, "ScaledObject")
    deployments = {d["metadata"]["name"] for d in by_kind(objects, "Deployment")}
    names = [s["metadata"]["name"] for s in scaled]
    assert len(names) == 2 and len(set(names)) == 2
    for s in scaled:
        name = s["metadata"]["name"]
        assert DNS_LABEL.fullmatch(name) and len(name) <= 54, name
        assert s["spec"]["scaleTargetRef"]["name"] in deployments


def test_short_release_names_keep_their_names() -> None:
    """Only names that could not be created change: an upgrade of a usual release renames nothing."""
    objects = helm_template(sets=("neuron.keda.enabled=true",))
    assert one(objects, "RayService")["spec"]["serveService"]["metadata"]["name"] == "mnemos-mnemos-relay"
    assert {s["metadata"]["name"] for s in by_kind(objects, "ScaledObject")} == {
        "mnemos-mnemos-neuron-gpu-a",
        "mnemos-mnemos-neuron-cpu-a",
    }


def test_validate_manifest_refuses_a_relay_service_name_over_63() -> None:
    service = copy.deepcopy(one(helm_template(), "RayService"))
    service["spec"]["serveService"]["metadata"]["name"] = "r" * 64
    with pytest.raises(ValidationError) as err:
        validate_manifest(service, crd_dir())
    assert err.value.param == "spec.serveService.metadata.name"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        # No port: the gcs-redis NetworkPolicy got `port: 0`, which the API server refuses at install.
        ("kuberay.gcsFaultTolerance.redisAddress=mnemos-redis", "'/kuberay/gcsFaultTolerance/redisAddress'"),
        ("kuberay.gcsFaultTolerance.redisAddress=redis:abc", "'/kuberay/gcsFaultTolerance/redisAddress'"),
        ("global.networkPolicy.egressCIDRs[0]=internet", "'/global/networkPolicy/egressCIDRs/0'"),
        # A pod's imagePullSecrets are {name: …} objects; a bare string rendered an invalid pod spec.
        ("global.imagePullSecrets[0]=regcred", "'/global/imagePullSecrets/0'"),
    ],
)
def test_values_that_render_invalid_objects_fail_with_their_path(value: str, path: str) -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", value)
    assert proc.returncode != 0
    assert SCHEMA_ERROR in proc.stderr and f"at {path}" in proc.stderr, proc.stderr


def test_valid_redis_cidr_and_pull_secret_values_render() -> None:
    objects = _template(
        "mnemos",
        "kuberay.gcsFaultTolerance.redisAddress=rediss://redis.data.svc:6380",
        "global.networkPolicy.egressCIDRs[0]=fd00::/8",
        "global.imagePullSecrets[0].name=regcred",
    )
    redis = one(objects, "NetworkPolicy", "-gcs-redis")
    assert redis["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 6380}]
    head = one(objects, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert head["imagePullSecrets"] == [{"name": "regcred"}]
    validate_manifest(one(objects, "RayService"), crd_dir())


# The seed's "NEURON GPU Optimization" block, as written there.
SEED_NEURON_GPU = """
neuron:
  resources:
    limits:
      nvidia.com/gpu: 2  # Multi-GPU inference
  env:
    - name: CUDA_VISIBLE_DEVICES
      value: "0,1"
"""


def test_the_seeds_neuron_gpu_tuning_gives_the_gpu_pools_two_gpus_and_leaves_the_cpu_pool(tmp_path) -> None:
    """neuron.resources and neuron.env passed the schema and rendered nothing: the GPU pool kept one GPU
    without a word. They now apply to the GPU pools (over each pool's own resources), not to CPU pools."""
    path = tmp_path / "gpu.yaml"
    path.write_text(SEED_NEURON_GPU)
    objects = helm_template(str(path))
    groups = {g["groupName"]: g["template"]["spec"]["containers"][0]
              for g in one(objects, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]}  # fmt: skip
    gpu, cpu = groups["gpu-a"], groups["cpu-a"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 2 and gpu["resources"]["limits"]["cpu"] == "8", gpu
    assert {"name": "CUDA_VISIBLE_DEVICES", "value": "0,1"} in gpu["env"]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert all(e["name"] != "CUDA_VISIBLE_DEVICES" for e in cpu["env"])
    validate_manifest(one(objects, "RayService"), crd_dir())
    # A bad env entry fails with its path.
    proc = run_helm("template", "mnemos", str(CHART), "--set-json", 'neuron.env=[{"nam": "X"}]')
    assert proc.returncode != 0 and "/neuron/env/0" in proc.stderr, proc.stderr