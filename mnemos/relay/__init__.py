"""RELAY: MNEMOS's OpenAI-compatible gateway on Ray Serve.

One Serve application per served Model (``model-<name>``, replicas and resources from the spec),
a FastAPI ingress on ``/`` that routes by model name, upstream adapters for OpenAI-compatible
servers, and ``relay-controller``, the actor that keeps Serve in step with the GENOME registry.

>>> from ray import serve
>>> from mnemos.relay import build_app
>>> serve.run(build_app({"engram_uri": "/tmp/engram"}), name="mnemos")   # doctest: +SKIP
"""

from mnemos.relay.app import APP_NAME, build_app, ensure, stop, sync
from mnemos.relay.controller import CONTROLLER_NAME, RelayController, ensure_controller, get_controller
from mnemos.relay.model_server import ModelServer, deployment_options, model_application

__all__ = [
    "APP_NAME",
    "CONTROLLER_NAME",
    "ModelServer",
    "RelayController",
    "build_app",
    "deployment_options",
    "ensure",
    "ensure_controller",
    "get_controller",
    "model_application",
    "stop",
    "sync",
]
