"""The attack suite's gateway: RELAY with authentication on, on the session's Ray cluster.

One gateway for the package (Serve on a free port, a private ENGRAM root), API keys for each role
(two developers), a registered Function and a registered script Pipeline. Attacks are made over
real HTTP; a refused attack must leave no trace (``marker`` files that the attack would create).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # security_support, under any --import-mode

from security_support import SCRIPT_PIPELINE, Gateway, T, function_doc  # noqa: E402
from tests_support import start_auth_gateway, stop_gateway  # noqa: E402


@pytest.fixture(scope="package")
def gateway(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("security")
    users = {name: name.split("-")[0] for name in ("admin", "operator", "developer", "developer-b", "viewer")}
    documents = [
        function_doc("adder", f"{T}:add", {"type": "object", "properties": {"a": {"type": "number"},
                     "b": {"type": "number"}}, "required": ["a", "b"], "additionalProperties": False}),
        function_doc("ops-only", f"{T}:noop", {"type": "object"}, allowedRoles=["operator", "admin"]),
        function_doc("waiter", f"{T}:wait_for_file", {"type": "object", "properties": {"path": {"type": "string"}},
                     "required": ["path"], "additionalProperties": False}),
        SCRIPT_PIPELINE,
    ]  # fmt: skip
    url, client, settings, store, keys = start_auth_gateway(root, users, documents, rate=500)
    markers = root / "markers"
    markers.mkdir()
    yield Gateway(url, client, settings, store, keys, markers)
    stop_gateway()
