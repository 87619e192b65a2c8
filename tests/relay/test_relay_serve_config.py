"""``deployments/serve/mnemos.yaml`` builds the gateway; with ``relay.auth`` on, SOUL's guard admits requests."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from relay_support import Relay, assert_openai_error

CONFIG = Path(__file__).resolve().parents[2] / "deployments" / "serve" / "mnemos.yaml"
PREFIX = "/config-check"


def _builder(import_path: str) -> Any:
    module, _, attr = import_path.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_build_app_rejects_unknown_arguments() -> None:
    from mnemos.errors import ValidationError
    from mnemos.relay import build_app

    with pytest.raises(ValidationError) as err:
        build_app({"engram_url": "/tmp/x"})
    assert err.value.param == "args.engram_url"


def test_serves_access_log_line_per_request_is_off_unless_asked(tmp_path: Path) -> None:
    """Serve writes an access log line for each request (about 25 µs of the replica's CPU); the
    gateway records every request in lineage and /metrics, so its deployment turns the line off
    unless ``relay.accessLog`` asks for it. The deployment's own ``logging_config`` in a Serve
    config still wins (Serve's rule)."""
    from mnemos.relay import build_app

    for settings, enabled in (({}, False), ({"relay": {"accessLog": True}}, True)):
        app = build_app({"engram_uri": str(tmp_path / "engram"), "settings": settings})
        logging_config = app._bound_deployment._deployment_config.logging_config
        assert logging_config["enable_access_log"] is enabled, (settings, logging_config)


def test_serve_config_application_serves_with_auth_on(relay: Relay) -> None:
    """The YAML's application, built by its import_path with its args (engram pointed at ours)."""
    from ray import serve

    from mnemos.soul import IdentityStore

    config = yaml.safe_load(CONFIG.read_text())
    app_config = config["applications"][0]
    assert app_config["import_path"] == "mnemos.relay:build_app"
    args = dict(app_config.get("args") or {})
    args["engram_uri"] = relay.client.engram.uri
    args["settings"] = {"relay": {"auth": True, "port": relay.port}}
    serve.run(_builder(app_config["import_path"])(args), name="mnemos-config", route_prefix=PREFIX)
    try:
        base = f"{relay.url}{PREFIX}"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").json()["modelStates"]["ready"] >= 1  # counts: names need a key
        assert_openai_error(httpx.get(f"{base}/v1/models"), 401, type_="authentication_error")
        key = IdentityStore.from_settings(relay.settings, relay.client.engram).create_api_key("relay-test", "developer")
        headers = {"Authorization": f"Bearer {key.secret}"}
        listed = httpx.get(f"{base}/v1/models", headers=headers).json()
        assert "echo" in [m["id"] for m in listed["data"]]
        body = {"model": "echo", "messages": [{"role": "user", "content": "with a key"}]}
        reply = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers)
        assert reply.json()["choices"][0]["message"]["content"] == "with a key"
        assert "keys" in httpx.get(f"{base}/.well-known/jwks.json").json()
        # The routers of other components are behind the same guard.
        for path in ("/v1/jobs", "/v1/traces/" + "0" * 32):
            assert_openai_error(httpx.get(f"{base}{path}"), 401, type_="authentication_error")
    finally:
        serve.delete("mnemos-config")
