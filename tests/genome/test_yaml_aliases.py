"""Resource YAML refuses aliases: a few lines of anchors and aliases (``&a [x, x]``, ``&b [*a, *a]``, …)
stand for millions of nodes once a schema check walks them, which hung ``mnemos validate``/``apply``
and GitOps sync. Refused at once, naming the file and the alias's line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import load_paths, parse_documents

HEAD = "apiVersion: genome.mnemos.dev/v1\nkind: Function\nmetadata: {name: NAME}\nspec:\n  entrypoint: pkg.mod:fn\n"


def bomb(levels: int = 10, width: int = 4) -> str:
    """A Function whose ``spec.parameters.$defs`` nest ``allOf`` lists of aliases, ``width``**``levels`` nodes."""
    lines = [HEAD.replace("NAME", "bomb") + "  parameters:\n    type: object\n    $defs:",
             "      d0: {allOf: &a0 [{type: string}, {type: string}]}"]  # fmt: skip
    for i in range(1, levels + 1):
        items = ", ".join([f"{{allOf: *a{i - 1}}}"] * width)
        lines.append(f"      d{i}: {{allOf: &a{i} [{items}]}}")
    return "\n".join(lines) + "\n"


PLAIN = HEAD.replace("NAME", "plain") + (
    "  parameters:\n    type: object\n    properties:\n      text: {type: string, description: 'a & b *c'}\n"
)


def test_an_alias_bomb_is_refused_at_once_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    for load in (lambda: parse_documents(path.read_text(), str(path)), lambda: load_paths([path])):
        started = time.perf_counter()
        with pytest.raises(ValidationError) as refusal:
            load()
        assert time.perf_counter() - started < 1.0
        message = refusal.value.message
        assert message.startswith(f"{path}: line 10: YAML alias *a0 refused") and "\n" not in message, message


def test_one_alias_is_refused_too_and_an_anchor_alone_is_not() -> None:
    merged = "x: &defaults {type: string}\n" + HEAD.replace("NAME", "merged") + "  parameters: *defaults\n"
    with pytest.raises(ValidationError, match=r"^f.yaml: line 7: YAML alias \*defaults refused"):
        parse_documents(merged, "f.yaml")
    second = PLAIN + "---\n" + HEAD.replace("NAME", "two") + "  parameters: {type: object, $defs: {a: &s {}}}\n"
    assert [r.name for r in parse_documents(second, "f.yaml")] == ["plain", "two"]


def test_a_file_without_aliases_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(PLAIN)
    (resource,) = load_paths([path])
    assert resource.name == "plain" and resource.spec.parameters["properties"]["text"]["description"] == "a & b *c"


def test_mnemos_validate_and_apply_refuse_the_bomb_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(bomb())
    env = {**os.environ, "MNEMOS_HOME": str(tmp_path)}
    for command in ("validate", "apply"):
        proc = subprocess.run([sys.executable, "-m", "mnemos", command, "-f", "bomb.yaml"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip  # it ran past 60 s before
        assert proc.returncode == ValidationError.exit_code and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "error: bomb.yaml: line 10: YAML alias *a0 refused: resource files may not use anchors and aliases "
            "(&a0 / *a0); write the value out"
        ]
