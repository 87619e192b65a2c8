"""The gateway's error answers (``mnemos.relay._errors``): client JSON paths and opaque 500s."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from mnemos.relay._errors import client_path, install_error_handlers

SENT = {
    "model": "m",
    "stop": "",
    "logit_bias": {"500": "x"},
    "response_format": {"type": "x"},
    "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": 5, "type": "function", "function": {"name": "f"}}]},
    ],
}


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        # vLLM validates an assistant's tool_calls lazily: its loc starts at the list, with class names
        ((0, "ChatCompletionMessageFunctionToolCallParam", "id"), "messages[1].tool_calls[0].id"),
        ((0, "ChatCompletionMessageFunctionToolCallParam", "function", "arguments"),
         "messages[1].tool_calls[0].function.arguments"),
        (("messages", 0, "ChatCompletionDeveloperMessageParam", "content", "str"), "messages[0].content"),
        (("response_format", "function-wrap[__log_extra_fields__()]", "type"), "response_format.type"),
        (("stop", "str"), "stop"),
        (("stop", "list[str]"), "stop"),
        (("logit_bias", "500", "[key]"), "logit_bias.500"),
        (("temperature",), "temperature"),  # a field the client left out is still named
        (("messages", 1, "tool_calls", 0, "ChatCompletionMessageCustomToolCallParam", "custom"),
         "messages[1].tool_calls[0].custom"),
    ],
)  # fmt: skip
def test_a_pydantic_location_is_the_clients_json_path(loc: tuple[object, ...], path: str) -> None:
    assert client_path(loc, SENT) == path


def test_a_500_names_a_request_id_not_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    """A 500 said ``the gateway failed with KeyError``: the class (and, elsewhere, the message) of
    an exception is the operator's to read, in the log line that the answer's request id finds."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/boom")
    async def boom() -> None:
        raise KeyError("sk-secret-name")

    with caplog.at_level(logging.ERROR, logger="mnemos.relay"), TestClient(app, raise_server_exceptions=False) as web:
        answer = web.get("/v1/boom")
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    assert "KeyError" not in answer.text and "sk-secret" not in answer.text
    request_id = answer.headers["x-request-id"]
    assert error["message"].startswith("internal error") and request_id in error["message"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert logged[0].exc_info[0] is KeyError and "sk-secret-name" in caplog.text


def test_a_model_on_its_way_says_when_to_ask_again_and_a_failed_one_does_not(tmp_path) -> None:  # noqa: ANN001
    """503 for a model still deploying carries ``Retry-After`` (the openai SDK waits that long
    before its retry); a failed one, which no retry mends, none. A spent budget tells the SDKs
    not to retry at all."""
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.errors import BudgetExceededError, UnavailableError
    from mnemos.relay._errors import error_response
    from mnemos.relay._gateway import Gateway
    from mnemos.relay._routes import ModelRoute

    settings = load_settings(engram={"uri": str(tmp_path / "engram")})
    gateway = Gateway(settings, Engram(str(tmp_path / "engram")), None)
    for status, retry in (("deploying", "5"), ("pending", "5"), ("failed", None)):
        gateway.models["m"] = ModelRoute("m", {"name": "m", "status": status, "reason": "Why"})
        with pytest.raises(UnavailableError) as refused:
            gateway.model("m", "generate")
        answer = error_response(refused.value)
        assert answer.status_code == 503 and answer.headers.get("retry-after") == retry, (status, answer.headers)
    spent = error_response(BudgetExceededError("budget spent", param="key.budget", retry_after=3600))
    assert (spent.status_code, spent.headers["retry-after"], spent.headers["x-should-retry"]) == (429, "3600", "false")
