"""Walking the Kubernetes guide as a platform engineer: names that end up only inside a Ray object's pod
template (Secrets, the ServiceAccount, environment variables) are checked when rendering.

The API server stores a RayService or RayCluster whatever those names are (the CRDs do not check them),
`helm install` and `mnemos kuberay apply` succeed, and then the KubeRay operator's every pod create is
refused (`spec.containers[0].envFrom[0].secretRef.name: Invalid value: "My_S3"…`): no head, no RELAY,
and nothing but an operator event says why. The render fails instead, naming the value.
"""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from mnemos.cli.kuberay import app
from mnemos.kuberay._chart import ChartValues

from .support import CHART, crd_dir, run_helm

SCHEMA_ERROR = "don't meet the specifications of the schema"


@pytest.fixture()
def runner(monkeypatch, tmp_path) -> CliRunner:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("MNEMOS_KUBERAY_CRDS", str(crd_dir()))
    return CliRunner()


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("storage.credentialsSecret=My_S3", "values.storage.credentialsSecret"),
        ("security.masterKeySecret=Master Key", "values.security.masterKeySecret"),
        ("security.masterKeySecretKey=master key", "values.security.masterKeySecretKey"),
        ("gcsFaultTolerance.passwordSecret.name=Redis_Pass", "values.gcsFaultTolerance.passwordSecret.name"),
        ("serviceAccount=Mnemos_SA", "values.serviceAccount"),
        ("env.HF HOME=/scratch", "values.env.HF HOME"),
        ("env.1X=1", "values.env.1X"),
        # runAsNonRoot with uid 0: every container fails with CreateContainerConfigError (the chart refuses it too).
        ("security.runAsUser=0", "values.security.runAsUser"),
        # Serve refuses a route_prefix without a leading '/': the RayService never becomes ready.
        ("serve.routePrefix=v1", "values.serve.routePrefix"),
    ],
)
def test_render_refuses_names_the_pods_could_not_have(runner: CliRunner, setting: str, path: str) -> None:
    result = runner.invoke(app, ["render", "--kind", "RayService", "--set", setting])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line, result.output
    assert path in line, line


def test_render_keeps_valid_names(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        ["render", "--kind", "RayService", "--set", "storage.credentialsSecret=team.s3-creds",
         "--set", "serviceAccount=mnemos-ray", "--set", "env.FORWARDED_ALLOW_IPS=127.0.0.1",
         "--set", "env.MY-VAR_1=x", "--set", "serve.routePrefix=/api"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "team.s3-creds" in result.stdout and "FORWARDED_ALLOW_IPS" in result.stdout


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("engram.objectStore.credentialsSecret=My_S3", "'/engram/objectStore/credentialsSecret'"),
        ("soul.masterKey.existingSecret=Master_Key", "'/soul/masterKey/existingSecret'"),
        ("soul.policies.mTLSCA.existingSecret=Ray_CA", "'/soul/policies/mTLSCA/existingSecret'"),
        ("kuberay.serviceAccount.create=false,kuberay.serviceAccount.name=Mnemos_SA", "'/kuberay/serviceAccount/name'"),
        (
            "kuberay.gcsFaultTolerance.passwordSecret.name=Redis_Pass",
            "'/kuberay/gcsFaultTolerance/passwordSecret/name'",
        ),
        ("kuberay.gcsFaultTolerance.passwordSecret.key=redis pass", "'/kuberay/gcsFaultTolerance/passwordSecret/key'"),
        ("kuberay.env.HF HOME=/scratch", "'/kuberay/env'"),
    ],
)
def test_chart_refuses_names_the_pods_could_not_have(setting: str, path: str) -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", setting)
    assert proc.returncode != 0 and SCHEMA_ERROR in proc.stderr, proc.stderr
    assert path in proc.stderr, proc.stderr


def test_chart_keeps_defaults_and_valid_names() -> None:
    """'' keeps meaning the chart's default name; real names and env variables render."""
    proc = run_helm(
        "template", "mnemos", str(CHART),
        "--set", "engram.objectStore.credentialsSecret=", "--set", "soul.masterKey.existingSecret=",
        "--set", "kuberay.serviceAccount.create=false", "--set", "kuberay.serviceAccount.name=team.mnemos-ray",
        "--set", "kuberay.env.FORWARDED_ALLOW_IPS=127.0.0.1", "--set", "kuberay.env.NUM=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "serviceAccountName: team.mnemos-ray" in proc.stdout
    assert "name: mnemos-mnemos-master-key" in proc.stdout and "FORWARDED_ALLOW_IPS" in proc.stdout


# RELAY's port (Serve's proxies, in every Ray pod) on a port Ray itself listens on: the proxy cannot bind it
# ("Address already in use"), the RayService never becomes ready, and the render said nothing.
@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("relay.service.port=8265", "relay.service.port: 8265 is the port of Ray's dashboard"),
        ("relay.service.port=6379", "relay.service.port: 6379 is the port of Ray's GCS"),
        ("relay.service.port=10001", "relay.service.port: 10001 is the port of Ray's client server"),
        ("kuberay.metricsPort=52365", "kuberay.metricsPort: 52365 is the port of Ray's dashboard agent"),
        ("kuberay.metricsPort=8080", "kuberay.metricsPort: 8080 is also relay.service.port"),
        ("relay.service.port=8090", "kuberay.metricsPort: 8090 is also relay.service.port"),
    ],
)
def test_chart_refuses_relay_or_metrics_on_a_port_ray_holds(setting: str, expected: str) -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", setting)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    key, port = setting.split("=")
    section, *rest = key.split(".")
    node = values[section]
    for part in rest[:-1]:
        node = node[part]
    node[rest[-1]] = int(port)
    with pytest.raises(ValidationError, match=re.escape(expected)):
        ChartValues.model_validate(values)


