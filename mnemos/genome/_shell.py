"""How a pipeline's shell script reads the values put into it: where a ``${name}`` stands (bare,
in quotes, a heredoc, a comment), where the script expands a shell variable of its ``env``, and
where bash evaluates arithmetic (and so runs the ``$(…)`` of a value ``a[$(…)]``). GENOME's
``check_steps`` and SYNKRON's caller checks (``mnemos.synkron._plan``) judge scripts with these;
``mnemos.genome.pipeline`` re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["AFTER_END_OF_OPTIONS", "VARIABLE", "arithmetic_uses", "shell_uses", "unquoted_uses"]

VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
"""``${name}``; ``$${`` is a literal (``mnemos.synkron._interpolate`` substitutes them)."""
AFTER_END_OF_OPTIONS = re.compile(r"(^|\s)--[ \t]+$")
"""The text before a word that follows the end of options (``grep -- ``): never an option."""

_ARITHMETIC = re.compile(  # where bash evaluates arithmetic (and so runs the $(…) of a value a[$(…)])
    r"\[\[(?=[^\n]*?(?P<test>\]\]))"  # [[ … ]]: -eq and friends evaluate their sides (all of it counts)
    r"|(?P<paren>\(\()"  # (( … )), $(( … )), for (( … ))
    r"|\$(?P<bracket>\[)"  # $[ … ], the old $(( … ))
    r"|(?<=[A-Za-z0-9_])(?P<subscript>\[)"  # an array's subscript: ${a[…]}, a[…]=1 (conservative: any x[…])
    r"|(?<=[(\s])(?P<key>\[)(?=[^\]\n]*\]\+?=)"  # a=([…]=1)
    r"|\$\{[#!]?[A-Za-z0-9_@*]+(?=(?:\[[^\]\n]*\])?(?P<substring>:)(?![-=?+]))"  # ${s:offset:length}
    r"|(?:^|(?<=[\s;&|(]))(?:let|(?:declare|typeset|local|readonly|export)(?:\s+[-+][A-Za-z]+)*\s+-[A-Za-z]*i"
    r"[A-Za-z]*)\s[^\n;&|]*"  # let …, declare -i …: to the end of the command
)
_HEREDOC = re.compile(r"<<(-?)[ \t]*(['\"]?)([A-Za-z0-9_.-]+)\2")
_EXPANSION = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")  # the shell's $V, ${V…}
_QUOTES = {"'": "single quotes", '"': "double quotes", "`": "backquotes"}


def unquoted_uses(script: str) -> list[tuple[str, str]]:
    """Each ``${name}`` of a shell script that does not stand as a bare word, with where it stands:
    ``double quotes``, ``single quotes``, ``backquotes``, ``a heredoc``, ``a comment`` or ``an
    arithmetic test``. A value is put in shell-quoted (one word: ``'…'``), which protects it only
    where the shell reads it as a word: in double quotes, backquotes or a heredoc ``$(…)`` inside
    it would still run, in a comment a newline in it would end the comment, and ``[[ x -eq y ]]``
    evaluates ``a[$(…)]`` (so do the other places of ``_arithmetic``). Conservative: ``$(…)`` inside
    double quotes counts as quoted."""
    found = [(var.group(2), where) for i, where in _dollars(script)
             if where != "bare" and (var := VARIABLE.match(script, i)) and not var.group(1)]  # fmt: skip
    inside = {m.start(): m.group(2) for start, end in _arithmetic(script)
              for m in VARIABLE.finditer(script, start, end) if not m.group(1)}  # fmt: skip
    return found + [(name, "an arithmetic test") for _, name in sorted(inside.items())]


def arithmetic_uses(script: str, variable: str) -> bool:
    """Whether bash may evaluate the shell variable ``variable`` (``V``, a step's ``env`` gives it)
    as arithmetic in ``script``: ``$V``, ``${V}``, ``$${V}`` or the bare name ``V`` (evaluated too)
    in a place of ``_arithmetic``, where a value ``a[$(…)]`` runs its ``$(…)``. Conservative: any
    mention of the name there counts, quoted or not."""
    name = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(variable)}(?![A-Za-z0-9_])")
    return any(name.search(script, start, end) for start, end in _arithmetic(script))


def _arithmetic(script: str) -> Iterator[tuple[int, int]]:
    """Each span ``(start, end)`` of a shell script that bash evaluates as arithmetic (``_ARITHMETIC``):
    ``[[ … ]]``, ``(( … ))``, ``$(( … ))``, ``$[ … ]``, an array subscript ``a[…]``, the offset and
    length of ``${s:…}``, ``let …`` and ``declare -i …`` (``local``, ``typeset``, … too), each on
    its line. Conservative: text in quotes or comments counts as well."""
    for m in _ARITHMETIC.finditer(script):
        start, end = m.start("substring") if m.group("substring") else m.start(), m.end()
        if m.group("test"):
            end = m.end("test")
        elif m.group("paren"):  # (( … )) may span lines: unclosed, the rest of the script counts
            end = _arithmetic_end(script, start)
            end = _closing(script, start, "()", lines=True) if end < 0 else end
            end = len(script) if end < 0 else end
        elif m.group("substring"):
            end = _closing(script, m.start() + 1, "{}")
        elif m.group("bracket"):  # $[ … ] may span lines too
            end = _closing(script, m.end() - 1, "[]", lines=True)
            end = len(script) if end < 0 else end
        elif m.group("subscript") or m.group("key"):
            end = _closing(script, m.end() - 1, "[]")
        if end > 0:  # else no closing bracket on the line: no arithmetic
            yield start, end


def shell_uses(script: str, variable: str) -> Iterator[tuple[int, bool]]:
    """Each place a pipeline's shell script expands the shell variable ``variable`` (``V``): ``$V``,
    ``${V…}`` or ``$${V…}`` (the pipeline's escape for ``${V…}``), outside single quotes and comments
    and unescaped (not ``\\$V``), as ``(index, after the end of options)``: whether the word it
    starts (``$V``, ``"$V"``) stands right after ``-- ``, where no value is an option (the rule
    ``mnemos.synkron._interpolate.option_risk`` applies to ``${name}``). Conservative: a use in a
    heredoc's body counts, and so does one inside a word (``x$V``); one inside ``(( … ))`` is a number."""
    for i, where in _dollars(script):
        var = VARIABLE.match(script, i)
        if where in ("single quotes", "a comment") or (var and not var.group(1)):
            continue  # no expansion there; ${name} is a value of the pipeline's
        used = _EXPANSION.match(script, i + 1 if var else i)  # $${V…} reaches the shell as ${V…}
        if used and used.group(1) == variable:
            before = script[:i].removesuffix('"') if where == "double quotes" else script[:i]
            yield i, bool(AFTER_END_OF_OPTIONS.search(before))


def _dollars(script: str) -> Iterator[tuple[int, str]]:
    """Each ``$`` of a shell script that may start an expansion, with where it stands: ``bare``,
    ``double quotes``, ``single quotes``, ``backquotes``, ``a heredoc`` or ``a comment``. A
    ``${name}``/``$${name}`` of the pipeline and the shell's ``$$`` are one; an escaped ``\\$`` and
    the inside of ``(( … ))`` and ``$(( … ))`` (its ``<<`` are shifts) are skipped."""
    where, i, n = "bare", 0, len(script)
    pending: list[tuple[str, bool]] = []  # heredoc delimiters (word, tabs stripped) whose bodies follow
    while i < n:
        c = script[i]
        if where == "a heredoc" and script[i - 1] == "\n":  # a line of its body: the delimiter ends it
            end = script.find("\n", i)
            end = n if end < 0 else end
            word, tabs = pending[0]
            if (script[i:end].lstrip("\t") if tabs else script[i:end]) == word:
                pending.pop(0)
                where, i = "a heredoc" if pending else "bare", end + 1
                continue
        if c == "$":
            yield i, where
            var = VARIABLE.match(script, i)
            pid = script.startswith("$$", i) and not VARIABLE.match(script, i + 1)
            i = var.end() if var else i + 2 if pid else i + 1
            continue
        if where in ("a heredoc", "a comment"):
            if c == "\n" and where == "a comment":
                where = "bare"
                continue  # the newline may start heredoc bodies
        elif where != "bare":  # in quotes
            if c == "\\" and where != "single quotes":
                i += 1
            elif _QUOTES.get(c) == where:
                where = "bare"
        elif c == "\\":
            i += 1
        elif c in _QUOTES:
            where = _QUOTES[c]
        elif c == "#" and (i == 0 or script[i - 1] in " \t\n;&|("):
            where = "a comment"
        elif c == "(" and script.startswith("((", i) and _arithmetic_end(script, i) > i:
            i = _arithmetic_end(script, i)  # (( … )), $(( … )): its `<<` shifts (its ${name}s: unquoted_uses)
            continue
        elif c == "<" and script.startswith("<<", i) and not script.startswith("<<<", i):
            heredoc = _HEREDOC.match(script, i)
            if heredoc is not None:
                pending.append((heredoc.group(3), heredoc.group(1) == "-"))
                i = heredoc.end()
                continue
        elif c == "\n" and pending:
            where = "a heredoc"
        i += 1


def _arithmetic_end(script: str, i: int) -> int:
    """The index after the ``))`` closing the ``((`` at ``i`` on its line, else -1."""
    end = _closing(script, i, "()")
    return end if end > 0 and script[end - 2] == ")" else -1


def _closing(script: str, i: int, pair: str, *, lines: bool = False) -> int:
    """The index after the bracket (``pair``: ``"()"``, ``"[]"``, ``"{}"``) closing the one at ``i``
    on its line (``lines``: on any line after), else -1."""
    depth = 0
    for j in range(i, len(script)):
        if script[j] == "\n" and not lines:
            break
        depth += {pair[0]: 1, pair[1]: -1}.get(script[j], 0)
        if depth == 0:
            return j + 1
    return -1
