"""``shell_uses``: where a pipeline's script expands the shell variable ``V`` (a step's ``env`` gives
it), and whether each use stands right after the end of options. Whether a script expands ``V`` is
asked of bash itself: the script, interpolated as a run interpolates it (``$${V}`` becomes
``${V}``), prints what it expands."""

from __future__ import annotations

import subprocess

import pytest

from mnemos.genome.pipeline import arithmetic_uses, shell_uses, unquoted_uses
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


RAN = "zz-ran"
PAYLOAD = "a[$(printf zz-%s ran >&2)]"  # a caller's text: an array subscript whose $(…) bash runs when it evaluates it
EVALUATES = [  # bash evaluates V's value as arithmetic here: its $(…) runs, quoted or not
    "[[ $V -eq 1 ]]",
    '[[ "$${V}" -lt 2 ]]',
    "(( V ))",  # a bare name is evaluated too
    'echo $(( x + "$V" ))',
    "echo $[ V + 1 ]",
    'echo "${a[$V]}"',
    "echo ${a[$${V}]}",
    "a[$V]=1",
    "a=([$V]=1)",
    's=abc; echo "${s:$V}"',
    "s=abc; echo ${s:0:$V}",
    'declare -i x="$V"',
    "typeset -i x=$V",
    "f() { local -ri x=$V; }; f",
    "let x=V+1",
    "for (( i = V; i < 1; i++ )); do :; done",
    "(( 1 +\n V ))",  # arithmetic may span lines
    "echo $(( 1 +\n V ))",
]
TEXT = [  # V stays text here
    '[ "$V" -eq 1 ]',  # the test builtin: "integer expression expected"
    'test "$V" = 1',
    'shift "$V"',
    'printf %d "$V"',
    'exit "$V"',
    "echo ${V:-x} ${V:=x} ${#V} ${V[0]}",
    'echo "$V" x[1]',
    "case $V in [0-9]*) echo n ;; esac",
    'export V; declare -i n=1; echo $(( n + 1 )) "$V"',
    '((cd /; pwd) | wc -l)\necho "$V"',  # a subshell in a subshell, not arithmetic
]


@pytest.mark.parametrize("script", EVALUATES + TEXT)
def test_an_arithmetic_use_is_where_bash_runs_a_subscripts_command(script: str) -> None:
    shell = interpolate({"script": script}, {})["script"]
    ran = subprocess.run(["bash", "-c", shell], env={"V": PAYLOAD}, capture_output=True, text=True).stderr
    assert (RAN in ran) == (script in EVALUATES)  # the case is what it says
    assert arithmetic_uses(script, "V") == (script in EVALUATES)
    assert not arithmetic_uses(script.replace("V", "W"), "V")


@pytest.mark.parametrize(
    ("script", "runs"),
    [
        ("echo ${a[${p}]}", True),
        ("a[${p}]=1", True),
        ("a=([${p}]=1)", True),
        ("echo $[${p}+1]", True),
        ("declare -i x=${p}", True),
        ("f() { local -i x=${p}; }; f", True),
        ("let x=${p}", True),
        ("(( ${p} ))", True),
        ("for (( i=${p}; i<1; i++ )); do :; done", True),
        ("(( 1 +\n ${p} ))", True),
        ("echo ${s:${p}}", False),  # conservative: bash takes the quotes as text there, an error
    ],
)
def test_a_text_param_in_arithmetic_is_found(script: str, runs: bool) -> None:
    shell = interpolate({"script": script}, {"p": PAYLOAD})["script"]  # one shell-quoted word
    ran = subprocess.run(["bash", "-c", shell], env={}, capture_output=True, text=True).stderr
    assert (RAN in ran) == runs
    assert unquoted_uses(script) == [("p", "an arithmetic test")]
