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
