"""``mnemos token create -o json`` prints what ``POST /v1/tokens`` answers: the probe found the CLI's
JSON without ``team`` and ``limits``, with ``expires_at`` where HTTP says ``expiresAt`` and the
secret as ``secret`` where HTTP says ``apiKey`` / ``token``. Both now print one document: the
credential's public fields, its team and limits as stored, and the secret once (no cluster: SOUL's
router in a TestClient and the CLI in-process, on one ENGRAM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

LIMITS = {"rpm": 60, "tpm": 1000, "budget": {"amount": 5.0, "window": "1d"}}


@pytest.fixture()
def gateway(tmp_path: Path, make_settings: Any, make_app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An admin key and SOUL's routes over a private ENGRAM, which the CLI uses too."""
    from mnemos.engram import Engram
    from mnemos.soul import EdgeGuard, IdentityStore

    settings = make_settings(tmp_path)
    engram = Engram.from_settings(settings)
    admin = IdentityStore.from_settings(settings, engram).create_api_key("root", "admin").secret
    for name in ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MNEMOS_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("MNEMOS_ENGRAM__URI", settings.engram.uri)
    with TestClient(make_app(EdgeGuard(settings, engram))) as client:
        yield client, {"Authorization": f"Bearer {admin}"}


def _cli(*args: str) -> tuple[dict[str, Any], str]:
    from mnemos.cli.token import app

    result = CliRunner().invoke(app, ["create", *args, "-o", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stdout


@pytest.mark.parametrize("api_key", [True, False], ids=["apikey", "token"])
def test_the_clis_json_is_the_http_answer(gateway: Any, api_key: bool) -> None:
    client, headers = gateway
    body = {"name": "bob", "role": "developer", "apiKey": api_key, "team": "red", "limits": LIMITS}
    resp = client.post("/v1/tokens", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    http = resp.json()
    flags = ["--team", "red", "--rpm", "60", "--tpm", "1000", "--budget", "5", "--budget-window", "1d"]
    cli, text = _cli("--name", "carol", "--role", "developer", *(["--api-key"] if api_key else []), *flags)

    secret = "apiKey" if api_key else "token"
    assert set(cli) == set(http), (sorted(cli), sorted(http))
    assert {"team", "limits", "expiresAt", secret} <= set(cli) and "expires_at" not in cli and "secret" not in cli
    for doc in (cli, http):
        assert doc["team"] == "red" and doc["limits"] == LIMITS and doc["role"] == "developer"
    assert text.count(cli[secret]) == 1  # the secret once
    if api_key:
        assert cli["apiKey"].startswith(f"mk_{cli['id']}_") and cli["expiresAt"] is None
    else:
        assert cli["token"].count(".") == 2 and cli["expiresAt"] > 0


def test_without_team_or_limits_both_say_so(gateway: Any) -> None:
    client, headers = gateway
    http = client.post("/v1/tokens", json={"name": "dan", "role": "viewer", "apiKey": True}, headers=headers).json()
    cli, _ = _cli("--name", "erin", "--role", "viewer", "--api-key")
    assert set(cli) == set(http)
    assert (cli["team"], cli["limits"]) == (http["team"], http["limits"]) == ("", None)
