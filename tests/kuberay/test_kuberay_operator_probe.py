"""What an operator meets with the chart and `mnemos kuberay`: trace.metricsAuth reaches the pods and the
ServiceMonitor, the seed's pools (no resources) render valid Ray objects, in-cluster endpoints get
through the NetworkPolicies, NOTES print the scheme the Ingress serves, and the CLI reads values as
a Kubernetes user writes them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnemos.cli.kuberay import app
from mnemos.kuberay import validate_manifest

from .support import CHART, RAY_KINDS, cluster_specs, crd_dir, helm, helm_env, helm_template, one, run_helm

# The seed's NEURON section as written there: pools with a selector and nothing else.
SEED_POOLS = (
    "neuron.pools[0].name=gpu-a",
    "neuron.pools[0].selector.accelerator=nvidia",
    "neuron.pools[1].name=cpu-a",
    "neuron.pools[1].selector.accelerator=cpu",
)
ALL_RAY = ("kuberay.rayCluster.enabled=true", "kuberay.rayJob.enabled=true")


def _settings(objects: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mnemos.config import load_settings

    path = tmp_path / "mnemos.yaml"
    path.write_text(one(objects, "ConfigMap", "-settings")["data"]["mnemos.yaml"])
    for var in [v for v in os.environ if v.startswith("MNEMOS_") and v != "MNEMOS_HOME"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MNEMOS_CONFIG", str(path))
    return load_settings()


def test_metrics_auth_reaches_the_settings_and_the_service_monitor(tmp_path: Path, monkeypatch) -> None:
    """`trace.metricsAuth: true` used to be accepted and dropped: /metrics stayed public in every pod."""
    assert _settings(helm_template(), tmp_path, monkeypatch).trace.metrics_auth is False
    sets = ("trace.dashboards=enabled", "trace.metricsAuth=true", "trace.metricsCredentials.name=prom-key")
    objects = helm_template(sets=sets)
    assert _settings(objects, tmp_path, monkeypatch).trace.metrics_auth is True
    (endpoint,) = one(objects, "ServiceMonitor", "-relay")["spec"]["endpoints"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "prom-key", "key": "api-key"}}
    # Without a key for Prometheus, the dashboards and rules would read nothing but 401s: refused by name.
    proc = run_helm("template", "m", str(CHART), "--set", "trace.dashboards=enabled", "--set", "trace.metricsAuth=true")
    assert proc.returncode != 0 and "trace.metricsCredentials.name" in proc.stderr, proc.stderr
    # The metrics stay public without it: no authorization on the scrape.
    monitor = one(helm_template(sets=("trace.dashboards=enabled",)), "ServiceMonitor", "-relay")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert "authorization" not in endpoint


def test_the_seeds_pools_without_resources_render_valid_ray_objects() -> None:
    """The seed's pools set no resources: the worker containers got `resources: null`, which the CRD
    schema refuses (and the API server prunes)."""
    objects = helm_template(sets=(*SEED_POOLS, *ALL_RAY, "cortex.resources=null"))
    ray = [o for o in objects if o["kind"] in RAY_KINDS]
    assert {o["kind"] for o in ray} == RAY_KINDS
    for obj in ray:
        validate_manifest(obj, crd_dir())
        spec = cluster_specs(obj)
        assert "resources" not in spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        for group in spec["workerGroupSpecs"]:
            assert "resources" not in group["template"]["spec"]["containers"][0]


def test_in_cluster_endpoints_get_through_the_network_policies() -> None:
    """values-dev.yaml's MinIO (port 9000) and an in-cluster OTLP collector are pods: egress to them
    was allowed only to ipBlocks on egressPorts (443, 6443, 4317), so ENGRAM could not reach MinIO."""
    objects = helm_template("values-dev.yaml")
    (rule,) = one(objects, "NetworkPolicy", "-endpoints")["spec"]["egress"]
    assert {"namespaceSelector": {}} in rule["to"] and rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    sets = ("trace.otel.endpoint=otel-collector.trace:4317", "engram.objectStore.endpoint=https://s3.example.com")
    (rule,) = one(helm_template(sets=sets), "NetworkPolicy", "-endpoints")["spec"]["egress"]
    assert [p["port"] for p in rule["ports"]] == [443, 4317]
    objects = helm_template(sets=("trace.otel.endpoint=",))  # AWS S3, no collector: nothing more opens
    assert not [o for o in objects if o["metadata"]["name"].endswith("-endpoints")]


@pytest.mark.parametrize(("files", "scheme"), [((), "https"), (("values-dev.yaml",), "http")])
def test_notes_print_the_scheme_the_ingress_serves(files: tuple[str, ...], scheme: str) -> None:
    args = [str(helm()), "install", "m", str(CHART), "--dry-run=client"]
    for f in files:
        args += ["-f", str(CHART / f)]
    proc = subprocess.run(args, env=helm_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    host = "api.mnemos.localhost" if files else "api.mnemos.local"
    assert f"{scheme}://{host}/v1/models" in notes


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("cortex.ingress.hosts=cortex.example",), "at '/cortex/ingress/hosts': got string, want array"),
        (("trace.dashboards=yes",), "at '/trace/dashboards'"),
        (("trace.metricsAuth=yes",), "at '/trace/metricsAuth': got string, want boolean"),
        (("engram.persistence.size=lots",), "at '/engram/persistence/size'"),
        (("cortex.resources.limits.cpu=2 cores",), "at '/cortex/resources/limits/cpu'"),
        (("global.podSecurity.runAsUser=0",), "at '/global/podSecurity/runAsUser': minimum"),
        (("kuberay.rayService.enabled=no",), "at '/kuberay/rayService/enabled': got string, want boolean"),
        (("kuberay.gcsFaultTolerance.passwordSecret.name=",), "'/kuberay/gcsFaultTolerance/passwordSecret/name'"),
    ],
)
def test_more_bad_values_fail_naming_the_path(sets: tuple[str, ...], expected: str) -> None:
    """Each of these rendered before: a string switch counted as on, a bad quantity or uid 0 failed only
    at install or pod start, and cortex.ingress.hosts as a string broke a template with a Go error."""
    proc = run_helm("template", "mnemos", str(CHART), *[a for s in sets for a in ("--set", s)])
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr


@pytest.fixture()
def runner(monkeypatch, tmp_path: Path) -> CliRunner:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("MNEMOS_KUBERAY_CRDS", str(crd_dir()))
    return CliRunner()


def test_render_reads_text_maps_as_kubernetes_users_write_them(runner: CliRunner, tmp_path: Path) -> None:
    """`num-cpus: 0` or `gpu: true` in a values file, `--set env.FOO=1`: refused as 'not a valid string'."""
    values = tmp_path / "values.yaml"
    values.write_text("head:\n  rayStartParams: {num-cpus: 0}\n  nodeSelector: {gpu: true}\n")
    args = ["render", "-o", "json", "-k", "RayJob", "-f", str(values), "--set", "env.FOO=1"]
    result = runner.invoke(app, [*args, "--set", "workerGroups[0].labels.tier=2"])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(result.stdout)["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["template"]["spec"]["nodeSelector"] == {"gpu": "true"}
    assert {"name": "FOO", "value": "1"} in head["template"]["spec"]["containers"][0]["env"]
    assert spec["workerGroupSpecs"][0]["labels"]["tier"] == "2"


def test_bad_quantity_is_one_line_naming_the_field(runner: CliRunner) -> None:
    result = runner.invoke(app, ["render", "--set", "workerGroups[0].resources.limits.cpu=lots"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: values.workerGroups.0.resources.limits.cpu: 'lots' is not a Kubernetes quantity such as "
        "500m, 2, 4Gi or 50Gi"
    )


def test_a_file_that_is_no_kubeconfig_is_named(runner: CliRunner, tmp_path: Path) -> None:
    """A kubeconfig of another shape said "'str' object does not support item assignment"."""
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    result = runner.invoke(app, ["status", "--kubeconfig", str(path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.stderr.strip() == (
        f"error: no Kubernetes configuration: {path} is not a kubeconfig file (set KUBECONFIG or pass --kubeconfig)"
    )
