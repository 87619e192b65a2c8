"""The transformers runtime on the tiny model: streaming chat, dynamic batching, priority, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from neuron.neuron_chat_checks import assert_chat_checks, collect, request, run_chat_checks

from mnemos.errors import BadRequestError, ContextLengthError, UnavailableError, ValidationError
from mnemos.neuron import GenerationRequest, runtime_class
from mnemos.neuron.runtimes.transformers import AdmissionQueue, TransformersRuntime


@pytest.fixture(scope="module")
def runtime(tiny_model_dir: Path) -> Iterator[TransformersRuntime]:
    rt = runtime_class("transformers")(str(tiny_model_dir), {"maxBatchSize": 8, "batchWaitMs": 20})
    assert isinstance(rt, TransformersRuntime)
    asyncio.run(rt.start())
    yield rt
    asyncio.run(rt.stop())


def test_chat_checks(runtime: TransformersRuntime) -> None:
    seen = asyncio.run(run_chat_checks(runtime, runtime.tokenizer))
    assert_chat_checks(seen)
    # Batching must not change what greedy decoding says.
    assert seen["concurrent"] == seen["sequential"]


def test_eight_concurrent_requests_are_decoded_together(runtime: TransformersRuntime) -> None:
    before = runtime.stats.batched_steps

    async def main() -> list[dict]:
        return await asyncio.gather(*(collect(runtime, request(i, max_tokens=16)) for i in range(8)))

    results = asyncio.run(main())
    assert all(r["finish_reasons"][-1] in ("stop", "length") for r in results)
    assert all(r["completion_tokens"] >= 1 for r in results)
    assert runtime.stats.max_batch > 1
    assert runtime.stats.batched_steps > before


def test_interactive_requests_are_admitted_before_batch_ones(tiny_model_dir: Path) -> None:
    async def main() -> list[str]:
        rt = TransformersRuntime(str(tiny_model_dir), {"maxBatchSize": 1, "batchWaitMs": 0})
        await rt.start()
        try:
            rt.pause_admission()
            reqs = [
                request(0, max_tokens=4, priority="batch", request_id="batch-1"),
                request(1, max_tokens=4, priority="batch", request_id="batch-2"),
                request(2, max_tokens=4, priority="interactive", request_id="interactive-1"),
            ]
            tasks = [asyncio.create_task(collect(rt, r)) for r in reqs]
            await asyncio.sleep(0)  # let each task submit its request (they run in creation order)
            assert len(rt._started().pending) == 3
            rt.pause_admission(False)
            await asyncio.gather(*tasks)
            return list(rt.stats.admitted)
        finally:
            await rt.stop()

    assert asyncio.run(main()) == ["interactive-1", "batch-1", "batch-2"]


def test_admission_queue_orders_by_priority_then_arrival() -> None:
    queue = AdmissionQueue()
    for name, priority in [("b1", "batch"), ("i1", "interactive"), ("b2", "batch"), ("i2", "interactive")]:
        queue.push(name, priority)
    assert queue.remove("b2") and not queue.remove("missing")
    assert [queue.pop() for _ in range(len(queue))] == ["i1", "i2", "b1"]


def test_a_consumer_that_stops_cancels_its_request(runtime: TransformersRuntime) -> None:
    async def main() -> tuple[int, int, int, bool]:
        await runtime.wait_idle(30)
        cancelled, tokens = runtime.stats.cancelled, runtime.stats.tokens
        stream = runtime.generate(request(5, max_tokens=200))
        got = 0
        async for chunk in stream:
            got += bool(chunk.text)
            if got == 2:
                break
        await stream.aclose()
        idle = await runtime.wait_idle(30)
        return runtime.stats.cancelled - cancelled, runtime.stats.tokens - tokens, got, idle

    cancelled, tokens, got, idle = asyncio.run(main())
    assert idle and got == 2
    assert cancelled == 1
    assert tokens < 200, "the cancelled request must leave the batch, not run to max_tokens"


def test_bad_requests_name_the_field(runtime: TransformersRuntime) -> None:
    async def first(req: GenerationRequest) -> None:
        async for _ in runtime.generate(req):
            break

    for req, field in [
        (GenerationRequest(prompt="hi", temperature=-1), "temperature"),
        (GenerationRequest(prompt="hi", top_p=0), "top_p"),
        (GenerationRequest(prompt="hi", max_tokens=0), "max_tokens"),
    ]:
        with pytest.raises(ValidationError) as info:
            asyncio.run(first(req))
        assert info.value.param == field
    with pytest.raises(ContextLengthError) as too_long:  # 400 context_length_exceeded, as for a vLLM model
        asyncio.run(first(GenerationRequest(messages=[{"role": "user", "content": "word " * 600}])))
    assert too_long.value.param == "messages"
    with pytest.raises(BadRequestError) as embed:  # the model exists: 400 naming it, not 404
        asyncio.run(runtime.embed(["x"]))
    assert embed.value.param == "model"


def test_bad_params_and_unloaded_model(tiny_model_dir: Path) -> None:
    with pytest.raises(ValidationError) as info:
        TransformersRuntime(str(tiny_model_dir), {"maxBatchSize": 0})
    assert info.value.param == "spec.runtime.params.maxBatchSize"
    rt = TransformersRuntime(str(tiny_model_dir), {})
    assert asyncio.run(rt.health()) is False
    with pytest.raises(UnavailableError):
        asyncio.run(collect(rt, request(0)))


def test_stopping_fails_waiting_requests_instead_of_hanging(tiny_model_dir: Path) -> None:
    async def main() -> BaseException | None:
        rt = TransformersRuntime(str(tiny_model_dir), {"batchWaitMs": 0})
        await rt.start()
        rt.pause_admission()
        task = asyncio.create_task(collect(rt, request(0, max_tokens=4)))
        await asyncio.sleep(0)  # the task submits its request, which waits behind the pause
        await rt.stop()
        try:
            await asyncio.wait_for(task, 30)
        except UnavailableError as exc:
            return exc
        return None

    error = asyncio.run(main())
    assert isinstance(error, UnavailableError) and "stopped" in error.message


@pytest.mark.gpu
def test_chat_checks_on_cuda(tiny_model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")

    async def main() -> dict:
        rt = TransformersRuntime(str(tiny_model_dir), {"device": "cuda", "dtype": "float32", "maxBatchSize": 8})
        await rt.start()
        try:
            return await run_chat_checks(rt, rt.tokenizer)
        finally:
            await rt.stop()

    seen = asyncio.run(main())
    assert_chat_checks(seen)
    assert seen["concurrent"] == seen["sequential"]


@pytest.mark.parametrize("sampling", [{"temperature": 1e-300}, {"temperature": 1e-300, "top_p": 1e-300},
                                      {"temperature": 0.7, "top_p": 1e-300}])  # fmt: skip
def test_one_requests_sampling_values_never_fail_the_batch(runtime: TransformersRuntime, sampling: dict) -> None:
    """A temperature of 1e-300 made every probability inf/nan: ``multinomial`` raised, and every
    request decoded in that batch (anyone's) got 503. It is read as 0.01 (as vLLM does), so it
    decodes as greedy would, and the requests beside it are untouched."""

    async def main() -> list[dict]:
        odd = request(0, max_tokens=8, seed=1, request_id="odd", **sampling)
        others = [request(i, max_tokens=8, temperature=0.8, seed=i) for i in range(1, 5)]
        return await asyncio.gather(*(collect(runtime, r) for r in [odd, *others]))

    odd, *others = asyncio.run(main())
    greedy = asyncio.run(collect(runtime, request(0, max_tokens=8)))
    assert odd["text"] == greedy["text"] and odd["finish_reasons"][-1] in ("stop", "length")
    assert all(r["completion_tokens"] >= 1 and r["finish_reasons"][-1] in ("stop", "length") for r in others)
