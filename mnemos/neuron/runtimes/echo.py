"""``echo``: a runtime with no model that streams the prompt's last words back.

Used by tests and by ``benchmarks/relay_overhead.py`` so that a model's own time does not hide
the gateway's. Token counts are whitespace words; ``stop`` strings end the answer before them.
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
        pieces = [(" " if i else "") + word for i, word in enumerate(words[: request.max_tokens])]
        finish = "length" if len(words) > request.max_tokens else "stop"
        answer = "".join(pieces)
        cut = min((at for at in (answer.find(s) for s in request.stop if s) if at >= 0), default=-1)
        if cut >= 0:  # a stop string: the answer ends before it, as a model's would
            finish, kept, end = "stop", [], 0
            for piece in pieces:
                if end + len(piece) > cut:
                    if answer[end:cut]:
                        kept.append(answer[end:cut])
                    break
                kept.append(piece)
                end += len(piece)
            pieces = kept
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield GenerationChunk(
                text=piece,
                finish_reason=finish if last else None,  # type: ignore[arg-type]
                prompt_tokens=len(words) if last else 0,
                completion_tokens=len(pieces) if last else 0,
            )
        if not pieces:
            yield GenerationChunk(text="", finish_reason=finish, prompt_tokens=len(words),  # type: ignore[arg-type]
                                  completion_tokens=0)  # fmt: skip

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), float(len(t.split()))] for t in texts]
