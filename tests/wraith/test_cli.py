"""``mnemos wraith list|run|snapshots``, ``mnemos sync|diff|restore`` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from tests_support import model_doc
from tests_support import run_cli as run

import mnemos.cli as cli
from mnemos.cli import gitops as gitops_cli
from mnemos.cli import wraith as wraith_cli
from mnemos.engram import Engram

# Until the lead adds them to mnemos/cli/__init__.py (_COMMAND_MODULES / _GROUPS), register here.
if not any(c.name == "sync" or getattr(c.callback, "__name__", "") == "sync" for c in cli.app.registered_commands):
    gitops_cli.register(cli.app)
if not any(g.name == "wraith" for g in cli.app.registered_groups):
    cli.app.add_typer(wraith_cli.app, name="wraith")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    monkeypatch.delenv("MNEMOS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_wraith_list_and_local_runs(home: Path, capsys) -> None:
    engram = Engram(str(home / "engram"))
    engram.put(b"an unreferenced blob")
    for i in range(3):
        engram.append("lineage", [{"id": f"run:{i}", "type": "execution", "parents": [], "attrs": {}}])

    out, _ = run(capsys, "wraith", "list")
    assert "compact-logs" in out and "0 3 * * *" in out and "backup" in out

    out, _ = run(capsys, "wraith", "run", "retention", "--local", "-o", "json")
    assert json.loads(out)["deleted"] == []  # the blob is young
    out, _ = run(capsys, "wraith", "run", "backup", "--local")
    snapshot = yaml.safe_load(out)["snapshot"]

    listed = json.loads(run(capsys, "wraith", "list", "-o", "json")[0])
    by_name = {item["name"]: item for item in listed}
    assert by_name["backup"]["lastStatus"] == "succeeded" and by_name["backup"]["nextRun"] is not None
    assert by_name["compact-logs"]["lastStatus"] is None

    out, _ = run(capsys, "wraith", "snapshots", "-o", "json")
    assert [s["snapshot"] for s in json.loads(out)] == [snapshot]


def test_wraith_run_errors(home: Path, capsys) -> None:
    _, err = run(capsys, "wraith", "run", "nope", "--local", code=3)
    assert "unknown WRAITH task 'nope': valid tasks are compact-logs, replay-events" in err
    _, err = run(capsys, "wraith", "run", "retention", code=10)
    assert "no platform is up" in err
    _, err = run(capsys, "wraith", "run", "gitops-sync", "--local", code=3)
    assert "wraith.gitops" in err


def test_sync_diff_and_guardrail(home: Path, capsys, ops_repo, monkeypatch) -> None:
    out, _ = run(capsys, "diff", "-f", str(ops_repo.root / "environments/dev"))
    assert "model/alpha create" in out and "+++ git/model/alpha" in out and "values" not in out

    out, _ = run(capsys, "sync", "--repo", str(ops_repo.root), "--path", "environments/dev")
    assert "3 added" in out and "model/alpha added" in out
    out, _ = run(capsys, "diff", "-f", str(ops_repo.root / "environments/dev/models/alpha.yaml"))
    assert "model/alpha configure" in out  # the file lacks the annotations sync adds

    monkeypatch.setenv("MNEMOS_CRADLE__GUARDRAILS__REQUIRE_GITOPS", "true")
    (home / "direct.yaml").write_text(yaml.safe_dump(model_doc("direct")))
    _, err = run(capsys, "apply", "-f", str(home / "direct.yaml"), code=7)
    assert "require_gitops" in err
    ops_repo.write("environments/dev/models/alpha.yaml", model_doc("alpha", replicas=2))
    ops_repo.remove("environments/dev/models/beta.yaml")
    ops_repo.commit()
    out, _ = run(
        capsys, "sync", "--repo", str(ops_repo.root), "--path", "environments/dev", "--prune",
        "--interval", "1ms", "--count", "2", "-o", "json",
    )  # fmt: skip
    first, second = (json.loads(doc) for doc in _json_documents(out))
    assert (first["changed"], first["pruned"]) == (["Model/alpha"], ["Model/beta"])
    assert second["unchanged"] == ["Policy/dev-rules", "Model/alpha"]

    _, err = run(capsys, "sync", "--repo", str(ops_repo.root), "--path", "x", "--interval", "soon", code=2)
    assert "--interval: 'soon' is not a duration" in err


def _json_documents(text: str) -> list[str]:
    decoder = json.JSONDecoder()
    docs, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, end = decoder.raw_decode(text, i)
        docs.append(json.dumps(obj))
        i = end
    return docs


def test_restore_from_cli(home: Path, capsys) -> None:
    engram = Engram(str(home / "engram"))
    engram.set_ref("data/x", engram.put(b"x"))
    run(capsys, "wraith", "run", "backup", "--local")
    _, err = run(capsys, "restore", "latest", code=4)
    assert "not empty" in err
    out, _ = run(capsys, "restore", "latest", "--to", str(home / "restored"))
    assert "restored snapshot" in out
    assert Engram(str(home / "restored")).refs() == {"data/x": engram.get_ref("data/x")}
    _, err = run(capsys, "restore", "20000101T000000Z-abc", "--to", str(home / "other"), code=3)
    assert "not found" in err


def test_restore_is_refused_while_the_platform_is_up_on_the_root(home: Path, capsys) -> None:
    engram = Engram(str(home / "engram"))
    engram.set_ref("data/x", engram.put(b"x"))
    run(capsys, "wraith", "run", "backup", "--local")
    (home / "home").mkdir(exist_ok=True)
    (home / "home" / "cluster.json").write_text(json.dumps({"pid": os.getpid(), "address": "127.0.0.1:1"}))
    _, err = run(capsys, "restore", "latest", "--force", code=4)
    assert err.strip().splitlines() == [
        f"error: the platform is up on {engram.uri}: stop it with `mnemos down` first, or restore elsewhere with "
        "--to (outside that root)"
    ]
    # the live root all the same, or a folder of it (its registry/ and soul/ copies would be the root's)
    for spelling in (str(home / "engram") + "/", f"file://{home / 'engram'}", str(home / "x" / ".." / "engram"),
                     str(home / "engram" / "sub"), f"file://{home / 'engram' / 'a' / 'b'}"):  # fmt: skip
        _, err = run(capsys, "restore", "latest", "--to", spelling, "--force", code=4)
        assert "the platform is up on" in err, spelling
    assert not (home / "engram" / "sub").exists()
    out, _ = run(capsys, "restore", "latest", "--to", str(home / "scratch"))  # another root: allowed
    assert "restored snapshot" in out


def test_settings_errors_are_one_line(home: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMOS_WRAITH__CRONJOBS", "notjson")
    _, err = run(capsys, "wraith", "list", code=2)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: MNEMOS_WRAITH__CRONJOBS is not valid JSON")
    monkeypatch.setenv("MNEMOS_WRAITH__CRONJOBS", '[{"name": "backup", "schedule": "0 0 31 2 *"}]')
    _, err = run(capsys, "up", code=2)
    assert err.startswith("error: settings.wraith.cronjobs.0.schedule: '0 0 31 2 *' never fires")
    assert not (home / "home" / "cluster.json").exists()
    monkeypatch.delenv("MNEMOS_WRAITH__CRONJOBS")
    monkeypatch.setenv("MNEMOS_ENGRAM__BACKUPS__RETENTIONDAYS", "-1")
    _, err = run(capsys, "wraith", "run", "backup", "--local", code=2)
    assert err.startswith("error: settings.engram.backups.retentionDays: ")


def test_wraith_list_shows_an_entry_that_cannot_be_planned(home: Path, capsys) -> None:
    engram = Engram(str(home / "engram"))
    engram.write_json(
        "wraith/state.json", {"retention": {"lastSlot": 1.0, "nextRun": None, "error": "cannot plan retention: boom"}}
    )
    out, _ = run(capsys, "wraith", "list", "-o", "json")
    by_name = {i["name"]: i for i in json.loads(out)}
    assert by_name["retention"]["scheduleError"] == "cannot plan retention: boom"
    assert by_name["retention"]["nextRun"] is None and by_name["backup"]["nextRun"] is not None
    out, _ = run(capsys, "wraith", "list")
    assert "never: cannot plan" in out and "boom" in out  # the table may wrap the cell


def test_local_replay_joins_the_running_platform(home: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import mnemos.cli._session as session
    import mnemos.cradle as cradle
    from mnemos.errors import UnavailableError

    monkeypatch.setattr(session, "platform_address", lambda: None)
    _, err = run(capsys, "wraith", "run", "replay-events", "--local", code=10)
    assert "replay-events needs the platform's CORTEX even with --local: start it with `mnemos up`" in err
    joined = []

    def init_ray(address, settings):
        joined.append(address)
        raise UnavailableError("stop here")

    monkeypatch.setattr(session, "platform_address", lambda: "127.0.0.1:6379")
    monkeypatch.setattr(cradle, "init_ray", init_ray)
    run(capsys, "wraith", "run", "replay-events", "--local", code=10)
    assert joined == ["127.0.0.1:6379"]


def test_an_empty_to_or_from_is_refused_not_read_as_the_default(home: Path, capsys) -> None:
    """``mnemos restore latest --to "$DEST" --force`` with ``DEST`` unset restored into the configured
    root; ``--from ''`` listed the configured destination."""
    engram = Engram(str(home / "engram"))
    engram.set_ref("data/x", engram.put(b"x"))
    run(capsys, "wraith", "run", "backup", "--local")
    engram.set_ref("data/y", engram.put(b"y"))  # after the snapshot: a restore into the root would revert it
    for args, option in ((("restore", "latest", "--to", "", "--force"), "--to"),
                         (("restore", "latest", "--from", " ", "--to", str(home / "r")), "--from"),
                         (("wraith", "snapshots", "--from", ""), "--from")):  # fmt: skip
        _, err = run(capsys, *args, code=2)
        assert err.strip().splitlines() == [f"error: {option}: empty: give a local folder or a URI, or leave "
                                            f"{option} out for the default"], args  # fmt: skip
    assert engram.refs().keys() == {"data/x", "data/y"} and not (home / "r").exists()


def test_diff_refuses_what_apply_would_refuse(home: Path, capsys) -> None:
    """``mnemos diff`` said ``model/x create`` (exit 0) for a Model a Policy's ``requiredLabels``
    refuses, which ``mnemos apply`` then refused (exit 7): it runs admission as apply does."""
    policy = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "owners"},
              "spec": {"rules": {"requiredLabels": ["owner"]}}}  # fmt: skip
    (home / "policy.yaml").write_text(yaml.safe_dump(policy))
    run(capsys, "apply", "-f", str(home / "policy.yaml"))
    (home / "model.yaml").write_text(yaml.safe_dump(model_doc("unowned")))
    _, err = run(capsys, "diff", "-f", str(home / "model.yaml"), code=7)
    assert "requiredLabels" in err and "owner" in err, err
    labelled = model_doc("owned")
    labelled["metadata"]["labels"] = {"owner": "ops"}
    (home / "model.yaml").write_text(yaml.safe_dump(labelled))
    out, _ = run(capsys, "diff", "-f", str(home / "model.yaml"))
    assert "model/owned create" in out
