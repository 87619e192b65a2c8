"""GitOps sync against a local Git repository: add, modify, delete, drift, and the guardrail."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests_support import model_doc

from mnemos.client import Client
from mnemos.config import load_settings
from mnemos.errors import (
    AdmissionError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    ValidationError,
)
from mnemos.genome import parse_resource
from mnemos.trace.lineage import events
from mnemos.wraith.gitops import ANNOTATION_MANAGED_BY, ANNOTATION_PATH, MAX_FILE_BYTES, diff, sync, sync_loop


@pytest.fixture()
def client(tmp_path: Path) -> Client:
    return Client(load_settings(engram={"uri": str(tmp_path / "engram")}))


def _names(client: Client, kind: str = "Model") -> list[str]:
    return [r.name for r in client.get(kind)]


def test_sync_reflects_added_modified_and_deleted_resources(client: Client, ops_repo) -> None:
    first = sync(client, str(ops_repo.root), "environments/dev")
    assert first.added == ["Policy/dev-rules", "Model/alpha", "Model/beta"]
    assert _names(client) == ["alpha", "beta"]
    alpha = client.get("Model", "alpha")
    assert alpha.metadata.annotations[ANNOTATION_MANAGED_BY] == "gitops"
    assert alpha.metadata.annotations[ANNOTATION_PATH] == "environments/dev/models/alpha.yaml"
    assert sync(client, str(ops_repo.root), "environments/dev").unchanged == [
        "Policy/dev-rules", "Model/alpha", "Model/beta",
    ]  # fmt: skip

    ops_repo.write("environments/dev/models/alpha.yaml", model_doc("alpha", replicas=3))
    ops_repo.remove("environments/dev/models/beta.yaml")
    ops_repo.write("environments/dev/models/gamma.yaml", model_doc("gamma"))
    sha = ops_repo.commit("modify alpha, delete beta, add gamma")

    report = sync(client, f"file://{ops_repo.root}", "environments/dev", prune=True)

    assert report.commit == sha
    assert (report.added, report.changed, report.pruned) == (["Model/gamma"], ["Model/alpha"], ["Model/beta"])
    assert _names(client) == ["alpha", "gamma"]
    assert client.get("Model", "alpha").spec.replicas == 3
    assert client.get("Model", "alpha").generation == 2
    assert "-  replicas: 1" in report.diff and "+  replicas: 3" in report.diff
    recorded = [e for e in events(client.engram) if e["id"] == f"sync:{report.sync_id}"]
    assert len(recorded) == 1 and recorded[0]["attrs"]["commit"] == sha
    assert "+  replicas: 3" in recorded[0]["attrs"]["diff"]


def test_without_prune_removed_resources_are_reported_not_deleted(client: Client, ops_repo) -> None:
    sync(client, str(ops_repo.root), "environments/dev")
    ops_repo.remove("environments/dev/models/beta.yaml")
    ops_repo.commit("drop beta")
    report = sync(client, str(ops_repo.root), "environments/dev")
    assert report.orphaned == ["Model/beta"] and report.pruned == []
    assert _names(client) == ["alpha", "beta"]


def test_a_manual_change_is_reverted_on_the_next_sync(client: Client, ops_repo) -> None:
    sync(client, str(ops_repo.root), "environments/dev")
    client.apply(model_doc("alpha", replicas=4))  # outside Git (no guardrail here)
    client.delete("Model", "beta")
    assert client.get("Model", "alpha").spec.replicas == 4

    report = sync(client, str(ops_repo.root), "environments/dev")

    assert report.reverted == ["Model/alpha", "Model/beta"] and report.changed == []
    alpha = client.get("Model", "alpha")
    assert alpha.spec.replicas == 1 and alpha.metadata.annotations[ANNOTATION_MANAGED_BY] == "gitops"
    assert [r.spec.replicas for r in client.history("Model", "alpha")] == [1, 4, 1]


def test_require_gitops_refuses_direct_apply_but_sync_applies(tmp_path: Path, ops_repo) -> None:
    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, cradle={"guardrails": {"requireGitops": True}})
    guarded = Client(settings)
    with pytest.raises(PermissionDeniedError, match="require_gitops"):
        guarded.apply(model_doc("direct"))
    report = sync(guarded, str(ops_repo.root), "environments/dev", prune=True)
    assert report.added == ["Policy/dev-rules", "Model/alpha", "Model/beta"]
    with pytest.raises(PermissionDeniedError):
        guarded.delete("Model", "alpha")
    assert _names(guarded) == ["alpha", "beta"]


def test_environments_are_separate_sources(client: Client, ops_repo) -> None:
    sync(client, str(ops_repo.root), "environments/dev")
    with pytest.raises(ConflictError, match="another GitOps source"):
        sync(client, str(ops_repo.root), "environments/stage")
    assert client.get("Model", "alpha").spec.replicas == 1


def test_nothing_is_applied_when_one_document_is_bad(client: Client, ops_repo) -> None:
    (ops_repo.root / "environments/dev/models/broken.yaml").write_text(
        "apiVersion: genome.mnemos.dev/v1\nkind: Model\nmetadata: {name: broken}\nspec: {family: f}\n"
    )
    ops_repo.commit("broken")
    with pytest.raises(ValidationError, match="broken"):
        sync(client, str(ops_repo.root), "environments/dev")
    assert _names(client) == []
    ops_repo.remove("environments/dev/models/broken.yaml")
    ops_repo.write("environments/dev/models/big.yaml", model_doc("big", replicas=9))  # over the Policy's maxReplicas
    ops_repo.commit("too big")
    with pytest.raises(AdmissionError, match="maxReplicas"):
        sync(client, str(ops_repo.root), "environments/dev")
    assert _names(client) == []


@pytest.mark.parametrize(
    ("repo", "path", "ref", "error", "message"),
    [
        (None, "environments/nope", "main", NotFoundError, "does not exist in the repository"),
        (None, "../outside", "main", ValidationError, "inside the repository"),
        (None, "environments/dev", "no-such-branch", NotFoundError, "ref not found"),
        ("/no/such/repo", "environments/dev", "main", NotFoundError, "does not exist"),
    ],
)
def test_sync_errors_are_clear(client: Client, ops_repo, repo, path, ref, error, message) -> None:
    with pytest.raises(error, match=message):
        sync(client, repo or str(ops_repo.root), path, ref=ref)


def test_diff_shows_what_apply_would_change(client: Client, ops_repo) -> None:
    client.apply(model_doc("alpha"))
    entries = diff(
        client,
        [
            parse_resource(model_doc("alpha", replicas=2)),
            parse_resource(model_doc("alpha")),
            parse_resource(model_doc("new")),
        ],
    )
    assert [(e.name, e.action) for e in entries] == [("alpha", "configure"), ("alpha", "unchanged"), ("new", "create")]
    assert "-  replicas: 1\n+  replicas: 2\n" in entries[0].diff and entries[1].diff == ""
    assert entries[2].diff.startswith("--- live/model/new\n+++ git/model/new\n")


def test_sync_loop_runs_count_times(client: Client, ops_repo) -> None:
    reports = []
    sleeps: list[float] = []
    done = sync_loop(
        client,
        str(ops_repo.root),
        "environments/dev",
        interval=300,
        count=3,
        on_report=reports.append,
        sleep=sleeps.append,
    )
    assert done == 3 and len(sleeps) == 2 and all(0 < s <= 300 for s in sleeps)
    assert [len(r.added) for r in reports] == [3, 0, 0]


def test_links_out_of_the_repository_are_refused_unread(client: Client, ops_repo, tmp_path: Path) -> None:
    secret = tmp_path / "platform-secret.txt"  # a file of the platform's machine, not of the repository
    secret.write_text("kind: s3cr3t-from-the-host\n")
    (ops_repo.root / "environments/dev/leak.yaml").symlink_to(secret)
    ops_repo.commit("a link to a file of the host")
    with pytest.raises(ValidationError, match="environments/dev/leak.yaml: a symbolic link to a file outside") as exc:
        sync(client, str(ops_repo.root), "environments/dev")
    assert "s3cr3t" not in exc.value.message and _names(client) == []

    outside = tmp_path / "elsewhere"  # a folder of valid resources outside the repository
    outside.mkdir()
    (outside / "m.yaml").write_text(yaml.safe_dump(model_doc("from-outside")))
    (ops_repo.root / "environments/linked").symlink_to(outside)
    ops_repo.commit("a link to a folder of the host")
    with pytest.raises(ValidationError, match="leads outside the repository") as exc:
        sync(client, str(ops_repo.root), "environments/linked")
    assert exc.value.param == "path" and _names(client) == []


def test_a_huge_file_is_refused_before_it_is_parsed(client: Client, ops_repo) -> None:
    big = ops_repo.root / "environments/dev/big.yaml"
    big.write_text(yaml.safe_dump(model_doc("big")) + "# " + "x" * MAX_FILE_BYTES + "\n")
    ops_repo.commit("a huge file")
    with pytest.raises(ValidationError, match=f"environments/dev/big.yaml: .* over the limit of {MAX_FILE_BYTES}"):
        sync(client, str(ops_repo.root), "environments/dev")
    assert _names(client) == []


def test_an_option_like_ref_is_refused_and_never_run(client: Client, ops_repo, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValidationError, match="start with '-'") as exc:
        sync(client, str(ops_repo.root), "environments/dev", ref=f"--upload-pack=touch {marker}")
    assert exc.value.param == "ref" and not marker.exists()
    with pytest.raises(ValidationError, match="starts with '-'"):
        sync(client, f"--upload-pack=touch {marker}", "environments/dev")
    assert not marker.exists()


def test_credentials_of_a_repository_url_stay_off_disk(client: Client, tmp_path: Path) -> None:
    repo = "https://ops:ghp_s3cr3tT0ken@127.0.0.1:1/org/ops.git"  # nothing listens on port 1
    with pytest.raises(UnavailableError) as exc:
        sync(client, repo, "environments/dev", home=tmp_path / "home")
    assert "s3cr3t" not in exc.value.message
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file() and b"s3cr3t" in p.read_bytes()]
    assert written == []  # not in the working copy's .git/config


def test_hidden_folders_and_files_hold_no_resources(client: Client, ops_repo) -> None:
    """A sync read `.github/workflows/ci.yml` under its path as a resource and refused the whole sync
    (`mnemos apply -f DIR` alike). What hidden files and folders hold is not the platform's."""
    dev = ops_repo.root / "environments/dev"
    (dev / ".github/workflows").mkdir(parents=True)
    (dev / ".github/workflows/ci.yml").write_text("on: push\njobs: {test: {runs-on: ubuntu-latest}}\n")
    (dev / ".hidden.yaml").write_text(yaml.safe_dump(model_doc("hidden")))
    ops_repo.commit("CI")
    sync(client, str(ops_repo.root), "environments/dev")
    assert sorted(_names(client)) == ["alpha", "beta"]
    from mnemos.genome import load_paths

    assert sorted(r.name for r in load_paths([dev]) if r.kind == "Model") == ["alpha", "beta"]
