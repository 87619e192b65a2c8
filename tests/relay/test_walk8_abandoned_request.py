"""A request the client leaves after the gateway sent it to an Adapter's upstream is charged its
reservation, not nothing.

The upstream goes on with such a request (OpenAI's API, like most, does not stop when the client
goes), but ``Handlers.generate`` settled it as 0 prompt and 0 completion tokens: a key with a token
budget could send large ``max_tokens`` requests and drop each one just before its answer came,
past its budget and its tokens-per-minute limit. Now it is charged its reservation (the prompt's
estimate and the completion's ceiling), as a stream cut short is charged what it sent.

The real ``Handlers`` over a real ``Gateway``, ``Meter`` and ``AdapterRouter`` (aiohttp) against a
slow upstream on 127.0.0.1; the client's leaving is the handler's task cancelled, as Serve cancels
it when the connection closes. No Ray.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from metering_support import metered_gateway
from starlette.requests import Request

from mnemos.config import load_settings
from mnemos.relay._edge import EdgeSeam
from mnemos.relay._handlers import Handlers
from mnemos.relay.openai_schema import ChatCompletionRequest, EmbeddingRequest

ANSWER = {"id": "up", "object": "chat.completion", "created": 0, "model": "slow-chat",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 2800}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 5, "completion_tokens": 700, "total_tokens": 705}}  # fmt: skip


async def _slow_upstream(arrived: asyncio.Event) -> tuple[web.AppRunner, int]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        arrived.set()
        await asyncio.sleep(3)  # the client has left by then
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_post("/v1/embeddings", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


def _request(doc: dict[str, Any], path: str) -> Request:
    body = json.dumps(doc).encode()
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "state": {}}  # fmt: skip
    request = Request(scope)
    request._body, request._json = body, doc
    return request


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings"])
def test_a_request_left_after_it_went_upstream_is_charged_its_reservation(tmp_path: Path, path: str) -> None:
    gateway = metered_gateway(tmp_path / "engram")
    embed = path.endswith("embeddings")
    doc: dict[str, Any] = {"model": "slow-chat", "input": "y" * 400} if embed else {
        "model": "slow-chat", "max_tokens": 900, "messages": [{"role": "user", "content": "y" * 400}]}

    async def run() -> list[dict[str, Any]]:
        arrived = asyncio.Event()
        runner, port = await _slow_upstream(arrived)
        gateway.apply({"version": 1, "models": {}, "adapters": {"slow": {
            "apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": "slow"},
            "spec": {"baseUrl": f"http://127.0.0.1:{port}/v1", "models": ["slow-chat"]}}}})  # fmt: skip
        settings = load_settings(engram={"uri": gateway.engram.uri}, relay={"auth": False})  # the caller: anonymous
        handlers = Handlers(gateway, EdgeSeam(settings, gateway.engram))
        call = handlers.embeddings(_request(doc, path), EmbeddingRequest.model_validate(doc)) if embed else \
            handlers.generate(_request(doc, path), ChatCompletionRequest.model_validate(doc), "chat")  # fmt: skip
        task = asyncio.ensure_future(call)
        try:
            await asyncio.wait_for(arrived.wait(), 10)
            task.cancel()  # the client went away while the upstream works on its answer
            with pytest.raises(asyncio.CancelledError):
                await task
            return [row for row in gateway.meter.governor._pending if not row.get("refused")]
        finally:
            await gateway.adapters.aclose()
            await runner.cleanup()

    rows = asyncio.run(run())
    assert len(rows) == 1, rows
    prompt_estimate = 400 // 2 + 4  # estimate_tokens: a ceiling of 2 bytes a token, plus 4
    if embed:
        assert (rows[0]["prompt"], rows[0]["completion"]) == (prompt_estimate, 0), rows
    else:
        assert (rows[0]["prompt"], rows[0]["completion"]) == (prompt_estimate, 900), rows
