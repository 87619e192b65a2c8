"""A caller without ``execute`` passes no option to a script through a step's ``env`` either: with
``env: [{name: V, value: "${text}"}]``, ``printf "$V"`` would read ``-v…`` as an option as surely as
``printf ${text}`` would (``${V:-x}`` and ``$${V}`` too). Such a value is refused (422 naming the
param) unless the script writes ``-- "$V"``; a ``$V`` the shell does not expand (in single quotes, a
comment, escaped) does not count. Runs go through the real run path (``client.pipelines.run``, Ray, ENGRAM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mnemos.errors import ValidationError
from mnemos.soul.identity import Principal

DEV, OPERATOR = Principal("dana", "developer", "apikey"), Principal("olga", "operator", "apikey")


def _pipeline(pipelines: Any, script: str) -> Path:
    return pipelines.write([{"name": "say", "script": script, "env": [{"name": "V", "value": "${text}"}],
                             "outputs": [{"name": "out"}]}], name="env-option", params={"text": "hi"})  # fmt: skip


@pytest.mark.parametrize("script", ['printf "%s" "$V" > "$MNEMOS_OUTPUT_OUT"', "printf %s $V > $MNEMOS_OUTPUT_OUT",
                                    'printf "%s" "$${V}" > "$MNEMOS_OUTPUT_OUT"',
                                    'printf %s ${V:-none} > "$MNEMOS_OUTPUT_OUT"'])  # fmt: skip
def test_a_dash_value_through_env_is_refused_unless_the_script_ends_options(client: Any, pipelines: Any,
                                                                            script: str) -> None:  # fmt: skip
    unsafe = _pipeline(pipelines, script)
    with pytest.raises(ValidationError) as refused:
        client.pipelines.run(unsafe, {"text": "-v/etc/passwd"}, progress=False, principal=DEV)
    assert (refused.value.status, refused.value.param) == (422, "params.text")
    assert '-- "$V"' in refused.value.message
    run = client.pipelines.run(unsafe, {"text": "plain"}, progress=False, principal=DEV)  # no option: fine
    assert run.read("out") == b"plain"
    run = client.pipelines.run(unsafe, {"text": "-x"}, progress=False, principal=OPERATOR)  # execute: any value
    assert run.read("out") == b"-x"


@pytest.mark.parametrize("script", ['set -- "$V"; printf "%s" "$1" > "$MNEMOS_OUTPUT_OUT"',
                                    'set -- "${V:-none}"; printf "%s" "$1" > "$MNEMOS_OUTPUT_OUT"'])  # fmt: skip
def test_after_the_end_of_options_a_dash_value_through_env_is_data(client: Any, pipelines: Any, script: str) -> None:
    guarded = _pipeline(pipelines, script)
    run = client.pipelines.run(guarded, {"text": "-v/etc/passwd"}, progress=False, principal=DEV)
    assert run.read("out") == b"-v/etc/passwd"


SINK = '\nset -- "$V"; printf %s "$1" >> "$MNEMOS_OUTPUT_OUT"'  # the one use: after the end of options


@pytest.mark.parametrize(
    ("script", "out"),
    [
        ("printf %s '$V ' > \"$MNEMOS_OUTPUT_OUT\"", b"$V "),  # single quotes: no expansion
        ('printf %s "\\$V " > "$MNEMOS_OUTPUT_OUT"', b"$V "),  # escaped
        (': > "$MNEMOS_OUTPUT_OUT" # not printf $V', b""),  # a comment
        ('printf %s $${V:-d} | tail -c 6 > "$MNEMOS_OUTPUT_OUT"', b"{V:-d}"),  # $$ (the shell's pid), then {V:-d}
    ],
)
def test_where_the_shell_does_not_expand_it_a_dash_value_is_data(client: Any, pipelines: Any,
                                                                   script: str, out: bytes) -> None:  # fmt: skip
    run = client.pipelines.run(_pipeline(pipelines, script + SINK), {"text": "-v/etc/passwd"}, progress=False,
                               principal=DEV)  # fmt: skip
    assert run.read("out") == out + b"-v/etc/passwd"
