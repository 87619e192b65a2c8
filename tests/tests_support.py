"""Small builders shared by tests."""

from __future__ import annotations

from typing import Any


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
