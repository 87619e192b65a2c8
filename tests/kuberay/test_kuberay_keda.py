"""The seed's KEDA ScaledObject (neuron.keda): a Deployment of Ray workers per NEURON pool, joining the
head of the rendered RayService (or RayCluster), scaled by KEDA on CORTEX's queue depth; the pool's
worker group leaves that cluster. ScaledObjects are checked strictly against KEDA's CRD."""

from __future__ import annotations

import copy
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mnemos.kuberay import strict_schema, validate_manifest

from .support import CHART, by_kind, cluster_specs, crd_dir, helm_template, one, run_helm

KEDA_CRD = Path(__file__).parent / "crds" / "keda.sh_scaledobjects.yaml"
METRIC = "mnemos_cortex_queue_depth"  # mnemos/trace/metrics.py: CORTEX_QUEUE_DEPTH{queue,pool}
WORKERS = "mnemos_neuron_workers"  # NEURON_WORKERS{pool}: the pool's worker actors, placed or not
KEDA_ON = ("neuron.keda.enabled=true",)
# The seed's values, as written in the seed (docs section "Autoscaling Configuration").
SEED = """
neuron:
  keda:
    enabled: true
    scaledObject:
      pollingInterval: 30
      minReplicaCount: 1
      maxReplicaCount: 20
      triggers:
        - type: prometheus
          metadata:
            serverAddress: http://prometheus:9090
            metricName: cortex_queue_depth
            threshold: '10'
"""
# What a Deployment's Ray worker adds to the pod of a KubeRay worker group (KubeRay adds its own).
ADDED_ENV = {"POD_CPUS", "POD_MEMORY", "RAY_gcs_rpc_server_reconnect_timeout_s"}


