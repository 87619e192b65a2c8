"""``mnemos sync`` as a user runs it: ownership (--adopt), failing loops, --count, short shas, paths."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests_support import run_cli as run

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "ops", "GIT_AUTHOR_EMAIL": "ops@example.com", "GIT_COMMITTER_NAME": "ops",
    "GIT_COMMITTER_EMAIL": "ops@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip


def _policy(name: str, max_replicas: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Policy",
        "metadata": {"name": name},
        "spec": {"selector": {"kinds": ["Model"]}, "rules": {"maxReplicas": max_replicas}},
    }


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _commit(root: Path, files: dict[str, Any]) -> str:
    for name, doc in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "change")
    return _git(root, "rev-parse", "HEAD")


@pytest.fixture()
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", str(tmp_path / "engram"))
    for name in ("MNEMOS_CONFIG", "MNEMOS_URL", "MNEMOS_RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "ops"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _commit(root, {"envs/dev/rules.yaml": _policy("dev-rules")})
    return root


def test_sync_does_not_take_over_what_apply_made_unless_adopt(ops: Path, capsys) -> None:
    (ops.parent / "mine.yaml").write_text(yaml.safe_dump(_policy("mine", 2)))
    run(capsys, "apply", "-f", str(ops.parent / "mine.yaml"))
    _commit(ops, {"envs/dev/mine.yaml": _policy("mine", 3)})
    _, err = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", code=4)
    assert err.strip() == (
        "error: policy/mine: exists, not managed by this source (made by `mnemos apply`?): "
        "sync with --adopt to take it over"
    )
    out, _ = run(capsys, "get", "policy", "mine", "-o", "yaml")
    mine = yaml.safe_load(out)
    assert mine["spec"]["rules"]["maxReplicas"] == 2 and "mnemos.dev/managed-by" not in mine["metadata"].get(
        "annotations", {}
    )  # untouched: nothing of the sync was applied
    assert "not found" in run(capsys, "get", "policy", "dev-rules", code=3)[1]

    out, _ = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", "--adopt")
    assert "policy/mine changed" in out and "policy/dev-rules added" in out
    _git(ops, "rm", "-q", "envs/dev/mine.yaml")
    _git(ops, "commit", "-q", "-m", "drop")
    out, _ = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", "--prune")
    assert "policy/mine pruned" in out  # adopted on purpose: from then on it is this source's


def test_prune_leaves_what_apply_made(ops: Path, capsys) -> None:
    (ops.parent / "hand.yaml").write_text(yaml.safe_dump(_policy("hand")))
    run(capsys, "apply", "-f", str(ops.parent / "hand.yaml"))
    run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", "--prune")
    run(capsys, "get", "policy", "hand")


def test_a_loop_whose_syncs_fail_exits_non_zero(ops: Path, capsys) -> None:
    _commit(ops, {"envs/other/rules.yaml": _policy("dev-rules")})
    run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev")
    _, err = run(capsys, "sync", "--repo", str(ops), "--path", "envs/other", "--interval", "0.01s", "--count", "2",
                 code=4)  # fmt: skip
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)
    assert "managed by another GitOps source" in lines[0] and lines[2] == "error: 2 of 2 syncs failed"


def test_count_without_interval_is_refused(ops: Path, capsys) -> None:
    _, err = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", "--count", "2", code=2)
    assert err.strip() == "error: --count needs --interval: pass both, or neither for one sync"


def test_a_short_sha_is_a_ref(ops: Path, capsys) -> None:
    first = _git(ops, "rev-parse", "HEAD")
    _commit(ops, {"envs/dev/rules.yaml": _policy("dev-rules", 1)})
    out, _ = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", "--ref", first[:7], "-o", "json")
    assert f'"commit": "{first}"' in out
    _, err = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", "--ref", "abcdef1", code=3)
    assert "abcdef1" in err and "not found" in err


def test_errors_name_the_file_inside_the_repository(ops: Path, capsys) -> None:
    _commit(ops, {"envs/dev/bad.yaml": "apiVersion: genome.mnemos.dev/v1\nkind: Policy\nmetadata: {name: Bad_}\n"})
    _, err = run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev", code=2)
    assert "envs/dev/bad.yaml" in err and "gitops/" not in err and str(ops.parent) not in err, err


def test_yaml_listings_are_one_document(ops: Path, capsys) -> None:
    out, _ = run(capsys, "get", "model", "-o", "yaml")
    assert out.strip() == "[]"
    run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev")
    _commit(ops, {"envs/dev/more.yaml": _policy("more")})
    run(capsys, "sync", "--repo", str(ops), "--path", "envs/dev")
    out, _ = run(capsys, "get", "policy", "-o", "yaml")
    assert [d["metadata"]["name"] for d in yaml.safe_load(out)] == ["dev-rules", "more"]


def test_usage_without_credentials_says_how_to_get_one(ops: Path, capsys, monkeypatch) -> None:
    import mnemos.cli.usage as usage_cli
    from mnemos.errors import AuthenticationError

    def refuse(url: str, params: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
        raise AuthenticationError("missing credentials: send 'Authorization: Bearer …'")

    for name in ("MNEMOS_API_KEY", "MNEMOS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(usage_cli, "fetch_usage", refuse)
    _, err = run(capsys, "usage", code=6)
    assert "mnemos login" in err and "MNEMOS_API_KEY" in err and len(err.strip().splitlines()) == 1
