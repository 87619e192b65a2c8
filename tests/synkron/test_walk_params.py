"""An undeclared param is refused naming it, without echoing a name no param could have whole."""

from __future__ import annotations

import pytest

from mnemos.errors import ValidationError
from mnemos.genome import parse_resource
from mnemos.synkron._plan import merge_params

PIPELINE = parse_resource(
    {
        "apiVersion": "synkron.mnemos.dev/v1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {"params": {"space": "x"}, "steps": [{"name": "a", "script": "true"}]},
    }
)


def test_an_undeclared_params_long_name_is_not_echoed_whole() -> None:
    """A body of one 500,000-character param name was answered with 1 MB: the name in the message
    and in ``param``."""
    with pytest.raises(ValidationError) as refused:
        merge_params(PIPELINE, {"k" * 500_000: 1})
    assert refused.value.param == f"params.{'k' * 80}…" and len(refused.value.message) < 200, refused.value.message
    assert "is not declared in spec.params (declared: space)" in refused.value.message
    with pytest.raises(ValidationError) as short:
        merge_params(PIPELINE, {"nope": 1})
    assert short.value.param == "params.nope"
