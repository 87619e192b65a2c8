"""A pipeline's input files travel with it (``spec.files``): loading a Pipeline from its file names
by digest the relative input files beside it, and applying it stores them in ENGRAM, so a run by
name reads the bytes that were applied from any working directory or machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, load_paths, parse_resource
from mnemos.genome.pipeline import local_files

PIPELINE = """\
apiVersion: synkron.mnemos.dev/v1
kind: Pipeline
metadata: {name: with-files}
spec:
  params: {prompts: data/prompts.jsonl, other: data/absent.jsonl}
  steps:
    - name: prepare
      call: mnemos.synkron.steps:prepare_prompts
      params: {source: "${prompts}", limit: 2, note: readme.md, missing: "${other}"}
      outputs: [{name: records}]
    - name: infer
      modelRef: tiny-chat
      input: extra/more.jsonl
"""


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.jsonl").write_bytes(b'{"prompt": "one"}\n')
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "more.jsonl").write_bytes(b'{"prompt": "two"}\n')
    (tmp_path / "readme.md").write_text("not a data file")
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    return tmp_path


def test_loading_names_the_files_beside_it_by_digest(folder: Path) -> None:
    (pipeline,) = load_paths([folder / "pipeline.yaml"])
    prompts, more = _sha(b'{"prompt": "one"}\n'), _sha(b'{"prompt": "two"}\n')
    # a param default put in, an infer step's input; not a python param that is no data file,
    # nor a file that is not there (a run says so, as before)
    assert pipeline.spec.files == {"data/prompts.jsonl": prompts, "extra/more.jsonl": more}
    assert local_files(pipeline) == {prompts: folder / "data" / "prompts.jsonl", more: folder / "extra" / "more.jsonl"}
    assert pipeline.dump()["spec"]["files"] == pipeline.spec.files  # written in the stored document


def test_a_file_written_in_spec_files_is_kept(folder: Path) -> None:
    given = "sha256:" + "a" * 64
    text = PIPELINE.replace("  steps:", f"  files: {{data/prompts.jsonl: '{given}'}}\n  steps:")
    (folder / "pipeline.yaml").write_text(text)
    (pipeline,) = load_paths([folder / "pipeline.yaml"])
    assert pipeline.spec.files["data/prompts.jsonl"] == given
    assert given not in local_files(pipeline)


def test_applying_stores_the_files_and_a_document_needs_them_stored(folder: Path, tmp_path: Path) -> None:
    engram = Engram(str(tmp_path / "engram"))
    registry = Registry(engram)
    (pipeline,) = load_paths([folder / "pipeline.yaml"])
    assert registry.apply(pipeline).action == "created"
    for digest in pipeline.spec.files.values():
        assert engram.has(digest)
    assert registry.apply(load_paths([folder / "pipeline.yaml"])[0]).action == "unchanged"
    (folder / "data" / "prompts.jsonl").write_bytes(b'{"prompt": "changed"}\n')  # new bytes: a new generation
    changed = registry.apply(load_paths([folder / "pipeline.yaml"])[0])
    assert changed.action == "configured"
    assert changed.resource.spec.files["data/prompts.jsonl"] == _sha(b'{"prompt": "changed"}\n')

    doc = pipeline.dump()  # a document (as over HTTP) has no local files: its digests must be stored
    doc["metadata"]["name"] = "as-a-document"
    doc["spec"]["files"]["data/prompts.jsonl"] = "sha256:" + "0" * 64
    with pytest.raises(ValidationError) as refused:
        registry.apply(parse_resource(doc))
    assert refused.value.param == "spec.files.data/prompts.jsonl"
    assert "PUT /v1/files/sha256:" + "0" * 64 in refused.value.message


@pytest.mark.parametrize(
    ("path", "digest", "why"),
    [
        ("/etc/passwd", "sha256:" + "a" * 64, "not a relative file path"),
        ("s3://bucket/x.jsonl", "sha256:" + "a" * 64, "not a relative file path"),
        ("runs/r/out", "sha256:" + "a" * 64, "not a relative file path"),
        ("data/${param}.jsonl", "sha256:" + "a" * 64, "not a relative file path"),
        ("data/x.jsonl", "md5:abc", "is not a digest"),
        ("data/x.jsonl", "sha256:" + "A" * 64, "is not a digest"),
    ],
)
def test_spec_files_takes_relative_paths_and_digests(path: str, digest: str, why: str) -> None:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
           "spec": {"steps": [{"name": "s", "script": "true"}], "files": {path: digest}}}  # fmt: skip
    with pytest.raises(ValidationError, match=why) as refused:
        parse_resource(doc)
    assert "spec.files" in (refused.value.param or "")


def test_only_files_inside_the_pipelines_folder_are_taken(tmp_path: Path) -> None:
    """A pipeline (from a GitOps repository, say) cannot make its applier store files from elsewhere."""
    (tmp_path / "secret.jsonl").write_text('{"prompt": "outside"}\n')
    folder = tmp_path / "repo"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    (folder / "data" / "ok.jsonl").write_text('{"prompt": "inside"}\n')
    (folder / "pipeline.yaml").write_text(PIPELINE.replace("data/prompts.jsonl", "../secret.jsonl")
                                          .replace("extra/more.jsonl", "data/link.jsonl")
                                          .replace("readme.md", "data/ok.jsonl"))  # fmt: skip
    (pipeline,) = load_paths([folder / "pipeline.yaml"])
    assert pipeline.spec.files == {"data/ok.jsonl": _sha(b'{"prompt": "inside"}\n')}
