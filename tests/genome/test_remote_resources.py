"""Resources through the gateway (``mnemos.connect(url, api_key=…)``) as through the embedded client:
a resource stored before a check it now fails is deleted over HTTP as it is locally (the delete was
done, and the client said it failed), a Model's status is ``ArtifactMissing`` for an artifact its
replica did not find."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests_support import start_auth_gateway, stop_gateway

import mnemos
from mnemos.errors import NotFoundError


@pytest.fixture(scope="module")
def gateway(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, str]]:
    url, client, _settings, _store, keys = start_auth_gateway(tmp_path_factory.mktemp("genome-remote"),
                                                               {"admin": "admin"}, [])  # fmt: skip
    yield url, client, keys["admin"]
    stop_gateway()


def test_a_stored_resource_that_no_longer_validates_is_deleted_over_the_gateway(gateway: tuple[str, Any, str]) -> None:
    url, embedded, key = gateway
    doc = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "b..c", "generation": 1},
           "spec": {"baseUrl": "http://127.0.0.1:9/v1"}}  # fmt: skip
    embedded.engram.write_json("registry/Adapter/b..c/00000001.json", doc)  # a name Kubernetes refuses, stored before
    with mnemos.connect(url, api_key=key) as remote:
        deleted = remote.delete("Adapter", "b..c")
        assert (deleted.name, deleted.generation) == ("b..c", 1)
        with pytest.raises(NotFoundError):
            remote.delete("Adapter", "b..c")


def test_a_model_status_names_the_artifact_its_replica_did_not_find(gateway: tuple[str, Any, str], tmp_path) -> None:
    url, embedded, key = gateway
    missing = tmp_path / "no-such-model"
    embedded.apply({"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "lost"},
                    "spec": {"family": "llama", "version": "1", "artifact": {"uri": f"file://{missing}"},
                             "runtime": {"engine": "transformers"}}})  # fmt: skip
    with mnemos.connect(url, api_key=key) as remote:
        for event in remote.watch(["model"], subject="model/lost", timeout=180):
            if (event.get("data") or {}).get("phase") == "Failed":
                break
        status = remote.model_status("lost")
    assert (status["phase"], status["reason"]) == ("Failed", "ArtifactMissing"), status
    assert f"artifact file://{missing} is missing" in status["message"]
    assert "mnemos model register DIR --name lost" in status["message"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["ArtifactAvailable"] == "False"
    embedded.delete("Model", "lost")