@pytest.mark.parametrize("port", ["8265", "6379", "10001", "8090", "52365"])
def test_render_refuses_serve_on_a_port_ray_holds(runner: CliRunner, port: str) -> None:
    result = runner.invoke(app, ["render", "--kind", "RayService", "--set", f"serve.port={port}"])
    assert result.exit_code == 2, result.output
    assert f"serve.port: {port} is the port of Ray's" in result.output, result.output


def test_other_ports_render() -> None:
    proc = run_helm(
        "template", "mnemos", str(CHART), "--set", "relay.service.port=9000", "--set", "kuberay.metricsPort=9090"
    )
    assert proc.returncode == 0, proc.stderr


# A nodeSelector (or label) the API server refuses in a pod: the Ray object is stored, its pods never are.
@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("head.nodeSelector.node pool=head", "values.head.nodeSelector.node pool"),
        ("workerGroups[0].nodeSelector.accelerator=nvidia a100", "values.workerGroups.0.nodeSelector.accelerator"),
        ("labels.team=" + "x" * 64, "values.labels.team"),
    ],
)
def test_render_refuses_selectors_pods_could_not_have(runner: CliRunner, setting: str, path: str) -> None:
    result = runner.invoke(app, ["render", "--kind", "RayCluster", "--set", setting])
    assert result.exit_code == 2, result.output
    assert path in result.output and "is not a label" in result.output, result.output


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("kuberay.head.nodeSelector.node pool=head", "'/kuberay/head/nodeSelector'"),
        ("neuron.nodeSelector.accelerator=nvidia a100", "'/neuron/nodeSelector/accelerator'"),
        ("neuron.pools[0].selector.accelerator=nvidia a100", "'/neuron/pools/0/selector/accelerator'"),
    ],
)
def test_chart_refuses_selectors_pods_could_not_have(setting: str, path: str) -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", setting)
    assert proc.returncode != 0 and SCHEMA_ERROR in proc.stderr, proc.stderr
    assert path in proc.stderr, proc.stderr


def test_valid_selectors_render(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["render", "--kind", "RayCluster", "--set", "head.nodeSelector.pool=head", "--set", "labels.team=ml-01"]
    )
    assert result.exit_code == 0, result.output
    proc = run_helm(
        "template", "mnemos", str(CHART),
        "--set", "kuberay.head.nodeSelector.node\\.kubernetes\\.io/instance-type=m5.xlarge",
        "--set", "neuron.nodeSelector.accelerator=nvidia-a100",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "node.kubernetes.io/instance-type: m5.xlarge" in proc.stdout


# An enabled Ingress's hosts: `hosts=null` rendered a RELAY Ingress whose rules were empty (no host routed
# anywhere), and `hosts={}` a TLS block `hosts: [""]` and a rule the API server refuses at install.
@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (["relay.ingress.hosts=null"], "at '/relay/ingress': missing property 'hosts'"),
        (["cortex.ingress.hosts=null"], "at '/cortex/ingress': missing property 'hosts'"),
        (["relay.ingress.hosts={}"], "at '/relay/ingress/hosts/0': '' does not match pattern"),
        (["relay.ingress.hosts[0]=10.0.0.1:8080"], "at '/relay/ingress/hosts/0': '10.0.0.1:8080' does not match"),
        (["relay.ingress.hosts[0]=API.example.com"], "at '/relay/ingress/hosts/0': 'API.example.com' does not"),
    ],
)
def test_chart_refuses_an_enabled_ingress_without_usable_hosts(settings: list[str], says: str) -> None:
    proc = run_helm("template", "mnemos", str(CHART), *(a for s in settings for a in ("--set", s)))
    assert proc.returncode != 0 and SCHEMA_ERROR in proc.stderr and says in proc.stderr, proc.stderr


def test_chart_takes_dns_and_wildcard_hosts_and_a_disabled_ingress_without_any() -> None:
    proc = run_helm("template", "mnemos", str(CHART), "--set", "relay.ingress.hosts[0]=*.apps.example.com",
                    "--set", "cortex.ingress.enabled=false", "--set", "cortex.ingress.hosts=null")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert '- host: "*.apps.example.com"' in proc.stdout and "cortex.mnemos.local" not in proc.stdout


@pytest.mark.parametrize("entrypoint", ["", "   "])
def test_a_rayjob_without_a_command_is_refused(runner: CliRunner, entrypoint: str) -> None:
    """`--set job.entrypoint=` rendered a RayJob with an empty entrypoint: submitted, it runs nothing."""
    result = runner.invoke(app, ["render", "--kind", "RayJob", "--set", f"job.entrypoint={entrypoint}"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: values.job.entrypoint: empty: give the command the job runs, e.g. "
                                     "python -m mnemos run pipelines/my.yaml")  # fmt: skip
    proc = run_helm("template", "mnemos", str(CHART), "--set", "kuberay.rayJob.enabled=true",
                    "--set", f"kuberay.rayJob.entrypoint={entrypoint}")  # fmt: skip
    assert proc.returncode != 0 and "at '/kuberay/rayJob/entrypoint'" in proc.stderr, proc.stderr
