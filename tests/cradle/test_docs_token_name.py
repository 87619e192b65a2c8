"""security.md: "a name is one principal" — ``mnemos token create`` on the local platform (no gateway URL)
minted a credential named like another team's (``alice`` of team ``vision``, then ``alice`` of team ``zzz``),
which ``POST /v1/tokens`` refuses with 409 naming ``name``. The local command now refuses it the same way:
one line, no traceback, a non-zero exit (no cluster: the CLI in a subprocess on a private ENGRAM)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _mnemos(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMOS_")}
    env.update(MNEMOS_HOME=str(tmp_path / "home"), MNEMOS_CONFIG=str(tmp_path / "absent.yaml"),
               MNEMOS_ENGRAM__URI=str(tmp_path / "engram"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "mnemos", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_local_token_create_refuses_another_teams_name(tmp_path: Path) -> None:
    first = _mnemos(tmp_path, "token", "create", "--name", "alice", "--role", "developer", "--api-key",
                    "--team", "vision")  # fmt: skip
    assert first.returncode == 0, first.stderr
    same_team = _mnemos(tmp_path, "token", "create", "--name", "alice", "--role", "viewer", "--team", "vision")
    assert same_team.returncode == 0, same_team.stderr  # one principal, another credential: fine

    for team in ("zzz", ""):  # another team, or none
        other = _mnemos(tmp_path, "token", "create", "--name", "alice", "--role", "developer", "--api-key",
                        *(["--team", team] if team else []))  # fmt: skip
        assert other.returncode != 0, other.stdout
        assert "Traceback" not in other.stderr and other.stdout == ""
        lines = other.stderr.strip().splitlines()
        assert len(lines) == 1 and "a name is one principal" in lines[0] and "team 'vision'" in lines[0], lines

    listed = _mnemos(tmp_path, "token", "list", "-o", "json")
    assert listed.returncode == 0 and listed.stdout.count('"alice"') == 2, listed.stdout

    anonymous = _mnemos(tmp_path, "token", "create", "--name", "anonymous", "--role", "viewer")
    assert anonymous.returncode == 2 and "stands for callers without a credential" in anonymous.stderr
