"""``mnemos get model`` and ``describe model`` over ``--url`` show the gateway's observed status (a
remote CLI holds no ENGRAM: it once showed every served model as ``False 0/- Pending``)."""

from __future__ import annotations

from typing import Any

import httpx
from relay_support import Relay
from tests_support import run_cli


def test_model_status_is_read_over_http_by_the_cli(relay: Relay, capsys: Any) -> None:
    relay.sync()
    served = httpx.get(f"{relay.url}/v1/status", timeout=30).json()["model_status"]["echo"]
    assert served["phase"] == "Ready" and served["ready_replicas"] >= 1 and served["name"] == "echo"

    out, _ = run_cli(capsys, "--url", relay.url, "get", "model", "echo")
    row = next(line.split() for line in out.splitlines() if line.startswith("echo"))
    assert row[3:5] == ["True", f"{served['ready_replicas']}/{served['desired_replicas']}"], out

    out, _ = run_cli(capsys, "--url", relay.url, "describe", "model", "echo")
    assert "Phase:       Ready" in out and f"{served['ready_replicas']} ready" in out, out

    out, _ = run_cli(capsys, "--url", relay.url, "get", "model", "echo", "-o", "json")
    assert '"phase": "Ready"' in out and '"name": "echo"' in out
