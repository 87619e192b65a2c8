"""Remote clients: ``mnemos.connect(url, api_key=…)`` from a fresh process with no ENGRAM access and
no master key, and concurrent remote writers through the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from tests_support import REPO, model_doc

import mnemos
from mnemos.errors import ConflictError, PermissionDeniedError
from mnemos.genome import Registry

NOTEBOOK = textwrap.dedent(
    """
    import json, os, sys
    import mnemos
    from mnemos.errors import PermissionDeniedError

    out = {"has_ray": "ray" in sys.modules}
    client = mnemos.connect()  # MNEMOS_URL and MNEMOS_API_KEY from the environment
    out["client"] = type(client).__name__
    out["whoami"] = client.whoami()["role"]
    out["pipelines"] = [p.name for p in client.get("Pipeline")]
    out["pipeline_gen"] = client.get("Pipeline", "greet").generation
    doc = {"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": "nb-policy"},
           "spec": {"rateLimit": {"principals": ["nobody"], "requestsPerSecond": 7, "burst": 7}}}
    try:
        out["applied"] = [str(r) for r in client.apply(doc)]
    except PermissionDeniedError as exc:
        out["apply_refused"] = exc.status
    if sys.argv[1] == "operator":
        state = client.pipelines.run("greet", {"text": "remote"}, timeout=240)
        out["run"] = {"status": state["status"], "id": state["id"]}
    run_id = sys.argv[2] if len(sys.argv) > 2 else out.get("run", {}).get("id")
    graph = client.lineage(f"run:{run_id}")
    out["lineage_nodes"] = len(graph.get("nodes", []))
    out["ray_after"] = "ray" in sys.modules
    print("RESULT " + json.dumps(out))
    """
)


def _notebook(fd: Any, role: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run the notebook script in a fresh process: its own empty MNEMOS_HOME, no ENGRAM settings,
    no master key, no cloud credentials; only the gateway's URL and a key."""
    home = tmp_path / f"home-{role}"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO),
           "MNEMOS_URL": fd.url, "MNEMOS_API_KEY": fd.keys[role]}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", NOTEBOOK, role, *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=400)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    assert not list(home.glob("engram*")), "the remote client wrote a local ENGRAM"
    return json.loads(line[7:])  # type: ignore[no-any-return]


def test_remote_notebook_viewer_then_operator(frontdoor: Any, tmp_path: Path) -> None:
    operator = _notebook(frontdoor, "operator", tmp_path)
    assert operator["client"] == "RemoteClient" and operator["whoami"] == "operator"
    assert operator["applied"] == ["policy/nb-policy created (generation 1)"]
    assert operator["run"]["status"] == "succeeded", operator
    assert operator["lineage_nodes"] >= 2
    assert not operator["has_ray"]
    viewer = _notebook(frontdoor, "viewer", tmp_path, operator["run"]["id"])
    assert viewer["whoami"] == "viewer" and "greet" in viewer["pipelines"]
    assert viewer["apply_refused"] == 403 and "applied" not in viewer
    assert viewer["lineage_nodes"] >= 2
    assert not viewer["ray_after"], "a remote read imported Ray"
    assert Registry(frontdoor.client.engram).get("Policy", "nb-policy").generation == 1


def _version(name: str, writer: int, seq: int) -> dict[str, Any]:
    doc = model_doc(name)
    doc["metadata"]["annotations"] = {"writer": str(writer), "seq": str(seq)}
    return doc


@pytest.mark.parametrize("writers", [2, 8])
def test_concurrent_remote_writers_lose_no_change(frontdoor: Any, writers: int) -> None:
    """Remote clients (and, with 8, one embedded writer on the same ENGRAM) apply changed versions of
    one resource at once: every acknowledged change is a generation."""
    name = f"raced-{writers}"
    per_writer = 6 if writers == 2 else 3
    start = threading.Barrier(writers)
    acked: list[tuple[str, str, int]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        embedded = writers == 8 and i == 0
        client: Any = (
            Registry(frontdoor.client.engram)
            if embedded
            else mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"])
        )
        start.wait(timeout=60)
        try:
            for seq in range(per_writer):
                if embedded:
                    from mnemos.genome import parse_resource

                    result = client.apply(parse_resource(_version(name, i, seq)))
                else:
                    result = client.apply(_version(name, i, seq))[0]
                with lock:
                    acked.append((str(i), str(seq), int(result.resource.generation)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            if not embedded:
                client.close()  # its pooled connections

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not failures, failures
    assert len(acked) == writers * per_writer
    assert len({g for *_, g in acked}) == len(acked)
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["viewer"]) as remote:
        history = remote.history("Model", name)
    assert [r.generation for r in history] == list(range(1, len(acked) + 1))
    assert sorted((r.metadata.annotations["writer"], r.metadata.annotations["seq"]) for r in history) == sorted(
        (w, s) for w, s, _ in acked
    )
    # a stale precondition is a 409 over HTTP too
    operator = mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"])
    with pytest.raises(ConflictError) as err:
        operator.apply(_version(name, 99, 0), expected_generation=1)
    assert err.value.status == 409 and f"generation {len(acked)}" in err.value.message
    [result] = operator.apply(_version(name, 99, 0), expected_generation=len(acked))
    assert result.resource.generation == len(acked) + 1
    operator.close()


def test_remote_client_errors_and_jobs(frontdoor: Any) -> None:
    viewer = mnemos.connect(frontdoor.url, api_key=frontdoor.keys["viewer"])
    bogus = mnemos.connect(frontdoor.url, api_key="mk_bogus_key")
    with viewer, bogus:
        with pytest.raises(PermissionDeniedError):
            viewer.delete("Pipeline", "greet")
        with pytest.raises(mnemos.errors.AuthenticationError):
            bogus.get("Pipeline")
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
        job = operator.jobs.submit("mnemos.cortex.testing:add", 2, 3)
        assert job.result(timeout=120) == 5
        assert any(j["id"] == job.id for j in operator.jobs.list())


def test_a_client_with_no_credential_is_told_how_to_send_one(frontdoor: Any) -> None:
    """``mnemos.connect(url)`` with no key: the 401 says where a key goes, not only the HTTP header."""
    from mnemos.errors import AuthenticationError
    from mnemos.remote import RemoteClient

    with pytest.raises(AuthenticationError) as anonymous:
        RemoteClient(frontdoor.url, api_key="").whoami()
    assert "pass api_key='mk_…' to mnemos.connect, set MNEMOS_API_KEY, or run `mnemos login URL`" in (
        anonymous.value.message)  # fmt: skip
    with pytest.raises(AuthenticationError) as wrong:  # a credential was sent: the gateway's words only
        RemoteClient(frontdoor.url, api_key="mk_not-a-key").whoami()
    assert "mnemos.connect" not in wrong.value.message


def test_a_dropped_client_closes_its_connections(frontdoor: Any) -> None:
    """A notebook drops clients without closing them: their pooled sockets were left to the garbage
    collector, one ``ResourceWarning: unclosed <socket…>`` each."""
    import gc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = mnemos.connect(frontdoor.url, api_key=frontdoor.keys["viewer"])
        client.request("GET", "/v1/whoami")  # a pooled keep-alive connection now
        del client
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]

