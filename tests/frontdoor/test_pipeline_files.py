"""A pipeline applied from a notebook far from the gateway keeps its input files: ``client.apply``
uploads the files beside the pipeline's file (``PUT /v1/files/{digest}``, verb ``apply``) and a
run by name, started by anyone who may run it, reads exactly those bytes — the gateway's working
directory has no such file."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import mnemos
from mnemos.errors import PermissionDeniedError

PIPELINE = """\
apiVersion: synkron.mnemos.dev/v1
kind: Pipeline
metadata: {name: notebook-prompts}
spec:
  params: {limit: 5}
  steps:
    - name: prepare
      call: mnemos.synkron.steps:prepare_prompts
      params: {source: data/prompts.jsonl, limit: "${limit}"}
      outputs: [{name: prompts}]
"""


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _write(folder: Path, prompts: list[str]) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    (folder / "pipeline.yaml").write_text(PIPELINE)
    return folder / "pipeline.yaml"


def _prompts(run: Any) -> list[str]:
    return [json.loads(line)["prompt"] for line in run.read("prompts").decode().splitlines()]


def test_a_pipeline_applied_remotely_runs_by_name_on_its_files(frontdoor: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, ["first of the notebook", "second"])
    assert not (Path.cwd() / "data" / "prompts.jsonl").exists()  # only the uploaded bytes can be read
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
        (applied,) = operator.apply(path)
        digest = "sha256:" + hashlib.sha256((tmp_path / "data" / "prompts.jsonl").read_bytes()).hexdigest()
        assert applied.resource.spec.files == {"data/prompts.jsonl": digest}
        assert operator.apply(path)[0].action == "unchanged"  # the same bytes: nothing new
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"]) as developer:
        run = developer.pipelines.run("notebook-prompts", timeout=240)
        assert run.status() == "succeeded", run.state()
        assert _prompts(run) == ["first of the notebook", "second"]

        _write(tmp_path, ["edited"])  # new bytes, applied again: a new generation the next run reads
        with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
            assert operator.apply(path)[0].action == "configured"
        assert _prompts(developer.pipelines.run("notebook-prompts", timeout=240)) == ["edited"]


def test_an_apply_sends_only_the_files_the_platform_lacks(frontdoor: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, ["sent once"])
    digest = "sha256:" + hashlib.sha256((tmp_path / "data" / "prompts.jsonl").read_bytes()).hexdigest()
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["operator"]) as operator:
        sent: list[str] = []
        operator._http.event_hooks["request"].append(lambda r: sent.append(f"{r.method} {r.url.path}"))
        operator.apply(path)
        operator.apply(path)
    # the first apply asks, then uploads; the second asks only (the bytes are stored)
    assert [s for s in sent if "/v1/files/" in s] == [f"GET /v1/files/{digest}", f"PUT /v1/files/{digest}",
                                                      f"GET /v1/files/{digest}"], sent  # fmt: skip


def test_whether_a_file_is_stored_is_asked_with_apply(frontdoor: Any) -> None:
    data = b"asked about"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url, operator = f"{frontdoor.url}/v1/files/{digest}", _headers(frontdoor.keys["operator"])
    missing = httpx.get(url, headers=operator, timeout=60)
    assert missing.status_code == 404, missing.text
    error = missing.json()["error"]  # names the digest and the fix; not where ENGRAM keeps its bytes
    assert error["param"] == "digest" and f"PUT /v1/files/{digest}" in error["message"], error
    assert frontdoor.client.engram.uri not in missing.text and "blob" not in missing.text
    assert httpx.head(url, headers=operator, timeout=60).status_code == 404
    assert httpx.put(url, content=data, headers=operator, timeout=60).status_code == 200
    stored = httpx.get(url, headers=operator, timeout=60)
    assert stored.status_code == 200 and stored.json() == {"digest": digest, "size": len(data)}, stored.text
    head = httpx.head(url, headers=operator, timeout=60)
    assert head.status_code == 200 and head.content == b"", head
    for role in ("developer", "viewer"):  # which bytes the platform holds is the appliers' business
        assert httpx.get(url, headers=_headers(frontdoor.keys[role]), timeout=60).status_code == 403, role
    assert httpx.get(url, timeout=60).status_code == 401
    bad = httpx.get(f"{frontdoor.url}/v1/files/sha256:XYZ", headers=operator, timeout=60)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "digest", bad.text


def test_uploads_need_apply_and_the_bytes_of_their_digest(frontdoor: Any) -> None:
    data = b"\x00\xff binary, not UTF-8, not JSON {{{{"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    url = f"{frontdoor.url}/v1/files/{digest}"
    stored = httpx.put(url, content=data, headers=_headers(frontdoor.keys["operator"]), timeout=60)
    assert stored.status_code == 200 and stored.json() == {"digest": digest, "size": len(data)}, stored.text
    assert frontdoor.client.engram.get(digest) == data

    for role in ("developer", "viewer"):  # no verb apply: refused before the body is read
        refused = httpx.put(url, content=data, headers=_headers(frontdoor.keys[role]), timeout=60)
        assert refused.status_code == 403, (role, refused.text)
    assert httpx.put(url, content=data, timeout=60).status_code == 401
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"]) as developer, \
            pytest.raises(PermissionDeniedError):  # fmt: skip
        developer.request("PUT", f"/v1/files/{digest}", content=data)

    other = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()  # bytes under another digest
    wrong = httpx.put(f"{frontdoor.url}/v1/files/{other}", content=data,
                      headers=_headers(frontdoor.keys["operator"]), timeout=60)  # fmt: skip
    assert wrong.status_code == 422 and wrong.json()["error"]["param"] == "digest", wrong.text
    assert not frontdoor.client.engram.has(other)
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "..%2F..%2Fetc"):
        answer = httpx.put(f"{frontdoor.url}/v1/files/{bad}", content=data,
                           headers=_headers(frontdoor.keys["operator"]), timeout=60)  # fmt: skip
        assert answer.status_code in (404, 422) and "error" in answer.json(), (bad, answer.text)


def test_uploads_take_files_past_the_json_body_limit_up_to_their_own(frontdoor: Any) -> None:
    limit = frontdoor.settings.relay.max_file_bytes
    data = bytes(range(256)) * (2 * frontdoor.settings.relay.max_body_bytes // 256)  # twice maxBodyBytes
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    stored = httpx.put(f"{frontdoor.url}/v1/files/{digest}", content=data,
                       headers=_headers(frontdoor.keys["operator"]), timeout=60)  # fmt: skip
    assert stored.status_code == 200 and stored.json()["size"] == len(data) < limit, stored.text
    digest = "sha256:" + "0" * 64
    head, error = _declare(frontdoor, "PUT", f"/v1/files/{digest}", limit + 1)
    assert head.startswith("HTTP/1.1 413"), head[:200]
    # the file, the setting with its value, and what to do instead
    assert error["param"] == "body" and error["code"] == "payload_too_large", error
    assert error["message"].startswith(f"file '{digest}': request body of {limit + 1} bytes exceeds the limit of "
                                       f"{limit} bytes (relay.maxFileBytes): raise relay.maxFileBytes, or store the "
                                       "file in ENGRAM/S3"), error  # fmt: skip
    json_limit = frontdoor.settings.relay.max_body_bytes  # a JSON body names its own setting
    head, error = _declare(frontdoor, "POST", "/v1/jobs", json_limit + 1)
    assert head.startswith("HTTP/1.1 413") and error["param"] == "body", head[:200]
    assert f"exceeds the limit of {json_limit} bytes (relay.maxBodyBytes)" in error["message"], error


def _declare(frontdoor: Any, method: str, path: str, size: int) -> tuple[str, dict[str, Any]]:
    """Declare a body of ``size`` bytes and send none; the answer's status line and error."""
    where = urlsplit(frontdoor.url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: {where.netloc}\r\nConnection: close\r\n"
                     f"Authorization: Bearer {frontdoor.keys['operator']}\r\n"
                     f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n".encode())  # fmt: skip
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
    return head, json.loads(body)["error"]


def test_a_document_naming_files_never_uploaded_is_refused(frontdoor: Any) -> None:
    missing = "sha256:" + hashlib.sha256(b"never uploaded").hexdigest()
    doc = {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "no-upload"},
           "spec": {"files": {"data/x.jsonl": missing},
                    "steps": [{"name": "s", "call": "mnemos.synkron.steps:prepare_prompts",
                               "params": {"source": "data/x.jsonl"}}]}}  # fmt: skip
    answer = httpx.post(f"{frontdoor.url}/apis/synkron.mnemos.dev/v1/pipelines", json=doc,
                        headers=_headers(frontdoor.keys["operator"]), timeout=60)  # fmt: skip
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["param"] == "spec.files.data/x.jsonl" and f"PUT /v1/files/{missing}" in error["message"]


def test_a_developer_running_a_file_is_told_to_run_the_registered_pipeline_by_name(frontdoor: Any) -> None:
    """`mnemos run pipeline.yaml` over a gateway applies the file first: a developer got "role
    'developer' may not 'apply'" for asking to run. The message now says why and what to run."""
    document = frontdoor.client.get("Pipeline", "greet").dump()  # the registered pipeline, as a file holds it
    with mnemos.connect(frontdoor.url, api_key=frontdoor.keys["developer"]) as developer:
        with pytest.raises(PermissionDeniedError) as refused:
            developer.pipelines.run(document, {"text": "x"}, timeout=60)
        assert "may not 'apply'" in refused.value.message
        assert "run the registered one by name (greet)" in refused.value.message, refused.value.message
        assert developer.pipelines.run("greet", {"text": "by name"}, timeout=240).status() == "succeeded"
