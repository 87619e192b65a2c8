"""One route interface: a model name resolves to a Model's route or an Adapter's, never a bare string.

Real ``Gateway`` on a local ENGRAM, no Ray: the routing table is applied as the controller sends
it, and lineage is written and read back through ENGRAM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _adapter(name: str, models: list[str]) -> dict[str, Any]:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": name},
            "spec": {"baseUrl": "http://127.0.0.1:9/v1", "models": models,
                     "pricing": {"remote-chat": {"input": 1.0, "output": 2.0}}}}  # fmt: skip


@pytest.fixture()
def gateway(tmp_path: Path) -> Any:
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._gateway import Gateway
    from mnemos.trace.lineage import LineageWriter

    engram = Engram(str(tmp_path / "engram"))
    gw = Gateway(load_settings(engram={"uri": engram.uri}), engram, controller=None)
    entry = {"name": "local-chat", "status": "deploying", "generation": 3, "digest": "sha256:" + "a" * 64,
             "serving": "runtime", "max_tokens": 64}  # fmt: skip
    gw.apply({"version": 1, "models": {"local-chat": entry}, "adapters": {"up": _adapter("up", ["remote-chat"])}})
    gw._lineage = LineageWriter(engram)  # what start() opens, without the controller's long-poll
    return gw


def test_an_adapter_served_model_is_a_route_whose_lineage_names_the_adapter(gateway: Any) -> None:
    from mnemos.relay._routes import AdapterModelRoute, ModelRoute
    from mnemos.trace.lineage import events

    route = gateway.model("remote-chat", "generate")
    assert route == AdapterModelRoute("remote-chat", "up")
    assert (route.serving, route.generation, route.digest, route.max_tokens) == ("adapter", None, None, None)
    assert gateway.meter.specs(route)[0].input == 1.0  # the Adapter's price for this model name

    served = ModelRoute.build(gateway.models["local-chat"].entry, None)
    assert (served.serving, served.generation, served.adapter, served.max_tokens) == ("runtime", 3, None, 64)

    gateway.record("r1", route, None, endpoint="chat", stream=False, status=200)
    gateway.record("r2", served, None, endpoint="chat", stream=False, prompt_tokens=2, completion_tokens=5)
    gateway._write_lineage(gateway._take_records())
    requests = {e["id"]: e for e in events(gateway.engram) if e["type"] == "request"}
    adapted, local = requests["request:r1"], requests["request:r2"]
    assert adapted["parents"] == ["model:remote-chat@?"]
    assert adapted["attrs"]["adapter"] == "up" and adapted["attrs"]["model"] == "remote-chat"
    assert local["parents"] == ["model:local-chat@3"]
    assert "adapter" not in local["attrs"]
    assert local["attrs"]["model_digest"] == "sha256:" + "a" * 64
    assert local["attrs"]["usage"] == {"prompt": 2, "completion": 5}


def test_unknown_and_unready_models_are_refused_naming_the_model(gateway: Any) -> None:
    from mnemos.errors import UnavailableError
    from mnemos.relay._errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError) as missing:
        gateway.model("nothing-serves-this", "generate")
    assert missing.value.param == "model"
    with pytest.raises(UnavailableError, match="deploying") as unready:
        gateway.model("local-chat", "generate")
    assert unready.value.param == "model"
