"""``transformers``: a Hugging Face causal LM on CPU or GPU, with dynamic batching.

Concurrent ``generate`` calls are decoded together. One batcher thread owns the model: it
admits pending requests (interactive before batch, then first come first served) up to
``maxBatchSize``, waiting ``batchWaitMs`` to gather a batch when it is idle; newcomers join a
running batch between two steps (their prompts are prefilled, left-padded, and their KV cache
merged into the batch's), and finished or cancelled requests leave it. Every step decodes one
token for every request in the batch. The event loop only hands requests over and receives
chunks; all torch work runs in the batcher thread.

Params (``Model.spec.runtime.params``): ``device`` (cpu/cuda), ``dtype``, ``maxBatchSize``,
``batchWaitMs``, ``maxTokens`` (upper bound per request), ``engineKwargs`` (passed to
``from_pretrained``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from mnemos._deps import require
from mnemos._model import to_validation_error
from mnemos.errors import ContextLengthError, UnavailableError, ValidationError
from mnemos.genome.model import RuntimeParams
from mnemos.neuron.runtime import GenerationChunk, GenerationRequest, Runtime

__all__ = ["AdmissionQueue", "BatchStats", "TransformersRuntime", "chat_prompt_ids", "check_sampling", "runtime_params",
           "too_long_error"]

_RANK = {"interactive": 0, "batch": 1}
_MIN_TEMPERATURE = 1e-2  # a smaller one above 0 is read as this, as vLLM reads it (its _MAX_TEMP)


def _torch() -> Any:
    require("transformers", why="the transformers runtime", param="engine")
    return require("torch", why="the transformers runtime", param="engine")


def runtime_params(params: dict[str, Any]) -> RuntimeParams:
    """Validate runtime params (camelCase or snake_case); errors name the field."""
    try:
        return RuntimeParams.model_validate(params)
    except PydanticValidationError as exc:
        raise to_validation_error(exc, "spec.runtime.params") from None


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def chat_prompt_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Token ids of a request: chat ``messages`` through the chat template, or a plain ``prompt``."""
    if request.messages:
        if not getattr(tokenizer, "chat_template", None):
            raise ValidationError("this model has no chat template: send a prompt instead", param="messages")
        messages = [{"role": str(m.get("role", "user")), "content": _text(m.get("content"))} for m in request.messages]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    else:
        ids = list(tokenizer(request.prompt or "")["input_ids"])
        if not ids and tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id]
    if not ids:
        raise ValidationError("the prompt is empty", param="prompt")
    return ids


def _prompt_field(request: GenerationRequest) -> str:
    """The field of the client's request that holds the prompt: ``messages`` or ``prompt``."""
    return "messages" if request.messages else "prompt"


def _prompt_chars(request: GenerationRequest) -> int:
    """The characters of the request's text (messages' contents, or the prompt), before any template."""
    if request.messages:
        return sum(len(_text(m.get("content"))) for m in request.messages)
    return len(request.prompt or "")


def too_long_error(request: GenerationRequest, tokens: int | None, context: int, chars: int = 0) -> ContextLengthError:
    """OpenAI's ``context_length_exceeded`` (400) for a prompt of ``tokens`` (or, unknown, of more than
    ``chars`` characters) past the model's ``context``, naming the field that holds the prompt, as the
    gateway answers for a vLLM model."""
    size = f"{tokens} tokens" if tokens is not None else f"more than {chars} characters"
    return ContextLengthError(
        f"This model's maximum context length is {context} tokens. However, your prompt contains {size}, which "
        "exceeds this limit even without any output tokens. Please reduce the length of the input prompt.",
        param=_prompt_field(request),
    )


def check_sampling(request: GenerationRequest) -> None:
    if request.max_tokens < 1:
        raise ValidationError("max_tokens must be at least 1", param="max_tokens")
    if request.temperature < 0:
        raise ValidationError("temperature must be >= 0", param="temperature")
    if not 0 < request.top_p <= 1:
        raise ValidationError("top_p must be in (0, 1]", param="top_p")


@dataclass
class BatchStats:
    """Counters of one runtime's batcher (tests, metrics, benchmarks)."""

    steps: int = 0  # forward passes
    batched_steps: int = 0  # forward passes that decoded more than one request
    max_batch: int = 0  # most requests decoded in one step
    tokens: int = 0  # tokens generated
    completed: int = 0
    cancelled: int = 0
    admitted: deque[str] = field(default_factory=lambda: deque(maxlen=1000))  # request ids, in admission order


