"""Exact-match response cache of one gateway replica (opt-in per Model or Adapter: ``cache: {ttl}``).

The key is the SHA-256 of the request as the model sees it: the OpenAI body without ``stream``,
``stream_options`` and ``user``, with keys sorted, plus the endpoint. For an Adapter that is the
client's whole JSON (it is forwarded as sent), unknown fields included. The key also names what
answers it (the ``source``: a Model's served spec and weights, an Adapter's upstreams), so that an
answer is never served for another upstream or other weights than those that gave it, and whose
cache it is (the ``scope``: the caller's team, else the caller), so that a caller is never handed
an answer computed for another team or principal and a hit tells it nothing of what others asked
(as pipelines' step cache, kept per principal). A generation is cached only
at ``temperature: 0`` unless the spec says ``sampled: true``: one with ``temperature`` unset samples
at the model's default (1 in OpenAI's API, vLLM's and NEURON's runtimes), and a client asking
for a sample must not get another client's. Embeddings are always cached; streamed requests are
not answered from the cache. Hits and misses are counted in ``/metrics``
(``mnemos_relay_cache_total{model, result}``).

The cache lives in the replica's memory and is not shared: behind N replicas an answer may be
computed up to N times before each holds it. Sharing it (an actor, or ENGRAM) would put a Ray call
or a store read on the path of every cacheable request, hit or miss: more than a hit saves when
the upstream is fast (a Ray call costs about as much as this benchmark's whole upstream answer).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mnemos.relay.openai_schema import unread_extras
from mnemos.trace import metrics

__all__ = ["CACHE_REQUESTS", "MAX_CACHE_BYTES", "CachedAnswer", "ResponseCache"]

CACHE_REQUESTS = metrics.counter(
    "mnemos_relay_cache_total", "Response cache lookups by model and result (hit, miss).", ("model", "result")
)
_IGNORED = frozenset({"stream", "stream_options", "user"})


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: the body bytes and its token counts."""

    expires: float
    content: bytes
    prompt_tokens: int
    completion_tokens: int


MAX_CACHE_BYTES = 256 * 1024 * 1024
"""The most answer bytes one replica's cache holds, whatever the specs' ``maxEntries`` say: the
least recently used answers go first (a ``maxEntries`` of millions let any caller with ``infer``
grow a replica's memory with distinct requests)."""


class ResponseCache:
    """LRU of answers by request key, each with the TTL of its model's ``cache`` spec; at most
    ``spec.max_entries`` answers and ``max_bytes`` bytes of them."""

    def __init__(self, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes

    @staticmethod
    def key(endpoint: str, body: Any, spec: Any, sent: dict[str, Any] | None = None, source: str = "",
            scope: str = "") -> str | None:  # fmt: skip
        """The cache key of ``body`` (a pydantic request), or None when it must not be cached.

        ``sent``: the JSON that goes upstream when it is not ``body`` (an Adapter forwards the
        client's JSON, fields RELAY does not know included). The key is then made of all of it,
        so that a field the model does not parse cannot put its answer under another request's key.
        ``source``: what answers the request (``Meter.source``); a change to it is a new key.
        ``scope``: whose answers these are (``Meter.scope``: a team, or a principal without one).
        """
        if spec is None or getattr(body, "stream", False):
            return None
        generation = "temperature" in type(body).model_fields  # it samples unless 0 (module docstring)
        if generation and not spec.sampled and (body.temperature is None or body.temperature > 0):
            return None
        doc = body.model_dump(exclude_none=True) if sent is None else sent
        dropped = set() if sent is not None else unread_extras(body)
        doc = {k: v for k, v in doc.items() if k not in _IGNORED and k not in dropped}
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
        parts = (endpoint, scope, source, canonical)
        return hashlib.sha256(b"\0".join(part.encode() for part in parts)).hexdigest()

    def get(self, key: str | None, model: str) -> CachedAnswer | None:
        if key is None:
            return None
        found = self._entries.get(key)
        if found is not None and found.expires <= time.monotonic():
            del self._entries[key]
            self._bytes -= len(found.content)
            found = None
        CACHE_REQUESTS.inc(model=model, result="hit" if found is not None else "miss")
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: str | None, spec: Any, content: bytes, prompt_tokens: int, completion_tokens: int) -> None:
        if key is None or len(content) > self.max_bytes:
            return
        if (old := self._entries.get(key)) is not None:
            self._bytes -= len(old.content)
        self._entries[key] = CachedAnswer(time.monotonic() + float(spec.ttl), content, prompt_tokens,
                                          completion_tokens)  # fmt: skip
        self._bytes += len(content)
        self._entries.move_to_end(key)
        while len(self._entries) > spec.max_entries or self._bytes > self.max_bytes:
            self._bytes -= len(self._entries.popitem(last=False)[1].content)
