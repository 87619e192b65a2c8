"""A step's script is read through on every write and run of its pipeline (``check_steps``, the
caller checks of SYNKRON), on the gateway, from text any developer may send: the scans take time
linear in its length, and a script may have at most ``MAX_SCRIPT`` characters.

The scans used to find each bracket's closing one by rescanning the line from it: a 20 KB script
of ``(`` took over three minutes, so one request could hold a gateway replica for hours. The
crafted scripts below run in a subprocess with a deadline (the checks take well under a second
here) so that a return of that flaw fails this test instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.genome.pipeline import MAX_SCRIPT, check_steps, shell_uses, unquoted_uses


def _pipeline(script: str) -> dict:
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
            "spec": {"params": {"p": "x"}, "steps": [{"name": "a", "script": script,
                                                      "env": [{"name": "V", "value": "${p}"}]}]}}  # fmt: skip


def test_a_script_longer_than_max_script_is_refused_naming_the_field() -> None:
    check_steps(parse_resource(_pipeline("#" * MAX_SCRIPT)))
    with pytest.raises(ValidationError) as refused:
        parse_resource(_pipeline("#" * (MAX_SCRIPT + 1)))
    assert (refused.value.status, refused.value.param) == (422, "spec.steps.0.script")
    assert f"the script has {MAX_SCRIPT + 1} characters, more than a step's script may have ({MAX_SCRIPT})" in (
        refused.value.message
    )
    assert "Python step (call: module:function)" in refused.value.message


CRAFTED = {  # each as long as a script may be, each once far slower than linear
    "parens": "(",
    "parens on lines": "((\n",
    "subscripts": "a[",
    "tests": "[[",
    "old arithmetic": "$[",
    "substrings": "${a:",
    "subscripted substrings": "${a[",
    "keys": " [",
    "nested and closed": None,
    "expansions after --": "-- $V ",
    "names read": 'read "$V" ',
    "nested readers": "$(read ",
    "negated readers": "! read ",
    "assignments before a command": "a=( ",
    "programs in a pipe": "${p} | sh | ",
    "programs reading here-strings": "bash <<< ${p} | ",
    "programs taking code": "perl -e perl -e ",
    "copies": None,
}


def test_crafted_scripts_of_the_longest_length_are_judged_in_linear_time() -> None:
    program = textwrap.dedent(f"""
        import time
        from mnemos.genome import parse_resource
        from mnemos.genome.pipeline import check_steps
        from mnemos.errors import ValidationError
        from tests.genome.test_shell_scale import CRAFTED, _pipeline
        n = {MAX_SCRIPT}
        for name, unit in CRAFTED.items():
            if name == "nested and closed":
                script = "a[" * (n // 8) + "((" * (n // 8) + "))" * (n // 8) + "]" * (n // 8)
            elif name == "copies":
                script = "".join(f"x{{i}}=$x{{i - 1}}\\n" for i in range(1, n // 12)) + "(( x1 ))"
            else:
                script = (unit * n)[:n]
            try:
                check_steps(parse_resource(_pipeline(script)))
            except ValidationError:
                pass  # refused or not, what counts is that the answer comes
            print(name, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:-1] == list(CRAFTED)


def test_a_newline_after_double_dash_ends_the_command() -> None:
    """``grep --`` then a newline: the next line's ``"$V"`` is a new command's first word, not an operand."""
    assert [after for _, after in shell_uses('grep -- "$V" f', "V")] == [True]
    assert [after for _, after in shell_uses('grep -- \n"$V" f', "V")] == [False]


@pytest.mark.parametrize(
    ("script", "arithmetic"),
    [
        ("a=([${p}]=1)", True),  # an associative array's key
        ("a=( [${p}] )", False),  # a word in brackets: no = after its ]
        ("echo ${a[0]:${p}}", True),  # the offset of a subscripted substring
        ("echo ${a[0]:-${p}}", False),  # a default value, not an offset
        ("a[${p}]=1", True),  # a subscript
        ("(( n +\n ${p} ))", True),  # (( … )) may span lines
        ("[[ ${p} == y ]]", True),
        ("echo [[ ${p}\n]]", False),  # [[ … ]] closes on its line
    ],
)
def test_brackets_are_closed_as_bash_closes_them(script: str, arithmetic: bool) -> None:
    assert (("p", "an arithmetic test") in unquoted_uses(script)) is arithmetic
