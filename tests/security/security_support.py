"""Helpers of the attack suite: the gateway handle, documents, a recording upstream server.

(Not named conftest: imported by the test modules through plain imports.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request

T = "mnemos.cortex.testing"


@dataclass
class Gateway:
    """The running gateway: ``url``, ``keys[role]`` (``developer``, ``developer-b``, …), ``client``."""

    url: str
    client: Any
    settings: Any
    store: Any
    keys: dict[str, str]
    markers: Path

    def call(self, method: str, path: str, who: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.keys.get(who, who)}"
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def admin_jobs(self) -> list[dict[str, Any]]:
        listed = self.call("GET", "/v1/jobs", "admin", params={"limit": 10_000})
        assert listed.status_code == 200, listed.text
        return list(listed.json()["data"])

    def finished_run(self, run_id: str, who: str = "admin", timeout_s: float = 180) -> dict[str, Any]:
        """The state of the run ``run_id`` as ``who`` reads it, once it has ended (polled, bounded)."""
        from mnemos.synkron import _state

        deadline = time.monotonic() + timeout_s
        while (state := self.call("GET", f"/v1/runs/{run_id}", who).json())["status"] not in _state.TERMINAL:
            assert time.monotonic() < deadline, f"run {run_id} still {state['status']} after {timeout_s} s"
            time.sleep(0.5)
        return dict(state)


def function_doc(name: str, entrypoint: str, parameters: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "genome.mnemos.dev/v1", "kind": "Function", "metadata": {"name": name},
            "spec": {"entrypoint": entrypoint, "parameters": parameters, **spec}}  # fmt: skip


def say_pipeline(name: str, default: str) -> dict[str, Any]:
    """A Pipeline whose one script step echoes ``text`` (default ``default``) to its log and its
    output ``out``, then exits ``code``: data a run's owner reads and others must not."""
    script = 'echo ${text}; printf "%s" ${text} > "$MNEMOS_OUTPUT_OUT"; exit ${code}'
    return {"apiVersion": "synkron.mnemos.dev/v1", "kind": "Pipeline", "metadata": {"name": name},
            "spec": {"params": {"text": default, "code": 0},
                     "steps": [{"name": "say", "script": script, "outputs": [{"name": "out"}]}]}}  # fmt: skip


SCRIPT_PIPELINE = {
    "apiVersion": "synkron.mnemos.dev/v1",
    "kind": "Pipeline",
    "metadata": {"name": "echo-text"},
    "spec": {
        "params": {"text": "hello"},
        "steps": [
            {"name": "say", "script": 'printf "%s" ${text} > "$MNEMOS_OUTPUT_OUT"', "outputs": [{"name": "out"}]}
        ],
    },
}


class Capture:
    """``with Capture(port) as up: up.url, up.requests``: uvicorn in a thread."""

    def __init__(self, port: int) -> None:
        import uvicorn

        self.requests: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            self.requests.append({"headers": dict(request.headers), "body": await request.json()})
            return {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Capture:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

