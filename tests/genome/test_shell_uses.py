"""``shell_uses``: where a pipeline's script expands the shell variable ``V`` (a step's ``env`` gives
it), and whether each use stands right after the end of options. Whether a script expands ``V`` is
asked of bash itself: the script, interpolated as a run interpolates it (``$${V}`` becomes
``${V}``), prints what it expands. ``arithmetic_uses`` and ``text_in_arithmetic`` (through the names a
text value reaches: ``x=$V``, ``read x``) say where bash evaluates it as arithmetic, asked of bash the same way."""

from __future__ import annotations

import subprocess

import pytest

from mnemos.genome.pipeline import arithmetic_uses, shell_uses, text_in_arithmetic, unquoted_uses, where_evaluated
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


WORD = "a[$(printf${IFS}zz-ran>&2)]"  # PAYLOAD as one word: `for x in $V` splits nothing
COPIED = [  # V's value reaches arithmetic through a copy or an integer variable: its $(…) runs
    "x=$V; (( x ))",
    'x="$V"; (( x ))',
    "x=$${V}; (( x ))",
    "x=${V:-0}; echo $(( x + 1 ))",
    "x=pre$V; (( x ))",
    'printf -v x %s "$V"; (( x ))',
    "f() { local x=$V; (( x )); }; f",
    "export x=$V; (( x ))",
    "declare x=$V; (( x ))",
    "for x in $V; do (( x )); done",
    'x=$V; y=$x\nz="$y"; echo ${a[z]}',  # a chain of copies
    'x=$(cd /; printf %s "$V"); (( x ))',  # the ; inside $( … ) does not end the assignment
    'x="a;$V"; x=${x#a;}; (( x ))',  # nor one in quotes
    'read x <<< "$V"; (( x ))',
    'read <<< "$V"; (( REPLY ))',
    'while read -r x; do (( x )); done <<< "$V"',
    'echo "$V" | { read -r x; (( x )); }',
    'mapfile -t lines <<< "$V"; (( lines[0] ))',
    "declare -i n; n=$V",  # an integer variable evaluates what it is given
    "declare -i n\nx=$V\nn=$x",
    "typeset -i n; n+=$V",
    'f() { local -i n; read -r n <<< "$V"; }; f',
]
KEPT = [  # V's value and its copies stay text
    'x=$V; [ "$x" = 1 ] || echo "$x"',
    'i=0; echo "$V"; (( i++ ))',  # another command's name
    "x=1; y=$V; (( x ))",
    "n=${#V}; (( n > 1 ))",  # its length is a number
    "x='$V'; (( x ))",
    "declare -i n; x=$V; n=1; echo $(( n ))",
]


@pytest.mark.parametrize("script", COPIED + KEPT)
def test_a_copy_of_a_text_variable_is_followed_into_arithmetic(script: str) -> None:
    shell = interpolate({"script": script}, {})["script"]
    ran = subprocess.run(["bash", "-c", shell], env={"V": WORD}, capture_output=True, text=True).stderr
    assert (RAN in ran) == (script in COPIED)  # the case is what it says
    assert bool(list(text_in_arithmetic(script, {"V": "env: ${p}"}))) == (script in COPIED)


def test_a_copy_of_a_text_param_is_followed_too() -> None:
    script = "x=${p}; (( x ))"  # ${p} is one shell-quoted word, a bare one: its copy is evaluated
    shell = interpolate({"script": script}, {"p": PAYLOAD})["script"]
    assert RAN in subprocess.run(["bash", "-c", shell], env={}, capture_output=True, text=True).stderr
    assert unquoted_uses(script) == []
    assert list(text_in_arithmetic(script, {"${p}": "a text param"})) == [("x", "copied from ${p}, a text param")]


def test_each_one_says_where_its_text_comes_from() -> None:
    script = 'x=$V\ny="$x"; read -r n\n(( V + y + n + z ))'
    assert list(text_in_arithmetic(script, {"V": "env: ${p}"})) == [
        ("V", "env: ${p}"),
        ("n", "read from input that may carry $V, env: ${p}"),
        ("y", "copied from $x, copied from $V, env: ${p}"),
    ]
    assert list(text_in_arithmetic(script, {})) == []  # no text, no copies
    assert list(text_in_arithmetic("read V; (( V ))", {"V": "env"})) == [("V", "env")]


@pytest.mark.timeout(30)  # a loop that finds one copy per pass over the script takes hours here
def test_a_long_chain_of_copies_is_followed_in_one_pass() -> None:  # longer than a step's script may be
    chain = "".join(f"v{i + 1}=$v{i}; " for i in reversed(range(20_000)))  # each copy before the one it copies
    found = list(text_in_arithmetic(f"{chain}v0=$V\n(( v20000 ))", {"V": "env"}))
    assert [name for name, _ in found] == ["v20000"] and found[0][1].count("copied from") == 20_001


NAMED = [  # bash takes V's value as a variable's name (its subscript evaluated: the $(…) runs) or as code
    ('read -r "$V" <<< x', "a variable name"),
    ('IFS=, read -r a "$V" <<< x,y', "a variable name"),
    ('printf -v "$V" %s 1', "a variable name"),
    ('printf -v"$V" %s 1', "a variable name"),
    ('declare "$V=1"', "a variable name"),
    ('f() { local "$V=1"; }; f', "a variable name"),
    ('test -v "$V"', "a variable name"),
    ('if [ -v "$V" ]; then :; fi', "a variable name"),
    ("x=${!V}", "a variable name"),
    ('declare -n r="$V"; echo "$r"', "a variable name"),
    ('y=$(read -r "$V" <<< x)', "a variable name"),
    ('eval "$V"', "code bash runs"),
    ('trap "$V" EXIT', "code bash runs"),
]
UNNAMED = [  # V's value stays a value
    'read -r x <<< "$V"',
    'read -r line < "$V" 2>/dev/null || :',  # a file to read from
    'printf -v x %s "$V"',
    'declare x="$V"; f() { local y="a $V"; }; f',
    'export PATH="$V:$PATH"',
    'echo please read "$V" and test -v "$V"',  # words of echo's
    'echo "${!V*}" "${!a[@]}"',  # names with a prefix, an array's keys
]


