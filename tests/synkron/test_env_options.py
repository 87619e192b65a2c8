"""A caller without ``execute`` passes no option to a script through a step's ``env`` either: with
``env: [{name: V, value: "${text}"}]``, ``printf "$V"`` would read ``-v…`` as an option as surely as
``printf ${text}`` would. Such a value is refused (422 naming the param) unless the script writes
``-- "$V"``; runs go through the real run path (``client.pipelines.run``, Ray, ENGRAM)."""

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
                                    'printf "%s" "$${V}" > "$MNEMOS_OUTPUT_OUT"'])  # fmt: skip
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


def test_after_the_end_of_options_a_dash_value_through_env_is_data(client: Any, pipelines: Any) -> None:
    guarded = _pipeline(pipelines, 'set -- "$V"; printf "%s" "$1" > "$MNEMOS_OUTPUT_OUT"')
    run = client.pipelines.run(guarded, {"text": "-v/etc/passwd"}, progress=False, principal=DEV)
    assert run.read("out") == b"-v/etc/passwd"