class AdmissionQueue:
    """Pending requests: interactive before batch; first come, first served within a priority."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()

    def push(self, item: Any, priority: str) -> None:
        heapq.heappush(self._heap, (_RANK.get(priority, 0), next(self._seq), item))

    def pop(self) -> Any:
        return heapq.heappop(self._heap)[2]

    def remove(self, item: Any) -> bool:
        """Drop ``item`` if it is still pending; True when it was."""
        for i, entry in enumerate(self._heap):
            if entry[2] is item:
                self._heap[i] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                return True
        return False

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(eq=False)
class _Slot:
    """One request in flight; the batcher thread owns everything but ``cancelled``."""

    request_id: str
    priority: str
    ids: list[int]  # prompt + generated; the last one is not yet in the KV cache
    prompt_len: int
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    generator: Any
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[GenerationChunk | BaseException]
    emitted: int = 0  # characters of the completion already sent
    cancelled: bool = False
    done: bool = False

    def send(self, item: GenerationChunk | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening
            self.cancelled = True


class _Batcher:
    """The thread that owns the model and decodes every admitted request together."""

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int, batch_wait_s: float) -> None:
        self.torch = _torch()
        self.model, self.tokenizer = model, tokenizer
        self.tokenizer_lock = threading.Lock()  # encode (event loop) and decode (here) never overlap
        self.device = next(model.parameters()).device
        self.max_batch_size, self.batch_wait_s = max_batch_size, batch_wait_s
        eos = model.generation_config.eos_token_id
        self.eos = {tokenizer.eos_token_id} | set(eos if isinstance(eos, list) else [eos])
        self.eos.discard(None)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos, default=0)
        self.stats = BatchStats()
        self.pending = AdmissionQueue()
        self.active: list[_Slot] = []
        self.cache: Any = None
        self.mask: Any = None  # [batch, cached length]: 1 for real tokens, 0 for left padding
        self.paused = False
        self.stopping = False
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="mnemos-batcher", daemon=True)
        self.thread.start()

    # -- called from event loops ---------------------------------------------------------------
    def submit(self, slot: _Slot) -> None:
        with self.cv:
            if self.stopping:
                raise UnavailableError("the model is stopping", param="model")
            self.pending.push(slot, slot.priority)
            self.cv.notify_all()

    def cancel(self, slot: _Slot) -> None:
        with self.cv:
            slot.cancelled = True
            if self.pending.remove(slot):
                self.stats.cancelled += 1
            self.cv.notify_all()

    def pause(self, paused: bool) -> None:
        with self.cv:
            self.paused = paused
            self.cv.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: not self.active and not self.pending, timeout)

    def stop(self) -> None:
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.thread.join(timeout=30)

    # -- the batcher thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (joining := self._admit()) is not None:
                try:
                    with self.torch.inference_mode():
                        self._step(joining)
                except Exception as exc:  # noqa: BLE001 - one failed step fails its batch, not the runtime
                    failed = UnavailableError(f"generation failed: {type(exc).__name__}: {exc}", param="model")
                    for slot in {id(s): s for s in self.active + joining}.values():
                        slot.done = True
                        slot.send(failed)
                    self._set_active([])
        finally:  # stopped (or broken): nobody may wait for a batch that will never run
            with self.cv:
                reason = "was stopped" if self.stopping else "failed"
                self.stopping = True
                error = UnavailableError(f"the model {reason}", param="model")
                for slot in self.active:
                    slot.send(error)
                while self.pending:
                    self.pending.pop().send(error)
                self.active = []
                self.cv.notify_all()

    def _admit(self) -> list[_Slot] | None:
        with self.cv:
            while not self.stopping and not self.active and (self.paused or not self.pending):
                self.cv.wait()
            if not self.active and self.batch_wait_s > 0:  # idle: gather a batch
                deadline = time.monotonic() + self.batch_wait_s
                while len(self.pending) < self.max_batch_size and not self.stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cv.wait(left)
            if self.stopping:
                return None
            joining: list[_Slot] = []
            while self.pending and not self.paused and len(self.active) + len(joining) < self.max_batch_size:
                slot = self.pending.pop()
                joining.append(slot)
                self.stats.admitted.append(slot.request_id)
            return joining

    def _set_active(self, rows: list[_Slot]) -> None:
        with self.cv:
            self.active = rows
            if not rows:
                self.cache = self.mask = None
                self.cv.notify_all()

    def _step(self, joining: list[_Slot]) -> None:
        torch = self.torch
        self._keep([s for s in self.active if not s.cancelled])
        if joining:
            cache, mask = self._prefill(joining)
            if self.active and self._mergeable(cache):
                self._merge(cache, mask)
                self._set_active(self.active + joining)
            elif self.active:  # a cache that cannot be padded (sliding windows): recompute it all
                rows = self.active + joining
                self.cache, self.mask = self._prefill(rows)
                self._set_active(rows)
            else:
                self.cache, self.mask = cache, mask
                self._set_active(joining)
        rows = self.active
        if not rows:
            return
        last = torch.tensor([[s.ids[-1]] for s in rows], device=self.device)
        positions = self.mask.sum(-1, keepdim=True)
        self.mask = torch.cat([self.mask, torch.ones_like(positions)], dim=-1)
        out = self.model(
            input_ids=last, attention_mask=self.mask, position_ids=positions, past_key_values=self.cache, use_cache=True
        )
        self.cache = out.past_key_values
        self.stats.steps += 1
        self.stats.max_batch = max(self.stats.max_batch, len(rows))
        self.stats.batched_steps += len(rows) > 1
        tokens = self._sample(out.logits[:, -1, :], rows)
        for slot, token in zip(rows, tokens, strict=True):
            self._advance(slot, token)
        self._keep([s for s in rows if not s.done and not s.cancelled])

    def _prefill(self, rows: list[_Slot]) -> tuple[Any, Any]:
        """Run every row's tokens but its last through the model: a fresh, left-padded KV cache."""
        torch = self.torch
        from transformers import DynamicCache

        seqs = [s.ids[:-1] for s in rows]
        width = max(1, max(len(q) for q in seqs))
        ids = torch.tensor([[self.pad] * (width - len(q)) + q for q in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in seqs], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, logits_to_keep=1
        )
        return out.past_key_values, mask

    @staticmethod
    def _mergeable(cache: Any) -> bool:
        from transformers.cache_utils import DynamicLayer

        return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))

    def _merge(self, cache: Any, mask: Any) -> None:
        """Append ``cache``'s rows to the batch's, left-padding the shorter one."""
        torch = self.torch
        width = max(self.mask.shape[1], mask.shape[1])

        def pad(t: Any, n: int) -> Any:
            if n == 0:
                return t
            shape = list(t.shape)
            shape[-2 if t.dim() == 4 else -1] = n
            return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=-2 if t.dim() == 4 else -1)

        grow_a, grow_b = width - self.mask.shape[1], width - mask.shape[1]
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, grow_a), pad(theirs.keys, grow_b)])
            mine.values = torch.cat([pad(mine.values, grow_a), pad(theirs.values, grow_b)])
        self.mask = torch.cat([pad(self.mask, grow_a), pad(mask, grow_b)])

    def _keep(self, rows: list[_Slot]) -> None:
        """Keep only ``rows`` of the batch (finished and cancelled requests leave it)."""
        if len(rows) == len(self.active):
            return
        for slot in self.active:
            if slot.cancelled and not slot.done:
                slot.done = True
                self.stats.cancelled += 1
        if rows:
            keep = [i for i, s in enumerate(self.active) if s in rows]
            index = self.torch.tensor(keep, device=self.device)
            self.cache.batch_select_indices(index)
            self.mask = self.mask[index]
            if self._mergeable(self.cache):  # drop left-padding columns no row needs any more
                first = int(self.mask.any(0).nonzero()[0]) if self.mask.any() else 0
                if first:
                    for layer in self.cache.layers:
                        layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
                    self.mask = self.mask[:, first:]
        self._set_active(rows)

    def _sample(self, logits: Any, rows: list[_Slot]) -> list[int]:
        """Each row's next token: greedy at temperature 0, else drawn from its top-p nucleus. One
        row's sampling values never fail the batch: a temperature under ``_MIN_TEMPERATURE`` is read
        as it (as vLLM does: ``1e-300`` made every probability inf/nan, and ``multinomial`` failed
        every request decoded with it), the top token is always in the nucleus, and a row whose
        probabilities are still not finite takes its greedy token."""
        torch = self.torch
        logits = logits.float()
        tokens = logits.argmax(-1).tolist()
        for i, slot in enumerate(rows):
            if slot.temperature == 0:
                continue
            probs = torch.softmax(logits[i].cpu() / max(slot.temperature, _MIN_TEMPERATURE), dim=-1)
            if slot.top_p < 1:
                sorted_probs, order = probs.sort(descending=True)
                outside = (sorted_probs.cumsum(-1) - sorted_probs) >= slot.top_p
                outside[0] = False  # the nucleus holds the top token, however small top_p is
                sorted_probs[outside] = 0
                probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
            if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
                continue  # logits the model made inf/nan: the greedy token, for this row only
            tokens[i] = int(torch.multinomial(probs, 1, generator=slot.generator))
        return tokens

    def _advance(self, slot: _Slot, token: int) -> None:
        """Add one token to a request and send the text that is now final."""
        slot.ids.append(token)
        self.stats.tokens += 1
        generated = slot.ids[slot.prompt_len :]
        finish: str | None = None
        if token in self.eos:
            finish, generated = "stop", generated[:-1]
        elif len(generated) >= slot.max_tokens:
            finish = "length"
        with self.tokenizer_lock:
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
        end = len(text)
        hits = [p for p in (text.find(s, slot.emitted) for s in slot.stop) if p >= 0]
        if hits:
            finish, end = "stop", min(hits)
        elif finish is None:  # hold back what could still become a stop string or a split character
            end = min(len(text) - max((len(s) - 1 for s in slot.stop), default=0), len(text.rstrip("\ufffd")))
        piece = text[slot.emitted : end] if end > slot.emitted else ""
        slot.emitted = max(slot.emitted, end)
        if finish is None:
            if piece:
                slot.send(GenerationChunk(text=piece))
            return
        slot.done = True
        self.stats.completed += 1
        slot.send(
            GenerationChunk(
                text=piece,
                finish_reason=finish,  # type: ignore[arg-type]
                prompt_tokens=slot.prompt_len,
                completion_tokens=len(slot.ids) - slot.prompt_len,
            )
        )


