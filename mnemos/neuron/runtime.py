"""The one interface every NEURON model runtime implements.

Runtimes: ``transformers`` (CPU/GPU, dynamic batching), ``vllm`` (vLLM's async engine),
``embedding`` (sentence-transformers), ``echo`` (no model: returns the prompt's words, for
tests and for measuring the gateway without a model's own time). Pick one with
``runtime_class(engine)``; an unknown engine lists the valid ones.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mnemos.errors import BadRequestError, NotFoundError

__all__ = ["GenerationChunk", "GenerationRequest", "Priority", "RUNTIMES", "Runtime", "embedding_tokens",
           "runtime_class"]

Priority = Literal["interactive", "batch"]


@dataclass(slots=True)
class GenerationRequest:
    """One generation: chat ``messages`` or a plain ``prompt``.

    The gateway and pipeline steps build it and send the object itself over the Serve handle to
    the model's replica (slots: a small pickle), which hands it to the runtime unchanged.
    ``priority``: interactive requests are served ahead of batch ones. ``trace``: the caller's
    W3C span carrier, so that the replica's span joins the request's trace.
    """

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    priority: Priority = "interactive"
    request_id: str = ""
    trace: dict[str, str] | None = None


@dataclass(slots=True)
class GenerationChunk:
    """A piece of output; the last one has ``finish_reason`` and the token counts.

    It crosses the Serve handle as is: one per streamed piece, or one for a whole answer.
    """

    text: str
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Runtime(abc.ABC):
    """A loaded model that generates or embeds.

    Contract: ``start()`` loads the model (blocking work runs off the event loop) and is called
    once before anything else; ``generate`` yields chunks as they are produced and stops early
    when the consumer stops iterating (a disconnected client cancels its generation);
    ``embed`` returns one vector per text (``embed_counted`` with the tokens read); ``health`` is cheap.
    """

    engine: ClassVar[str]
    kind: ClassVar[Literal["generate", "embed"]] = "generate"

    def __init__(self, model_path: str | None, params: dict[str, Any] | None = None) -> None:
        self.model_path = model_path
        self.params = dict(params or {})

    @abc.abstractmethod
    async def start(self) -> None: ...

    # The model exists, but not for this route: 400 naming ``model`` (as vLLM answers), not a 404,
    # which OpenAI clients read as "no such model".
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        raise BadRequestError(f"the {self.engine} runtime does not generate text: this is an embedding model, "
                              "use /v1/embeddings", param="model")  # fmt: skip
        yield  # pragma: no cover - makes this an async generator

    async def embed(self, texts: list[str]) -> list[list[float]]:
        raise BadRequestError(f"the {self.engine} runtime does not embed: /v1/embeddings needs a model with "
                              "engine: embedding (or a vLLM pooling model)", param="model")  # fmt: skip

    async def embed_counted(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """``embed``'s vectors and the prompt tokens to charge: what the model read (after its
        truncation) where a runtime has a tokenizer to count it, else ``embedding_tokens``."""
        return await self.embed(texts), embedding_tokens(texts)

    async def health(self) -> bool:
        return True

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release the model (optional)."""


def embedding_tokens(texts: list[str]) -> int:
    """The prompt tokens charged for ``texts`` by a runtime without a tokenizer: words, or a token
    per 4 bytes where that is more (a text without spaces is not one token)."""
    return sum(max(len(t.split()), len(t.encode("utf-8", "ignore")) // 4) for t in texts)


RUNTIMES: dict[str, str] = {
    "echo": "mnemos.neuron.runtimes.echo:EchoRuntime",
    "transformers": "mnemos.neuron.runtimes.transformers:TransformersRuntime",
    "vllm": "mnemos.neuron.runtimes.vllm:VLLMRuntime",
    "embedding": "mnemos.neuron.runtimes.embedding:EmbeddingRuntime",
}


def runtime_class(engine: str) -> type[Runtime]:
    """The runtime class for ``engine``; an unknown engine lists the valid ones."""
    path = RUNTIMES.get(engine)
    if path is None:
        raise NotFoundError(f"unknown engine {engine!r}: valid engines are {', '.join(RUNTIMES)}", param="engine")
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
