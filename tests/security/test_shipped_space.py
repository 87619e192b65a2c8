"""The shipped pipeline (``pipelines/text-gen-artifacts.yaml``) writes its embedding space through
the param ``space`` (default ``llm-dev``): once another principal owns ``llm-dev``, a developer who
runs the registered pipeline is told which param to set, and runs it into a space of their own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from tests_support import REPO

from mnemos.engram import Engram
from mnemos.errors import PermissionDeniedError
from mnemos.genome import Registry, load_paths
from mnemos.soul.identity import Principal
from mnemos.synkron._plan import prepare

OPERATOR, BOB = Principal("olga", "operator", "apikey"), Principal("bob", "developer", "apikey")


def test_a_developer_runs_the_registered_pipeline_into_their_own_space(tmp_path: Path) -> None:
    engram = Engram(str(tmp_path / "engram"))
    registry = Registry(engram)
    for resource in load_paths([REPO / "deployments/local/models.yaml", REPO / "pipelines/text-gen-artifacts.yaml"]):
        registry.apply(resource)
    client = SimpleNamespace(engram=engram, registry=registry)
    assert prepare(client, "text-gen-artifacts", principal=OPERATOR)["params"]["space"] == "llm-dev"  # the default

    for given in ({}, {"limit": 8}):  # the space comes from the param's default: the refusal names the param
        with pytest.raises(PermissionDeniedError) as refused:
            prepare(client, "text-gen-artifacts", given, principal=BOB)
        assert (refused.value.status, refused.value.param) == (403, "params.space")
        assert refused.value.message == (
            "params.space: space 'llm-dev' belongs to another principal: choose another space name: "
            "pass -p space=<yours> (params.space over the API)"
        )

    run = prepare(client, "text-gen-artifacts", {"space": "bobs-space"}, principal=BOB)
    assert (run["status"], run["principal"], run["params"]["space"]) == ("pending", "bob", "bobs-space")
    assert engram.read_json("spaces/bobs-space/owner.json")["owner"] == "bob"
    assert engram.read_json("spaces/llm-dev/owner.json")["owner"] == "olga"
