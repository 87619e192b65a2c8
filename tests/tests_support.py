"""Small builders shared by tests."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def model_doc(name: str, engine: str = "echo", **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "genome.mnemos.dev/v1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "family": "test",
            "version": "1",
            "artifact": {"uri": "file:///dev/null"},
            "runtime": {"engine": engine},
            "resources": {"cpus": 0.1},
        },
    }
    doc["spec"].update(spec)
    return doc