@lru_cache(maxsize=1)
def scaled_object_schema() -> dict[str, Any]:
    """KEDA's ScaledObject v1alpha1 schema, made strict (an unknown key anywhere is an error)."""
    crd = yaml.safe_load(KEDA_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return strict_schema(version["schema"]["openAPIV3Schema"])


def validate_scaled_object(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``obj`` is exactly a valid keda.sh/v1alpha1 ScaledObject."""
    assert (obj["apiVersion"], obj["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    jsonschema.Draft7Validator(scaled_object_schema()).validate(obj)


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("keda-seed") / "seed-keda.yaml"
    path.write_text(SEED)
    return str(path)  # absolute: helm_template's CHART / path keeps it as is


def _pools() -> list[str]:
    return [p["name"] for p in yaml.safe_load((CHART / "values.yaml").read_text())["neuron"]["pools"]]


def _groups(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in cluster_specs(obj).get("workerGroupSpecs") or []}


def _ray_start(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["ray"] and container["args"][0] == "start"
    flags = container["args"][1:]
    assert "--block" in flags
    return dict(f.removeprefix("--").split("=", 1) for f in flags if "=" in f)


def _as_kuberay_pod(template: dict[str, Any]) -> dict[str, Any]:
    """A Deployment's pod template less what it adds to a worker group's (command, sizes, /dev/shm, grace)."""
    pod = copy.deepcopy(template)
    del pod["metadata"]["labels"]["mnemos.dev/scaled-by"]
    del pod["spec"]["terminationGracePeriodSeconds"]
    container = pod["spec"]["containers"][0]
    del container["command"], container["args"]
    container["env"] = [e for e in container["env"] if e["name"] not in ADDED_ENV]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["mountPath"] != "/dev/shm"]
    pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"] if v["name"] != "shared-mem"]
    return pod


def test_off_by_default() -> None:
    for objects in (helm_template(), helm_template("values-dev.yaml")):
        assert not by_kind(objects, "ScaledObject") and not by_kind(objects, "Deployment")
    assert set(_groups(one(helm_template(), "RayService"))) == set(_pools())


def test_seed_values_give_each_pool_a_valid_deployment_and_scaled_object(seed_file: str) -> None:
    objects = helm_template(seed_file)
    pools = _pools()
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    scaled = {s["metadata"]["name"]: s for s in by_kind(objects, "ScaledObject")}
    assert set(deployments) == set(scaled) == {f"mnemos-mnemos-neuron-{p}" for p in pools}
    for deployment in deployments.values():
        kubernetes_validate.validate(deployment, "1.30", strict=True)
        assert "replicas" not in deployment["spec"], "KEDA's HPA owns the replica count"
        # What `kubectl rollout restart deployment -l mnemos.dev/scaled-by=keda` (the guide) selects.
        assert deployment["metadata"]["labels"]["mnemos.dev/scaled-by"] == "keda"
    values = {p["name"]: p for p in yaml.safe_load((CHART / "values.yaml").read_text())["neuron"]["pools"]}
    for pool in pools:
        obj = scaled[f"mnemos-mnemos-neuron-{pool}"]
        validate_scaled_object(obj)
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"mnemos-mnemos-neuron-{pool}",
        }
        assert spec["pollingInterval"] == 30
        # The pool's own bounds are the more specific ones (gpu-a: 0..3 scales to zero).
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (
            values[pool]["minReplicas"],
            values[pool]["maxReplicas"],
        )
        queue, workers = spec["triggers"]
        assert queue["type"] == "prometheus"
        assert queue["metadata"] == {
            "serverAddress": "http://prometheus:9090",
            "threshold": "10",
            "query": f'sum(max by (queue) ({METRIC}{{pool="{pool}"}}))',
        }, "metricName is gone from KEDA (2.12): it only picks the metric of the query"
        # A pod for every NEURON worker CORTEX started (placed or not): gpu-a 1 GPU / 1, cpu-a 4 CPUs / 0.5.
        assert workers == {
            "type": "prometheus",
            "name": "neuron-workers",
            "metadata": {
                "serverAddress": "http://prometheus:9090",
                "threshold": {"gpu-a": "1", "cpu-a": "8"}[pool],
                "query": f'max({WORKERS}{{pool="{pool}"}})',
            },
        }
    # Every pool's workers come from its Deployment: the RayService has no worker group left, and validates.
    service = one(objects, "RayService")
    assert "workerGroupSpecs" not in cluster_specs(service)
    validate_manifest(service, crd_dir())


def test_the_metrics_are_the_ones_mnemos_exports() -> None:
    from mnemos.config import PoolConfig
    from mnemos.trace import metrics

    spec = metrics.CORTEX_QUEUE_DEPTH.spec
    assert (spec.name, spec.kind, spec.labels) == (METRIC, "gauge", ("queue", "pool"))
    spec = metrics.NEURON_WORKERS.spec
    assert (spec.name, spec.kind, spec.labels) == (WORKERS, "gauge", ("pool",))
    # The chart's default for a pool without numCpus/numGpus (mnemos.workersPerPod).
    assert (PoolConfig.model_fields["num_cpus"].default, PoolConfig.model_fields["num_gpus"].default) == (0.5, 0.0)


def test_workers_per_pod_follow_the_pool(tmp_path: Path) -> None:
    def threshold(**changes: Any) -> str | None:
        objects = helm_template(_pools_file(tmp_path, "cpu-a", **changes), sets=KEDA_ON)
        triggers = one(objects, "ScaledObject", "-cpu-a")["spec"]["triggers"]
        return next((t["metadata"]["threshold"] for t in triggers if t.get("name") == "neuron-workers"), None)

    small = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert threshold(settings={"numCpus": 2}) == "2"
    assert threshold(resources=small) == "2", "500m is one Ray CPU (rounded up, as KubeRay does)"
    assert threshold(settings={"numCpus": 0}) is None, "a worker that asks for nothing fits any pod"
    assert one(helm_template(sets=(*KEDA_ON, "neuron.keda.workersTrigger=false")), "ScaledObject", "-cpu-a")[
        "spec"]["triggers"][-1].get("name") != "neuron-workers"  # fmt: skip
    proc = run_helm("template", "mnemos", str(CHART), "-f", _pools_file(tmp_path, "cpu-a", settings={"numCpus": 8}),
                    "--set", "neuron.keda.enabled=true")  # fmt: skip
    assert proc.returncode != 0 and "neuron.pools[cpu-a]: a pod (4 CPUs, 0 GPUs) cannot hold one" in proc.stderr


def test_worker_joins_the_rayservice_head_with_the_worker_groups_labels() -> None:
    from ray._private.label_utils import parse_node_labels_string

    plain = helm_template()
    objects = helm_template(sets=KEDA_ON)
    service = one(objects, "RayService")["metadata"]["name"]
    for pool, group in _groups(one(plain, "RayService")).items():
        deployment = one(objects, "Deployment", f"-neuron-{pool}")
        start = _ray_start(deployment)
        # KubeRay names the head Service of a RayService <name>-head-svc and points it at the serving cluster.
        assert start["address"] == f"{service}-head-svc:6379"
        assert parse_node_labels_string(start["labels"]) == group["labels"]
        assert group["labels"]["mnemos.dev/pool"] == pool
        assert start["metrics-export-port"] == group["rayStartParams"]["metrics-export-port"]
        # The same pod as KubeRay's worker group: image, env, volumes, security, account, placement.
        assert _as_kuberay_pod(deployment["spec"]["template"]) == group["template"]
    # Ray 2.60's own `ray start` parser takes the arguments (the downward-API sizes as Kubernetes fills them in).
    import ray.scripts.scripts as ray_cli

    for deployment in by_kind(objects, "Deployment"):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"][1:]
        args = [a.replace("$(POD_CPUS)", "4").replace("$(POD_MEMORY)", str(8 << 30)) for a in args]
        params = ray_cli.start.make_context("start", args).params
        assert params["block"] is True and params["address"] == f"{service}-head-svc:6379"
    gpu = _ray_start(one(objects, "Deployment", "-neuron-gpu-a"))
    assert (gpu["num-gpus"], gpu["num-cpus"], gpu["memory"]) == ("1", "$(POD_CPUS)", "$(POD_MEMORY)")
    assert "num-gpus" not in _ray_start(one(objects, "Deployment", "-neuron-cpu-a"))


def test_deployment_sizes_ray_from_the_container_like_kuberay() -> None:
    pod = one(helm_template(sets=KEDA_ON), "Deployment", "-neuron-gpu-a")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_CPUS"]["valueFrom"]["resourceFieldRef"] == {"resource": "limits.cpu", "divisor": "1"}
    assert env["POD_MEMORY"]["valueFrom"]["resourceFieldRef"] == {"resource": "limits.memory", "divisor": "1"}
    assert env["RAY_gcs_rpc_server_reconnect_timeout_s"]["value"] == "600"
    shm = {v["name"]: v for v in pod["volumes"]}["shared-mem"]
    assert shm == {"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["/bin/sh", "-c", "ray stop"]
    assert pod["terminationGracePeriodSeconds"] == 60


def test_a_standing_raycluster_is_joined_when_there_is_no_rayservice() -> None:
    objects = helm_template(sets=(*KEDA_ON, "kuberay.rayService.enabled=false", "kuberay.rayCluster.enabled=true"))
    cluster = one(objects, "RayCluster")
    assert "workerGroupSpecs" not in cluster["spec"]
    validate_manifest(cluster, crd_dir())
    for deployment in by_kind(objects, "Deployment"):
        assert _ray_start(deployment)["address"] == f"{cluster['metadata']['name']}-head-svc:6379"


def test_only_the_joined_cluster_loses_the_worker_groups() -> None:
    """With both on, the workers join the RayService (RELAY and the scraped metric live there); the standing
    RayCluster and a RayJob's own cluster keep their worker groups."""
    sets = (*KEDA_ON, "kuberay.rayCluster.enabled=true", "kuberay.rayJob.enabled=true")
    objects = helm_template(sets=sets)
    assert not _groups(one(objects, "RayService"))
    assert set(_groups(one(objects, "RayCluster"))) == set(_groups(one(objects, "RayJob"))) == set(_pools())
    service = one(objects, "RayService")["metadata"]["name"]
    assert {_ray_start(d)["address"] for d in by_kind(objects, "Deployment")} == {f"{service}-head-svc:6379"}


def _pools_file(tmp_path: Path, pool: str, **changes: Any) -> str:
    """A values file with the chart's pools, ``pool`` changed (``--set pools[1].x`` would replace the list)."""
    pools = yaml.safe_load((CHART / "values.yaml").read_text())["neuron"]["pools"]
    for p in pools:
        if p["name"] == pool:
            p.update(changes)
    text = yaml.safe_dump({"neuron": {"pools": pools}})
    path = tmp_path / f"pools-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"  # helm_template caches by path
    path.write_text(text)
    return str(path)


def test_a_pool_can_keep_its_worker_group(tmp_path: Path) -> None:
    objects = helm_template(_pools_file(tmp_path, "cpu-a", keda=False), sets=KEDA_ON)
    assert [d["metadata"]["name"] for d in by_kind(objects, "Deployment")] == ["mnemos-mnemos-neuron-gpu-a"]
    assert [s["metadata"]["name"] for s in by_kind(objects, "ScaledObject")] == ["mnemos-mnemos-neuron-gpu-a"]
    service = one(objects, "RayService")
    assert set(_groups(service)) == {"cpu-a"}
    validate_manifest(service, crd_dir())


def _values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    text = yaml.safe_dump(values)
    path = tmp_path / f"values-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    path.write_text(text)
    return str(path)


def _triggers(*triggers: dict[str, Any], **scaled_object: Any) -> dict[str, Any]:
    """neuron.keda values with these triggers (a list is set whole: ``--set triggers[0].x`` would replace it)."""
    return {"neuron": {"keda": {"enabled": True, "scaledObject": {**scaled_object, "triggers": list(triggers)}}}}


def test_triggers_from_values_are_kept_as_strings(tmp_path: Path) -> None:
    queue = {"serverAddress": "http://p:9090", "threshold": 5, "activationThreshold": 1}
    own = {"serverAddress": "http://thanos:9090", "query": "sum(mnemos_neuron_workers)", "threshold": 2.5}
    values = _triggers(
        {"type": "prometheus", "metadata": queue},
        {"type": "prometheus", "name": "workers", "metadata": own},
        cooldownPeriod=600,
        advanced={"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 900}}}},
    )
    obj = one(helm_template(_values_file(tmp_path, values)), "ScaledObject", "-cpu-a")
    validate_scaled_object(obj)
    first, second, workers = obj["spec"]["triggers"]
    assert workers["name"] == "neuron-workers" and workers["metadata"]["serverAddress"] == "http://p:9090"
    assert first["metadata"] == {
        "serverAddress": "http://p:9090", "threshold": "5", "activationThreshold": "1",
        "query": f'sum(max by (queue) ({METRIC}{{pool="cpu-a"}}))',
    }  # fmt: skip
    assert second["name"] == "workers"
    assert second["metadata"]["query"] == "sum(mnemos_neuron_workers)", "a query given is kept as is"
    assert second["metadata"]["threshold"] == "2.5"
    assert (obj["spec"]["cooldownPeriod"], obj["spec"]["pollingInterval"]) == (600, 30)  # merged with values.yaml
    behavior = obj["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900


def test_the_keda_check_is_strict() -> None:
    """A misspelt key or a wrong type anywhere in a ScaledObject fails (the published CRD alone would prune it)."""
    good = one(helm_template(sets=KEDA_ON), "ScaledObject", "-cpu-a")
    validate_scaled_object(good)
    bad_key = copy.deepcopy(good)
    bad_key["spec"]["scaleTargetRefs"] = bad_key["spec"].pop("scaleTargetRef")
    bad_type = copy.deepcopy(good)
    bad_type["spec"]["triggers"][0]["metadata"]["threshold"] = 10
    bad_deep = copy.deepcopy(good)
    bad_deep["spec"]["triggers"][0]["metricsType"] = "AverageValue"
    bad_count = copy.deepcopy(good)
    bad_count["spec"]["maxReplicaCount"] = 0
    for bad in (bad_key, bad_type, bad_deep, bad_count):
        with pytest.raises(jsonschema.ValidationError):
            validate_scaled_object(bad)


def test_every_keda_worker_runs_restricted() -> None:
    for deployment in by_kind(helm_template(sets=KEDA_ON), "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_network_policies_treat_keda_workers_like_kuberay_workers() -> None:
    objects = helm_template(sets=KEDA_ON)
    group = _groups(one(helm_template(), "RayService"))["cpu-a"]
    # KubeRay adds its own labels to the pods of a worker group.
    kuberay_pod = {**group["template"]["metadata"]["labels"], "ray.io/node-type": "worker", "ray.io/group": "cpu-a"}
    keda_pod = one(objects, "Deployment", "-neuron-cpu-a")["spec"]["template"]["metadata"]["labels"]

    def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
        wanted = policy["spec"]["podSelector"].get("matchLabels", {})
        return all(labels.get(k) == v for k, v in wanted.items())

    policies = by_kind(objects, "NetworkPolicy")
    assert policies
    for policy in policies:
        assert selects(policy, kuberay_pod) == selects(policy, keda_pod), policy["metadata"]["name"]
    assert sum(selects(p, keda_pod) for p in policies) >= 4  # deny, ray-internal, relay, egress (+ metrics)


@pytest.mark.parametrize(
    ("sets", "pool", "says"),
    [
        (
            ("neuron.keda.scaledObject.pollingIntervall=30",),
            {},
            "neuron.keda.scaledObject.pollingIntervall: unknown key",
        ),
        (("neuron.keda.scaledObject.scaleTargetRef.name=x",), {}, "the chart sets scaleTargetRef itself"),
        (("neuron.keda.scaledObject.triggers=null",), {}, "neuron.keda.scaledObject.triggers: give at least one"),
        ((), {"keda": "yes"}, "'/neuron/pools/1/keda': got string, want boolean"),  # values.schema.json
        ((), {"minReplicas": 11}, "neuron.pools[cpu-a]: minReplicas 11 is greater than maxReplicas 10"),
        ((), {"minReplicas": 0, "maxReplicas": 0}, "KEDA needs maxReplicas of at least 1"),
        (("kuberay.rayService.enabled=false",), {}, "turn one on"),
    ],
)
def test_bad_keda_values_are_refused_by_name(tmp_path: Path, sets: tuple[str, ...], pool: dict, says: str) -> None:
    args = ["template", "mnemos", str(CHART), "-f", _pools_file(tmp_path, "cpu-a", **pool)]
    for s in (*KEDA_ON, *sets):
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode != 0 and says in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("trigger", "says"),
    [
        ({"type": "prometheus", "metdata": {"query": "x"}}, "triggers[0].metdata: unknown key"),
        ({"metadata": {"threshold": "1"}}, "triggers[0].type: required"),
        ({"type": "prometheus", "metadata": {"metricName": "other", "threshold": "1"}}, "give the trigger a `query`"),
    ],
)
def test_bad_triggers_are_refused_by_name(tmp_path: Path, trigger: dict[str, Any], says: str) -> None:
    proc = run_helm("template", "mnemos", str(CHART), "-f", _values_file(tmp_path, _triggers(trigger)))
    assert proc.returncode != 0 and says in proc.stderr, proc.stderr
