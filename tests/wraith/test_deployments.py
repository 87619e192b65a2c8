"""The example ops layout: every environment's resources validate, pass admission, and sync."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mnemos.client import Client
from mnemos.config import load_settings
from mnemos.genome import Policy, admit
from mnemos.wraith.gitops import load_resources, sync

GITOPS = Path(__file__).resolve().parents[2] / "deployments" / "gitops"
ENVIRONMENTS = ["dev", "stage", "prod"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_resources_validate_and_pass_admission(env: str) -> None:
    resources = load_resources([GITOPS / "environments" / env])
    kinds = {type(r).__name__ for r in resources}
    assert {"Model", "Policy", "Pipeline"} <= kinds
    policies = [r for r in resources if isinstance(r, Policy)]
    for resource in resources:
        admit(resource, policies)
    values = yaml.safe_load((GITOPS / "environments" / env / "values.yaml").read_text())
    assert values["wraith"]["gitops"]["path"] == f"environments/{env}"
    assert values["cradle"]["guardrails"]["require_gitops"] is (env != "dev")


def test_the_example_layout_syncs_from_git(tmp_path: Path, ops_repo) -> None:
    shutil.copytree(GITOPS / "environments", ops_repo.root / "environments", dirs_exist_ok=True)
    sha = ops_repo.commit("the example layout")
    client = Client(
        load_settings(engram={"uri": str(tmp_path / "engram")}, cradle={"guardrails": {"requireGitops": True}})
    )
    report = sync(client, str(ops_repo.root), "environments/prod", prune=True)
    assert report.commit == sha
    assert sorted(report.added) == [
        "Model/all-minilm-l6-v2", "Model/qwen2-7b-instruct", "Pipeline/text-gen-artifacts", "Policy/prod-defaults",
    ]  # fmt: skip
