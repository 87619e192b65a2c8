"""GitOps walked as the guide tells: a repository over HTTP whose URL carries a token, then the same
repository once the token has moved out of the URL (a credential helper, a public mirror)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnemos.client import Client
from mnemos.config import load_settings
from mnemos.trace.lineage import graph
from mnemos.wraith.gitops import ANNOTATION_REPO, sync


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def served(ops_repo) -> Iterator[str]:
    """``http://127.0.0.1:<port>/.git``: the ops repository over Git's dumb HTTP protocol."""
    ops_repo.git("update-server-info")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ops_repo.root)))  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}/.git"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def client(tmp_path: Path) -> Client:
    return Client(load_settings(engram={"uri": str(tmp_path / "engram")}))


def test_a_token_moved_out_of_the_url_leaves_the_same_source(client: Client, served: str, tmp_path: Path) -> None:
    with_token = sync(client, f"http://ops:ghp_s3cr3tT0ken@{served}", "environments/dev", home=tmp_path / "home")
    assert with_token.added == ["Policy/dev-rules", "Model/alpha", "Model/beta"]
    assert client.get("Model", "alpha").metadata.annotations[ANNOTATION_REPO] == f"http://***@{served}"

    rotated = sync(client, f"http://ops:ghp_n3wT0ken@{served}", "environments/dev", home=tmp_path / "home")
    assert rotated.unchanged == ["Policy/dev-rules", "Model/alpha", "Model/beta"]

    # the token now comes from a credential helper: the URL has none; before, this was "managed by
    # another GitOps source (http://***@…)", exit 4, and the repository could not be synced any more
    client.delete("Model", "beta")  # drift, to be put back
    plain = sync(client, f"http://{served}", "environments/dev", home=tmp_path / "home", prune=True)
    assert plain.added == plain.pruned == plain.orphaned == []
    assert sorted(plain.changed + plain.reverted) == ["Model/alpha", "Model/beta", "Policy/dev-rules"]
    assert sorted(r.name for r in client.get("Model")) == ["alpha", "beta"]  # beta put back
    assert client.get("Model", "alpha").metadata.annotations[ANNOTATION_REPO] == f"http://{served}"


def test_a_sync_is_found_in_lineage_from_its_commit(client: Client, ops_repo, tmp_path: Path) -> None:
    report = sync(client, str(ops_repo.root), "environments/dev", home=tmp_path / "home")
    commit = f"git:{report.repo}@{report.commit}"

    found = graph(client.engram, commit)  # before: "no lineage for 'git:…'", the id the sync printed

    assert found["root"] == commit
    ids = {node["id"]: node for node in found["nodes"]}
    assert ids[commit]["type"] == "git" and f"sync:{report.sync_id}" in ids
    assert {"resource:Model/alpha@1", "resource:Policy/dev-rules@1"} <= ids.keys()
