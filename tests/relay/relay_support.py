"""Helpers for the RELAY tests: the gateway handle, an OpenAI-compatible upstream server.

(Not named conftest: shared by the relay test modules through plain imports.)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from tests_support import free_port as free_port  # (re-exported: relay tests import it from here)
from tests_support import serving, until

MODEL_SERVER = "ModelServer"


@dataclass
class Relay:
    """The running gateway: its port, the MNEMOS client and the relay controller."""

    client: Any
    controller: Any
    port: int
    settings: Any
    prefix: str = ""  # the application's route prefix (a second gateway app on the same Serve)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def openai(self, **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, **kwargs)

    def sync(self, timeout: float = 240.0) -> dict[str, Any]:
        """Wait until the controller reconciled every change and the gateway has the routes."""
        import ray

        return ray.get(self.controller.wait_synced.remote(None, timeout))  # type: ignore[no-any-return]

    def apply(self, *docs: dict[str, Any]) -> dict[str, Any]:
        self.client.apply(list(docs))
        return self.sync()

    def delete(self, kind: str, name: str) -> dict[str, Any]:
        self.client.delete(kind, name)
        return self.sync()

    def model_stats(self, model: str) -> dict[str, int]:
        from ray import serve

        handle = serve.get_deployment_handle(MODEL_SERVER, app_name=f"model-{model}")
        return handle.stats.remote().result(timeout_s=60)  # type: ignore[no-any-return]


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """``tests_support.until`` with the bounds the RELAY tests were written for."""
    return until(predicate, timeout=timeout, interval=interval)


def assert_openai_error(response: Any, status: int, *, code: str | None = None, param: str | None = None,
                        type_: str = "invalid_request_error") -> dict[str, Any]:  # fmt: skip
    """The response is ``status`` with OpenAI's error body; returns ``error``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == type_, error
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error  # type: ignore[no-any-return]


def published_stream_check(url: str, path: str, headers: dict[str, str] | None = None) -> Callable[[list[str]], None]:
    """A check of a streamed answer's ``data:`` values (in order) against the ``text/event-stream``
    content ``/openapi.json`` publishes for ``POST path``: each event against the event's schema,
    each JSON ``data`` against its ``contentSchema`` (which a validator only annotates), resolved in
    the document's own ``components``; the last is ``[DONE]``."""
    import httpx
    from jsonschema import Draft202012Validator

    spec = httpx.get(f"{url}/openapi.json", headers=headers).json()
    content = spec["paths"][path]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}, content
    event = content["text/event-stream"]["schema"]
    json_branch = next(branch for branch in event["properties"]["data"]["anyOf"] if "contentSchema" in branch)
    events = Draft202012Validator({**event, "components": spec["components"]})
    chunks = Draft202012Validator({**json_branch["contentSchema"], "components": spec["components"]})

    def check(data: list[str]) -> None:
        assert data and data[-1] == "[DONE]", data[-3:]
        for value in data:
            assert not list(events.iter_errors({"data": value})), value
            if value != "[DONE]":
                errors = [e.message for e in chunks.iter_errors(json.loads(value))]
                assert not errors, (errors, value)

    return check


def sse_data(response: Any) -> list[str]:
    """The ``data:`` values of an event stream (an ``httpx`` streamed response), in order."""
    return [line[5:].removeprefix(" ") for line in response.iter_lines() if line.startswith("data:")]


