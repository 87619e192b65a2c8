"""The response cache's key covers everything the model receives.

An Adapter forwards the client's JSON as sent, fields RELAY does not parse included (``logit_bias``,
vendor extensions). Keyed on the parsed request alone, a request carrying such a field put its
answer under the key of the plain request, for every principal to be served from the cache.
"""

from __future__ import annotations

from typing import Any

PLAIN = {"model": "remote-chat", "messages": [{"role": "user", "content": "a common question"}], "temperature": 0}


def _key(doc: dict[str, Any], forwarded: bool) -> str | None:
    from mnemos.genome.metering import CacheSpec
    from mnemos.relay._cache import ResponseCache
    from mnemos.relay.openai_schema import ChatCompletionRequest

    body = ChatCompletionRequest.model_validate(doc)
    return ResponseCache.key("chat", body, CacheSpec.model_validate({"ttl": "10m"}), doc if forwarded else None)


def test_a_field_forwarded_upstream_changes_the_key() -> None:
    skewed = {**PLAIN, "logit_bias": {"1734": 100}, "x_vendor": {"mode": "odd"}}
    assert _key(skewed, forwarded=True) != _key(PLAIN, forwarded=True)
    assert _key(skewed, forwarded=True) is not None


def test_the_key_does_not_depend_on_field_order_stream_or_user() -> None:
    reordered = dict(reversed(list(PLAIN.items())))
    assert _key(reordered, forwarded=True) == _key(PLAIN, forwarded=True)
    assert _key({**PLAIN, "user": "someone"}, forwarded=True) == _key(PLAIN, forwarded=True)
    assert _key({**PLAIN, "stream": True}, forwarded=True) is None  # streams are not answered from the cache


def test_a_model_route_keys_what_the_model_parses() -> None:
    """A Model's engine gets the parsed request: a field it drops cannot change its answer."""
    assert _key({**PLAIN, "x_vendor": 1}, forwarded=False) == _key(PLAIN, forwarded=False)
    assert _key({**PLAIN, "max_tokens": 5}, forwarded=False) != _key(PLAIN, forwarded=False)
    assert _key({**PLAIN, "top_k": 1}, forwarded=False) != _key(PLAIN, forwarded=False)  # vLLM's: it reaches the model


def test_a_generation_is_keyed_only_when_it_does_not_sample() -> None:
    """Unset, ``temperature`` is the model's default, which samples (1): not cached unless ``sampled``;
    an embedding has no temperature and is always cached."""
    from mnemos.genome.metering import CacheSpec
    from mnemos.relay._cache import ResponseCache
    from mnemos.relay.openai_schema import ChatCompletionRequest, EmbeddingRequest

    unset = {k: v for k, v in PLAIN.items() if k != "temperature"}
    assert _key(unset, forwarded=False) is None and _key({**PLAIN, "temperature": 0.2}, forwarded=True) is None
    sampled = CacheSpec.model_validate({"ttl": "10m", "sampled": True})
    assert ResponseCache.key("chat", ChatCompletionRequest.model_validate(unset), sampled) is not None
    embedding = EmbeddingRequest.model_validate({"model": "e", "input": "a text"})
    assert ResponseCache.key("embeddings", embedding, CacheSpec.model_validate({"ttl": "10m"})) is not None


def test_a_replica_holds_at_most_max_bytes_of_answers_whatever_max_entries_says() -> None:
    """``maxEntries: 10000000`` let any caller with ``infer`` grow a replica's memory with distinct
    requests: the bytes are bounded too, least recently used first; one answer over it is not kept."""
    from mnemos.genome.metering import CacheSpec
    from mnemos.relay._cache import MAX_CACHE_BYTES, ResponseCache

    assert MAX_CACHE_BYTES == 256 * 1024 * 1024
    cache = ResponseCache(max_bytes=1000)
    spec = CacheSpec.model_validate({"ttl": "10m", "maxEntries": 10_000_000})
    for i in range(50):
        cache.put(f"k{i}", spec, b"x" * 100, 1, 1)
    assert cache.get("k0", "m") is None and cache.get("k49", "m") is not None
    assert cache.get("k40", "m") is not None and cache.get("k39", "m") is None  # the last ten: 1,000 bytes
    cache.put("k49", spec, b"y" * 100, 1, 1)  # replacing an answer counts its bytes once
    assert cache.get("k40", "m") is not None
    cache.put("big", spec, b"z" * 1001, 1, 1)
    assert cache.get("big", "m") is None and cache.get("k41", "m") is not None