@pytest.mark.parametrize("case", NAMED + UNNAMED)
def test_a_value_taken_as_a_name_or_code_is_found(case: str | tuple[str, str]) -> None:
    script, where = case if isinstance(case, tuple) else (case, None)
    shell = interpolate({"script": script}, {})["script"]
    ran = subprocess.run(["bash", "-c", shell], env={"V": PAYLOAD}, capture_output=True, text=True).stderr
    assert (RAN in ran) == (where is not None)  # the case is what it says
    assert where_evaluated(script).get("V") == where
    assert bool(list(text_in_arithmetic(script, {"V": "env: ${p}"}))) == (where is not None)


@pytest.mark.parametrize(
    ("script", "where"),
    [("read -r ${p} <<< x", "a variable name"), ("printf -v ${p} %s 1", "a variable name"),
     ("test -v ${p}", "a variable name"), ("eval ${p}", "code bash runs"), ("read -r x <<< ${p}", None)],
)  # fmt: skip
def test_a_text_param_taken_as_a_name_is_found(script: str, where: str | None) -> None:
    shell = interpolate({"script": script}, {"p": PAYLOAD})["script"]  # one shell-quoted word
    ran = subprocess.run(["bash", "-c", shell], env={}, capture_output=True, text=True).stderr
    assert (RAN in ran) == (where is not None)
    assert unquoted_uses(script) == ([("p", where)] if where else [])


PYTHON = "import sys; sys.stderr.write('zz-' + 'ran')"
PERL = 'print STDERR "zz-" . "ran"'
NODE = "process.stderr.write('zz-' + 'ran')"
AWK = 'BEGIN { printf "zz-%s", "ran" > "/dev/stderr" }'
PROGRAMS = [  # (script, V's value, whether a program runs V as code): real programs decide each case
    ('bash -c "$V"', PAYLOAD, True),
    ('sh -ec "$V" _', PAYLOAD, True),
    ('bash -o pipefail -c "$V"', PAYLOAD, True),
    ('echo x | xargs sh -c "$V"', PAYLOAD, True),
    ('find /dev/null -maxdepth 0 -exec sh -c "$V" \\;', PAYLOAD, True),
    ('timeout 5 /bin/bash -c "$V"', PAYLOAD, True),
    ('bash <<< "$V"', PAYLOAD, True),
    ('echo "$V" | sh', PAYLOAD, True),
    ('echo "$V" |& sh', PAYLOAD, True),
    ('printf "%s\\n" "$V" | cat | bash -s', PAYLOAD, True),  # the whole pipeline feeds the shell
    ('python3 -c "$V"', PYTHON, True),
    ('python3 -c"$V"', PYTHON, True),
    ('printf %s "$V" | python3 -', PYTHON, True),
    ('perl -e "1;" -e "$V"', PERL, True),
    ('perl -ne "$V" /dev/null; perl -e "$V"', PERL, True),
    ('node -e "$V"', NODE, True),
    ('node --eval="$V"', NODE, True),
    ('awk -F, "$V" /dev/null', AWK, True),
    # the value stays data
    ('bash -c \'printf "<%s>" "$1"\' _ "$V"', PAYLOAD, False),  # the fix the error names
    ('python3 -c "import sys; print(len(sys.argv))" "$V"', PYTHON, False),
    ('echo "$V" | grep -c zz-ran', PAYLOAD, False),
    ('echo "$V" || sh', PAYLOAD, False),
    ('echo "$V" || sh; echo x | sh', PAYLOAD, False),
    ('awk -v x="$V" "BEGIN { print length(x) }"', AWK, False),
    ('echo bash "$V"', PAYLOAD, False),
    ('env X="$V" bash -c \'printf "<%s>" "$X"\'', PAYLOAD, False),
]


@pytest.mark.parametrize(("script", "value", "runs"), PROGRAMS)
def test_a_value_a_program_runs_as_code_is_found(script: str, value: str, runs: bool) -> None:
    shell = interpolate({"script": script}, {})["script"]
    ran = subprocess.run(["bash", "-c", shell], env={"V": value, "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, timeout=30).stderr  # fmt: skip
    assert (RAN in ran) == runs, ran  # the case is what it says
    assert where_evaluated(script).get("V") == ("code a program runs" if runs else None)
    assert bool(list(text_in_arithmetic(script, {"V": "env: ${p}"}))) == runs


def test_a_text_param_a_program_runs_is_refused_naming_the_fix() -> None:
    assert unquoted_uses("bash -c ${p}") == [("p", "code a program runs")]
    assert unquoted_uses("bash -c 'echo \"$1\"' _ ${p}") == []
    assert list(text_in_arithmetic('x=$V; python3 -c "$x"', {"V": "env"})) == [("x", "copied from $V, env")]


def test_a_value_in_a_builtin_inside_a_piped_command_is_found() -> None:
    """A pipe's span holds the spans of the builtins in it: a value in neither innermost span is still found."""
    assert where_evaluated('read -r x "$V" | sh').get("V") == "a variable name"
    assert where_evaluated('printf -v y %s "$V" | sh').get("V") == "code a program runs"
