"""A forced restore writes into a live registry: what it puts there goes through GENOME admission, as
``mnemos apply`` would, and a refused restore writes nothing at all (it once wrote every generation
of the snapshot with no admission)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests_support import model_doc
from tests_support import run_cli as run

import mnemos.cli as cli
from mnemos.cli import gitops as gitops_cli
from mnemos.cli import wraith as wraith_cli
from mnemos.engram import Engram
from mnemos.errors import AdmissionError, NotFoundError
from mnemos.genome import Registry, parse_resource
from mnemos.wraith._store import all_keys
from mnemos.wraith.backup import backup, restore

if not any(c.name == "sync" or getattr(c.callback, "__name__", "") == "sync" for c in cli.app.registered_commands):
    gitops_cli.register(cli.app)
if not any(g.name == "wraith" for g in cli.app.registered_groups):
    cli.app.add_typer(wraith_cli.app, name="wraith")


def policy(name: str, *labels: str) -> dict:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": name},
            "spec": {"selector": {"kinds": ["Model"]}, "rules": {"requiredLabels": list(labels)}}}  # fmt: skip


def labelled(name: str, **spec: object) -> dict:
    doc = model_doc(name, **spec)
    doc["metadata"]["labels"] = {"team": "search"}
    return doc


def _state(engram: Engram) -> dict[str, bytes]:
    """Every key of the root (blobs and refs included) with its bytes."""
    return {key: engram.read_bytes(key) for key in all_keys(engram)}


def test_a_forced_restore_admits_what_it_writes_against_the_policies_live_after_it(local_engram: Engram) -> None:
    registry = Registry(local_engram)
    registry.apply(parse_resource(model_doc("alpha")))  # no team label
    registry.apply(parse_resource(labelled("beta")))
    registry.apply(parse_resource(model_doc("gamma")))  # no team label, and unchanged since the snapshot
    snapshot_x = local_engram.put(b"x")
    local_engram.set_ref("data/x", snapshot_x)
    dest = Engram(backup(local_engram).destination)
    registry.delete("Model", "alpha")
    registry.apply(parse_resource(labelled("beta", replicas=2)))
    registry.apply(parse_resource(policy("need-team", "team")))  # created since: it stays, and applies
    local_engram.set_ref("data/x", local_engram.put(b"y"))
    before = _state(local_engram)

    with pytest.raises(AdmissionError) as refused:
        restore(dest, "latest", local_engram, force=True)
    message = refused.value.message
    assert "1 of its resources fail admission" in message and "nothing was restored" in message, message
    assert "model/alpha: admission refused Model 'alpha': Policy 'need-team': requiredLabels: missing label(s) team" \
        in message  # fmt: skip
    assert "beta" not in message and "gamma" not in message  # beta's snapshot state passes; gamma is live as it was
    assert _state(local_engram) == before  # nothing written: no generation, no document, no ref, no blob
    with pytest.raises(NotFoundError):
        registry.get("Model", "alpha")

    registry.delete("Policy", "need-team")  # the operator's call: then the snapshot restores
    restored = restore(dest, "latest", local_engram, force=True)
    assert registry.get("Model", "alpha").generation == 2
    assert registry.get("Model", "beta").spec_dump() == registry.get("Model", "beta", 1).spec_dump()
    assert "model/alpha: generation 2 (the snapshot's generation 1)" in restored.reverted
    assert local_engram.get_ref("data/x") == snapshot_x


def test_a_policy_the_restore_reverts_is_the_one_that_applies(local_engram: Engram) -> None:
    """The snapshot's own Policy comes back with it: what it admitted then, it admits again."""
    registry = Registry(local_engram)
    registry.apply(parse_resource(policy("rules")))  # no label required then
    registry.apply(parse_resource(model_doc("alpha")))
    dest = Engram(backup(local_engram).destination)
    registry.delete("Model", "alpha")
    registry.apply(parse_resource(policy("rules", "team")))  # tightened since
    restored = restore(dest, "latest", local_engram, force=True)
    assert sorted(restored.reverted) == ["model/alpha: generation 2 (the snapshot's generation 1)",
                                         "policy/rules: generation 3 (the snapshot's generation 1)"]  # fmt: skip


def test_a_pipeline_a_run_would_refuse_is_not_restored(local_engram: Engram) -> None:
    """GENOME's checks beyond the schema are admission too: a 31-day step timeout, stored before they were."""
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "slow", "generation": 1},
           "spec": {"steps": [{"name": "wait", "script": "sleep 1", "timeout": "31d"}]}}  # fmt: skip
    local_engram.write_json("registry/Pipeline/slow/00000001.json", doc)
    dest = Engram(backup(local_engram).destination)
    Registry(local_engram).delete("Pipeline", "slow")
    before = _state(local_engram)
    with pytest.raises(AdmissionError, match=r"\n  pipeline/slow: spec.steps\[0\] \(wait\).timeout: 31d"):
        restore(dest, "latest", local_engram, force=True)
    assert _state(local_engram) == before


def test_the_cli_names_what_was_refused_and_exits_non_zero(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    engram = Engram(str(tmp_path / "engram"))
    registry = Registry(engram)
    registry.apply(parse_resource(model_doc("alpha")))
    run(capsys, "wraith", "run", "backup", "--local")
    registry.delete("Model", "alpha")
    registry.apply(parse_resource(policy("need-team", "team")))
    out, err = run(capsys, "restore", "latest", "--force", code=AdmissionError.exit_code)
    assert "restored snapshot" not in out
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: restore of snapshot ") and lines[0].endswith("nothing was restored:"), err
    assert lines[1:] == ["  model/alpha: admission refused Model 'alpha': Policy 'need-team': requiredLabels: "
                         "missing label(s) team"]  # fmt: skip
    assert registry.list("Model") == []  # still deleted
