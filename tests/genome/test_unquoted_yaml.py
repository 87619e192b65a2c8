"""A text field that YAML read as a boolean or a number (``name: on``, ``team: 0755``): the error said
only "Input should be a valid string", pointing at a value the user wrote as text. It now says what
YAML made of it and to quote it; a JSON body's error (no YAML involved) is left as it was."""

from __future__ import annotations

import pytest

from mnemos.errors import ValidationError
from mnemos.genome.kinds import parse_documents, parse_resource

POLICY = "apiVersion: genome.mnemos.dev/v1\nkind: Policy\nmetadata: {meta}\nspec: {{}}\n"


@pytest.mark.parametrize(
    ("meta", "param", "said"),
    [
        ("{name: on}", "metadata.name", 'YAML read it as true: an unquoted on, off, yes, no, true or false'),
        ("{name: no}", "metadata.name", "YAML read it as false"),
        ("{name: x, labels: {team: 0755}}", "metadata.labels.team", "YAML read it as the number 493: quote"),
    ],
)
def test_an_unquoted_value_yaml_typed_is_explained(meta: str, param: str, said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_documents(POLICY.format(meta=meta), "policy.yaml")
    assert refused.value.param == param and said in refused.value.message, refused.value.message
    assert refused.value.message.startswith(f"policy.yaml: Policy: {param}: Input should be a valid string")


def test_a_json_body_gets_no_yaml_hint() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_resource({"apiVersion": "genome.mnemos.dev/v1", "kind": "Policy", "metadata": {"name": True}, "spec": {}})
    assert refused.value.param == "metadata.name" and "YAML" not in refused.value.message
