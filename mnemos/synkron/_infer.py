"""The model steps: ``infer`` (batch generation over a JSONL dataset) and ``index`` (embeddings
into an ENGRAM space), both through the model's Serve deployment at batch priority.

infer: each input record is ``{"prompt": …}`` or ``{"messages": […]}`` (other fields are kept);
each output record adds ``output``, ``finish_reason``, ``usage`` and the model's name,
generation and digest. Records go out in input order.

index: embeds ``record[textField]`` of each input record and writes a space (see
:mod:`mnemos.synkron.spaces`): vectors as an ``.npy`` blob, records as a JSONL blob and a manifest
blob naming both, the model and the input. The manifest's digest is the step's output.

Both are metered as the principal that started the run (``step_meter``): every record (or batch)
reserves its ceiling on that principal's limits and budgets and is settled with its token counts,
so a pipeline is no way around a key's budget, and its spend shows in ``GET /v1/usage``.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

from mnemos.engram import Engram
from mnemos.errors import ValidationError
from mnemos.genome.pipeline import GENERATION_PARAMS, PARAM_ALIASES, STEP_PARAMS
from mnemos.neuron import GenerationRequest
from mnemos.soul.limits import estimate_tokens
from mnemos.synkron._models import ProgressReporter, bounded_map, model_handle, run_async, step_meter

__all__ = ["GENERATION_PARAMS", "INDEX_PARAMS", "INFER_PARAMS", "index_step", "infer_step", "read_jsonl"]

INFER_PARAMS, INDEX_PARAMS = STEP_PARAMS["infer"], STEP_PARAMS["index"]


def normalize_params(params: dict[str, Any], known: tuple[str, ...], where: str) -> dict[str, Any]:
    """Step params with camelCase aliases folded; an unknown name is a ``ValidationError``."""
    out = {}
    for key, value in params.items():
        name = PARAM_ALIASES.get(key, key)
        if name not in known:
            raise ValidationError(
                f"{where}.params: unknown param {key!r} (known: {', '.join(known)})", param=f"{where}.params.{key}"
            )
        out[name] = value
    return out


def read_jsonl(engram: Engram, digest: str, where: str) -> list[dict[str, Any]]:
    """The records of a JSONL blob; a line that is not a JSON object is a ``ValidationError``."""
    records = []
    for n, line in enumerate(engram.get(digest).decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{where}: line {n} is not JSON: {exc.msg}", param="input") from None
        if not isinstance(record, dict):
            raise ValidationError(f"{where}: line {n} is not a JSON object", param="input")
        records.append(record)
    return records


def _input_digest(ctx: dict[str, Any], value: str, where: str) -> str:
    from mnemos.synkron._state import shown_text

    digest = ctx["inputs"].get(value)
    if digest is None:  # a URL as a run shows it: no user:password@, no query values (a presigned URL's)
        raise ValidationError(
            f"{where}: {shown_text(value)!r} is neither an output of an earlier step nor a readable file", param=where
        )
    return str(digest)


async def _model_info(handle: Any, fallback: dict[str, Any]) -> dict[str, Any]:
    """What the deployment says it serves (name, generation, digest), else what the registry said."""
    try:
        info = await handle.info.remote()
    except Exception:  # noqa: BLE001 - a deployment without info(): trust the registry
        info = {}
    return {key: info.get(key) or fallback.get(key) for key in ("name", "generation", "digest")}


def infer_step(ctx: dict[str, Any]) -> dict[str, Any]:
    """Batch generation through ``model-<modelRef>``; returns the results' digest as the output."""
    step, engram = ctx["step"], ctx["engram"]
    where = f"step {step['name']!r}"
    params = normalize_params(dict(step.get("params") or {}), INFER_PARAMS, where)
    records = read_jsonl(engram, _input_digest(ctx, step["input"], f"{where}.input"), f"{where} input")
    for n, rec in enumerate(records, 1):
        if not isinstance(rec.get("prompt"), str) and not isinstance(rec.get("messages"), list):
            raise ValidationError(f"{where} input: record {n} has neither 'prompt' nor 'messages'", param="input")
    model = step["modelRef"]
    handle = model_handle(model, float(params.get("ready_timeout", 600)))
    info: dict[str, Any] = {}
    generation = {k: params[k] for k in GENERATION_PARAMS if k in params}
    generation["max_tokens"] = int(generation.get("max_tokens", 256))
    concurrency = int(params.get("concurrency", 32))
    report = ProgressReporter(ctx.get("service"), ctx["run_id"], step["name"], len(records))
    tag = f"{ctx['run_id']}/{step['name']}"

    meter = step_meter(ctx, model)

    async def one(i: int, rec: dict[str, Any]) -> dict[str, Any]:
        messages = rec["messages"] if isinstance(rec.get("messages"), list) else None
        prompt = None if messages is not None else rec["prompt"]
        request = GenerationRequest(messages=messages, prompt=prompt, **generation, priority="batch",
                                    request_id=f"{tag}/{i}-{uuid.uuid4().hex[:6]}")  # fmt: skip
        text = prompt if messages is None else json.dumps(messages, ensure_ascii=False)
        async with meter.call(estimate_tokens(text), generation["max_tokens"]) as settle:
            answer = await handle.complete.remote(request)
            settle(answer.prompt_tokens, answer.completion_tokens)
        return {
            **rec,
            "output": answer.text,
            "finish_reason": answer.finish_reason,
            "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens},
            "model": info["name"],
            "model_generation": info["generation"],
            "model_digest": info["digest"],
        }

    async def main() -> list[dict[str, Any]]:
        info.update(await _model_info(handle, ctx["models"].get(model, {"name": model})))
        try:
            return await bounded_map(one, records, concurrency, report)
        finally:
            await meter.close()

    started = time.monotonic()
    results = run_async(main)
    seconds = time.monotonic() - started
    report(len(records), force=True)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results).encode()
    return {
        "outputs": {ctx["outputs"][0]: engram.put(body)},
        "items": len(records),
        "models": {model: info},
        "result": {"items": len(records), "items_per_s": round(len(records) / max(seconds, 1e-9), 2)},
    }


