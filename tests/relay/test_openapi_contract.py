"""The gateway's OpenAPI documents what the edge answers, and undeclared methods get 405 + ``Allow``.

Built offline (the app over a ``Gateway`` that is not started: no Ray, no model); the live check of
every operation is ``test_relay_fuzz.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient


def _app(tmp_path: Path, auth: bool) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import create_app

    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, relay={"auth": auth})
    engram = Engram(str(tmp_path / "engram"))
    return create_app(Gateway(settings, engram, None), EdgeSeam(settings, engram))


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("OPTIONS", "/apis/genome.mnemos.dev/v1/models", "GET, HEAD, POST"),  # HEAD is served as GET
    ("GET", "/apis/genome.mnemos.dev/v1/models:diff", "POST"),  # not the list route with plural "models:diff"
    ("PUT", "/apis/genome.mnemos.dev/v1/schemas/Model", "GET, HEAD"),  # "Model" is no resource name: only the schema
    ("PATCH", "/v1/chat/completions", "POST"),
    ("DELETE", "/v1/secrets", "GET, HEAD"),
])  # fmt: skip
def test_an_undeclared_method_is_405_with_allow(tmp_path: Path, method: str, path: str, allow: str) -> None:
    response = TestClient(_app(tmp_path, auth=False)).request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_path_no_operation_declares_is_left_to_the_routes(tmp_path: Path) -> None:
    client = TestClient(_app(tmp_path, auth=False))
    assert client.delete("/nowhere").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}


def test_every_error_status_is_documented_in_the_openai_shape(tmp_path: Path) -> None:
    spec = _app(tmp_path, auth=True).openapi()
    public = {"/healthz", "/readyz", "/.well-known/jwks.json", "/metrics"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            if path not in public:
                assert {"401", "403", "429"} <= codes, (method, path, codes)
                assert op["security"] == [{"bearer": []}], (method, path)
            for code, response in op["responses"].items():
                if code[0] in "45":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, code)
    assert "$defs" not in str(spec["paths"])
    assert spec["paths"]["/v1/jobs/{job_id}"]["get"]["responses"].keys() >= {"404", "422"}
    status = next(p for p in spec["paths"]["/v1/jobs"]["get"]["parameters"] if p["name"] == "status")
    assert "dead" in str(status["schema"])


def test_a_replica_builds_its_schema_before_its_first_request(tmp_path: Path) -> None:
    """The 405 check of every request reads the schema: a replica builds it as it starts, not on
    its first request (which waited for it), and before Serve freezes its objects out of the GC."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import RelayIngress

    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, relay={"auth": True})
    engram = Engram(str(tmp_path / "engram"))
    class Replica(RelayIngress.func_or_class):  # the class Serve runs, without Ray
        def __del__(self) -> None:  # Serve awaits the class's async __del__; garbage collection would not
            pass

    replica = object.__new__(Replica)
    replica.gateway, replica.edge = Gateway(settings, engram, None), EdgeSeam(settings, engram)
    app = replica.__serve_build_asgi_app__()
    assert app.openapi_schema is not None
    assert "/v1/chat/completions" in app.openapi_schema["paths"]


def test_a_token_ttl_is_published_with_the_bounds_every_credential_has(tmp_path: Path) -> None:
    """From 1 s to 100 years, as seconds or a duration string: a client (or Schemathesis) reading the
    schema no longer sends 1e308 s as valid. A JWT's own cap is a setting, so it is not published."""
    from mnemos.soul.store import MAX_TTL_S, MIN_TTL_S

    spec = _app(tmp_path, auth=True).openapi()
    body = spec["paths"]["/v1/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    number, text, _ = body["properties"]["ttl"]["anyOf"]
    assert number == {"type": "number", "minimum": MIN_TTL_S, "maximum": MAX_TTL_S}
    assert text["type"] == "string" and text["pattern"]
