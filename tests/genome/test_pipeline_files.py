"""A pipeline's input files travel with it (``spec.files``): loading a Pipeline from its file names
by digest the relative input files beside it, and applying it stores them in ENGRAM, so a run by
name reads the bytes that were applied from any working directory or machine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mnemos.engram import Engram
from mnemos.errors import ConflictError, ValidationError
from mnemos.genome import Registry, load_paths, parse_resource
from mnemos.genome.pipeline import local_files, unquoted_uses

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


OUTSIDE = "not a file of the pipeline's folder"
A_DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("path", "digest", "why"),
    [
        ("/etc/passwd", A_DIGEST, OUTSIDE),
        ("s3://bucket/x.jsonl", A_DIGEST, OUTSIDE),
        ("runs/r/out", A_DIGEST, OUTSIDE),
        ("data/${param}.jsonl", A_DIGEST, OUTSIDE),
        ("../etc/passwd", A_DIGEST, OUTSIDE),
        ("a/../../b", A_DIGEST, OUTSIDE),
        ("a/../b", A_DIGEST, OUTSIDE),
        ("..", A_DIGEST, OUTSIDE),
        ("a\\b", A_DIGEST, OUTSIDE),
        ("", A_DIGEST, OUTSIDE),
        ("./x", A_DIGEST, OUTSIDE),
        ("a//b", A_DIGEST, OUTSIDE),
        ("data/", A_DIGEST, OUTSIDE),
        ("data/x.jsonl", "md5:abc", "is not a digest"),
        ("data/x.jsonl", "sha256:" + "A" * 64, "is not a digest"),
        ("data/x.jsonl", "a" * 64, "is not a digest"),
    ],
)
def test_spec_files_takes_normalized_paths_inside_the_folder_and_digests(path: str, digest: str, why: str) -> None:
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
           "spec": {"steps": [{"name": "s", "script": "true"}], "files": {path: digest}}}  # fmt: skip
    with pytest.raises(ValidationError, match=why) as refused:
        parse_resource(doc)
    assert (refused.value.status, refused.value.param) == (422, f"spec.files.{path}")  # the key, and how to fix it
    assert "forward slashes" in refused.value.message or "sha256:<64 lowercase hex digits>" in refused.value.message


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("../secret.jsonl", "outside the pipeline's folder"),  # exists, up and out
        ("data/../../secret.jsonl", "outside the pipeline's folder"),
        ("../absent.jsonl", "outside the pipeline's folder"),  # not there now: the gateway's might be
        ("data/link.jsonl", "outside the pipeline's folder"),  # a symbolic link out
        ("./data/ok.jsonl", "write the input file './data/ok.jsonl' as 'data/ok.jsonl'"),
    ],
)
def test_an_input_file_outside_the_pipelines_folder_is_refused_naming_step_and_file(tmp_path: Path, written: str,
                                                                                    why: str) -> None:  # fmt: skip
    """Left out of spec.files before, such a file was read wherever a registered run ran (the
    gateway's working directory); a GitOps repository cannot make its applier store files from elsewhere."""
    (tmp_path / "secret.jsonl").write_text('{"prompt": "outside"}\n')
    folder = tmp_path / "repo"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    (folder / "data" / "ok.jsonl").write_text('{"prompt": "inside"}\n')
    (folder / "pipeline.yaml").write_text(PIPELINE.replace("extra/more.jsonl", written)
                                          .replace("readme.md", "data/ok.jsonl"))  # fmt: skip
    with pytest.raises(ValidationError, match=why) as refused:
        load_paths([folder / "pipeline.yaml"])
    assert refused.value.param == "spec.steps[1].input"
    assert "spec.steps[1] (infer).input" in refused.value.message and repr(written) in refused.value.message
    if "outside" in why:
        assert "move the file into the pipeline's folder" in refused.value.message


def test_a_python_params_file_outside_is_named_by_its_step(tmp_path: Path) -> None:
    (tmp_path / "secret.jsonl").write_text("{}\n")
    folder = tmp_path / "repo"
    (folder / "data").mkdir(parents=True)
    (folder / "extra").mkdir()
    (folder / "extra" / "more.jsonl").write_text("{}\n")
    (folder / "pipeline.yaml").write_text(PIPELINE.replace("data/prompts.jsonl", "../secret.jsonl"))
    with pytest.raises(ValidationError, match="outside the pipeline's folder") as refused:
        load_paths([folder / "pipeline.yaml"])
    assert refused.value.param == "spec.steps[0].params" and "'../secret.jsonl'" in refused.value.message


def test_only_files_inside_the_pipelines_folder_are_taken(folder: Path) -> None:
    (folder / "data" / "ok.jsonl").write_text('{"prompt": "inside"}\n')
    (folder / "pipeline.yaml").write_text(PIPELINE.replace("readme.md", "data/ok.jsonl")
                                          .replace("extra/more.jsonl", "/elsewhere/absolute.jsonl"))  # fmt: skip
    (pipeline,) = load_paths([folder / "pipeline.yaml"])  # an absolute path is read where the run runs, as before
    assert set(pipeline.spec.files) == {"data/prompts.jsonl", "data/ok.jsonl"}


def test_an_apply_stores_each_file_once_and_reads_no_file_already_stored(folder: Path, tmp_path: Path) -> None:
    """Loading hashes a file; applying stores it verified against that digest, and a file whose
    digest is stored already is not read again (here: it is gone, and the apply still passes)."""
    registry = Registry(Engram(str(tmp_path / "engram")))
    registry.apply(load_paths([folder / "pipeline.yaml"])[0])
    (loaded,) = load_paths([folder / "pipeline.yaml"])
    for path in local_files(loaded).values():
        path.unlink()
    assert registry.apply(loaded).action == "unchanged"


def test_a_file_changed_between_loading_and_applying_is_refused_and_not_stored(folder: Path, tmp_path: Path) -> None:
    engram = Engram(str(tmp_path / "engram"))
    (pipeline,) = load_paths([folder / "pipeline.yaml"])
    (folder / "data" / "prompts.jsonl").write_bytes(b'{"prompt": "edited after loading"}\n')
    with pytest.raises(ConflictError, match="changed") as refused:
        Registry(engram).apply(pipeline)
    assert refused.value.param == "spec.files.data/prompts.jsonl"
    assert not engram.has(pipeline.spec.files["data/prompts.jsonl"])  # the digest names bytes never stored
    assert not engram.has(_sha(b'{"prompt": "edited after loading"}\n'))  # nor were the new bytes stored under it


@pytest.mark.parametrize(
    "script",
    ["echo $(( 1 << 2 ))\ngrep ${x} data.txt", "x=$((a<<b))\ngrep ${x} data.txt", "(( n <<= 1 ))\ngrep ${x} f",
     "[[ $a -lt 2 ]]\ngrep ${x} f"],
)  # fmt: skip
def test_an_arithmetic_shift_is_no_heredoc(script: str) -> None:
    assert unquoted_uses(script) == []
    assert unquoted_uses(script.replace("grep ${x}", 'grep "${x}"')) == [("x", "double quotes")]


def test_a_heredoc_after_arithmetic_is_still_one() -> None:
    assert unquoted_uses("echo $(( (1 + 2) << 3 ))\ncat <<EOF\n${x}\nEOF\ngrep ${y} f") == [("x", "a heredoc")]
    assert unquoted_uses("echo $(( 1 << ${n} ))") == [("n", "an arithmetic test")]
