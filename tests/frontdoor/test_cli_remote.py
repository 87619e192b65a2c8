"""The CLI through the front door: ``mnemos login URL`` stores a credential that later commands send."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests_support import REPO, model_doc


def _mnemos(home: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "MNEMOS_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env={**base, **env}, cwd=home, input=stdin,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_login_url_then_commands_use_the_gateway(frontdoor: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    bad = _mnemos(home, "login", frontdoor.url, "--api-key", "-", stdin="mk_not_a_real_key_0000\n")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert not (home / "credentials").exists()
    logged = _mnemos(home, "login", frontdoor.url, "--api-key", "-", stdin=frontdoor.keys["viewer"] + "\n")
    assert logged.returncode == 0, logged.stderr
    assert "viewer-user (viewer)" in logged.stdout and frontdoor.keys["viewer"] not in logged.stdout
    for name in ("credentials", "endpoint.json"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    status = _mnemos(home, "status")  # the gateway withholds node addresses from a viewer
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert "node " in status.stdout and " alive" in status.stdout, status.stdout
    got = _mnemos(home, "get", "Pipeline", "greet", "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["metadata"]["name"] == "greet"
    doc = tmp_path / "m.json"
    doc.write_text(json.dumps(model_doc("from-cli")))
    refused = _mnemos(home, "apply", "-f", str(doc))
    assert refused.returncode == 7 and "may not 'apply'" in refused.stderr and "Traceback" not in refused.stderr
    # --url and MNEMOS_API_KEY for one command, over the stored ones
    applied = _mnemos(home, "--url", frontdoor.url, "apply", "-f", str(doc), MNEMOS_API_KEY=frontdoor.keys["operator"])
    assert applied.returncode == 0 and "model/from-cli created" in applied.stdout, applied.stderr
    op = {"MNEMOS_API_KEY": frontdoor.keys["operator"]}
    put = _mnemos(home, "secret", "set", "cli-keys", "TOKEN", stdin="v4lue-never-shown\n", **op)
    assert put.returncode == 0 and "gateway" in put.stdout and "v4lue" not in put.stdout, put.stderr
    keys = _mnemos(home, "secret", "list", "cli-keys", "-o", "json", **op)
    assert json.loads(keys.stdout) == ["TOKEN"], keys.stderr
    assert _mnemos(home, "secret", "list").returncode == 7  # the viewer's stored key may not
    assert _mnemos(home, "logout").returncode == 0
    assert not (home / "endpoint.json").exists() and not (home / "credentials").exists()


def test_token_commands_go_through_the_gateway_as_the_logged_in_caller(frontdoor: Any, tmp_path: Path) -> None:
    """`mnemos token` over a URL is /v1/tokens with the caller's credential: an admin mints a team admin, who
    mints and lists its team's keys only; a developer may not; a revoked key is refused at once. (It used to
    refuse any URL: a remote admin had to write the HTTP calls by hand.)"""
    home = tmp_path / "home"
    home.mkdir()
    admin = {"MNEMOS_URL": frontdoor.url, "MNEMOS_API_KEY": frontdoor.keys["admin"]}
    made = _mnemos(home, "token", "create", "--name", "red-admin", "--role", "admin", "--api-key", "--team", "red",
                   "-o", "json", **admin)  # fmt: skip
    assert made.returncode == 0, made.stderr
    red_admin = json.loads(made.stdout)
    assert (red_admin["team"], red_admin["role"], red_admin["kind"]) == ("red", "admin", "apikey")
    red = {**admin, "MNEMOS_API_KEY": red_admin["apiKey"]}
    dev = _mnemos(home, "token", "create", "--name", "red-dev", "--role", "developer", "--api-key", **red)
    assert dev.returncode == 0 and dev.stdout.startswith("mk_"), dev.stderr
    assert "for red-dev (developer), expires never; shown once" in dev.stderr
    other = _mnemos(home, "token", "create", "--name", "blue-dev", "--role", "developer", "--team", "blue", **red)
    assert other.returncode == 7 and "may mint credentials of that team only" in other.stderr, other.stderr
    listed = json.loads(_mnemos(home, "token", "list", "-o", "json", **red).stdout)
    assert sorted(d["name"] for d in listed) == ["red-admin", "red-dev"]  # not the admin's, not other teams'
    everyone = _mnemos(home, "token", "list", **admin).stdout
    assert "red-dev" in everyone and "viewer-user" in everyone and red_admin["apiKey"] not in everyone
    as_dev = _mnemos(home, "token", "list", **{**admin, "MNEMOS_API_KEY": dev.stdout.strip()})
    assert as_dev.returncode == 7 and "may not 'manage-identities'" in as_dev.stderr, as_dev.stderr
    pasted = _mnemos(home, "token", "revoke", red_admin["apiKey"], **admin)  # the key where its id belongs
    assert pasted.returncode == 2 and red_admin["apiKey"] not in pasted.stderr, pasted.stderr
    revoked = _mnemos(home, "token", "revoke", red_admin["id"], **red)  # a team admin revokes itself
    assert revoked.returncode == 0 and f"apikey {red_admin['id']} (red-admin) revoked" in revoked.stdout
    after = _mnemos(home, "token", "list", **red)
    assert after.returncode == 6 and "Traceback" not in after.stderr, after.stderr  # 401: the key is revoked