@dataclass
class Upstream:
    """A small OpenAI-compatible server on 127.0.0.1 that can fail on purpose.

    ``fail_next``: how many of the next requests answer ``fail_status`` before it serves again.
    ``requests``: every request received (path, model, authorization header); ``bodies``: their JSON.
    """

    name: str
    port: int = 0
    fail_next: int = 0
    fail_status: int = 503
    always_fail: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        with self.lock:
            self.fail_next = 0
            self.fail_status = 503
            self.always_fail = False
            self.requests.clear()
            self.bodies.clear()

    def app(self) -> FastAPI:
        app = FastAPI()

        def _failing(request: Request, body: dict[str, Any]) -> Response | None:
            with self.lock:
                self.bodies.append(body)
                self.requests.append(
                    {
                        "path": request.url.path,
                        "model": body.get("model"),
                        "authorization": request.headers.get("authorization"),
                    }  # fmt: skip
                )
                if self.always_fail or self.fail_next > 0:
                    self.fail_next = max(0, self.fail_next - 1)
                    return JSONResponse({"detail": "overloaded"}, status_code=self.fail_status,
                                        headers={"Retry-After": "7"} if self.fail_status == 429 else None)  # fmt: skip
            return None

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            failed = _failing(request, body)
            if failed is not None:
                return failed
            if body.get("user") == "echo":  # a debugging proxy that echoes the request it got, headers too
                return JSONResponse({"detail": "bad request", "headers": dict(request.headers)}, status_code=400)
            if body.get("user") == "echo-ok":  # ... in a success, or in a stream split inside the credential
                echoed = "debug: " + str(request.headers.get("authorization"))
                if body.get("stream"):
                    return StreamingResponse(_split_echo(body["model"], echoed), media_type="text/event-stream")
                return JSONResponse({"id": "up-1", "object": "chat.completion", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": echoed},
                                                  "finish_reason": "stop"}]})  # fmt: skip
            if body.get("user") in ("html", "not-json"):  # a maintenance page, a broken proxy: 200 all the same
                page = b"<html><h1>Down for maintenance</h1></html>" if body["user"] == "html" else b"not json at all"
                return Response(page, media_type="text/html" if body["user"] == "html" else "application/json")
            if str(body.get("user")).startswith("redirect:"):  # a 307 keeps the POST, body and all
                return Response(status_code=307, headers={"Location": str(body["user"])[len("redirect:"):]})
            if body.get("user") == "refused":
                return JSONResponse(
                    {
                        "error": {
                            "message": "this user is refused upstream",
                            "type": "invalid_request_error",
                            "param": "user",
                            "code": "refused",
                        }
                    },  # fmt: skip
                    status_code=400,
                )
            text = f"{self.name} says hi"
            if body.get("stream"):

                usage = bool((body.get("stream_options") or {}).get("include_usage"))  # as OpenAI's API

                async def events() -> Iterator[bytes]:  # type: ignore[misc]
                    words = text.split()
                    for i, word in enumerate(words):
                        delta = {"content": (" " if i else "") + word}
                        choice = {"index": 0, "delta": delta, "finish_reason": None}
                        chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0,
                                 "model": body["model"], "choices": [choice]} | ({"usage": None} if usage else {})
                        yield f"data: {json.dumps(chunk)}\n\n".encode()
                    if usage:  # the last chunk: no choices, the counts
                        counts = {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": 1 + len(words)}
                        chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                                 "choices": [], "usage": counts}  # fmt: skip
                        yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()  # (CRLF: SSE allows either)
                    yield b"data: [DONE]\n\n"

                return StreamingResponse(events(), media_type="text/event-stream")
            return JSONResponse(
                {
                    "id": "up-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
                }  # fmt: skip
            )

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            failed = _failing(request, body)
            if failed is not None:
                return failed
            return JSONResponse(
                {
                    "object": "list",
                    "model": body["model"],
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }  # fmt: skip
            )

        return app


async def _split_echo(model: str, echoed: str) -> AsyncIterator[bytes]:
    """One SSE event carrying ``echoed``, sent in three writes: the middle one splits ``echoed``'s
    last 6 characters from the rest (inside the credential it ends with)."""
    chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": model,
             "choices": [{"index": 0, "delta": {"content": echoed}, "finish_reason": None}]}  # fmt: skip
    event = f"data: {json.dumps(chunk)}\n\n".encode()
    cut = event.index(echoed[-6:].encode())
    for part in (event[:cut], event[cut:], b"data: [DONE]\n\n"):
        yield part
        await asyncio.sleep(0.05)  # separate reads at the gateway


class UpstreamServer:
    """Runs an :class:`Upstream` app with uvicorn in a thread."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.serving = serving(upstream.app(), lifespan="off")

    def __enter__(self) -> Upstream:
        self.upstream.port = int(self.serving.__enter__().rpartition(":")[2])
        return self.upstream

    def __exit__(self, *exc: Any) -> None:
        self.serving.__exit__(*exc)


def adapter_app(root: Any, adapters: dict[str, dict[str, Any]], *, secrets: dict[tuple[str, str], str] | None = None
                ) -> Any:  # fmt: skip
    """A ``TestClient`` of the gateway's app (auth off, no Ray) over ENGRAM under ``root``, routing to
    ``adapters`` (name -> Adapter ``spec``); ``secrets``: ``(name, key) -> value`` in the file store."""
    from starlette.testclient import TestClient

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.relay._edge import EdgeSeam
    from mnemos.relay._gateway import Gateway
    from mnemos.relay.ingress import create_app
    from mnemos.soul.secrets import secret_store

    settings = load_settings(engram={"uri": str(root / "engram")}, relay={"auth": False})
    for (name, key), value in (secrets or {}).items():
        secret_store("file", settings).set(name, key, value)
    engram = Engram(str(root / "engram"))
    gateway = Gateway(settings, engram, None)
    docs = {name: {"apiVersion": "genome.mnemos.dev/v1", "kind": "Adapter", "metadata": {"name": name}, "spec": spec}
            for name, spec in adapters.items()}  # fmt: skip
    gateway.apply({"version": 1, "models": {}, "adapters": docs})
    return TestClient(create_app(gateway, EdgeSeam(settings, engram)))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""A :class:`RawUpstream`'s answer to one request, its head and body already read."""


class RawUpstream:
    """``with RawUpstream(handler) as port``: an asyncio server on 127.0.0.1 in a thread of its own,
    answering each request with ``handler(reader, writer)``; ``requests`` counts them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="raw-upstream")

    def _run(self) -> None:
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))  # fmt: skip
        await reader.readexactly(length)
        self.requests += 1
        try:
            await self.handler(reader, writer)
        except ConnectionError:  # the gateway gave up on it
            pass
        finally:
            writer.close()

    def __enter__(self) -> int:
        self._thread.start()
        assert self._ready.wait(10), "the raw upstream did not start"
        return self.port

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
