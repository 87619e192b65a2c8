"""``mnemos secret`` through a gateway URL, as an operator runs it (real processes, real gateway).

- A secret's name or key is a path segment of ``/v1/secrets/{name}/{key}``: one that is not a
  name (``../tokens/<id>``) is refused by the CLI before anything is sent. It used to be sent, and
  ``DELETE /v1/secrets/../tokens/<id>`` reached ``DELETE /v1/tokens/<id>``: ``mnemos secret
  delete`` revoked a credential (and ``mnemos secret list ../tokens`` ended in a traceback).
- ``mnemos secret get NAME KEY`` says whether the key is set, as it does without a gateway; only
  ``--reveal`` is refused (values are write-only through the gateway). It used to fail either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from security_support import Gateway
from tests_support import REPO


def _mnemos(gateway: Gateway, home: Path, *args: str, who: str = "operator") -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO),
           "MNEMOS_URL": gateway.url, "MNEMOS_API_KEY": gateway.keys[who]}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env=env, cwd=home, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_secret_names_never_reach_another_route(gateway: Gateway, tmp_path: Path) -> None:
    victim = gateway.store.create_api_key("secret-cli-victim", "viewer")
    for args in (("delete", f"../tokens/{victim.id}"), ("delete", "cli-keys", f"../../tokens/{victim.id}"),
                 ("list", "../tokens"), ("set", "../tokens", "K", "--value", "v"), ("get", "a/b", "K")):  # fmt: skip
        proc = _mnemos(gateway, tmp_path, "secret", *args, who="admin")  # who may revoke: nothing must
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "invalid secret" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    import mnemos
    from mnemos.errors import ValidationError

    with mnemos.connect(gateway.url, api_key=gateway.keys["admin"]) as client:  # the Python client alike
        for call in (lambda: client.secrets.delete(f"../tokens/{victim.id}"),
                     lambda: client.secrets.delete("keys", f"../../tokens/{victim.id}"),
                     lambda: client.secrets.set("../tokens", "K", "v"),
                     lambda: client.secrets.list("../tokens")):  # fmt: skip
            with pytest.raises(ValidationError, match="invalid secret"):
                call()
    assert gateway.call("GET", "/v1/whoami", victim.secret).status_code == 200  # not revoked
    assert gateway.store.get(victim.id)["revoked_at"] is None


def test_secret_get_says_whether_a_key_is_set(gateway: Gateway, tmp_path: Path) -> None:
    value = "cli-get-v4lue-never-shown"
    put = gateway.call("PUT", "/v1/secrets/cli-get/TOKEN", "operator", json={"value": value})
    assert put.status_code == 200, put.text
    got = _mnemos(gateway, tmp_path, "secret", "get", "cli-get", "TOKEN")
    assert got.returncode == 0, got.stderr
    assert "secret cli-get/TOKEN is set" in got.stdout and value not in got.stdout + got.stderr
    for args, code, message in ((("cli-get", "NOPE"), 3, "secret 'cli-get' has no key 'NOPE'"),
                                (("cli-get-none", "TOKEN"), 3, "secret 'cli-get-none' not found"),
                                (("cli-get", "TOKEN", "--reveal"), 7, "write-only through the gateway")):  # fmt: skip
        proc = _mnemos(gateway, tmp_path, "secret", "get", *args)
        assert proc.returncode == code and message in proc.stderr, (args, proc.stdout, proc.stderr)
        assert value not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
