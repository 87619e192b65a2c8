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
    # Conditions and events too (a remote CLI once printed both empty: they were read from its own ENGRAM)
    conditions = out.split("Conditions:\n")[1].split("Events:\n")
    assert any(line.split()[:2] == ["Ready", "True"] for line in conditions[0].splitlines()), out
    assert "Ready" in conditions[1] and "(none)" not in conditions[1], out

    out, _ = run_cli(capsys, "--url", relay.url, "get", "model", "echo", "-o", "json")
    assert '"phase": "Ready"' in out and '"name": "echo"' in out


def test_a_models_status_with_conditions_and_events_is_a_resource_path(relay: Relay) -> None:
    relay.sync()
    base = f"{relay.url}/apis/genome.mnemos.dev/v1"
    status = httpx.get(f"{base}/models/echo/status", timeout=30).json()
    assert (status["object"], status["name"], status["phase"]) == ("status", "echo", "Ready")
    assert {c["type"] for c in status["conditions"]} >= {"Ready"} and status["events"][-1]["name"] == "echo"
    missing = httpx.get(f"{base}/models/no-such-model/status", timeout=30)
    assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]["message"]
    policy = httpx.get(f"{base}/policies/any/status", timeout=30)
    assert policy.status_code == 404 and "only models have a status" in policy.json()["error"]["message"]
