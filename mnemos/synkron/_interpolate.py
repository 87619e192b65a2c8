"""``${NAME}`` interpolation in step definitions.

``${RUN_ID}``, ``${PIPELINE}``, pipeline params and the outputs of earlier steps are the names a
step may use; ``$${`` writes a literal ``${``. An unknown name is a ``ValidationError`` naming
the field where it appears. A string that is only ``${name}`` takes the value itself (a number
stays a number); in a longer text a value that is no string is written as JSON (``true``,
``null``, ``["a", "b"]``: ``as_text``), as the pipeline and the API spell it.

In a shell field (``script``), every value is shell-quoted (``shlex.quote``) as it is put in:
a parameter is always one word of data, never code, whatever it contains (``; rm -rf /``,
``$(…)``, quotes, newlines). That holds where the shell reads a word: a text param written in
quotes, backquotes, a heredoc, a comment or anywhere bash evaluates arithmetic (``[[ ]]``,
``(( ))``, subscripts, ``declare -i`` …: a value ``a[$(…)]`` runs there) is refused on every
write and run of the pipeline, and so is one passed through the step's ``env`` into arithmetic
(``mnemos.genome._shell``, checked by ``check_steps``).

One word may still be an option: ``grep ${pattern} data.txt`` with the pattern ``-f/etc/passwd``.
So a caller without the verb ``execute`` may put into a script only values that are no option:
a string starting with ``-`` (other than a number such as ``-1``) is refused (422 naming
``params.<name>``) unless every ``${name}`` of the pipeline's scripts is written right after
``-- `` (the end of options: ``grep -- ${pattern} data.txt``), see ``option_risk`` and
``mnemos.synkron._plan.check_caller_values``. The same holds for a param a script step passes
through its ``env`` and the script reads as ``"$V"``: refused unless written ``-- "$V"``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from mnemos.errors import ValidationError
from mnemos.genome.pipeline import VARIABLE, after_end_of_options

SHELL_FIELDS = frozenset({"script"})
"""Fields whose interpolated values are shell-quoted."""
_NUMBER = re.compile(r"-[0-9]+(\.[0-9]+)?")


def interpolate(
    value: Any,
    variables: Mapping[str, Any],
    *,
    keep: frozenset[str] | set[str] = frozenset(),
    where: str = "",
    shell: bool = False,
) -> Any:
    """Replace ``${name}`` in every string of ``value``; a string that is only ``${name}`` takes
    the variable's value as it is (a number stays a number).

    Args:
        value: a string, or dicts and lists of them (other values pass through).
        variables: name → replacement (put into a longer text as ``as_text`` writes it).
        keep: names left as written (resolved in a later pass).
        where: the field path of ``value``, for error messages.
        shell: ``value`` is shell code: each value put in is ``shlex.quote``-d (set by itself for
            the fields in ``SHELL_FIELDS``).
    """
    if isinstance(value, str):
        whole = VARIABLE.fullmatch(value)
        if whole and not whole.group(1) and whole.group(2) in variables and not shell:
            return variables[whole.group(2)]  # "${limit}" alone keeps the param's type

        def sub(match: re.Match[str]) -> str:
            escaped, name = match.group(1), match.group(2)
            if escaped:
                return "${" + name + "}" if not keep else match.group(0)
            if name in variables:
                return shlex.quote(as_text(variables[name])) if shell else as_text(variables[name])
            if name in keep:
                return match.group(0)
            known = ", ".join(sorted(set(variables) | set(keep))) or "none"
            raise ValidationError(
                f"{where or 'value'}: unknown variable ${{{name}}} (known: {known})", param=where or None
            )

        return VARIABLE.sub(sub, value)
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, variables, keep=keep, where=f"{where}.{k}" if where else str(k),
                           shell=shell or k in SHELL_FIELDS)
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, list):
        return [interpolate(v, variables, keep=keep, where=f"{where}[{i}]", shell=shell) for i, v in enumerate(value)]
    return value


def as_text(value: Any) -> str:
    """A variable's value as it stands in a longer text: a string as it is, any other value as the
    JSON the pipeline and the API spell it in (``true``, ``null``, ``["a", "b"]``, ``{"k": 1}``), never
    Python's ``repr`` (``True``, ``None``, ``['a', 'b']``), which a script comparing ``${flag} = true``
    or parsing ``${items}`` as JSON would not understand."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON (a value set from Python): as Python writes it
        return str(value)


def option_risk(value: Any, name: str, text: Any, *, shell: bool = False) -> bool:
    """Whether the value ``text`` of the param ``name`` may reach a script of ``value`` (a step
    definition, before interpolation) as an option: ``text`` is a string starting with ``-`` that
    is not a number, and a shell field writes ``${name}`` other than right after ``-- ``."""
    if not option_like(text):
        return False
    if isinstance(value, str):
        return shell and any(
            m.group(2) == name and not m.group(1) and not after_end_of_options(value, m.start())
            for m in VARIABLE.finditer(value)
        )
    if isinstance(value, Mapping):
        return any(option_risk(v, name, text, shell=shell or k in SHELL_FIELDS) for k, v in value.items())
    if isinstance(value, list):
        return any(option_risk(v, name, text, shell=shell) for v in value)
    return False


def option_like(text: Any) -> bool:
    """Whether a value would be read as an option where a command takes one: a string starting
    with ``-`` that is not a number (``-1``, ``-0.5``)."""
    return isinstance(text, str) and text.startswith("-") and not _NUMBER.fullmatch(text)
