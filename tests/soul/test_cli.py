"""``mnemos secret|token|login`` as a user runs them (real processes), and the bootstrap credential.

A secret set with ``mnemos secret set`` must never appear in captured output (except ``get
--reveal``), lineage, files at rest or error bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests_support import REPO

SECRET = "sk-proj-7Hq2vX9mZ4/do+not+leak=3141"

# Registers the SOUL command groups when the CLI does not list them yet, then runs `mnemos`.
_ENTRY = """
import sys
from mnemos.cli import app, main
from mnemos.cli import login, secret, token
groups = {g.name for g in app.registered_groups}
for name, module in (("secret", secret), ("token", token)):
    if name not in groups:
        app.add_typer(module.app, name=name)
if "login" not in {c.name or c.callback.__name__ for c in app.registered_commands}:
    login.register(app)
main(sys.argv[1:])
"""


def mnemos(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    full_env = {**os.environ, "MNEMOS_HOME": str(home), **(env or {})}
    full_env.pop("MNEMOS_API_KEY", None)
    full_env.pop("MNEMOS_MASTER_KEY", None)
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        cwd=REPO,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(proc: Any) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_secret_never_leaks_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs = [
        ok(mnemos(home, "secret", "set", "llm-keys", "OPENAI_KEY", stdin=SECRET + "\n")),
        ok(mnemos(home, "secret", "set", "db", "PASSWORD", "--value", SECRET + "-db")),
        ok(mnemos(home, "secret", "get", "llm-keys", "OPENAI_KEY")),
        ok(mnemos(home, "secret", "list")),
        ok(mnemos(home, "secret", "list", "llm-keys", "-o", "json")),
        mnemos(home, "secret", "get", "llm-keys", "MISSING"),
        mnemos(home, "secret", "get", "llm-keys", "OPENAI_KEY", "--store", "nope"),
        mnemos(home, "secret", "set", SECRET, "K", "--value", "v"),  # a value typed where the name goes
        mnemos(home, "token", "revoke", SECRET),
        mnemos(home, "login", "--api-key", SECRET),
    ]
    assert "secret llm-keys/OPENAI_KEY set (file store)" in runs[0].stdout
    assert f"is set ({len(SECRET)} characters); --reveal prints it" in runs[2].stdout
    assert runs[3].stdout.split()[1:] == ["db", "llm-keys"]
    assert json.loads(runs[4].stdout) == ["OPENAI_KEY"]
    assert [r.returncode for r in runs[5:]] == [3, 2, 2, 2, 2]
    assert "error: secret 'llm-keys' has no key 'MISSING'" in runs[5].stderr
    assert "valid stores: file, engram, env, vault" in runs[6].stderr
    for run in runs:
        assert SECRET not in run.stdout + run.stderr
        assert "Traceback" not in run.stderr

    revealed = ok(mnemos(home, "secret", "get", "llm-keys", "OPENAI_KEY", "--reveal"))
    assert revealed.stdout == SECRET + "\n"

    assert files_containing(home, SECRET) == []  # encrypted at rest; lineage holds names only
    from mnemos.engram import Engram
    from mnemos.trace.lineage import events

    audit = [e["attrs"] for e in events(Engram(str(home / "engram"))) if e["type"] == "audit"]
    expected = {"action": "secret.set", "name": "llm-keys", "key": "OPENAI_KEY", "store": "file"}
    assert expected.items() <= audit[0].items()
    assert SECRET not in json.dumps(audit)

    ok(mnemos(home, "secret", "delete", "llm-keys", "OPENAI_KEY"))
    assert mnemos(home, "secret", "get", "llm-keys", "OPENAI_KEY").returncode == 3


def test_secret_never_reaches_http_error_bodies(soul_env: dict[str, Any]) -> None:
    url = soul_env["url"]
    admin = soul_env["store"].create_api_key("root", "admin").secret
    attempts = [
        httpx.get(url + "/v1/lineage", headers={"Authorization": f"Bearer {SECRET}"}),
        httpx.get(url + "/v1/lineage", headers={"Authorization": f"Bearer mk_{SECRET}"}),
        httpx.get(url + "/v1/lineage", headers={"Authorization": f"Bearer a.{SECRET}.b"}),
        httpx.post(url + "/v1/tokens", json={"name": SECRET + "!", "role": "viewer"},
                   headers={"Authorization": f"Bearer {admin}"}),
        httpx.post(url + "/v1/tokens", json={"name": "x", "role": SECRET[:10]},
                   headers={"Authorization": f"Bearer {admin}"}),
        # an API key pasted where its id goes
        httpx.delete(url + f"/v1/tokens/{admin}", headers={"Authorization": f"Bearer {admin}"}),
    ]
    assert [r.status_code for r in attempts] == [401, 401, 401, 422, 422, 422]
    for resp in attempts:
        assert SECRET not in resp.text and SECRET[:10] not in resp.text and admin not in resp.text
    asyncio.run(soul_env["guard"].flush_audit())
    from mnemos.trace.lineage import events

    assert SECRET not in json.dumps(events(soul_env["engram"]))


def test_token_commands_and_login(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = ok(mnemos(home, "token", "create", "--name", "alice", "--role", "developer", "--ttl", "2h"))
    token = created.stdout.strip()
    assert token.count(".") == 2 and "shown once" in created.stderr
    api = json.loads(ok(mnemos(home, "token", "create", "--name", "bot", "--role", "viewer", "--api-key",
                               "--scope", "read-lineage", "-o", "json")).stdout)
    assert api["apiKey"].startswith(f"mk_{api['id']}_") and api["scopes"] == ["read-lineage"]

    listed = json.loads(ok(mnemos(home, "token", "list", "-o", "json")).stdout)
    assert {(d["name"], d["kind"], d["role"]) for d in listed} == {("alice", "token", "developer"),
                                                                   ("bot", "apikey", "viewer")}
    assert token not in json.dumps(listed) and api["apiKey"] not in json.dumps(listed)
    assert {"expiresAt", "createdAt"} <= set(listed[0]) and "expires_at" not in listed[0]  # as GET /v1/tokens
    table = ok(mnemos(home, "token", "list")).stdout
    assert "alice" in table and "bot" in table

    bad = mnemos(home, "token", "create", "--name", "x", "--role", "boss")
    assert bad.returncode == 2 and "unknown role 'boss'; valid roles: admin" in bad.stderr
    bad = mnemos(home, "token", "create", "--name", "x", "--role", "viewer", "--ttl", "soon")
    assert bad.returncode == 2 and "--ttl 'soon' is not a duration" in bad.stderr

    logged = ok(mnemos(home, "login", "--token", token))
    assert "logged in as alice (developer)" in logged.stdout
    cred_file = home / "credentials"
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    probe = "from mnemos.soul import credentials; print(credentials.current())"
    base_env = {**os.environ, "MNEMOS_HOME": str(home)}
    base_env.pop("MNEMOS_API_KEY", None)
    run = subprocess.run([sys.executable, "-c", probe], env=base_env, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == token
    run = subprocess.run([sys.executable, "-c", probe], env={**base_env, "MNEMOS_API_KEY": api["apiKey"]},
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == api["apiKey"]  # the environment overrides the stored credential

    ok(mnemos(home, "token", "revoke", listed[-1]["id"] if listed[-1]["name"] == "alice" else listed[0]["id"]))
    refused = mnemos(home, "login", "--token", token)
    assert refused.returncode == 6 and "revoked" in refused.stderr and token not in refused.stderr
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused = mnemos(home, "login", "--token", forged)
    assert refused.returncode == 6 and "signature is invalid" in refused.stderr
    assert ok(mnemos(home, "logout")).stdout.strip().startswith("logged out: commands now act on this machine's")
    assert not cred_file.exists()


def test_bootstrap_prints_once_and_stores_only_a_hash(
    tmp_path: Path, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from mnemos.client import Client
    from mnemos.soul import EdgeGuard, LocalRateLimiter, bootstrap_hook

    client = Client(settings)
    bootstrap_hook(client)
    first = capsys.readouterr().out
    key = next(word for word in first.split() if word.startswith("mk_"))
    bootstrap_hook(client)
    second = capsys.readouterr().out
    assert "mk_" not in second and "already issued" in second
    assert "`mnemos token create --name NAME --role ROLE --api-key`" in second  # a command that runs as shown

    engram_root = Path(client.engram.uri)
    assert files_containing(engram_root, key.split("_", 2)[-1]) == []
    records = [json.loads(p.read_text()) for p in (engram_root / "soul" / "apikeys").iterdir()]
    assert [(r["name"], r["role"], r["hash"].startswith("sha256:")) for r in records] == [
        ("bootstrap-admin", "admin", True)
    ]
    guard = EdgeGuard(settings, client.engram, limiter=LocalRateLimiter())
    principal = asyncio.run(guard.verify_credential(key))
    assert (principal.subject, principal.role) == ("bootstrap-admin", "admin")


def test_token_list_renders_any_stored_expiry_and_create_refuses_what_minting_refuses(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from mnemos.cli import token as token_cli
    from mnemos.engram import Engram
    from mnemos.errors import ValidationError
    from mnemos.soul import IdentityStore
    from mnemos.soul.apikeys import APIKEYS_PREFIX

    store = IdentityStore.from_settings(settings, Engram.from_settings(settings))
    monkeypatch.setattr(token_cli, "_store", lambda: store)
    forever = store.create_api_key("forever", "viewer", ttl=3600)
    doc = store.engram.read_json(f"{APIKEYS_PREFIX}/{forever.id}.json")
    # What a ttl of 10^12 days stored before it was refused: a date no calendar shows (OSError before).
    store.engram.write_json(f"{APIKEYS_PREFIX}/{forever.id}.json", {**doc, "expires_at": 8.64e16})
    listed = CliRunner().invoke(token_cli.app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert "forever" in listed.output and "8.64e+16" in listed.output

    refusals = ((["--ttl", "1000000000000d", "--api-key"], "ttl", "longest lifetime"),
                (["--ttl", "500ms"], "ttl", "shortest lifetime"),
                (["--scope", "submit"], "scope", "role 'viewer' does not hold 'submit'"),
                (["--model", "tiny chat"], "model", "without spaces"))  # fmt: skip
    for args, param, message in refusals:
        made = CliRunner().invoke(token_cli.app, ["create", "--name", "x", "--role", "viewer", *args])
        assert isinstance(made.exception, ValidationError), made.output
        assert made.exception.param == param and message in made.exception.message
    assert [d["name"] for d in store.list()] == ["forever"]  # nothing was made

    made = CliRunner().invoke(token_cli.app, ["create", "--name", "listed", "--role", "developer", "--api-key",
                                              "--model", "tiny-chat", "--model", "minilm", "-o", "json"])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["models"] == ["tiny-chat", "minilm"]
    assert store.api_key(json.loads(made.stdout)["id"]).models == ("tiny-chat", "minilm")
    table = CliRunner().invoke(token_cli.app, ["list"]).output
    assert "MODELS" in table and "tiny-chat,minilm" in table and "any" in table  # "forever" has no list
