"""Two notebooks on one MNEMOS_HOME with no platform up: the first hosts the embedded platform (a
local Ray cluster and its CORTEX); the second is refused in one line naming the first's pid, where it
started a second CORTEX on the same journal that ran the first's running jobs again. A process that
joined one Ray cluster is refused another, where ``connect("ray://prod…")`` went on with the first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests_support import REPO, free_port

FIRST = textwrap.dedent(
    """
    import os, sys
    import mnemos
    from mnemos.errors import ConflictError

    client = mnemos.connect()  # no platform up: a new local Ray cluster, this process's own
    try:
        mnemos.connect("127.0.0.1:1")
        print("JOINED another cluster", flush=True)
    except ConflictError as exc:
        print(f"REFUSED {exc}", flush=True)
    print(f"READY {os.getpid()}", flush=True)
    sys.stdin.read()  # hold the platform until the test closes stdin
    """
)
SECOND = textwrap.dedent(
    """
    import mnemos
    from mnemos.errors import MnemosError

    try:
        client = mnemos.connect()
        print("CONNECTED", client, flush=True)
    except MnemosError as exc:
        print(f"{type(exc).__name__} {exc}", flush=True)
    """
)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MNEMOS_RAY_ADDRESS", "MNEMOS_URL")}
    env.update(MNEMOS_HOME=str(home), MNEMOS_RELAY__PORT=str(free_port()), MNEMOS_RAY__NUM_CPUS="2",
               PYTHONPATH=str(REPO))  # fmt: skip
    return env


def test_a_second_embedded_platform_on_one_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = subprocess.Popen([sys.executable, "-c", FIRST], env=_env(home), cwd=tmp_path, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert first.stdout is not None
        lines = [first.stdout.readline() for _ in range(2)]
        assert lines[1].startswith("READY "), lines
        pid = lines[1].split()[1]
        second = subprocess.run([sys.executable, "-c", SECOND], env=_env(home), cwd=tmp_path, text=True,
                                capture_output=True, timeout=600)  # fmt: skip
        out = second.stdout.strip()
        assert out.startswith("ConflictError engram: another process (pid "), (out, second.stderr[-2000:])
        assert f"(pid {pid})" in out and "mnemos up" in out and "\n" not in out
        assert "Traceback" not in second.stderr
        assert lines[0].startswith("REFUSED address: this process is connected to a local Ray cluster"), lines
        up = subprocess.run([sys.executable, "-m", "mnemos", "up"], env=_env(home), cwd=tmp_path, text=True,
                            capture_output=True, timeout=300)  # fmt: skip
        assert up.returncode != 0 and f"process {pid} hosts an embedded MNEMOS platform" in up.stderr + up.stdout, up
        assert "Traceback" not in up.stderr
    finally:
        first.communicate(input="", timeout=300)  # stdin closed: the first notebook ends, its cluster with it
    assert first.returncode == 0
    again = subprocess.run([sys.executable, "-c", "import mnemos.client as c, mnemos; "
                            "print(c._hold_embedded(mnemos.load_settings()))"], env=_env(home), cwd=tmp_path,
                           text=True, capture_output=True, timeout=300)  # fmt: skip
    assert again.stdout.strip() == "True", again.stderr  # the first one's lock went with it
