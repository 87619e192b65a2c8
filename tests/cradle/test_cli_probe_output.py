"""What the `mnemos` CLI prints into a pipe: the document asked for alone on stdout, text as it is
(never rich markup), no colour codes. Real processes, no platform up (Ray refused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests_support import NO_RAY


def mnemos(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mnemos ARGS`` in ``home`` (its MNEMOS_HOME, HOME and working folder), stdout a pipe, Ray refused."""
    unset = ("MNEMOS_URL", "MNEMOS_API_KEY", "MNEMOS_TOKEN", "MNEMOS_RAY_ADDRESS", "RAY_ADDRESS", "NO_COLOR",
             "RAY_COLOR_PREFIX")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(MNEMOS_HOME=str(home), HOME=str(home))
    return subprocess.run([sys.executable, "-c", NO_RAY, *args], cwd=home, env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_kuberay_render_prints_its_document_on_stdout(tmp_path: Path, output: str) -> None:
    """`mnemos kuberay render -o json > manifests.json` wrote an empty file: with -o json|yaml stdout is
    kept for the document, and render printed it to what was left, stderr."""
    proc = mnemos(tmp_path, "kuberay", "render", "-o", output, "-k", "RayJob")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    document = json.loads(proc.stdout) if output == "json" else yaml.safe_load(proc.stdout)
    assert document["kind"] == "RayJob", proc.stdout[:500]
    assert "apiVersion: ray.io/v1" not in proc.stderr and '"apiVersion"' not in proc.stderr


def test_brackets_in_a_listing_are_text_not_markup(tmp_path: Path) -> None:
    """A value with brackets in a table (a job's display name, a model's family) was read as rich
    markup: "[/x]" made every listing that showed it a traceback (MarkupError), "[red]" vanished."""
    model = tmp_path / "model.yaml"
    model.write_text(
        "apiVersion: genome.mnemos.dev/v1\nkind: Model\nmetadata: {name: brackets}\n"
        "spec: {family: '[/x]', version: '[red]v1', artifact: {uri: 'engram://models/brackets'}, "
        "runtime: {engine: echo}}\n"
    )
    applied = mnemos(tmp_path, "apply", "-f", str(model))
    assert applied.returncode == 0, applied.stderr
    listed = mnemos(tmp_path, "model", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr[-2000:]
    row = next(line for line in listed.stdout.splitlines() if line.startswith("brackets"))
    assert row.split()[3:5] == ["[/x]", "[red]v1"], listed.stdout


def test_lines_ray_relays_carry_no_colour_codes_into_a_pipe(tmp_path: Path) -> None:
    """Ray colours the ``(raylet)`` prefix of the lines it relays from the cluster (a warning during
    `mnemos apply`) whatever the output: escape codes in a pipe or a log file."""
    script = (
        "import sys\n"
        "from mnemos.cli import main\n"
        "try:\n"
        "    main(['schema', 'Policy'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "from ray._private.worker import print_worker_logs\n"
        "print_worker_logs({'pid': 'raylet', 'ip': '10.0.0.1', 'lines': ['WARNING: 8 workers'], 'localhost': 'x'},"
        " sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "RAY_COLOR_PREFIX")}
    env.update(MNEMOS_HOME=str(tmp_path), HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert "(raylet, ip=10.0.0.1) WARNING: 8 workers" in proc.stderr, proc.stderr[-2000:]
    assert "\x1b" not in proc.stderr, repr(proc.stderr[-500:])


def test_init_tiny_prints_no_progress_bar_into_a_log(tmp_path: Path) -> None:
    """`mnemos model init-tiny` wrote transformers' "Writing model shards: 0%|…\\r…100%|██████████|"
    progress bar to stderr, into a pipe or CI log as well, for one tiny file."""
    proc = mnemos(tmp_path, "model", "init-tiny", str(tmp_path / "tiny"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"tiny model written to {tmp_path / 'tiny'} (sha256:"), proc.stdout
    assert "Writing model shards" not in proc.stderr and "\r" not in proc.stderr, repr(proc.stderr[-500:])


def test_an_empty_secret_value_says_how_to_give_one(tmp_path: Path) -> None:
    proc = mnemos(tmp_path, "secret", "set", "llm-keys", "OPENAI_KEY")  # stdin: empty
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: the secret value is empty: pass --value VALUE, or the value on standard "
                                  "input"), proc.stderr  # fmt: skip
    assert len(proc.stderr.strip().splitlines()) == 1
