"""``mnemos kuberay``: render, apply --dry-run, validate; errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mnemos.cli.kuberay import app

from .support import MANIFESTS, crd_dir


@pytest.fixture()
def runner(monkeypatch, tmp_path: Path) -> CliRunner:
    # No cluster may be touched: a kubeconfig that does not exist.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("MNEMOS_KUBERAY_CRDS", str(crd_dir()))
    return CliRunner()


def test_render_yaml_parses(runner: CliRunner) -> None:
    result = runner.invoke(app, ["render", "-o", "yaml"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["RayCluster", "RayService", "RayJob"]


def test_render_json_one_kind_with_sets(runner: CliRunner, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("namespace: ml\n")
    result = runner.invoke(
        app, ["render", "-o", "json", "--values", str(values), "--kind", "RayService", "--set", "serve.port=9000"]
    )
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["kind"] == "RayService" and obj["metadata"]["namespace"] == "ml"
    assert yaml.safe_load(obj["spec"]["serveConfigV2"])["http_options"]["port"] == 9000


def test_render_out_dir_writes_the_checked_in_files(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("raycluster.yaml", "rayservice.yaml", "rayjob.yaml"):
        assert (tmp_path / name).read_text() == (MANIFESTS / name).read_text()


def test_apply_dry_run_prints_yaml_and_touches_no_cluster(runner: CliRunner) -> None:
    result = runner.invoke(app, ["apply", "--dry-run", "--kind", "RayJob"])
    assert result.exit_code == 0, result.output
    (doc,) = list(yaml.safe_load_all(result.stdout))
    assert doc["kind"] == "RayJob"


def test_bad_set_is_a_clean_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["render", "--set", "workerGroups[0].replica=3"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "workerGroups.0.replica" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    result = runner.invoke(app, ["render", "--set", "replicas"])
    assert result.exit_code == 2 and "expected key=value" in result.stderr


def test_apply_without_a_cluster_is_a_clean_error(runner: CliRunner) -> None:
    monkey_env = {"KUBERNETES_SERVICE_HOST": ""}
    result = runner.invoke(app, ["apply", "--kind", "RayService"], env=monkey_env)
    assert result.exit_code == 10
    assert result.stderr.startswith("error: no Kubernetes configuration")
    assert "Traceback" not in result.output + result.stderr


def test_validate_command(runner: CliRunner, tmp_path: Path) -> None:
    files = [str(p) for p in sorted(MANIFESTS.glob("*.yaml"))]
    result = runner.invoke(app, ["validate", *files])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(" valid") == 3
    bad = yaml.safe_load((MANIFESTS / "raycluster.yaml").read_text())
    bad["spec"]["headGroupSpec"]["serviceTyp"] = "ClusterIP"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "spec.headGroupSpec.serviceTyp: unknown field (did you mean 'serviceType'?)" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_validate_with_a_bad_crd_folder_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    crds = tmp_path / "crds"
    crds.mkdir()
    (crds / "unrelated.yaml").write_text("a: [b\nc: d: e\n")
    result = runner.invoke(app, ["validate", str(MANIFESTS / "raycluster.yaml"), "--crd-dir", str(crds)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "unrelated.yaml (line 2)" in line


def test_validate_without_ray_objects_fails(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "configmap.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}: no ray.io objects, skipped" in result.stderr
    assert "error: nothing validated" in result.stderr
    # One file with Ray objects among others: those are validated, the others reported.
    result = runner.invoke(app, ["validate", str(path), str(MANIFESTS / "rayjob.yaml")])
    assert result.exit_code == 0, result.output
    assert "rayjob/mnemos-job valid" in result.stdout and "no ray.io objects" in result.stderr


def test_validate_refuses_ray_objects_of_another_version(runner: CliRunner, tmp_path: Path) -> None:
    obj = yaml.safe_load((MANIFESTS / "raycluster.yaml").read_text())
    obj["apiVersion"] = "ray.io/v1alpha1"
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(obj))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "apiVersion: expected 'ray.io/v1'" in result.stderr