class TransformersRuntime(Runtime):
    """A causal LM loaded with ``AutoModelForCausalLM``; see the module docstring."""

    engine = "transformers"

    def __init__(self, model_path: str | None, params: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, params)
        self.config = runtime_params(self.params)
        self.tokenizer: Any = None
        self.model: Any = None
        self.max_context = 0
        self.max_chars_per_token = 0  # of the tokenizer's longest token: a prompt's cheap upper bound in characters
        self._batcher: _Batcher | None = None

    async def start(self) -> None:
        if self._batcher is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        torch = _torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not self.model_path:
            raise ValidationError("the transformers runtime needs a model folder", param="spec.artifact.uri")
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        name = self.config.dtype or ("float32" if device == "cpu" else "bfloat16")
        dtype = name if name == "auto" else getattr(torch, name, None)
        if not isinstance(dtype, (str, torch.dtype)):
            raise ValidationError(f"dtype {name!r} is not a torch dtype", param="spec.runtime.params.dtype")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, padding_side="left")
        kwargs: dict[str, Any] = {"dtype": dtype, **self.config.engine_kwargs}
        model: Any = AutoModelForCausalLM.from_pretrained(self.model_path, **kwargs)
        self.model = model.to(device).eval()
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        vocab = self.tokenizer.get_vocab()
        self.max_chars_per_token = max((len(token) for token in vocab), default=0) or 1 << 30
        wait = self.config.batch_wait_ms / 1000
        self._batcher = _Batcher(self.model, self.tokenizer, self.config.max_batch_size, wait)

    @property
    def stats(self) -> BatchStats:
        """The batcher's counters (``max_batch`` > 1 means requests were decoded together)."""
        return self._started().stats

    def _started(self) -> _Batcher:
        if self._batcher is None:
            raise UnavailableError("the model is not loaded yet", param="model")
        return self._batcher

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        batcher = self._started()
        check_sampling(request)
        # A text longer than the context holds even at the longest token is refused before it is tokenized
        # (as vLLM does): tokenizing a megabyte holds this replica's event loop for about a second.
        bound = self.max_context * self.max_chars_per_token
        if _prompt_chars(request) > bound:
            raise too_long_error(request, None, self.max_context, bound)
        with batcher.tokenizer_lock:
            ids = chat_prompt_ids(self.tokenizer, request)
        room = self.max_context - len(ids)
        if room < 1:
            raise too_long_error(request, len(ids), self.max_context)
        generator = None
        if request.temperature > 0:
            generator = _torch().Generator()
            if request.seed is not None:
                generator.manual_seed(request.seed)
            else:
                generator.seed()
        slot = _Slot(
            request_id=request.request_id,
            priority=request.priority,
            ids=ids,
            prompt_len=len(ids),
            max_tokens=min(request.max_tokens, self.config.max_tokens, room),
            temperature=request.temperature,
            top_p=request.top_p,
            stop=[s for s in request.stop if s],
            generator=generator,
            loop=asyncio.get_running_loop(),
            out=asyncio.Queue(),
        )
        batcher.submit(slot)
        try:
            while True:
                item = await slot.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            if not slot.done:  # the consumer stopped early: take the request out of the batch
                batcher.cancel(slot)

    def pause_admission(self, paused: bool = True) -> None:
        """Stop (or resume) admitting pending requests; running ones continue."""
        self._started().pause(paused)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is running or pending; False on timeout."""
        return await asyncio.to_thread(self._started().wait_idle, timeout)

    async def health(self) -> bool:
        return self._batcher is not None and self._batcher.thread.is_alive()

    async def stop(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await asyncio.to_thread(batcher.stop)
        self.model = None
