"""``shell_uses``: where a pipeline's script expands the shell variable ``V`` (a step's ``env`` gives
it), and whether each use stands right after the end of options. Whether a script expands ``V`` is
asked of bash itself: the script, interpolated as a run interpolates it (``$${V}`` becomes
``${V}``), prints what it expands."""

from __future__ import annotations

import subprocess

import pytest

from mnemos.genome.pipeline import shell_uses, unquoted_uses
from mnemos.synkron._interpolate import interpolate

MARK = "zz-mark"
EXPANDS = [
    'printf "<%s>" "$V"',
    'printf "<%s>" $V',
    'printf "<%s>" "$${V}"',  # the pipeline's escape for ${V}
    'printf "<%s>" ${V:-d}',  # no ${name} of the pipeline's: it reaches the shell as written
    'printf "<%s>" "$${V-d}"',
    'printf "<%s>" "\'$V\'"',  # single quotes inside double quotes quote nothing
    'printf "<%s>" `printf %s $V`',
    'printf "<%s>" "$(printf %s "$V")"',
    'printf "<%s>" x$V.y',
    'printf "<%s>" $$$V',  # $$, then $V
    'printf "<%s>" "\\\\$V"',  # an escaped backslash, then $V
    "cat <<EOF\n<$V>\nEOF",
    "cat <<EOF # a comment ends before the body\n<$V>\nEOF",
]
SILENT = [
    "printf '<%s>' '$V'",
    "printf '<%s>' '${V:-d}' '$${V}'",
    "printf '<%s>' ok # $V",
    "# it's $V\nprintf '<%s>' ok",
    'printf "<%s>" \\$V',
    'printf "<%s>" "\\$V"',
    'printf "<%s>" $VAR2 "$V_2" ${VAR2:-d}',
    'printf "<%s>" $${V:-d}',  # no escape of the pipeline's (that is $${name} only): $$, then {V:-d}
    'printf "<%s>" $$V',  # $$, then V
    'printf "<%s>" ${#V}',  # its length
    "cat <<EOF\nplain\nEOF\nprintf '<%s>' '$V'",
]


def _expands(script: str) -> bool:
    shell = interpolate({"script": script}, {})["script"]
    out = subprocess.run(["bash", "-c", shell], env={"V": MARK}, capture_output=True, text=True, check=True).stdout
    return MARK in out


@pytest.mark.parametrize("script", EXPANDS + SILENT)
def test_a_use_is_where_bash_expands_the_variable(script: str) -> None:
    assert _expands(script) == (script in EXPANDS)  # the case is what it says
    assert bool(list(shell_uses(script, "V"))) == (script in EXPANDS)


def test_a_quoted_heredoc_counts_too() -> None:  # conservative: bash leaves its body as written
    assert not _expands("cat <<'EOF'\n<$V>\nEOF")
    assert len(list(shell_uses("cat <<'EOF'\n<$V>\nEOF", "V"))) == 1


@pytest.mark.parametrize(
    ("script", "after"),
    [
        ('set -- "$V"', [True]),
        ("printf -- $V", [True]),
        ('printf -- "$${V}"', [True]),
        ('printf -- "${V:-d}"', [True]),
        ('printf\t--\t"$V"\nprintf -- $V', [True, True]),
        ('printf --"$V"', [False]),  # one word: --<value>
        ('printf "-- $V"', [False]),  # one word starting with --
        ('printf -- x"$V" "x$V"', [False, False]),  # inside a word: conservative
        ('printf -- "$V" $V', [True, False]),
        ('printf x-- "$V"', [False]),
        ('printf "$V" # -- $V', [False]),
    ],
)
def test_each_use_says_whether_it_follows_the_end_of_options(script: str, after: list[bool]) -> None:
    assert [a for _, a in shell_uses(script, "V")] == after


def test_the_uses_a_text_param_may_not_have_are_found_by_the_same_walk() -> None:
    script = "echo '${a}' \"${b}\" `${c}` ${ok} $${esc} # ${d}\ncat <<EOF\n${e}\nEOF\n[[ ${f} -eq 1 ]]"
    assert unquoted_uses(script) == [("a", "single quotes"), ("b", "double quotes"), ("c", "backquotes"),
                                     ("d", "a comment"), ("e", "a heredoc"), ("f", "an arithmetic test")]  # fmt: skip
