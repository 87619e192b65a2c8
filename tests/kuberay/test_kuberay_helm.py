"""The Helm chart: lints, renders valid objects (KubeRay kinds strictly, core kinds with
kubernetes-validate), keeps the seed's values and serves the same RELAY application."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mnemos.kuberay import validate_manifest

from .support import (
    CHART,
    INSTALL_HELM,
    RAY_KINDS,
    REPO,
    by_kind,
    cluster_specs,
    crd_dir,
    helm,
    helm_template,
    one,
    pod_specs,
    run_helm,
    serve_application,
)
from .test_kuberay_keda import validate_scaled_object
from .test_kuberay_mtls import validate_cert_manager

VALUE_FILES = [(), ("values-dev.yaml",)]
EVERYTHING = (
    "kuberay.rayCluster.enabled=true",
    "kuberay.rayJob.enabled=true",
    "trace.serviceMonitor.enabled=true",
    "soul.externalSecrets.enabled=true",
    "trace.dashboards=enabled",
    "soul.policies.mTLSCA.certManager=true",
)
# The seed's KEDA ScaledObject on every pool, with every Ray object on (the RayService's head is joined).
KEDA = (*EVERYTHING, "neuron.keda.enabled=true")
MINIMAL = (
    "kuberay.gcsFaultTolerance.passwordSecret=null",
    "engram.objectStore.credentialsSecret=null",
    "engram.persistence.enabled=false",
    "neuron.scratch.enabled=false",
    "global.networkPolicy.enabled=false",
    "global.rbac.create=false",
    "kuberay.serviceAccount.create=false",
    "kuberay.autoscaling.enabled=false",
    "relay.ingress.enabled=false",
    "trace.metrics.prometheus.scrape=false",
)
CERT_MANAGER_KINDS = {"Certificate", "Issuer"}
NOT_CORE = {"ServiceMonitor", "ExternalSecret", "PrometheusRule", "ScaledObject"} | CERT_MANAGER_KINDS | RAY_KINDS


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
@pytest.mark.parametrize("sets", [(), ("neuron.keda.enabled=true",)], ids=["defaults", "keda"])
def test_helm_lint(files: tuple[str, ...], sets: tuple[str, ...]) -> None:
    args = ["lint", str(CHART), "--strict"]
    for f in files:
        args += ["-f", str(CHART / f)]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("files", VALUE_FILES, ids=["values", "values-dev"])
@pytest.mark.parametrize("sets", [(), EVERYTHING, KEDA, MINIMAL], ids=["defaults", "everything-on", "keda", "minimal"])
def test_every_rendered_object_validates(files: tuple[str, ...], sets: tuple[str, ...]) -> None:
    objects = helm_template(*files, sets=sets)
    assert by_kind(objects, "RayService"), "the RayService is on by default"
    for obj in objects:
        kind = obj["kind"]
        if kind in RAY_KINDS:
            validate_manifest(obj, crd_dir())
        elif kind == "ScaledObject":
            validate_scaled_object(obj)
        elif kind in CERT_MANAGER_KINDS:
            validate_cert_manager(obj)
        elif kind not in NOT_CORE:
            kubernetes_validate.validate(obj, "1.30", strict=True)
    if sets == EVERYTHING:
        kinds = {o["kind"] for o in objects}
        assert {"RayCluster", "RayService", "RayJob", "ServiceMonitor", *CERT_MANAGER_KINDS} <= kinds
    if sets == KEDA:
        assert by_kind(objects, "ScaledObject") and by_kind(objects, "Deployment")
    else:
        assert not by_kind(objects, "ScaledObject") and not by_kind(objects, "Deployment")


def test_core_validation_is_strict() -> None:
    ingress = one(helm_template(), "Ingress")
    ingress["spec"]["rules"][0]["hostt"] = ingress["spec"]["rules"][0].pop("host")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ingress, "1.30", strict=True)


def test_optional_crds_of_other_operators_are_well_formed() -> None:
    objects = helm_template(sets=EVERYTHING)
    monitor = one(objects, "ServiceMonitor", "-ray")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["ray.io/node-type"] == "head"
    secret = one(objects, "ExternalSecret")
    assert secret["apiVersion"] == "external-secrets.io/v1beta1"
    assert secret["spec"]["secretStoreRef"] == {"name": "soul-vault", "kind": "ClusterSecretStore"}
    assert secret["spec"]["target"]["name"] == "llm-keys"
    assert {d["secretKey"] for d in secret["spec"]["data"]} == {"OPENAI_KEY", "HF_TOKEN"}
    for d in secret["spec"]["data"]:
        assert set(d) == {"secretKey", "remoteRef"} and set(d["remoteRef"]) == {"key"}
    # Off by default.
    assert not by_kind(helm_template(), "ServiceMonitor") and not by_kind(helm_template(), "ExternalSecret")


def test_synced_secrets_reach_the_ray_containers_and_the_adapters(tmp_path: Path, monkeypatch) -> None:
    """The ExternalSecret synced llm-keys (OPENAI_KEY, HF_TOKEN) into a Secret no pod read, so an
    Adapter's secretRef to it was a 503 and weights behind HF_TOKEN could not be fetched. Every Ray
    container now reads it as variables, and relay.adapterEnvAllowlist names exactly its keys."""
    from mnemos.config import load_settings

    def settings_of(objects: list[dict]) -> object:
        path = tmp_path / "mnemos.yaml"
        path.write_text(one(objects, "ConfigMap", "-settings")["data"]["mnemos.yaml"])
        monkeypatch.setenv("MNEMOS_CONFIG", str(path))
        return load_settings()

    for var in [v for v in os.environ if v.startswith("MNEMOS_") and v != "MNEMOS_HOME"]:
        monkeypatch.delenv(var)
    objects = helm_template(sets=EVERYTHING)
    for spec in pod_specs(one(objects, "RayService")):
        for container in spec["containers"]:
            assert {"secretRef": {"name": "llm-keys", "optional": True}} in container["envFrom"], container["name"]
    assert settings_of(objects).relay.adapter_env_allowlist == ["OPENAI_KEY", "HF_TOKEN"]
    quiet = helm_template()  # nothing synced: nothing read, nothing allowed
    for spec in pod_specs(one(quiet, "RayService")):
        assert all(e["secretRef"]["name"] != "llm-keys" for e in spec["containers"][0].get("envFrom", []))
    assert settings_of(quiet).relay.adapter_env_allowlist == []


def test_values_keep_the_seed_keys_and_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) >= {
        "global",
        "cortex",
        "neuron",
        "engram",
        "relay",
        "soul",
        "trace",
        "wraith",
        "synkron",
        "cradle",
        "genome",
    }
    assert values["relay"]["service"] == {"type": "ClusterIP", "port": 8080}
    assert values["relay"]["rateLimit"] == {"requestsPerSecond": 50, "burst": 100}
    assert values["cortex"]["queues"]["default"]["concurrency"] == 100
    assert values["cortex"]["replicas"] == 2
    assert values["soul"]["jwt"]["issuer"] == "soul.mnemos"
    assert values["engram"]["backups"]["schedule"] == "0 */6 * * *"
    assert values["global"]["storageClass"] == "fast-zfs"
    assert values["global"]["tls"]["issuer"] == "mnemos-cluster-issuer"
    assert values["global"]["registry"] == "ghcr.io/n1x-mnemos/mnemos"
    assert values["genome"]["resources"] == []
    assert values["neuron"]["replicas"] == 3
    pools = {p["name"]: p for p in values["neuron"]["pools"]}
    assert pools["gpu-a"]["selector"] == {"accelerator": "nvidia"}
    assert pools["cpu-a"]["selector"] == {"accelerator": "cpu"}


def test_helpers_define_fullname_as_in_the_seed() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert '{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}' in helpers
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"


def test_rayservice_runs_the_serve_yaml_application() -> None:
    service = one(helm_template(), "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    expected = serve_application()
    assert (app["import_path"], app["args"]) == (expected["import_path"], expected["args"])
    assert (app["name"], app["route_prefix"]) == (expected["name"], expected["route_prefix"])
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8080}


def test_ray_cluster_shape() -> None:
    cluster = cluster_specs(one(helm_template(), "RayService"))
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["gcsFaultToleranceOptions"]["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "mnemos-redis"
    (word,) = shlex.split(cluster["headGroupSpec"]["rayStartParams"]["system-config"])
    spill = json.loads(json.loads(word)["object_spilling_config"])
    assert spill == {"type": "smart_open", "params": {"uri": "s3://mnemos-artifacts/spill"}}
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = groups["gpu-a"]["template"]["spec"]
    assert gpu["nodeSelector"] == {"accelerator": "nvidia"}
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert groups["cpu-a"]["template"]["spec"]["nodeSelector"] == {"accelerator": "cpu"}
    (scratch,) = [v["ephemeral"]["volumeClaimTemplate"]["spec"] for v in gpu["volumes"] if v["name"] == "scratch"]
    assert scratch["storageClassName"] == "fast-zfs"
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in head["env"]}
    assert env["MNEMOS_ENGRAM__URI"] == "s3://mnemos-artifacts/engram"
    assert head["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    # Serve's high-throughput mode as `mnemos up` and the manifests set it, gRPC's message limit included
    # (4 MiB by default: the embeddings of 1,500 texts between replicas were a 500).
    from mnemos.relay.throughput import HIGH_THROUGHPUT_ENV

    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        env = {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        assert {name: env.get(name) for name in HIGH_THROUGHPUT_ENV} == HIGH_THROUGHPUT_ENV, group.get("groupName")


def test_a_settings_only_upgrade_rolls_the_ray_pods() -> None:
    """The Ray pods read the settings ($MNEMOS_CONFIG, the settings ConfigMap) when they start: a
    `helm upgrade` that changed only settings left every pod on the old ones until someone restarted
    them. Each Ray pod template now carries the settings' digest, so KubeRay rolls the RayService to a
    new cluster (and a KEDA pool's Deployment its pods); a change elsewhere leaves the digest as it is."""

    def digests(*sets: str) -> set[str]:
        templates = []
        for keda in ("false", "true"):  # the pools' pods from KubeRay's worker groups, or KEDA's Deployments
            objects = helm_template(sets=(f"neuron.keda.enabled={keda}", *sets))
            cluster = cluster_specs(one(objects, "RayService"))
            pools = [d["spec"]["template"] for d in by_kind(objects, "Deployment")]
            templates += [t for t in pools if t["metadata"]["labels"].get("mnemos.dev/scaled-by") == "keda"]
            templates += [cluster["headGroupSpec"]["template"],
                          *(g["template"] for g in cluster.get("workerGroupSpecs", []))]  # fmt: skip
        assert len(templates) >= 6, len(templates)  # two heads, the worker groups and the KEDA pools
        return {t["metadata"]["annotations"]["checksum/settings"] for t in templates}

    before = digests()
    assert len(before) == 1
    assert digests("soul.policies.tokenTTL=7200") != before  # a setting: every Ray pod rolls
    assert digests("relay.ingress.hosts[0]=api.example.org") == before  # not a setting: none does
    assert digests("trace.metrics.prometheus.scrape=false") == before


def test_dev_values_fit_a_laptop() -> None:
    objects = helm_template("values-dev.yaml")
    cluster = cluster_specs(one(objects, "RayService"))
    assert "gcsFaultToleranceOptions" not in cluster
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == ["cpu-a"]
    assert "nodeSelector" not in cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert {o["kind"] for o in objects} >= {"RayCluster", "RayJob"}
    assert "tls" not in one(objects, "Ingress")["spec"]


def test_every_pod_runs_restricted() -> None:
    for obj in helm_template(sets=EVERYTHING) + helm_template("values-dev.yaml", sets=EVERYTHING):
        for spec in pod_specs(obj):
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in spec["containers"] + spec.get("initContainers", []):
                sec = container["securityContext"]
                assert sec["allowPrivilegeEscalation"] is False, obj["metadata"]["name"]
                assert sec["capabilities"] == {"drop": ["ALL"]}
                assert sec["runAsNonRoot"] is True


def test_network_policies_default_deny_with_allowances() -> None:
    policies = {
        p["metadata"]["name"].removeprefix("mnemos-mnemos-"): p for p in by_kind(helm_template(), "NetworkPolicy")
    }
    deny = policies["default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny

    def ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
        return {(p["protocol"], p["port"]) for r in rules for p in r.get("ports", [])}

    assert ports(policies["relay-ingress"]["spec"]["ingress"]) == {("TCP", 8080)}
    head = policies["ray-head"]["spec"]
    assert head["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    assert ports(head["ingress"]) == {("TCP", 6379), ("TCP", 8265), ("TCP", 10001)}
    assert {("UDP", 53), ("TCP", 53)} <= ports(policies["egress"]["spec"]["egress"])
    redis = policies["gcs-redis"]["spec"]
    assert ports(redis["egress"]) == {("TCP", 6379)}
    assert redis["egress"][0]["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "redis"}


def test_relay_ingress_has_tls_from_cert_manager() -> None:
    ingress = one(helm_template(), "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "mnemos-cluster-issuer"
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"][0]["hosts"] == ["api.mnemos.local", "cortex.mnemos.local"]
    relay_rule = ingress["spec"]["rules"][0]
    assert relay_rule["host"] == "api.mnemos.local"
    backend = relay_rule["http"]["paths"][0]["backend"]["service"]
    service = one(helm_template(), "RayService")["spec"]["serveService"]
    assert backend == {"name": service["metadata"]["name"], "port": {"number": 8080}}


def test_rbac_grants_the_autoscaler_what_it_needs() -> None:
    objects = helm_template()
    role = one(objects, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("",), ("pods",))] >= {"get", "list", "watch", "patch"}
    assert rules[(("ray.io",), ("rayclusters",))] >= {"get", "patch"}
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert one(objects, "RoleBinding")["subjects"][0]["name"] == account
    head = cluster_specs(one(objects, "RayService"))["headGroupSpec"]["template"]["spec"]
    assert head["serviceAccountName"] == account


def test_the_seeds_queue_tuning_renders_settings_that_load(tmp_path: Path, monkeypatch) -> None:
    """The seed's tuning example sets `cortex.queues.default.workers: 16`; it reached the settings
    ConfigMap, which the settings refuse at load ("extra field not permitted"): every pod would stop."""
    from mnemos.config import load_settings

    objects = helm_template(sets=("cortex.queues.default.workers=16", "cortex.queues.default.concurrency=200",
                                  "soul.policies.tokenTTL=null"))  # (null: the settings' default, not a null)
    path = tmp_path / "mnemos.yaml"
    path.write_text(one(objects, "ConfigMap", "-settings")["data"]["mnemos.yaml"])
    for var in [v for v in os.environ if v.startswith("MNEMOS_") and v != "MNEMOS_HOME"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MNEMOS_CONFIG", str(path))
    settings = load_settings()
    assert settings.cortex.queues["default"].concurrency == 200 and settings.soul.policies.token_ttl == 3600


def test_settings_configmap_loads_as_mnemos_settings(tmp_path: Path, monkeypatch) -> None:
    from mnemos.config import load_settings

    settings_map = one(helm_template(), "ConfigMap", "-settings")
    path = tmp_path / "mnemos.yaml"
    path.write_text(settings_map["data"]["mnemos.yaml"])
    for var in [v for v in os.environ if v.startswith("MNEMOS_") and v != "MNEMOS_HOME"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MNEMOS_CONFIG", str(path))
    settings = load_settings()
    assert settings.cortex.queues["default"].concurrency == 100
    assert settings.cortex.queues["default"].backoff.max == 30.0
    assert settings.cortex.queues["wraith"].concurrency == 10
    assert settings.relay.rate_limit.requests_per_second == 50 and settings.relay.rate_limit.burst == 100
    assert settings.relay.port == 8080
    assert settings.soul.jwt.issuer == "soul.mnemos"
    # Secrets in ENGRAM: a pod's own folder (the file store) would hold them for that pod alone.
    assert settings.soul.secret_store == "engram"
    assert settings.engram.uri == "s3://mnemos-artifacts/engram"
    assert settings.engram.backups.schedule == "0 */6 * * *"
    assert {p.name: p.num_gpus for p in settings.neuron.pools} == {"gpu-a": 1, "cpu-a": 0}
    # KubeRay's autoscaler adds their nodes: jobs wait for them instead of being refused, and gpu-a
    # (minReplicas 0) lets its workers go to zero with its pods.
    pools = {p.name: p for p in settings.neuron.pools}
    assert pools["gpu-a"].await_capacity and pools["cpu-a"].await_capacity
    assert (pools["gpu-a"].fewest, pools["gpu-a"].most) == (0, 3) and pools["cpu-a"].fewest == 2
    assert pools["cpu-a"].most == 80  # maxReplicas 10 pods x 8 workers (4 CPUs / numCpus 0.5): pods follow workers
    fixed = one(helm_template(sets=("kuberay.autoscaling.enabled=false",)), "ConfigMap", "-settings")
    assert all("awaitCapacity" not in p for p in yaml.safe_load(fixed["data"]["mnemos.yaml"])["neuron"]["pools"])
    assert "backup" in {c.name for c in settings.wraith.cronjobs}


def test_genome_configmap_holds_parseable_resources() -> None:
    from mnemos.genome import parse_documents

    adapter = (
        "relay.adapters[0].name=openai",
        "relay.adapters[0].type=http",
        "relay.adapters[0].baseUrl=https://api.example-llm.local/v1",
        "relay.adapters[0].auth.secretRef.name=llm-keys",
        "relay.adapters[0].auth.secretRef.key=OPENAI_KEY",
    )
    objects = helm_template("values-dev.yaml", sets=adapter)
    text = one(objects, "ConfigMap", "-genome")["data"]["resources.yaml"]
    resources = parse_documents(text, "genome ConfigMap")
    assert [(type(r).__name__, r.name) for r in resources] == [("Policy", "dev-defaults"), ("Adapter", "openai")]
    job = one(objects, "Job", "-genome-apply")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    # Nothing to apply: no hook job, an empty (comment-only) ConfigMap.
    objects = helm_template()
    assert not by_kind(objects, "Job")
    assert parse_documents(one(objects, "ConfigMap", "-genome")["data"]["resources.yaml"]) == []


def test_install_script_is_idempotent() -> None:
    helm()  # installed (or already there)
    proc = subprocess.run(["bash", str(INSTALL_HELM)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "already installed" in proc.stdout
    version = run_helm("version", "--short")
    assert version.returncode == 0 and version.stdout.startswith("v")


def test_seed_autoscalers_kuberay_cannot_run_are_refused_by_name() -> None:
    """The seed's CORTEX HPA cannot scale CORTEX (one Ray actor): asking for one fails the render with the
    field and what to do instead, rather than rendering no autoscaler without a word. (The seed's KEDA
    ScaledObject is rendered: tests/kuberay/test_kuberay_keda.py.)"""
    proc = run_helm("template", "mnemos", str(CHART), "--set", "cortex.hpa.enabled=true")
    assert proc.returncode != 0
    assert "cortex.hpa.enabled" in proc.stderr and "docs/scaling.md" in proc.stderr, proc.stderr
    assert run_helm("template", "mnemos", str(CHART), "--set", "cortex.hpa.enabled=false").returncode == 0
    assert run_helm("template", "mnemos", str(CHART), "--set", "neuron.keda.enabled=true").returncode == 0
