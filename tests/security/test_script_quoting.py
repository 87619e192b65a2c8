"""A parameter put into a script is one shell-quoted word: safe only where the shell reads a word.
In double quotes, backquotes or a heredoc its ``$(…)`` would still run, in a comment a newline
would end the comment, and arithmetic (``[[ x -eq y ]]``, ``(( … ))``, ``${a[…]}``, ``declare -i``…)
evaluates ``a[$(…)]``: every write of a Pipeline (and every run) refuses a text param there, naming
the step and the fix. Arithmetic runs ``a[$(…)]`` even from a variable, so a text param passed
through a step's ``env`` is refused where the script evaluates that variable as arithmetic, and so
is one that gets there through copies (``x=$V``, ``read x``, ``declare -i n; n=$V``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from tests_support import run_cli

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome import Registry, parse_resource
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
        ("echo ${a[${msg}]}", "an arithmetic test"),
        ("a[${msg}]=1", "an arithmetic test"),
        ("declare -i n=${msg}", "an arithmetic test"),
        ("echo $[${msg} + 1]", "an arithmetic test"),
        ("echo ${s:${msg}}", "an arithmetic test"),
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
        '[[ ${count} -eq 1 ]] && echo "${count}"',  # a number param stays a number
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


RAN = "zz-ran"
HOSTILE = "a[$(printf zz-%s ran >&2)]"  # its $(…) prints zz-ran only when bash runs it
ARITHMETIC = ["[[ $V -eq 1 ]] && echo one", "(( V > 1 )) && echo big", 'echo "${a[$V]}"', "declare -i n=$V",
              "echo $(( $${V} + 1 ))"]  # fmt: skip


def _bash(pipeline, msg: str) -> str:  # noqa: ANN001
    """What the pipeline's one script step writes on stderr when a run sends ``msg``."""
    step = interpolate(pipeline.spec.steps[0].model_dump(exclude_none=True), {"msg": msg, "RUN_ID": "r",
                                                                              "PIPELINE": "p"})  # fmt: skip
    env = {var["name"]: var["value"] for var in step.get("env", [])}
    return subprocess.run(["bash", "-c", step["script"]], env=env, capture_output=True, text=True).stderr


@pytest.mark.parametrize("script", ARITHMETIC)
def test_a_text_param_through_env_into_arithmetic_is_refused(script: str, tmp_path: Path) -> None:
    env = [{"name": "V", "value": "${msg}"}]
    assert RAN in _bash(_pipeline(script, {"msg": 1}, env=env), HOSTILE)  # what the check keeps out
    registry = Registry(Engram(str(tmp_path / "engram")))
    for default in ("hello", None):
        with pytest.raises(ValidationError) as refused:
            registry.apply(_pipeline(script, {"msg": default}, env=env))
        assert refused.value.param == "spec.steps[0].script"
        message = refused.value.message
        assert "$V (env: ${msg}, a text param) stands in an arithmetic test" in message, message
        assert "a[$(…)]" in message and "as a number" in message and '[ "$V" = … ]' in message
    assert not (tmp_path / "engram" / "registry").exists()  # nothing stored
    registry.apply(_pipeline(script, {"msg": 1}, env=env))  # a number param: callers send only numbers


def test_mnemos_validate_refuses_it_too(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    doc = _pipeline("[[ $V -eq 1 ]]", {"msg": "x"}, env=[{"name": "V", "value": "v-${msg}"}]).dump()
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    _, err = run_cli(capsys, "validate", "-f", "p.yaml", code=2)
    assert err.startswith("error: pipeline/p: spec.steps[0] (s).script: $V (env: ${msg}, a text param) stands in"), err


@pytest.mark.parametrize(
    ("script", "env", "chain"),
    [
        ("x=$V; (( x > 1 )) && echo big", True, "$x (copied from $V, env: ${msg}, a text param)"),
        ('read -r x <<< "$V"; echo $(( x + 1 ))', True, "$x (read from input that may carry $V, env: ${msg}, a "
                                                         "text param)"),
        ('x=$V\ny="$x"\necho "${a[y]}"', True, "$y (copied from $x, copied from $V, env: ${msg}, a text param)"),
        ("declare -i n\nn=$V", True, "$n (copied from $V, env: ${msg}, a text param)"),
        ("x=${msg}; (( x > 1 )) && echo big", False, "$x (copied from ${msg}, a text param)"),  # no env
    ],
)  # fmt: skip
def test_a_text_param_copied_into_arithmetic_is_refused(script: str, env: bool, chain: str, tmp_path: Path) -> None:
    step_env = [{"name": "V", "value": "${msg}"}] if env else None
    assert RAN in _bash(_pipeline(script, {"msg": 1}, env=step_env), HOSTILE)  # what the check keeps out
    registry = Registry(Engram(str(tmp_path / "engram")))
    with pytest.raises(ValidationError) as refused:
        registry.apply(_pipeline(script, {"msg": "hello"}, env=step_env))
    assert refused.value.param == "spec.steps[0].script"
    message = refused.value.message
    assert f"spec.steps[0] (s).script: {chain} stands in an arithmetic test" in message, message
    assert "as a number" in message and '[ "$V" = … ]' in message
    registry.apply(_pipeline(script, {"msg": 1}, env=step_env))  # a number param: callers send only numbers


@pytest.mark.parametrize(
    "script",
    ['[ "$V" = one ] && echo one', 'case "$V" in one) echo one ;; esac', '[ "$V" -eq 1 ] 2>/dev/null || echo no',
     'printf %s "${V:-none}" "$V"', "(( W + 1 )); echo ${a[1]} ${s:1}", 'x=$V; [ "$x" = one ] && echo one',
     'i=0; echo "$V"; (( i++ ))'],
)  # fmt: skip
def test_a_text_param_through_env_compared_as_text_passes(script: str) -> None:
    pipeline = _pipeline(script, {"msg": "x"}, env=[{"name": "V", "value": "${msg}"}])
    check_steps(pipeline)
    assert RAN not in _bash(pipeline, HOSTILE)
