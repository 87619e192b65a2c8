"""Fixtures of the WRAITH tests: ``ops_repo``, a local Git repository made with the real ``git``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from tests_support import model_doc

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "ops",
    "GIT_AUTHOR_EMAIL": "ops@example.com",
    "GIT_COMMITTER_NAME": "ops",
    "GIT_COMMITTER_EMAIL": "ops@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class OpsRepo:
    """A Git repository with ``environments/dev``; ``write``/``remove`` then ``commit``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.git("init", "-q", "-b", "main", str(root))

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.root if self.root.exists() else None, env={**os.environ, **_GIT_ENV},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return proc.stdout.strip()

    def write(self, rel: str, *docs: dict) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture()
def ops_repo(tmp_path: Path) -> OpsRepo:
    repo = OpsRepo(tmp_path / "mnemos-ops")
    repo.write("environments/dev/values.yaml", {"wraith": {"queues": {"concurrency": 10}}})
    repo.write("environments/dev/models/alpha.yaml", model_doc("alpha"))
    repo.write("environments/dev/models/beta.yaml", model_doc("beta"))
    repo.write(
        "environments/dev/policy.yaml",
        {
            "apiVersion": "genome.mnemos.dev/v1",
            "kind": "Policy",
            "metadata": {"name": "dev-rules"},
            "spec": {"selector": {"kinds": ["Model"]}, "rules": {"maxReplicas": 4}},
        },
    )
    repo.write("environments/stage/models/alpha.yaml", model_doc("alpha", replicas=2))
    repo.commit("initial")
    return repo
