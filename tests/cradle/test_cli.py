"""The `mnemos` CLI as a user runs it: a real process, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests_support import REPO


def mnemos(home: Path, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNEMOS_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "mnemos", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mnemos {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_apply_twice_reports_unchanged(tmp_path: Path) -> None:
    first = mnemos(tmp_path, "apply", "-f", "deployments/local/policy.yaml")
    assert "policy/local-defaults created (generation 1)" in first.stdout
    second = mnemos(tmp_path, "apply", "-f", "deployments/local/policy.yaml")
    assert "policy/local-defaults unchanged (generation 1)" in second.stdout
    listed = json.loads(mnemos(tmp_path, "get", "policy", "-o", "json").stdout)
    assert [d["metadata"]["name"] for d in listed] == ["local-defaults"]
    one = yaml.safe_load(mnemos(tmp_path, "get", "Policy", "local-defaults", "-o", "yaml").stdout)
    assert one["kind"] == "Policy" and one["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("get", "modle"), 3, "unknown kind 'modle'"),
        (("get", "runs"), 3, "a pipeline's runs are no resource: `mnemos runs list`, `mnemos runs get ID`"),
        (("describe", "job", "j-1"), 3, "jobs are no resource: `mnemos jobs list`, `mnemos jobs get ID`"),
        (("get", "model", "absent"), 3, "model/absent not found"),
        (("apply", "-f", "no/such/file.yaml"), 3, "no such file or directory"),
        (("schema", "Nope"), 3, "valid kinds are Model, Policy, Adapter, Function, Pipeline"),
    ],
)
def test_errors_are_messages_not_tracebacks(tmp_path: Path, args: tuple[str, ...], code: int, message: str) -> None:
    proc = mnemos(tmp_path, *args, check=False)
    assert proc.returncode == code
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_ray_address_where_nothing_listens_is_an_error_at_once(tmp_path: Path) -> None:
    """Ray retries a dead address for minutes (printing only its own warnings); the CLI says which
    address and what to do. Port 9 (discard) has no listener here; the timeout is far below Ray's."""
    for address in ("127.0.0.1:9", "ray://127.0.0.1:9"):
        env = {**os.environ, "MNEMOS_HOME": str(tmp_path), "MNEMOS_RAY_ADDRESS": address}
        proc = subprocess.run([sys.executable, "-m", "mnemos", "jobs", "list"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 10, proc.stdout + proc.stderr
        assert f"error: no Ray cluster answers at {address} (connection refused)" in proc.stderr
        assert "with none set (--address, ray.address, MNEMOS_RAY_ADDRESS, RAY_ADDRESS)" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_up_on_a_relay_port_in_use_says_who_holds_it_before_starting_ray(tmp_path: Path) -> None:
    """A Serve proxy (haproxy) left by `ray stop --force` keeps the relay port: the next `mnemos up`
    used to start a Ray head, then fail in Serve with a traceback. It now names the port and its
    holder (here: this test's process) and starts nothing."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "MNEMOS_HOME": str(tmp_path / "home"), "MNEMOS_RELAY__PORT": str(port)}
        env.pop("MNEMOS_RAY_ADDRESS", None)
        proc = subprocess.run([sys.executable, "-m", "mnemos", "up"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 10, proc.stdout + proc.stderr
    assert f"error: relay.port {port} on 127.0.0.1 is in use by python" in proc.stderr, proc.stderr
    assert f"(pid {os.getpid()})" in proc.stderr and f"kill {os.getpid()}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "home" / "cluster.json").exists()


def test_up_refuses_a_dashboard_port_ray_cannot_bind_before_starting_ray(tmp_path: Path) -> None:
    """A dashboard port in Ray's worker range (10002-19999) made `ray start` exit 1 and `mnemos up`
    say only "see ray-head.log"; one in use did the same."""
    import socket

    env = {**os.environ, "MNEMOS_HOME": str(tmp_path / "home"), "MNEMOS_RAY__DASHBOARD_PORT": "18265"}
    env.pop("MNEMOS_RAY_ADDRESS", None)
    up = [sys.executable, "-m", "mnemos", "up"]
    proc = subprocess.run(up, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ray.dashboardPort 18265 is inside the range Ray keeps for its workers (10002-19999)" in proc.stderr
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        env["MNEMOS_RAY__DASHBOARD_PORT"] = str(port := holder.getsockname()[1])
        proc = subprocess.run(up, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10 and f"ray.dashboardPort {port} is in use by python" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "home" / "cluster.json").exists()



    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: genome.mnemos.dev/v1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {family: f, version: v, artifact: {uri: file:///x}, runtime: {engin: vllm}}\n"
    )
    proc = mnemos(tmp_path, "validate", "-f", str(bad), check=False)
    assert proc.returncode == 2
    assert "spec.runtime.engin: extra field not permitted" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = mnemos(tmp_path, "validate", "-f", str(REPO / "deployments/local/policy.yaml"))
    assert "policy/local-defaults valid" in ok.stdout


def test_schema_prints_json_schema(tmp_path: Path) -> None:
    schema = json.loads(mnemos(tmp_path, "schema", "Model").stdout)
    assert "spec" in schema["properties"]


# `mnemos up` → `down` → `up` keeping resources and generations: tests/cradle/test_ray_habits.py, in the
# same cycle as Ray's own tools (one Ray head start fewer).
