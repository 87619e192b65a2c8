"""Input files given as URLs: snapshotted without their credentials reaching lineage, errors or logs."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mnemos.errors import NotFoundError


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: ANN002 - no request lines in the test's output
        pass


@pytest.fixture()
def www(tmp_path: Path):
    """A static HTTP server on 127.0.0.1 serving ``tmp_path/www`` (``p.jsonl``: two prompts)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "p.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _pipeline() -> dict:
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "url-input"},
            "spec": {"params": {"src": "data/none.jsonl"},
                     "steps": [{"name": "gen", "runtime": "neuron-llm", "modelRef": "echo-syn", "input": "${src}",
                                "outputs": [{"name": "results"}]}]}}  # fmt: skip


def test_a_url_inputs_credentials_stay_out_of_lineage_and_errors(client, www) -> None:
    """An infer input ``http://user:password@host/p.jsonl?X-Amz-Signature=…`` (a presigned URL) was
    recorded in lineage as written (``file:http://user:hunter2@…``, read by every viewer), and one
    that could not be read was a 500 whose traceback, in the gateway's log, held the password."""
    from synkron_support import echo_model

    from mnemos.synkron._plan import prepare
    from mnemos.trace.lineage import events

    client.apply([echo_model()])
    url = f"http://user:hunter2@{www}/p.jsonl?X-Amz-Signature=SIGSECRET&X-Amz-Expires=60"
    state = prepare(client, _pipeline(), {"src": url})
    (snapshot,) = state["inputs"].values()
    recorded = json.dumps([e for e in events(client.engram) if www in json.dumps(e)])
    assert "hunter2" not in recorded and "SIGSECRET" not in recorded, recorded
    shown = f"http://***@{www}/p.jsonl?X-Amz-Signature=***&X-Amz-Expires=***"
    graph = client.lineage(f"artifact:{snapshot['digest']}")
    assert f"file:{shown}" in {n["id"] for n in graph["nodes"]}
    assert client.lineage(f"run:{state['id']}")["nodes"][0]["attrs"]["params"] == {"src": shown}
    assert client.engram.get(snapshot["digest"]) == b'{"prompt": "one"}\n{"prompt": "two"}\n'

    with pytest.raises(NotFoundError) as missing:
        prepare(client, _pipeline(), {"src": f"http://user:hunter2@{www}/nope.jsonl"})
    assert missing.value.param == "spec.steps[0]"
    assert missing.value.message == f"spec.steps[0] (gen): input 'http://***@{www}/nope.jsonl' does not exist"


def test_prepare_prompts_names_what_is_wrong_with_its_source(tmp_path: Path) -> None:
    """A binary file or a broken JSON line was a bare ``UnicodeDecodeError: 'utf-8' codec can't
    decode byte 0xd0 in position 6`` (or ``JSONDecodeError``) as the step's error: now a 422
    naming the source, the line and what it reads."""
    from mnemos.errors import ValidationError
    from mnemos.synkron.steps import prepare_prompts

    binary, broken, listed = tmp_path / "b.jsonl", tmp_path / "c.jsonl", tmp_path / "d.json"
    binary.write_bytes(b'{"pr\xd0\x00\xff')
    broken.write_text('{"prompt": "a"}\n{"prompt": b}\n')
    listed.write_text('[{"prompt": "a"},\n {"prompt": b}]\n')
    cases = [(binary, "source: not UTF-8 text (byte 4): prompts are read from JSONL, a JSON list or lines of text"),
             (broken, "source line 2: not JSON (Expecting value at column 12)"),
             (listed, "source: not JSON (Expecting value at line 2, column 13)")]  # fmt: skip
    for path, message in cases:
        with pytest.raises(ValidationError) as refused:
            prepare_prompts(str(path))
        assert (refused.value.message, refused.value.param) == (message, "source")
