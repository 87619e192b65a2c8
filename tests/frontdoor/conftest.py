"""The front door's gateway: RELAY with authentication on, on the session's Ray cluster.

One gateway for the package (Serve on a free port, a private local ENGRAM root), an API key per
role, and a registered script Pipeline. Remote clients reach it over real HTTP only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests_support import start_auth_gateway, stop_gateway

PIPELINE = {
    "apiVersion": "synkron.mnemos.dev/v1",
    "kind": "Pipeline",
    "metadata": {"name": "greet"},
    "spec": {
        "params": {"text": "hello"},
        "steps": [
            {"name": "say", "script": 'printf "%s" ${text} > "$MNEMOS_OUTPUT_OUT"', "outputs": [{"name": "out"}]}
        ],
    },
}


@dataclass
class FrontDoor:
    """The running gateway: ``url``, ``keys[role]``, the embedded admin ``client``, ``settings``."""

    url: str
    client: Any
    settings: Any
    keys: dict[str, str]


@pytest.fixture(scope="package")
def frontdoor(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    roles = {role: role for role in ("admin", "operator", "developer", "viewer")}
    url, client, settings, _store, keys = start_auth_gateway(tmp_path_factory.mktemp("frontdoor"), roles, [PIPELINE])
    yield FrontDoor(url, client, settings, keys)
    stop_gateway()
