"""``echo``: a runtime with no model that streams the prompt's last words back.

Used by tests and by ``benchmarks/relay_overhead.py`` so that a model's own time does not hide
the gateway's. Token counts are whitespace words.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mnemos.neuron.runtime import GenerationChunk, GenerationRequest, Runtime

__all__ = ["EchoRuntime"]


class EchoRuntime(Runtime):
    engine = "echo"

    async def start(self) -> None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if request.messages:
            text = " ".join(str(m.get("content") or "") for m in request.messages if m.get("role") == "user")
        else:
            text = request.prompt or ""
        words = text.split()
        out = words[: request.max_tokens]
        for i, word in enumerate(out):
            last = i == len(out) - 1
            yield GenerationChunk(
                text=(" " if i else "") + word,
                finish_reason=("length" if len(words) > request.max_tokens else "stop") if last else None,
                prompt_tokens=len(words) if last else 0,
                completion_tokens=len(out) if last else 0,
            )
        if not out:
            yield GenerationChunk(text="", finish_reason="stop", prompt_tokens=len(words), completion_tokens=0)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), float(len(t.split()))] for t in texts]
