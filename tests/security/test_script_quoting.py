"""A parameter put into a script is one shell-quoted word: safe only where the shell reads a word.
In double quotes, backquotes or a heredoc its ``$(…)`` would still run, in a comment a newline
would end the comment, and ``[[ x -eq y ]]`` evaluates ``a[$(…)]``: every write of a Pipeline
(and every run) refuses a text param there, naming the step and the fix."""

from __future__ import annotations

import subprocess

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.genome.pipeline import check_steps
from mnemos.synkron._interpolate import interpolate


def _pipeline(script: str, params: dict, env: list | None = None):  # noqa: ANN202
    step = {"name": "s", "script": script, "outputs": [{"name": "out"}], **({"env": env} if env else {})}
    return parse_resource({"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": "p"},
                           "spec": {"params": params, "steps": [step]}})  # fmt: skip


@pytest.mark.parametrize(
    ("script", "context"),
    [
        ('echo "${msg}" > "$MNEMOS_OUTPUT_OUT"', "double quotes"),
        ("cat > $MNEMOS_OUTPUT_OUT <<EOF\nvalue: ${msg}\nEOF", "a heredoc"),
        ("cat > $MNEMOS_OUTPUT_OUT <<-'EOF'\n\tvalue: ${msg}\n\tEOF", "a heredoc"),
        ("echo '${msg}'", "single quotes"),
        ("echo `printf %s ${msg}`", "backquotes"),
        ("# ${msg}\necho ok", "a comment"),
        ("[[ ${msg} -eq 1 ]] && echo one", "an arithmetic test"),
        ("echo $(( ${msg} + 1 ))", "an arithmetic test"),
    ],
)
def test_a_text_param_is_refused_where_it_would_not_be_a_word(script: str, context: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_steps(_pipeline(script, {"msg": "hello", "nothing": None}))
    assert refused.value.param == "spec.steps[0].script"
    assert f"${{msg}} stands in {context}" in refused.value.message and "env:" in refused.value.message
    with pytest.raises(ValidationError):  # a param whose default is null takes any value too
        check_steps(_pipeline(script.replace("${msg}", "${nothing}"), {"msg": "hello", "nothing": None}))


@pytest.mark.parametrize(
    "script",
    [
        'printf "%s" ${msg} > "$MNEMOS_OUTPUT_OUT"',  # a bare word: one quoted word
        "grep -c -- ${msg} /dev/null; echo $(printf %s ${msg})",  # bare inside $(…) too
        'echo "${RUN_ID} ${PIPELINE}" > "$MNEMOS_OUTPUT_OUT"',  # the platform's values, not a caller's
        "[[ ${count} -eq 1 ]] && echo \"${count}\"",  # a number param stays a number
        "echo $${msg} '$${msg}'",  # literal text, no param
    ],
)
def test_bare_words_numbers_and_the_platforms_values_pass(script: str) -> None:
    check_steps(_pipeline(script, {"msg": "hello", "count": 1}))


def test_the_way_the_message_offers_keeps_a_value_data() -> None:
    """``env: [{name: V, value: ${msg}}]`` and ``"$V"``: the value arrives as it was sent, never run."""
    pipeline = _pipeline('printf "%s|" "$V"', {"msg": "x"}, env=[{"name": "V", "value": "${msg}"}])
    check_steps(pipeline)
    hostile = "$(echo RAN) `echo RAN` ${HOME}\nEOF"
    step = interpolate(pipeline.spec.steps[0].model_dump(exclude_none=True), {"msg": hostile, "RUN_ID": "r",
                                                                              "PIPELINE": "p"})  # fmt: skip
    assert step["env"][0]["value"] == hostile
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", step["script"]], env={"V": step["env"][0]["value"]},
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert ran.stdout == hostile + "|"
