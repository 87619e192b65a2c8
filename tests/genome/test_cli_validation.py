"""What ``mnemos validate``, ``apply -f`` and ``run`` refuse before anything is stored or started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAD = "apiVersion: synkron.mnemos.dev/v1\nkind: Pipeline\n"


def mnemos(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNEMOS_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "mnemos", *args], cwd=home, env=env, capture_output=True,
                          input=stdin, timeout=180)  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def pipeline(name: str, steps: str, params: str = "{}") -> str:
    return f"{HEAD}metadata: {{name: {name}}}\nspec:\n  params: {params}\n  steps:\n{steps}"


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]


BAD_PIPELINES = {
    "negative-timeout": (pipeline("neg", "  - {name: a, script: 'echo', timeout: -5}\n"),
                         "spec.steps.0.timeout: must be more than 0 (e.g. 30s, 5m)"),
    "zero-timeout": (pipeline("zero", "  - {name: a, script: 'echo', timeout: 0s}\n"),
                     "spec.steps.0.timeout: must be more than 0"),
    "unknown-variable": (
        pipeline("unk", "  - {name: first, script: 'echo 1'}\n  - {name: second, script: 'echo ${missing_thing}'}\n"),
        "pipeline/unk: spec.steps[1] (second).script: unknown variable ${missing_thing} (known: PIPELINE, RUN_ID)",
    ),
    "nested-param": (
        pipeline("nest", "  - {name: first, call: 'm:f', params: {a: {deep: [x, '${nosuch}']}}}\n"),
        "spec.steps[0] (first).params.a.deep[1]: unknown variable ${nosuch}",
    ),
    "output-without-needs": (
        pipeline("needs", "  - {name: a, call: 'm:f', outputs: [{name: x}]}\n"
                          "  - {name: b, needs: [], call: 'm:g', params: {data: '${x}'}}\n"),
        "spec.steps[1] (b).params.data: uses ${x}, the output of step 'a', without depending on it",
    ),
    "duplicate-outputs": (
        pipeline("dupout", "  - {name: a, call: 'm:f', outputs: [{name: x}]}\n"
                           "  - {name: b, call: 'm:g', outputs: [{name: x}]}\n"),
        "spec.steps[1] (b).outputs: name 'x' is already used",
    ),
    "call-not-module-function": (pipeline("call", "  - {name: a, call: 'not a callable'}\n"),
                                 "spec.steps[0] (a).call: use 'module:function'"),
    "no-api-version": ("kind: Pipeline\nmetadata: {name: noapi}\nspec: {steps: [{name: a, script: echo}]}\n",
                       "apiVersion is missing: write `apiVersion: synkron.mnemos.dev/v1`"),
    "same-name-twice": (pipeline("p", "  - {name: a, script: 'echo 1'}\n") + "---\n"
                        + pipeline("p", "  - {name: a, script: 'echo 2'}\n"),
                        "Pipeline/p is declared twice: in p.yaml (document 1) and p.yaml (document 2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_PIPELINES))
def test_validate_and_apply_refuse_what_run_refuses(tmp_path: Path, case: str) -> None:
    text, message = BAD_PIPELINES[case]
    (tmp_path / "p.yaml").write_text(text)
    for verb in ("validate", "apply"):
        refused(mnemos(tmp_path, verb, "-f", "p.yaml"), message)
    assert not (tmp_path / "engram" / "registry").exists()  # nothing was stored


def test_same_name_in_two_files_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.yaml").write_text(pipeline("p", "  - {name: a, script: 'echo 1'}\n"))
    (tmp_path / "dir" / "b.yaml").write_text(pipeline("p", "  - {name: a, script: 'echo 2'}\n"))
    refused(mnemos(tmp_path, "apply", "-f", "dir"), "Pipeline/p is declared twice: in dir/a.yaml (document 1) and "
                                                     "dir/b.yaml (document 1)")


def test_empty_input_stdin_and_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    (tmp_path / "folder").mkdir()
    refused(mnemos(tmp_path, "apply", "-f", "empty.yaml"), "no documents in empty.yaml")
    refused(mnemos(tmp_path, "apply", "-f", "folder"), "no documents in folder")
    (tmp_path / "latin.yaml").write_bytes(HEAD.encode() + b"metadata: {name: caf\xe9}\n")
    refused(mnemos(tmp_path, "apply", "-f", "latin.yaml"), "latin.yaml: not UTF-8 text")
    refused(mnemos(tmp_path, "run", "latin.yaml"), "latin.yaml: not UTF-8 text")
    text = pipeline("from-stdin", "  - {name: a, script: 'echo 1'}\n").encode()
    applied = mnemos(tmp_path, "apply", "-f", "-", stdin=text)
    assert applied.returncode == 0 and "pipeline/from-stdin created (generation 1)" in applied.stdout, applied.stderr


def test_run_checks_param_types_and_input_files_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(pipeline("typed", "  - {name: load, call: 'm:f', params: {source: nofile.jsonl, "
                                                       "n: '${limit}'}}\n", params="{limit: 3}"))  # fmt: skip
    refused(mnemos(tmp_path, "run", "p.yaml", "-p", "limit=abc"), "param 'limit': expected an integer")
    refused(mnemos(tmp_path, "run", "p.yaml", "-p", "limit=4"),
            "spec.steps[0] (load): input file 'nofile.jsonl' does not exist")
    assert not (tmp_path / "engram" / "runs").exists()


def test_a_stored_resource_that_no_longer_validates_is_skipped_explained_and_deletable(tmp_path: Path) -> None:
    """A record stored before a check existed (``timeout: -5`` was once accepted)."""
    folder = tmp_path / "engram" / "registry" / "Pipeline" / "negtimeout"
    folder.mkdir(parents=True)
    (folder / "00000001.json").write_text(
        '{"apiVersion":"synkron.mnemos.dev/v1","kind":"Pipeline","metadata":{"name":"negtimeout","generation":1},'
        '"spec":{"steps":[{"name":"a","script":"echo","timeout":"-5000ms"}]}}'
    )
    (tmp_path / "ok.yaml").write_text(pipeline("ok", "  - {name: a, script: 'echo 1'}\n"))
    assert mnemos(tmp_path, "apply", "-f", "ok.yaml").returncode == 0
    listed = mnemos(tmp_path, "get", "pipeline")
    assert listed.returncode == 0 and "ok" in listed.stdout and "negtimeout" not in listed.stdout
    assert "warning: skipped: registry/Pipeline/negtimeout" in listed.stderr
    assert mnemos(tmp_path, "status").returncode == 0
    got = mnemos(tmp_path, "get", "pipeline", "negtimeout")
    refused(got, "'-5000ms' is not a duration")
    assert "mnemos delete pipeline negtimeout" in got.stderr
    deleted = mnemos(tmp_path, "delete", "pipeline", "negtimeout")
    assert deleted.returncode == 0 and "pipeline/negtimeout deleted (generation 1)" in deleted.stdout, deleted.stderr
    assert "negtimeout" not in mnemos(tmp_path, "get", "pipeline").stderr


def test_what_get_prints_applies_again(tmp_path: Path) -> None:
    """``mnemos get KIND -o yaml`` (one YAML list) and ``-o json`` apply as they are, as the
    multi-document stream ``-o yaml`` printed before did: a top-level list holds documents."""
    policy = Path(__file__).resolve().parents[2] / "deployments" / "local" / "policy.yaml"
    assert mnemos(tmp_path, "apply", "-f", str(policy)).returncode == 0
    for fmt in ("yaml", "json"):
        printed = mnemos(tmp_path, "get", "policy", "-o", fmt)
        assert printed.returncode == 0, printed.stderr
        (tmp_path / f"got.{fmt}").write_text(printed.stdout)
        again = mnemos(tmp_path, "apply", "-f", f"got.{fmt}")
        assert again.returncode == 0 and "unchanged" in again.stdout, (again.stdout, again.stderr)
    (tmp_path / "numbers.yaml").write_text("- 5\n")
    refused(mnemos(tmp_path, "apply", "-f", "numbers.yaml"), "a resource must be a mapping, got int")


def test_the_python_api_applies_yaml_text_as_well_as_paths(tmp_path: Path) -> None:
    """``client.apply(text)`` once read YAML text as a file name ("<the whole YAML>: no such file")."""
    from mnemos.engram import Engram
    from mnemos.errors import NotFoundError
    from mnemos.genome import Registry
    from mnemos.genome.kinds import resources_of

    policy = Path(__file__).resolve().parents[2] / "deployments" / "local" / "policy.yaml"
    text = policy.read_text()
    from_text, from_path = resources_of(text), resources_of(str(policy))
    assert [r.dump() for r in from_text] == [r.dump() for r in from_path] and from_text
    registry = Registry(Engram(str(tmp_path / "engram")))
    assert [registry.apply(r).action for r in resources_of(text)] == ["created"] * len(from_text)
    with pytest.raises(NotFoundError, match="no such file"):  # one line, no newline: still a path
        resources_of("deployments/nowhere.yaml")


def test_the_shipped_folders_validate_as_a_whole(tmp_path: Path) -> None:
    """``mnemos validate -f pipelines/`` (and ``deployments/local/``) as a newcomer types it: the seed's
    verbatim copy, of the same name as the runnable pipeline, lives in ``docs/seed/``, not beside it."""
    repo = Path(__file__).resolve().parents[2]
    for folder in ("pipelines", "deployments/local"):
        done = mnemos(tmp_path, "validate", "-f", str(repo / folder))
        assert done.returncode == 0, done.stderr
    seed = mnemos(tmp_path, "validate", "-f", str(repo / "docs" / "seed"))
    assert seed.returncode != 0 and "Traceback" not in seed.stderr, seed.stderr


def test_an_apply_stopped_by_admission_names_what_it_applied_before(tmp_path: Path) -> None:
    """`apply -f DIR`: a Policy applied, then a Model it refuses. The Policy stays (each write is
    its own); the error used to say nothing of it, read as if nothing was applied."""
    folder = tmp_path / "env"
    folder.mkdir()
    (folder / "a.yaml").write_text("apiVersion: genome.mnemos.dev/v1\nkind: Policy\nmetadata: {name: licenses}\n"
                                   "spec: {selector: {kinds: [Model]}, rules: {allowedLicenses: [mit]}}\n")  # fmt: skip
    (folder / "b.yaml").write_text("apiVersion: genome.mnemos.dev/v1\nkind: Model\nmetadata: {name: gpl}\n"
                                   "spec: {family: llama, version: x, artifact: {uri: 'engram://models/x'},\n"
                                   "       runtime: {engine: transformers}, policy: {license: gpl-3.0}}\n")  # fmt: skip
    proc = mnemos(tmp_path, "apply", "-f", str(folder))
    refused(proc, "Policy 'licenses'")
    assert proc.returncode == 7 and proc.stderr.rstrip().endswith(
        "[applied before it: policy/licenses created (generation 1); nothing after it]"), proc.stderr
    listed = mnemos(tmp_path, "get", "policy", "licenses")
    assert listed.returncode == 0 and "licenses" in listed.stdout
