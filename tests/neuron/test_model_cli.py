"""``mnemos model init-tiny|register|list`` through the typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnemos.cli.model import app
from mnemos.engram import Engram
from mnemos.genome import Registry
from mnemos.neuron.models import materialize, tree_digest


@pytest.fixture()
def engram_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "engram"
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(root))
    monkeypatch.delenv("MNEMOS_RAY_ADDRESS", raising=False)
    return root


def test_init_tiny_register_and_list(engram_root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "tiny"
    result = runner.invoke(app, ["init-tiny", str(folder), "--seed", "3"])
    assert result.exit_code == 0, result.output
    digest = tree_digest(folder)
    assert digest in result.output

    result = runner.invoke(
        app, ["register", str(folder), "--name", "tiny", "--version", "v1", "--param", "maxBatchSize=4"]
    )
    assert result.exit_code == 0, result.output
    assert f"model/tiny created (generation 1) digest {digest}" in result.output

    model = Registry(Engram(str(engram_root))).get("Model", "tiny")
    assert model.spec.version == "v1" and model.spec.family == "llama"
    assert model.spec.runtime.params.max_batch_size == 4
    assert tree_digest(materialize(model, Engram(str(engram_root)), tmp_path / "cache")) == digest

    result = runner.invoke(app, ["list", "-o", "json"])
    assert result.exit_code == 0, result.output
    [listed] = json.loads(result.output)
    assert listed["metadata"]["name"] == "tiny" and listed["spec"]["artifact"]["sha256"] == digest
    table = runner.invoke(app, ["list"])
    assert "tiny" in table.output and "transformers" in table.output


def test_register_errors_name_the_problem(engram_root: Path, tmp_path: Path) -> None:
    from mnemos.errors import MnemosError

    (tmp_path / "config.json").write_text("{}")
    for args, words in [
        (["register", str(tmp_path / "missing"), "--name", "x"], "not a folder"),
        (["register", str(tmp_path), "--name", "Bad_Name"], "not a valid name"),
        (["register", str(tmp_path), "--name", "x", "--param", "oops"], "--param 'oops'"),
        (["register", str(tmp_path), "--name", "x", "--engine", "nope"], "engine"),
        (["register", str(tmp_path), "--name", "x", "--param", "maxBatchSize=0"], "maxBatchSize"),
    ]:
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, MnemosError), (args, result.output)
        assert result.exception.exit_code != 0 and words in result.exception.message, result.exception.message
        assert not list(engram_root.glob("blobs/**/*")), f"{args}: nothing may be stored for a refused model"


def test_registering_onto_a_model_keeps_its_spec_but_for_the_artifact(engram_root: Path, tmp_path: Path) -> None:
    """A new folder for a Model that exists replaces its artifact and version; its engine,
    resources, replicas, pricing and params stay, ``--param`` merges over them."""
    from mnemos.client import Client
    from mnemos.neuron.models import init_tiny

    client = Client()
    spec = {"family": "ours", "version": "1", "artifact": {"uri": "engram://models/kept"},
            "runtime": {"engine": "vllm", "params": {"dtype": "float32", "maxModelLen": 256}},
            "resources": {"cpus": 0.25}, "replicas": 2, "pricing": {"input": 0.5, "output": 1}}  # fmt: skip
    client.apply({"apiVersion": "genome.mnemos.dev/v1", "kind": "Model",
                  "metadata": {"name": "kept", "labels": {"team": "a"}}, "spec": spec})  # fmt: skip
    before = client.get("Model", "kept")
    folder = init_tiny(tmp_path / "tiny", seed=4)
    runner = CliRunner()
    result = runner.invoke(app, ["register", str(folder), "--name", "kept", "--param", "maxTokens=64"])
    assert result.exit_code == 0, result.output
    assert "model/kept configured (generation 2)" in result.output, result.output
    model, digest = client.get("Model", "kept"), tree_digest(folder)
    assert (model.spec.artifact.uri, model.spec.artifact.sha256) == (f"engram://{digest}", digest)
    assert model.spec.version == digest[7:19] and model.spec.family == "ours" and model.metadata.labels == {"team": "a"}
    assert model.spec.runtime.engine == "vllm"
    assert (model.spec.runtime.params.dtype, model.spec.runtime.params.max_model_len) == ("float32", 256)
    assert model.spec.runtime.params.max_tokens == 64
    assert model.spec.resources == before.spec.resources and model.spec.replicas == 2
    assert model.spec.pricing == before.spec.pricing

    again = runner.invoke(app, ["register", str(folder), "--name", "kept"])  # the same bytes: nothing to change
    assert again.exit_code == 0 and "model/kept unchanged (generation 2)" in again.output, again.output
    other = runner.invoke(app, ["register", str(folder), "--name", "kept", "--engine", "transformers",
                                "--version", "v9"])  # fmt: skip
    assert "model/kept configured (generation 3)" in other.output, other.output
    model = client.get("Model", "kept")
    assert (model.spec.runtime.engine, model.spec.version, model.spec.replicas) == ("transformers", "v9", 2)


def test_the_same_bytes_behind_a_ref_change_nothing_and_a_policy_gets_its_license(engram_root: Path,
                                                                                  tmp_path: Path) -> None:  # fmt: skip
    """A Model loading ``engram://models/NAME`` (the ref ``init-tiny --store`` sets) is unchanged when
    the folder behind that ref is registered again: no new generation, no rollout. ``--license``
    gives a new Model the ``spec.policy.license`` a Policy's allowlist asks for."""
    from mnemos.client import Client

    runner = CliRunner()
    folder = tmp_path / "tiny"
    assert runner.invoke(app, ["init-tiny", str(folder), "--store", "by-ref"]).exit_code == 0
    client = Client()
    client.apply({"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "by-ref"},
                  "spec": {"family": "llama", "version": "tiny", "artifact": {"uri": "engram://models/by-ref"},
                           "runtime": {"engine": "transformers"}}})  # fmt: skip
    same = runner.invoke(app, ["register", str(folder), "--name", "by-ref"])
    assert "model/by-ref unchanged (generation 1)" in same.output, same.output
    model = client.get("Model", "by-ref")
    assert (model.spec.artifact.uri, model.spec.version) == ("engram://models/by-ref", "tiny")

    client.apply(Path(__file__).resolve().parents[2] / "deployments" / "local" / "policy.yaml")
    refused = runner.invoke(app, ["register", str(folder), "--name", "licensed"])
    assert refused.exit_code != 0 and "allowedLicenses" in str(refused.exception), refused.output
    done = runner.invoke(app, ["register", str(folder), "--name", "licensed", "--license", "apache-2.0"])
    assert "model/licensed created (generation 1)" in done.output, done.output
    assert client.get("Model", "licensed").spec.policy.license == "apache-2.0"
