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