def index_step(ctx: dict[str, Any]) -> dict[str, Any]:
    """Embed ``record[textField]`` through ``model-<modelRef>`` and write the space's blobs."""
    import numpy as np

    step, engram = ctx["step"], ctx["engram"]
    where = f"step {step['name']!r}"
    spec = step["index"]
    params = normalize_params(dict(step.get("params") or {}), INDEX_PARAMS, where)
    input_digest = _input_digest(ctx, spec["input"], f"{where}.index.input")
    records = read_jsonl(engram, input_digest, f"{where} input")
    field = spec.get("textField", "text")
    texts = []
    for n, rec in enumerate(records, 1):
        value = rec.get(field)
        if not isinstance(value, str):
            raise ValidationError(
                f"{where} input: record {n} has no text field {field!r} (index.textField)", param="index.textField"
            )
        texts.append(value)
    model = step["modelRef"]
    handle = model_handle(model, float(params.get("ready_timeout", 600)))
    info: dict[str, Any] = {}
    size = int(params.get("batch_size", 64))
    batches = [texts[i : i + size] for i in range(0, len(texts), size)]
    report = ProgressReporter(ctx.get("service"), ctx["run_id"], step["name"], len(texts))

    meter = step_meter(ctx, model)

    async def one(i: int, batch: list[str]) -> list[list[float]]:
        async with meter.call(sum(estimate_tokens(t) for t in batch)) as settle:
            vectors, tokens = await handle.embed_counted.remote(batch)
            settle(tokens)
        return list(vectors)

    async def main() -> list[list[list[float]]]:
        info.update(await _model_info(handle, ctx["models"].get(model, {"name": model})))
        try:
            return await bounded_map(
                one, batches, int(params.get("concurrency", 4)), lambda n: report(min(n * size, len(texts)))
            )
        finally:
            await meter.close()

    started = time.monotonic()
    embedded = run_async(main)
    seconds = time.monotonic() - started
    report(len(texts), force=True)
    raw = np.asarray([v for batch in embedded for v in batch], dtype=np.float32)
    raw = raw.reshape(len(texts), -1 if texts else 0)  # an empty input: an empty space (numpy refuses (0, -1))
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = (raw / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    items = [
        {"id": str(rec.get("id", n)), "text": text, "fields": rec, "source": {"artifact": input_digest, "line": n}}
        for n, (rec, text) in enumerate(zip(records, texts, strict=True))
    ]
    manifest = {
        "kind": "space",
        "space": spec["space"],
        "model": info,
        "metric": "cosine",
        "dim": int(vectors.shape[1]) if len(texts) else 0,
        "count": len(items),
        "text_field": field,
        "input": input_digest,
        "vectors": engram.put(buffer.getvalue()),
        "records": engram.put("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items).encode()),
        "run": ctx["run_id"],
        "step": step["name"],
    }
    digest = engram.put(json.dumps(manifest, sort_keys=True, indent=1).encode())
    return {
        "outputs": {ctx["outputs"][0]: digest},
        "items": len(items),
        "models": {model: info},
        "result": {
            "items": len(items),
            "items_per_s": round(len(items) / max(seconds, 1e-9), 2),
            "space": spec["space"],
        },
    }
