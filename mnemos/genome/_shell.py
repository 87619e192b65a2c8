"""How a pipeline's shell script reads the values put into it: where a ``${name}`` stands (bare,
in quotes, a heredoc, a comment), where the script expands a shell variable of its ``env``, and
where bash evaluates arithmetic (and so runs the ``$(…)`` of a value ``a[$(…)]``) or takes a value as
a name or as code (``eval``, ``bash -c``), and which shell variables a text value reaches through
copies (``x=$V``, ``read x``). GENOME's ``check_steps`` and
SYNKRON's caller checks (``mnemos.synkron._plan``) judge scripts with these;
``mnemos.genome.pipeline`` re-exports them.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator

__all__ = [
    "VARIABLE",
    "after_end_of_options",
    "arithmetic_uses",
    "shell_uses",
    "text_in_arithmetic",
    "unquoted_uses",
    "where_evaluated",
]

VARIABLE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
"""``${name}``; ``$${`` is a literal (``mnemos.synkron._interpolate`` substitutes them)."""

# Where bash evaluates arithmetic (and so runs the $(…) of a value a[$(…)]). What closes a bracket
# is found by ``_arithmetic`` from the bracket positions of ``_Layout``, not by the pattern: a
# pattern looking ahead for it would rescan the line from each opening ("[[[[…", "((((…"), and a
# script of a few KiB would take minutes.
_ARITHMETIC = re.compile(
    r"(?P<test>\[\[)"  # [[ … ]]: -eq and friends evaluate their sides (all of it counts)
    r"|(?P<paren>\(\()"  # (( … )), $(( … )), for (( … ))
    r"|\$(?P<bracket>\[)"  # $[ … ], the old $(( … ))
    r"|(?<=[A-Za-z0-9_])(?P<subscript>\[)"  # an array's subscript: ${a[…]}, a[…]=1 (conservative: any x[…])
    r"|(?<=[(\s])(?P<key>\[)"  # a=([…]=1), when a ] then = or += follows on the line
    r"|(?P<substring>\$\{[#!]?[A-Za-z0-9_@*]+)"  # ${s:offset:length} (${a[i]:…} too), when the : follows
    r"|(?:^|(?<=[\s;&|(]))(?:let|(?:declare|typeset|local|readonly|export)(?:\s+[-+][A-Za-z]+)*\s+-[A-Za-z]*i"
    r"[A-Za-z]*)\s[^\n;&|]*"  # let …, declare -i …: to the end of the command
)
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_HEREDOC = re.compile(r"<<(-?)[ \t]*(['\"]?)([A-Za-z0-9_.-]+)\2")
_EXPANSION = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")  # the shell's $V, ${V…}
_ASSIGNS = re.compile(  # a name a command sets: x=…, x+=…, a[i]=… (local/export/declare x=… too), printf -v x, for x in
    r"(?:(?<![^\s;&|({])(?=[A-Za-z_][A-Za-z0-9_]*(?:\[|\+?=))|\bprintf\s+-v\s*|\bfor\s+)([A-Za-z_][A-Za-z0-9_]*)"
)
_READS = re.compile(r"(?<![^\s;&|({])(readarray|mapfile|read)(?![A-Za-z0-9_-])((?:[ \t]+[^\s;&|)<>]+)*)")  # its words
_NAME = re.compile(r"(?<!\S)[A-Za-z_][A-Za-z0-9_]*(?!\S)")  # a word that is a name
_NAME_IN = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*")  # a name, inside a word too
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
    named = [(m.group(2), context) for start, end, context in _name_spans(script)
             for m in VARIABLE.finditer(script, start, end) if not m.group(1) and m.start() not in inside]  # fmt: skip
    return found + [(name, "an arithmetic test") for _, name in sorted(inside.items())] + named


def arithmetic_uses(script: str, variable: str) -> bool:
    """Whether bash may evaluate the shell variable ``variable`` (``V``, a step's ``env`` gives it)
    as arithmetic in ``script``: ``$V``, ``${V}``, ``$${V}`` or the bare name ``V`` (evaluated too)
    in a place of ``_arithmetic``, where a value ``a[$(…)]`` runs its ``$(…)``. Conservative: any
    mention of the name there counts, quoted or not."""
    return variable in _arithmetic_names(script)


@functools.lru_cache(maxsize=16)
def _arithmetic_names(script: str) -> frozenset[str]:
    """Every name that stands in a place of ``_arithmetic`` (``V`` of ``$V``, ``${V}``, ``V``)."""
    return frozenset(m.group() for start, end in _arithmetic(script) for m in _NAME_IN.finditer(script, start, end))


def _arithmetic(script: str) -> list[tuple[int, int]]:
    """The spans ``(start, end)`` of a shell script that bash evaluates as arithmetic
    (``_ARITHMETIC``), sorted, overlapping ones merged: ``[[ … ]]``, ``(( … ))``, ``$(( … ))``,
    ``$[ … ]``, an array subscript ``a[…]``, the offset and length of ``${s:…}``, ``let …`` and
    ``declare -i …`` (``local``, ``typeset``, … too), each on its line. Conservative: text in quotes
    or comments counts as well. Linear in the script's length."""
    layout = _layout(script)
    spans = []
    for m in _ARITHMETIC.finditer(script):
        start, end = m.start(), m.end()
        if m.group("test"):  # to the first ]] on its line; else its [ may be a subscript or a key
            end = layout.next_on_line("]]", m.end())
            if end < 0 and start and script[start - 1] in _WORD:
                end = layout.closing(start, "[]")
            elif end < 0 and start and (script[start - 1] == "(" or script[start - 1].isspace()):
                end = layout.closing(start, "[]") if layout.is_key(start) else -1
        elif m.group("paren"):  # (( … )) may span lines: unclosed, the rest of the script counts
            end = _arithmetic_end(script, start)
            end = layout.closing(start, "()", lines=True) if end < 0 else end
            end = len(script) if end < 0 else end
        elif m.group("substring"):  # ${s:…}, ${a[i]:…}: from the : to the closing }
            after = m.end()
            if script.startswith("[", after):
                after = layout.next_on_line("]", after + 1)
            colon = after > 0 and script.startswith(":", after) and script[after + 1 : after + 2] not in tuple("-=?+")
            start, end = (after, layout.closing(m.start() + 1, "{}")) if colon else (0, -1)
        elif m.group("bracket"):  # $[ … ] may span lines too
            end = layout.closing(m.end() - 1, "[]", lines=True)
            end = len(script) if end < 0 else end
        elif m.group("subscript"):
            end = layout.closing(start, "[]")
        elif m.group("key"):
            end = layout.closing(start, "[]") if layout.is_key(start) else -1
        if end > 0:  # else no closing bracket on the line: no arithmetic
            spans.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class _Layout:
    """Where the brackets and line ends of one script are, for the scans of this module to look up
    in O(log n) what a pattern or a loop would rescan the line for."""

    def __init__(self, script: str) -> None:
        self.script = script
        self._found: dict[str, list[int]] = {}
        self._closers: dict[str, dict[int, int]] = {}

    def positions(self, text: str) -> list[int]:
        """Where ``text`` starts in the script (overlapping too: ``]]]`` has ``]]`` at 0 and 1), sorted."""
        if text not in self._found:
            self._found[text] = [m.start() for m in re.finditer(f"(?={re.escape(text)})", self.script)]
        return self._found[text]

    def same_line(self, i: int, j: int) -> bool:
        """Whether no newline stands in ``[i, j)``."""
        newlines = self.positions("\n")
        return bisect.bisect_left(newlines, i) == bisect.bisect_left(newlines, j)

    def next_on_line(self, text: str, i: int) -> int:
        """The index after the first ``text`` at or after ``i`` on its line, else -1."""
        found = self.positions(text)
        k = bisect.bisect_left(found, i)
        return found[k] + len(text) if k < len(found) and self.same_line(i, found[k]) else -1

    def closing(self, i: int, pair: str, *, lines: bool = False) -> int:
        """The index after the bracket (``pair``: ``"()"``, ``"[]"``, ``"{}"``) closing the one at
        ``i`` (counting only that pair) on its line (``lines``: on any line after), else -1."""
        if pair not in self._closers:
            closers, stack = {}, []
            for m in re.finditer(f"[{re.escape(pair)}]", self.script):
                if m.group() == pair[0]:
                    stack.append(m.start())
                elif stack:
                    closers[stack.pop()] = m.end()
            self._closers[pair] = closers
        end = self._closers[pair].get(i, -1)
        return end if end < 0 or lines or self.same_line(i, end) else -1

    def is_key(self, i: int) -> bool:
        """Whether ``=`` or ``+=`` follows the first ``]`` after the ``[`` at ``i`` on its line (``a=([k]=1)``)."""
        end = self.next_on_line("]", i + 1)
        return end > 0 and self.script.startswith(("=", "+="), end)


@functools.lru_cache(maxsize=16)
def _layout(script: str) -> _Layout:
    return _Layout(script)


def after_end_of_options(text: str, end: int) -> bool:
    """Whether a word starting at ``end`` of ``text`` follows the end of options (``grep -- ``:
    ``--``, then spaces or tabs, at the start or after white space), where no value is an option."""
    word = end
    while word > 0 and text[word - 1] in " \t":
        word -= 1
    return word < end and word >= 2 and text[word - 2 : word] == "--" and (word == 2 or text[word - 3].isspace())


def shell_uses(script: str, variable: str) -> Iterator[tuple[int, bool]]:
    """Each place a pipeline's shell script expands the shell variable ``variable`` (``V``): ``$V``,
    ``${V…}`` or ``$${V…}`` (the pipeline's escape for ``${V…}``), outside single quotes and comments
    and unescaped (not ``\\$V``), as ``(index, after the end of options)``: whether the word it
    starts (``$V``, ``"$V"``) stands right after ``-- ``, where no value is an option (the rule
    ``mnemos.synkron._interpolate.option_risk`` applies to ``${name}``). Conservative: a use in a
    heredoc's body counts, and so does one inside a word (``x$V``); one inside ``(( … ))`` is a number."""
    yield from _expansions(script).get(variable, ())


@functools.lru_cache(maxsize=16)
def _expansions(script: str) -> dict[str, list[tuple[int, bool]]]:
    """``shell_uses`` of every variable of ``script``, found in one scan."""
    found: dict[str, list[tuple[int, bool]]] = {}
    for i, where in _dollars(script):
        if (name := _expanded(script, i, where)) is not None:
            word = i - 1 if where == "double quotes" and script[i - 1] == '"' else i
            found.setdefault(name, []).append((i, after_end_of_options(script, word)))
    return found


def text_in_arithmetic(script: str, sources: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Each shell variable of ``script`` that may hold a text value where bash evaluates it
    (``where_evaluated``: arithmetic, a variable's name, code), with how it holds text, for an error
    (``copied from $V, env: ${p}, a text param``). ``sources`` says where text comes from: a shell
    variable (``V`` → ``env: ${p}, a text param``) or a pipeline's ``${p}`` as written (→ ``a text
    param``). A name a command sets (``_ASSIGNS``: ``x=$V``, ``local x="a$V"``, ``printf -v x %s
    "$V"``, ``for x in $V``) holds text when the command expands one that does (``$V``, ``${V…}``,
    ``${p}``), to a fixed point; so
    does every name ``read``, ``mapfile`` or ``readarray`` reads into, wherever it stands (its input
    may carry the text). Conservative: a command runs from the end of the one before (``;``, ``&``,
    ``|`` or a newline, unquoted, outside ``$( … )``) to its own, and every name it sets counts;
    copies through files are not seen. Linear in the script's length."""
    if not sources:
        return
    segments = _commands(script)
    starts = [start for start, _ in segments]
    commands = [_ASSIGNS.findall(script, start, end) for start, end in segments]  # the names each command sets
    expanding: dict[str, list[int]] = {}  # a name (or ${p}) → the commands that expand it
    for i, where in _dollars(script):
        expanding.setdefault(_expanded(script, i, where) or "", []).append(bisect.bisect_right(starts, i) - 1)
    came: dict[str, tuple[str, str]] = {}  # a name holding text → (how, the name it holds it from)
    for m in _READS.finditer(script):
        for name in _NAME.findall(m.group(2)) or ["REPLY" if m.group(1) == "read" else "MAPFILE"]:
            if name not in sources:
                came[name] = ("read from input that may carry", next(iter(sources)))
    queue = [*sources, *came]
    for name in queue:  # it grows as copies are found: breadth first, so each has its shortest chain
        for command in expanding.pop(name, []):
            for copy in commands[command]:
                if copy not in sources and copy not in came:
                    came[copy] = ("copied from", name)
                    queue.append(copy)
            commands[command] = []  # its copies are known
    evaluated = where_evaluated(script)
    for name in queue:
        if name in evaluated:
            how, source = [], name
            while source in came:
                verb, source = came[source]
                how.append(f"{verb} {_shown(source)}")
            yield name, ", ".join([*how, sources[source]])


@functools.lru_cache(maxsize=16)
def _commands(script: str) -> list[tuple[int, int]]:
    """The spans ``(start, end)`` of the commands of ``script``: each runs from the end of the one
    before (``;``, ``&``, ``|`` or a newline, unquoted, outside ``$( … )``) to its own."""
    commands, start, last, depth = [], 0, 0, 0
    for i, where in [*_dollars(script, ends=True), (len(script), "the end of a command")]:
        if where != "the end of a command":
            continue
        depth, last = depth + script.count("(", last, i) - script.count(")", last, i), i
        if depth <= 0 or i == len(script):  # else a ; or | inside $( … ): the command goes on
            commands.append((start, i))
            start, depth = i + 1, 0
    return commands


# Builtins that take a word as a variable's name (bash evaluates a subscript in a name, so a value
# a[$(…)] there runs its $(…)), or as code; and what of their words is one.
_TAKERS = re.compile(  # at a command's place: after ; & | ( { ` ! or a newline, keywords, assignments (a
    # match never runs past one of those characters, so the matches from each take linear time in all)
    r"(?:^|(?<=[\n;&|({`!]))[ \t]*(?:(?:then|do|else|elif|if|while|until|time|command|builtin)[ \t]+)*"
    r"(?:[A-Za-z_][A-Za-z0-9_]*\+?=[^\s;&|({`!]*[ \t]+)*"
    r"(?P<taker>read|mapfile|readarray|unset|getopts|wait|declare|typeset|local|readonly|export|printf|test|\[\[?"
    r"|eval|trap|source|\.)(?=[\s;&|)]|$)"
)
_CODE = frozenset({"eval", "trap", "source", "."})
_DECLARES = frozenset({"declare", "typeset", "local", "readonly", "export"})
_INDIRECT = re.compile(r"\$\{!([A-Za-z_][A-Za-z0-9_]*)(?!\[[@*]\]|[A-Za-z0-9_*@])")  # ${!V}: V's value names a variable
_REDIRECT = re.compile(r"(?:[0-9]+|&)?(?:<<<|<<-|<<|<>|>>|>\||<&|>&|<|>)")  # a redirection's operator


def _words(script: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The words of ``script[start:end]`` as ``(start, end)``: split at white space outside quotes
    and ``$( … )``; a backslash escapes the next character."""
    i, word, quote, depth = start, -1, "", 0
    while i < end:
        c = script[i]
        if c.isspace() and not quote and depth == 0:
            if word >= 0:
                yield word, i
            word = -1
        else:
            word = i if word < 0 else word
            if c == "\\" and quote != "'":
                i += 1
            elif quote:
                quote = "" if c == quote else quote
            elif c in "'\"`":
                quote = c
            elif c == "(":
                depth += 1
            elif c == ")" and depth:
                depth -= 1
        i += 1
    if word >= 0:
        yield word, end


@functools.lru_cache(maxsize=16)
def _name_spans(script: str) -> list[tuple[int, int, str]]:
    """The spans ``(start, end, context)`` of ``script`` whose value bash takes as a variable's name
    (``a variable name``: the names of ``read``, ``mapfile``, ``unset``, ``getopts``, ``wait -p``,
    ``declare``/``local``/``export`` …  before their ``=``, all of a ``declare -n``, ``printf -v``'s,
    ``test -v``'s) or runs as code (``code bash runs``: ``eval``, ``trap``, ``source``), where such a
    builtin stands as a command (``_TAKERS``). Conservative: each word after it but options and
    redirections counts (an option's value too), to the command's end or the next such builtin.
    And where another program runs a value as code (``code a program runs``: ``bash -c``, ``python
    -c``, ``echo … | sh``; ``_program_code``)."""
    spans, pipeline = [], 0  # where the pipeline of the command starts (echo "$V" | tr a b | sh)
    for start, end in _commands(script):
        takers = list(_TAKERS.finditer(script, start, end))
        for j, taker in enumerate(takers):  # each one's words end where the next one stands
            after = takers[j + 1].start("taker") if j + 1 < len(takers) else end
            spans += _taken(script, taker.group("taker"), taker.end(), after)
        bar = start - 2 if script[start - 2 : start] == "|&" else start - 1  # `|&` pipes stderr too
        piped = bar >= 0 and script[bar] == "|" and script[bar - 1 : bar + 1] != "||"
        pipeline = pipeline if piped else start
        code = _program_code(script, start, end, (pipeline, bar) if piped else None)
        if piped and (pipeline, bar, "code a program runs") in code:  # its program read all before it
            pipeline = start
        spans += code
    return sorted(set(spans))


# Programs that run a word of theirs as code: a shell's -c, python's -c, perl's and ruby's -e,
# node's -e/-p, awk's program; a shell or interpreter given no code or script reads it from stdin.
_PROGRAMS = re.compile(r"(?P<shell>(?:ba|da|k|mk|z|a|c|tc)?sh|su)|(?P<python>python[0-9.]*)|(?P<perl>perl|ruby)"
                       r"|(?P<node>node(?:js)?)|(?P<awk>[gmn]?awk)")  # fmt: skip
_TAKES_VALUE = {  # options whose value is the next word
    "shell": ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"),
    "python": ("-W", "-X"),
    "perl": ("-I",),
    "node": ("-r", "--require", "--import"),
    "awk": ("-F", "-v"),
}


def _program_code(script: str, start: int, end: int, piped: tuple[int, int] | None) -> list[tuple[int, int, str]]:
    """The spans of ``_name_spans`` where a program of ``_PROGRAMS`` in the command ``script[start:end]``
    (anywhere in it: after ``xargs``, ``find -exec``, ``timeout``, ``env`` too) takes code: the word
    after ``bash -c`` (``-ec``, ``-o pipefail -c``), ``python -c``, ``perl -e``/``-ne``, ``node -e``,
    awk's program; and, when the program is given neither code nor a script file, what it reads from
    stdin: a here-string's word, or all of the command ``piped`` into it (``echo "$V" | sh``)."""
    words = list(_words(script, start, end))
    spans: list[tuple[int, int, str]] = []
    k = 0
    while k < len(words):  # a program's words are not read again as programs: linear in the words
        a, b = words[k]
        program = _PROGRAMS.fullmatch(script[a:b].rpartition("/")[2])
        k += 1
        if program is not None:
            found, k = _code_of(script, str(program.lastgroup), words, k, piped)
            spans += found
    return spans


def _code_of(
    script: str, kind: str, words: list[tuple[int, int]], k: int, piped: tuple[int, int] | None
) -> tuple[list[tuple[int, int, str]], int]:
    """``_program_code`` for one program of ``_PROGRAMS`` (``kind``, its group) whose words start at
    ``words[k]``; with the index of the word after the last it read."""
    code, stdin = [], []
    given = code_next = False
    skip = ""  # what the word before said the next one is: "value", "file" or "stdin"
    while k < len(words):
        c, d = words[k]
        word = script[c:d]
        k += 1
        if skip:
            stdin += [(c, d)] if skip == "stdin" else []
            skip = ""
        elif word.startswith("<<<"):  # a here-string: the program's stdin
            stdin += [(c + 3, d)] if len(word) > 3 else []
            skip = "" if len(word) > 3 else "stdin"
        elif _REDIRECT.match(word):
            skip = "file" if _REDIRECT.fullmatch(word) else ""
        elif code_next:
            code.append((c, d))
            given, code_next = True, False
        elif word in _TAKES_VALUE[kind]:
            skip = "value"
        elif kind == "node" and (word in ("-e", "-p", "--eval", "--print") or word.startswith(("--eval=", "--print="))):
            code += [(c, d)] if "=" in word else []
            given, code_next = given or "=" in word, "=" not in word
        elif word.startswith("-") and len(word) > 1 and not word.startswith("--") and kind != "node":
            letters = word[1:]
            at = max(letters.find(f) for f in {"shell": "c", "python": "c", "perl": "eE", "awk": "f"}[kind])
            if at >= 0 and kind == "awk":  # -f FILE: the program is a file
                given, skip = True, "value" if at == len(letters) - 1 else ""
            elif at >= 0 and kind != "shell" and at < len(letters) - 1:  # -c'print(1)', -e'…': code in the word
                code.append((c, d))
                given = True
            elif at >= 0:
                code_next = True
        elif word.startswith(("-", "+")):  # another option (-- too)
            continue
        elif kind == "awk" and not given:  # its program
            code.append((c, d))
            given = True
            break
        else:  # a script file (its stdin is data, not code), or the arguments after the code
            given = True
            break
        if given and not code_next and kind not in ("perl", "node"):  # perl -e, node -e may repeat
            break
    if not given:  # the code comes from stdin: a here-string, else the pipe
        code += stdin or ([piped] if piped else [])
    return [(c, d, "code a program runs") for c, d in code], k


def _taken(script: str, kind: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """The spans of ``_name_spans`` among the words of ``script[start:end]``, the arguments of the builtin ``kind``."""
    context = "code bash runs" if kind in _CODE else "a variable name"
    words = list(_words(script, start, end))
    nameref = kind in _DECLARES and any(script[a] == "-" and "n" in script[a:b] for a, b in words)
    spans, flag, redirect = [], False, False
    for a, b in words:
        word = script[a:b]
        if redirect or _REDIRECT.match(word):  # a redirection (and its target, when apart): a file, not a name
            redirect = _REDIRECT.fullmatch(word) is not None and not redirect
            continue
        if kind in ("printf", "test", "[", "[["):  # printf -v NAME, test -v NAME, [[ -R NAME ]]
            if flag:
                spans.append((a, b, context))
            elif kind == "printf" and word.startswith("-v") and len(word) > 2:
                spans.append((a + 2, b, context))
            flag = word == "-v" or (word == "-R" and kind != "printf")
        elif not word.startswith(("-", "+")):  # an option otherwise (declare -n's too)
            spans.append((a, b if nameref or kind not in _DECLARES else _name_end(script, a, b), context))
    return spans


def _name_end(script: str, start: int, end: int) -> int:
    """The end of the name part of a word ``name=value`` (at its first ``=`` outside quotes), else ``end``."""
    quote = ""
    for i in range(start, end):
        c = script[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "=":
            return i
    return end


@functools.lru_cache(maxsize=16)
def where_evaluated(script: str) -> dict[str, str]:
    """Each shell variable whose value ``script`` may evaluate, with where: ``an arithmetic test``
    (``_arithmetic``: its name there, ``$V`` or bare), ``a variable name`` (``$V`` in a name's place,
    ``_name_spans``, or ``${!V}``), ``code bash runs`` (``eval "$V"``) or ``code a program runs``
    (``bash -c "$V"``). A value ``a[$(…)]`` runs its ``$(…)`` in each (any code in the last two)."""
    found = dict.fromkeys(_arithmetic_names(script), "an arithmetic test")
    spans = _name_spans(script)
    starts = [a for a, _, _ in spans]
    reach: list[int] = []  # of the spans up to each, the one ending last (a pipe's span holds others)
    for k, (_, end, _) in enumerate(spans):
        reach.append(k if not reach or end > spans[reach[-1]][1] else reach[-1])
    for i, where in _dollars(script):
        if (indirect := _INDIRECT.match(script, i)) and where not in ("single quotes", "a comment"):
            found.setdefault(indirect.group(1), "a variable name")
        k = bisect.bisect_right(starts, i) - 1
        name = _expanded(script, i, where)
        inside = [span for span in (spans[k], spans[reach[k]]) if i < span[1]] if k >= 0 else []  # innermost first
        if name and not name.startswith("$") and inside:
            found.setdefault(name, inside[0][2])
    return found


def _shown(name: str) -> str:
    """A source of text as an error names it: ``$V`` (a shell variable), ``${p}`` (a pipeline's param)."""
    return name if name.startswith("$") else f"${name}"


def _expanded(script: str, i: int, where: str) -> str | None:
    """What the ``$`` at ``i`` (standing ``where``) expands: a pipeline's ``${name}`` as written, else
    the shell variable's name (``$V``, ``${V…}``, and ``$${V…}``: the pipeline's escape for ``${V…}``);
    ``None`` where the shell expands nothing (single quotes, a comment, ``$$``)."""
    var = VARIABLE.match(script, i)
    if var and not var.group(1):
        return var.group(0)
    used = None if where in ("single quotes", "a comment") else _EXPANSION.match(script, i + 1 if var else i)
    return used.group(1) if used else None


def _dollars(script: str, *, ends: bool = False) -> Iterator[tuple[int, str]]:
    """Each ``$`` of a shell script that may start an expansion, with where it stands: ``bare``,
    ``double quotes``, ``single quotes``, ``backquotes``, ``a heredoc`` or ``a comment``. A
    ``${name}``/``$${name}`` of the pipeline and the shell's ``$$`` are one; an escaped ``\\$`` and
    the inside of ``(( … ))`` and ``$(( … ))`` (its ``<<`` are shifts) are skipped. With ``ends``,
    also each ``;``, ``&``, ``|`` and newline outside quotes, comments and heredocs, as ``the end of
    a command``."""
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
        elif c in ";&|\n":
            if ends:
                yield i, "the end of a command"
            if c == "\n" and pending:  # the bodies of its heredocs follow
                where = "a heredoc"
        i += 1


def _arithmetic_end(script: str, i: int) -> int:
    """The index after the ``))`` closing the ``((`` at ``i`` on its line, else -1."""
    end = _layout(script).closing(i, "()")
    return end if end > 0 and script[end - 2] == ")" else -1
