"""Registering a model folder through the front door: ``RemoteClient.register_model`` and
``mnemos --url … model register`` upload the files the platform lacks (``PUT /v1/files/{digest}``,
verb ``apply``, streamed to disk by the gateway) and apply a Model pinned to the folder's digest,
which the platform then serves."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from tests_support import REPO, model_doc, until

import mnemos
from mnemos.errors import NotFoundError, PermissionDeniedError
from mnemos.neuron.models import tree_digest, tree_manifest


def _folder(root: Path) -> Path:
    """A small model-shaped folder whose bytes no other test has."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "nonce": uuid.uuid4().hex}))
    (root / "weights").mkdir()
    (root / "weights" / "part-0.bin").write_bytes(os.urandom(2048))
    return root


def test_an_operator_registers_a_model_folder_that_the_gateway_then_serves(frontdoor: Any,
                                                                           tiny_model_dir: Path) -> None:  # fmt: skip
    files, digest = tree_manifest(tiny_model_dir), tree_digest(tiny_model_dir)
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
        sent: list[str] = []
        operator._http.event_hooks["request"].append(lambda r: sent.append(f"{r.method} {r.url.path}"))
        result = operator.register_model(tiny_model_dir, "remote-tiny", params={"maxTokens": 8})
        assert result.action == "created"
        artifact = result.resource.spec.artifact
        assert (artifact.uri, artifact.sha256) == (f"engram://{digest}", digest)
        assert result.resource.spec.family == "llama"  # from the folder's config.json, as locally
        puts = sorted(s for s in sent if s.startswith("PUT "))
        assert puts == sorted(f"PUT /v1/files/{d}" for d in {*files.values(), digest}), sent
        assert sent.index(f"PUT /v1/files/{digest}") > max(sent.index(p) for p in puts if digest not in p)
        assert json.loads(frontdoor.client.engram.get(digest)) == {"files": files}  # the tree, on the platform

        sent.clear()  # the same folder again: asked, never sent; the Model unchanged
        assert operator.register_model(tiny_model_dir, "remote-tiny", params={"maxTokens": 8}).action == "unchanged"
        assert sent and not [s for s in sent if s.startswith("PUT ")], sent

        status = until(lambda: operator.model_status("remote-tiny"), "remote-tiny to be Ready",
                       ready=lambda s: s["phase"] == "Ready", timeout=240, interval=1.0)  # fmt: skip
        assert status["phase"] == "Ready" and status["digest"] == digest, status
    chat = OpenAI(base_url=f"{frontdoor.url}/v1", api_key=frontdoor.keys["developer"], max_retries=0)
    answer = chat.chat.completions.create(model="remote-tiny", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=4)  # fmt: skip
    assert answer.model == "remote-tiny" and answer.usage is not None and answer.usage.completion_tokens >= 1


def test_a_developer_cannot_register_and_nothing_is_stored(frontdoor: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "model")
    for role in ("developer", "viewer"):
        with mnemos.connect(frontdoor.url, api_key=frontdoor.keys[role]) as client:
            sent: list[str] = []
            client._http.event_hooks["request"].append(lambda r, sent=sent: sent.append(f"{r.method} {r.url.path}"))
            with pytest.raises(PermissionDeniedError, match="may not 'apply'"):
                client.register_model(folder, "not-yours")
        # refused on the first call that needs apply, before admission (whose Policy errors would
        # tell a caller that may not apply anyway why the Model would be refused)
        assert sent[-1].startswith("GET /v1/files/sha256:") and not [s for s in sent if ":validate" in s], sent
    engram = frontdoor.client.engram
    assert not [d for d in tree_manifest(folder).values() if engram.has(d)]
    assert not engram.has(tree_digest(folder))
    with pytest.raises(NotFoundError):
        frontdoor.client.get("Model", "not-yours")


def test_the_cli_registers_over_url(frontdoor: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "model")
    home = tmp_path / "home"
    home.mkdir()

    def mnemos_cli(key: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO),
               "MNEMOS_API_KEY": key}  # fmt: skip
        return subprocess.run([sys.executable, "-m", "mnemos", "--url", frontdoor.url, "model", "register", *args],
                              env=env, cwd=home, capture_output=True, text=True, timeout=300)  # fmt: skip

    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:  # a Model that exists
        operator.apply(model_doc("cli-model", "echo", resources={"cpus": 0.1}, replicas=2))
    refused = mnemos_cli(frontdoor.keys["developer"], str(folder), "--name", "cli-model")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: "), refused.stderr
    done = mnemos_cli(frontdoor.keys["operator"], str(folder), "--name", "cli-model", "--version", "v2")
    assert done.returncode == 0, done.stderr
    digest = tree_digest(folder)
    assert f"model/cli-model configured (generation 2) digest {digest}" in done.stdout, done.stdout
    model = frontdoor.client.get("Model", "cli-model")
    assert (model.spec.artifact.sha256, model.spec.version) == (digest, "v2")
    # the rest of its spec stays: the engine, the resources, the replicas
    assert (model.spec.runtime.engine, model.spec.resources.cpus, model.spec.replicas) == ("echo", 0.1, 2)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_an_upload_streams_to_disk_past_the_spool_size(frontdoor: Any) -> None:
    """A chunked upload of several spool pieces (``relay.control._SPOOL_BYTES``) is stored whole."""
    from mnemos.relay.control import _SPOOL_BYTES

    data = os.urandom(2 * _SPOOL_BYTES + 12345)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    stored = httpx.put(f"{frontdoor.url}/v1/files/{digest}", content=_chunks(data, 256 * 1024), timeout=120,
                       headers={"Authorization": f"Bearer {frontdoor.keys['operator']}"})  # fmt: skip
    assert stored.status_code == 200 and stored.json() == {"digest": digest, "size": len(data)}, stored.text
    assert frontdoor.client.engram.get(digest) == data


@pytest.fixture()
def small_limit_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Path]]:
    """The real gateway app in-process (auth off) with ``relay.maxFileBytes`` 1 MiB and a private
    temporary folder: (test client, its ENGRAM, that folder)."""
    from starlette.testclient import TestClient

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import create_app

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, relay={"auth": False, "maxFileBytes": 2**20})
    engram = Engram(str(tmp_path / "engram"))
    with TestClient(create_app(Gateway(settings, engram, None), EdgeSeam(settings, engram))) as client:
        yield client, engram, spool


def test_a_chunked_upload_past_the_file_limit_is_413_and_leaves_nothing(small_limit_app: Any) -> None:
    client, engram, spool = small_limit_app
    data = os.urandom(2**20 + 1)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    answer = client.put(f"/v1/files/{digest}", content=_chunks(data, 64 * 1024))  # no Content-Length: chunked
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error["param"] == "body" and "exceeds the limit of 1048576 bytes (relay.maxFileBytes)" in error["message"]
    assert not engram.has(digest) and not list(spool.iterdir())  # the spooled part is gone

    fits = data[: 2**20]
    digest = "sha256:" + hashlib.sha256(fits).hexdigest()
    wrong = client.put("/v1/files/sha256:" + "0" * 64, content=_chunks(fits, 64 * 1024))
    assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "digest", wrong.text
    assert not engram.has(digest) and not list(spool.iterdir())  # bytes under another digest: stored nowhere
    assert client.put(f"/v1/files/{digest}", content=_chunks(fits, 64 * 1024)).json() == {"digest": digest,
                                                                                         "size": 2**20}  # fmt: skip
    assert engram.get(digest) == fits and not list(spool.iterdir())
