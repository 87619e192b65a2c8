"""A key in the environment with no gateway URL (``export MNEMOS_API_KEY=…``, as `mnemos up` offers
beside `mnemos login URL`): commands and ``mnemos.connect()`` go to this machine's gateway with that
key, held to its role. They once acted on the local store as its admin, whatever the key, without a
word, and ``connect()`` started a Ray cluster of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tests_support import free_port

from tests.frontdoor.conftest import FrontDoor

KEY = "mk_0123456789abcdef_not-a-real-secret-at-all"
_UNSET = ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "RAY_ADDRESS", "MNEMOS_RELAY__PORT")
POLICY = """\
apiVersion: genome.mnemos.dev/v1
kind: Policy
metadata: {name: walk3-key-policy}
spec:
  selector: {kinds: [Model]}
  rules: {maxReplicas: 2}
"""


def _run(home: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in _UNSET} | {"MNEMOS_HOME": str(home)} | env
    return subprocess.run([sys.executable, *args], cwd=home, env=environ, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_key_without_url_goes_to_this_machines_gateway_not_the_local_store(tmp_path: Path) -> None:
    port = str(free_port())  # nothing listens there: the one line says why this URL and how to choose
    doc = tmp_path / "policy.yaml"
    doc.write_text(POLICY)
    for args in (["get", "model"], ["apply", "-f", str(doc)], ["token", "create", "--name", "x", "--role", "admin"]):
        proc = _run(tmp_path, ["-m", "mnemos", *args], MNEMOS_API_KEY=KEY, MNEMOS_RELAY__PORT=port)
        assert proc.returncode == 10, (args, proc)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"error: the MNEMOS gateway at http://127.0.0.1:{port} is not reachable"), lines
        assert "MNEMOS_API_KEY is set without a gateway URL" in lines[0] and "unset MNEMOS_API_KEY" in lines[0]
        assert "not-a-real-secret" not in proc.stdout + proc.stderr
    assert not (tmp_path / "engram").exists(), list(tmp_path.iterdir())  # nothing written locally
    # A command of the platform's own machine says how to run it here.
    proc = _run(tmp_path, ["-m", "mnemos", "wraith", "list"], MNEMOS_TOKEN="a.b.c", MNEMOS_RELAY__PORT=port)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc
    assert "run it with MNEMOS_TOKEN unset" in proc.stderr
    # `mnemos logout` says where commands go while the key is still set.
    proc = _run(tmp_path, ["-m", "mnemos", "logout"], MNEMOS_API_KEY=KEY, MNEMOS_RELAY__PORT=port)
    assert proc.returncode == 0 and "MNEMOS_API_KEY is still set" in proc.stdout, proc


def test_connect_with_a_key_in_the_environment_is_a_remote_client(tmp_path: Path) -> None:
    port = str(free_port())
    probe = ("import mnemos\nclient = mnemos.connect()\nprint(type(client).__name__, client.url)\n"
             "try:\n    client.get('Model')\nexcept mnemos.errors.UnavailableError as exc:\n    print(exc)\n"
             "try:\n    client.settings\nexcept AttributeError as exc:\n    print(exc)\n")  # fmt: skip
    proc = _run(tmp_path, ["-c", probe], MNEMOS_API_KEY=KEY, MNEMOS_RELAY__PORT=port)
    assert proc.returncode == 0, proc
    first, second, third = proc.stdout.strip().splitlines()
    assert first == f"RemoteClient http://127.0.0.1:{port}"
    assert "MNEMOS_API_KEY is set without a gateway URL" in second and "not-a-real-secret" not in proc.stdout
    assert third.startswith(f"a RemoteClient (http://127.0.0.1:{port}) has no settings"), third
    assert "unset MNEMOS_API_KEY" in third


def test_a_viewer_key_without_url_is_held_to_its_role(frontdoor: FrontDoor, tmp_path: Path) -> None:
    port = str(urlsplit(frontdoor.url).port)
    doc = tmp_path / "policy.yaml"
    doc.write_text(POLICY)
    env = {"MNEMOS_API_KEY": frontdoor.keys["viewer"], "MNEMOS_RELAY__PORT": port}
    listed = _run(tmp_path, ["-m", "mnemos", "get", "model"], **env)
    assert listed.returncode == 0, listed
    refused = _run(tmp_path, ["-m", "mnemos", "apply", "-f", str(doc)], **env)
    assert refused.returncode != 0 and "created" not in refused.stdout, refused
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "apply" in refused.stderr, refused.stderr  # the verb the viewer lacks
    probe = "import mnemos\nprint(mnemos.connect().whoami()['role'])\n"
    assert _run(tmp_path, ["-c", probe], **env).stdout.strip() == "viewer"


def test_watch_of_a_gateway_that_never_answers_is_unavailable_not_no_events() -> None:
    import mnemos
    from mnemos.errors import UnavailableError

    client = mnemos.connect(f"http://127.0.0.1:{free_port()}", api_key=KEY)
    # With a timeout it once ended as if no event had happened: `[]`, the same as a quiet platform.
    try:
        events = list(client.watch(["job"], timeout=1))
    except UnavailableError as exc:
        assert "is not reachable" in exc.message and "not-a-real-secret" not in exc.message
    else:
        raise AssertionError(f"no error: {events}")
