"""A space search through the gateway never loads the space's model into the gateway's replica:
when the model is not served, it is refused (503 naming ``model``), not loaded in-process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


def test_without_local_models_an_unserved_model_is_refused_not_loaded() -> None:
    from mnemos.errors import UnavailableError
    from mnemos.synkron.spaces import SpacesAPI

    loaded: list[str] = []
    api = SpacesAPI(SimpleNamespace(connected=False, engram=None, registry=None), local_models=False)
    api._local_embed = lambda model, text: loaded.append(model) or [0.0]  # type: ignore[method-assign]
    with pytest.raises(UnavailableError) as refused:
        api._embed("minilm", "how do plants make food")
    assert refused.value.param == "model" and "not served" in str(refused.value)
    assert refused.value.status == 503 and loaded == []
    notebook = SpacesAPI(SimpleNamespace(connected=False, engram=None, registry=None))
    notebook._local_embed = lambda model, text: loaded.append(model) or [0.0]  # type: ignore[method-assign]
    assert notebook._embed("minilm", "q") == [0.0] and loaded == ["minilm"]  # a notebook's default
