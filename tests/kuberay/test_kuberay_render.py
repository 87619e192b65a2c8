"""mnemos.kuberay renders valid RayCluster / RayService / RayJob objects with the seed's defaults."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

import mnemos
import mnemos.kuberay as kuberay
from mnemos.errors import ValidationError
from mnemos.kuberay import KubeRayValues, load_values, render_all, validate_manifest
from mnemos.relay.throughput import HIGH_THROUGHPUT_ENV

from .support import MANIFESTS, cluster_specs, crd_dir, pod_specs, serve_application


def test_public_api_is_exported() -> None:
    assert kuberay.__all__ == sorted(kuberay.__all__)
    for name in kuberay.__all__:
        assert hasattr(kuberay, name), name
    for name in (
        "KubeRayValues",
        "render_raycluster",
        "render_rayservice",
        "render_rayjob",
        "render_all",
        "apply",
        "status",
        "delete",
        "validate_manifest",
    ):
        assert name in kuberay.__all__


def test_render_all_validates_strictly() -> None:
    objects = render_all()
    assert [o["kind"] for o in objects] == ["RayCluster", "RayService", "RayJob"]
    for obj in objects:
        validate_manifest(obj, crd_dir())


def test_checked_in_manifests_match_the_renderer() -> None:
    """kuberay/*.yaml are generated: `mnemos kuberay render --out-dir kuberay/` after changing defaults."""
    for obj in render_all():
        path = MANIFESTS / f"{obj['kind'].lower()}.yaml"
        assert yaml.safe_load(path.read_text()) == obj, (
            f"{path} is stale: run `mnemos kuberay render --out-dir kuberay/`"
        )


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayservice.yaml", "rayjob.yaml"])
def test_checked_in_manifests_validate(name: str) -> None:
    docs = list(yaml.safe_load_all((MANIFESTS / name).read_text()))
    assert len(docs) == 1
    validate_manifest(docs[0], crd_dir())


def test_cluster_has_the_seed_pools_and_platform_features() -> None:
    cluster = cluster_specs(kuberay.render_raycluster())
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu-a", "gpu-a"}
    cpu, gpu = groups["cpu-a"]["template"]["spec"], groups["gpu-a"]["template"]["spec"]
    assert cpu["nodeSelector"] == {"accelerator": "cpu"}
    assert gpu["nodeSelector"] == {"accelerator": "nvidia"}
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"].get("limits", {})
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert groups["gpu-a"]["labels"] == {"mnemos.dev/pool": "gpu-a", "accelerator": "nvidia"}
    # GCS fault tolerance with Redis; the password from a Secret, never inline.
    ft = cluster["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] == "mnemos-redis:6379"
    assert ft["redisPassword"] == {"valueFrom": {"secretKeyRef": {"name": "mnemos-redis", "key": "password"}}}


def test_object_spilling_goes_to_s3_through_the_head_system_config() -> None:
    head = cluster_specs(kuberay.render_raycluster())["headGroupSpec"]
    flag = head["rayStartParams"]["system-config"]
    # KubeRay pastes `--system-config=<value>` into a shell command: the value must survive the shell.
    (word,) = shlex.split(flag)
    spill = json.loads(json.loads(word)["object_spilling_config"])
    assert spill == {"type": "smart_open", "params": {"uri": "s3://mnemos-artifacts/spill"}}
    # Serve proxies listen on 8080, so Ray's metrics must not (KubeRay's default is 8080).
    assert head["rayStartParams"]["metrics-export-port"] == "8090"


def test_every_ray_container_finds_engram_on_s3_and_runs_restricted() -> None:
    for obj in render_all():
        for spec in pod_specs(obj):
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in spec["containers"]:
                sec = container["securityContext"]
                assert sec["allowPrivilegeEscalation"] is False
                assert sec["capabilities"]["drop"] == ["ALL"]
                assert container["image"] == f"ghcr.io/n1x-mnemos/mnemos:{mnemos.__version__}"
        for spec in pod_specs(obj)[:3]:
            env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
            assert env["MNEMOS_ENGRAM__URI"] == "s3://mnemos-artifacts/engram"
            assert env["MNEMOS_SOUL__SECRET_STORE"] == "engram"  # every pod reads the same secrets
            assert {name: env.get(name) for name in HIGH_THROUGHPUT_ENV} == HIGH_THROUGHPUT_ENV  # (gRPC limit too)


def test_rayservice_serves_the_same_application_as_the_serve_yaml() -> None:
    service = kuberay.render_rayservice()
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8080}
    (app,) = config["applications"]
    expected = serve_application()
    for key in ("name", "route_prefix", "import_path", "args"):
        assert app[key] == expected[key], key
    assert (
        config["proxy_location"]
        == yaml.safe_load((MANIFESTS.parent / "deployments/serve/mnemos.yaml").read_text())["proxy_location"]
    )
    head = cluster_specs(service)["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": 8080, "protocol": "TCP"} in head["ports"]
    assert service["spec"]["serveService"]["metadata"]["name"] == "mnemos-relay"


def test_rayjob_runs_the_example_pipeline() -> None:
    job = kuberay.render_rayjob()
    assert job["spec"]["entrypoint"] == "python -m mnemos run pipelines/text-gen-artifacts.yaml"
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"]) == {"working_dir": "/home/ray/mnemos"}
    assert "gcsFaultToleranceOptions" not in job["spec"]["rayClusterSpec"]


def test_values_change_the_rendering() -> None:
    values = load_values(
        data={"namespace": "ml", "storage": {"bucket": "s3://other-bucket"}},
        sets=["workerGroups[1].maxReplicas=8", "gcsFaultTolerance.enabled=false", "autoscaling.enabled=false"],
    )
    objects = render_all(values, kinds=["RayCluster"])
    (cluster,) = objects
    assert cluster["metadata"]["namespace"] == "ml"
    spec = cluster["spec"]
    assert "gcsFaultToleranceOptions" not in spec and "enableInTreeAutoscaling" not in spec
    assert spec["workerGroupSpecs"][1]["maxReplicas"] == 8
    assert "s3://other-bucket/spill" in spec["headGroupSpec"]["rayStartParams"]["system-config"]
    validate_manifest(cluster, crd_dir())


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="valid kinds are RayCluster, RayService, RayJob"):
        render_all(KubeRayValues(), kinds=["RayThing"])
