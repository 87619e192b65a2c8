"""A kind given as something other than its name: ``client.get(123)`` was an ``AttributeError: 'int'
object has no attribute 'lower'`` from deep in GENOME. It is a ValidationError naming ``kind`` and
listing the kinds; a kind's own class (``mnemos.genome.Model``) is accepted as that kind."""

from __future__ import annotations

from typing import Any

import pytest

from mnemos.engram import Engram
from mnemos.errors import NotFoundError, ValidationError
from mnemos.genome import KINDS, Model, Pipeline, Registry, parse_resource, resolve_kind
from mnemos.genome.registry import api_path

MODEL = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Model", "metadata": {"name": "tiny"},
         "spec": {"family": "llama", "version": "tiny", "artifact": {"uri": "engram://models/tiny"},
                  "runtime": {"engine": "transformers"}}}  # fmt: skip


@pytest.mark.parametrize("kind", [123, None, 1.5, b"model", ["Model"], int, Engram])
def test_a_kind_that_is_no_name_is_a_validation_error_listing_the_kinds(kind: Any) -> None:
    with pytest.raises(ValidationError) as err:
        resolve_kind(kind)
    assert err.value.param == "kind" and err.value.status == 422
    assert all(name in err.value.message for name in KINDS), err.value.message
    with pytest.raises(ValidationError):
        api_path(kind, "x")  # the remote client's path to the resource: refused before any request


def test_a_kind_class_is_that_kind_and_a_name_still_resolves() -> None:
    assert resolve_kind(Model) is Model and resolve_kind(Pipeline) is Pipeline
    assert resolve_kind("models") is Model
    assert api_path(Model, "tiny") == api_path("Model", "tiny")
    with pytest.raises(NotFoundError) as err:
        resolve_kind("modle")
    assert err.value.param == "kind"


def test_the_registry_reads_a_kind_class_and_refuses_a_number(local_engram: Engram) -> None:
    registry = Registry(local_engram)
    registry.apply(parse_resource(MODEL))
    assert registry.get(Model, "tiny").name == "tiny"  # type: ignore[arg-type]
    assert [r.name for r in registry.list(Model)] == ["tiny"]  # type: ignore[arg-type]
    for call in (lambda: registry.get(123, "tiny"), lambda: registry.list(123), lambda: registry.history(123, "tiny"),
                 lambda: registry.delete(123, "tiny")):  # fmt: skip
        with pytest.raises(ValidationError) as err:
            call()  # type: ignore[no-untyped-call]
        assert err.value.param == "kind"
    assert registry.get("Model", "tiny").name == "tiny"  # nothing was deleted


ADAPTER = "apiVersion: genome.mnemos.dev/v1\nkind: Adapter\nmetadata: {name: %s}\nspec: {baseUrl: 'http://x:9/v1'}\n"


def test_a_path_is_not_read_letter_by_letter_nor_an_empty_one_as_the_current_folder(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load_paths("models.yaml")`` iterated the string (``"/srv/models.yaml"`` walked all of ``/``
    from its first letter), and ``client.apply("")`` loaded every resource under the current folder
    (``Path("")`` is ``.``): a script whose file variable was empty applied the folder it ran in."""
    from mnemos.genome import load_paths, parse_documents
    from mnemos.genome.kinds import resources_of

    (tmp_path / "models.yaml").write_text(ADAPTER % "one")
    (tmp_path / "stray.yaml").write_text(ADAPTER % "stray")
    monkeypatch.chdir(tmp_path)
    refused = [(lambda: load_paths("models.yaml"), "paths"), (lambda: load_paths(5), "paths"),
               (lambda: load_paths([5]), "paths"), (lambda: load_paths([""]), "file"),
               (lambda: resources_of(""), "file"), (lambda: parse_documents(b"kind: Model"), "text")]  # fmt: skip
    for call, param in refused:
        with pytest.raises(ValidationError) as err:
            call()  # type: ignore[no-untyped-call]
        assert err.value.param == param, err.value
    assert [r.name for r in load_paths(["models.yaml"])] == ["one"]
    assert [r.name for r in resources_of(".")] == ["one", "stray"]  # the current folder, when asked for


def test_a_list_of_paths_is_files_and_folders(tmp_path: Any) -> None:
    """``client.apply(["a.yaml", "b.yaml"])`` was "a resource must be a mapping, got str"."""
    from mnemos.genome.kinds import resources_of

    (tmp_path / "a.yaml").write_text(ADAPTER % "a")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.yaml").write_text(ADAPTER % "b")
    assert [r.name for r in resources_of([str(tmp_path / "a.yaml"), tmp_path / "more"])] == ["a", "b"]
