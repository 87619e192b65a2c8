"""Helpers of the attack suite: the gateway handle, documents, a recording upstream server.

(Not named conftest: imported by the test modules through plain imports.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from tests_support import serving, until

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

        state = until(lambda: self.call("GET", f"/v1/runs/{run_id}", who).json(), f"run {run_id} to end",
                      ready=lambda s: s["status"] in _state.TERMINAL, timeout=timeout_s, interval=0.5)  # fmt: skip
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
    """``with Capture() as up: up.url, up.requests``: uvicorn in a thread."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> dict[str, Any]:
            self.requests.append({"headers": dict(request.headers), "body": await request.json()})
            return {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}

        self.serving = serving(app)

    def __enter__(self) -> Capture:
        self.url = self.serving.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.serving.__exit__(*exc)

