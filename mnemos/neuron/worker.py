"""NEURON job workers: Ray actors that run CORTEX jobs and capture each job's own output.

A ``Worker`` is an async Ray actor that runs up to ``max_concurrency`` jobs at once, each on a
thread of its own pool. CORTEX sends it attempts in batches (``start``) and keeps one
``completions()`` call outstanding, which returns as soon as attempts have ended; the next such
call carries the attempts that take the freed slots.

Attempts beyond the free threads wait on the worker, in order (CORTEX sends a few more than
there are threads while its jobs are short: a thread that ends one starts the next at once,
without a round trip to CORTEX). One that waited ``HOLD_SECONDS`` without a thread is given
back unstarted (``Outcome.unstarted``) and CORTEX queues it again; ``drop`` withdraws waiting
attempts (cancelled, timed out).

``sys.stdout`` and ``sys.stderr`` of the worker process are replaced by streams that write to
the buffer of the job running on the current thread (a context variable), so concurrent jobs
never mix their output. What a job prints from threads it starts
itself, or from subprocesses, goes to the worker's own log instead.

A job that times out or is cancelled stops being awaited; Python cannot stop its thread, which
runs to its end and has its result discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import io
import logging
import os
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mnemos.engram import Engram
from mnemos.neuron.codec import Invocation, Outcome
from mnemos.trace.events import publish as announce

__all__ = ["HOLD_SECONDS", "LOG_LIMIT_CHARS", "Worker", "install_capture"]

LOG_LIMIT_CHARS = 1024 * 1024
"""Output kept per job attempt; the rest is dropped with a note."""
HOLD_SECONDS = 1.0
"""How long an attempt waits on a worker for a free thread before it is given back to CORTEX."""
LINGER_SECONDS = 0.005
"""How long a reply may wait for more outcomes while attempts still wait here for a thread."""


class _Capture:
    """The output of one job attempt, capped at ``limit`` characters; with ``job_id``, each complete
    line kept is also announced on the event stream (``job.log``, with ``attempt`` and the line's
    number ``n`` in it, counted from 1: a reader that already shows n lines skips the events up to n)."""

    def __init__(self, limit: int = LOG_LIMIT_CHARS, job_id: str = "", owner: str | None = None,
                 attempt: int = 1) -> None:  # fmt: skip
        self._job = job_id
        self._owner = owner
        self._attempt = attempt
        self._lines = 0
        self._partial = ""
        self._parts: list[str] = []
        self._size = 0
        self._limit = limit
        self._dropped = 0

    def write(self, text: str) -> None:
        room = self._limit - self._size
        if room <= 0:
            self._dropped += len(text)
            return
        piece = text[:room]
        self._parts.append(piece)
        self._size += len(piece)
        self._dropped += len(text) - len(piece)
        if self._job:
            *lines, self._partial = (self._partial + piece).split("\n")
            for line in lines:
                self._announce(line)

    def _announce(self, line: str) -> None:
        self._lines += 1
        announce("job.log", f"job:{self._job}", owner=self._owner, line=line, attempt=self._attempt, n=self._lines)

    def close(self) -> None:
        """Announce the last line when the output did not end with a newline."""
        if self._job and self._partial:
            self._announce(self._partial)
            self._partial = ""

    def text(self) -> str:
        out = "".join(self._parts)
        if self._dropped:
            out += f"\n[mnemos: {self._dropped} more characters of output were dropped]\n"
        return out


_CURRENT: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("mnemos_job_output", default=None)


class _JobStream(io.TextIOBase):
    """A text stream that writes to the current job's capture, else to the original stream."""

    def __init__(self, original: Any) -> None:
        self._original = original

    def write(self, text: str) -> int:
        capture = _CURRENT.get()
        if capture is None:
            self._original.write(text)  # (Ray's worker streams return None, not a count)
        else:
            capture.write(text)
        return len(text)

    def flush(self) -> None:
        if _CURRENT.get() is None:
            self._original.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self._original.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._original, "encoding", "utf-8"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def install_capture() -> None:
    """Route ``print`` and writes to ``sys.stdout``/``sys.stderr`` to the running job (idempotent)."""
    if not isinstance(sys.stdout, _JobStream):
        sys.stdout = _JobStream(sys.stdout)
    if not isinstance(sys.stderr, _JobStream):
        sys.stderr = _JobStream(sys.stderr)


class Worker:
    """One NEURON worker of a pool (made a Ray actor by ``mnemos.neuron.pools``).

    Args:
        pool: the pool's name.
        name: this worker's actor name (reported with each result).
        engram: where large payloads are read from and large results written to.
        inline_limit: results and logs larger than this (bytes) go to ENGRAM as blobs.
        concurrency: jobs run at once (threads).
    """

    def __init__(self, pool: str, name: str, engram: Engram, inline_limit: int, concurrency: int) -> None:
        self.pool = pool
        self.name = name
        self.engram = engram
        self.inline_limit = inline_limit
        self._threads = max(1, concurrency)
        self._executor = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=f"job-{pool}")
        self._busy = 0  # threads running an attempt
        self._waiting: deque[tuple[Invocation, float]] = deque()  # attempts without a thread, since when
        self._running: dict[str, _Capture] = {}
        self._done: list[Outcome] = []
        self._ready = asyncio.Event()
        install_capture()
        self._gpus_at = 0.0
        self._record_gpus()

    def _record_gpus(self) -> None:
        """Export this node's GPU memory (``mnemos.neuron.gpu``), at most every 5 s."""
        if time.monotonic() - self._gpus_at < 5.0:
            return
        self._gpus_at = time.monotonic()
        try:
            from mnemos.neuron.gpu import record

            record(self.name)
        except Exception:  # noqa: BLE001 - telemetry never fails a worker
            logging.getLogger(__name__).debug("GPU metrics failed", exc_info=True)

    async def start(self, invocations: list[Invocation]) -> int:
        """Start job attempts (each on a thread, or waiting for one); their outcomes come from
        ``completions()``."""
        now = time.monotonic()
        self._waiting.extend((invocation, now) for invocation in invocations)
        self._pump()
        if self._waiting:
            self._ready.set()  # a waiting completions() call re-arms its give-back timer for them
        return len(invocations)

    def _pump(self) -> None:
        """Give each free thread the attempt that has waited longest."""
        loop = asyncio.get_running_loop()
        while self._waiting and self._busy < self._threads:
            invocation, _ = self._waiting.popleft()
            self._busy += 1
            future = loop.run_in_executor(self._executor, self._execute, invocation)
            future.add_done_callback(functools.partial(self._finished, invocation))

    def _finished(self, invocation: Invocation, future: asyncio.Future[Outcome]) -> None:
        self._busy -= 1
        self._pump()
        try:
            outcome = future.result()
        except BaseException as exc:  # noqa: BLE001 - _execute catches the job's errors; this is ours
            outcome = Outcome(id=invocation.id, attempt=invocation.attempt, ok=False, worker=self.name,
                              error=f"worker error: {type(exc).__name__}: {exc}")  # fmt: skip
        self._done.append(outcome)
        self._ready.set()

    async def drop(self, job_ids: list[str]) -> list[str]:
        """Withdraw attempts of these jobs that wait for a thread; returns the ids withdrawn."""
        wanted = set(job_ids)
        dropped = [i.id for i, _ in self._waiting if i.id in wanted]
        self._waiting = deque(w for w in self._waiting if w[0].id not in wanted)
        return dropped

    def _give_back(self) -> float:
        """Give back the attempts that waited ``HOLD_SECONDS`` for a thread; returns the seconds
        until the next one would be given back (``inf`` when none waits)."""
        now = time.monotonic()
        while self._waiting and now - self._waiting[0][1] >= HOLD_SECONDS:
            invocation, _ = self._waiting.popleft()
            self._done.append(Outcome(id=invocation.id, attempt=invocation.attempt, ok=False, worker=self.name,
                                      pool=self.pool, unstarted=True, error="no free thread"))  # fmt: skip
        return HOLD_SECONDS - (now - self._waiting[0][1]) if self._waiting else float("inf")

    async def completions(self, start: list[Invocation] | None = None, wait: float = 30.0) -> list[Outcome]:
        """The outcomes of attempts ended since the last call; waits (at most ``wait`` s) for one.

        ``start``: attempts to start first (CORTEX sends the jobs that take the slots the last
        outcomes freed with its next call, not in a ``start`` call of their own).
        """
        if start:
            await self.start(start)
        self._record_gpus()
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            until = self._give_back()
            if self._done:
                break
            self._ready.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready.wait(), min(left, until))
        # While attempts still wait here for a thread, CORTEX need not hurry to send more: the
        # outcomes of a few more jobs come along in this reply (fewer, larger replies).
        linger = time.monotonic() + LINGER_SECONDS
        while self._done and self._waiting and (left := linger - time.monotonic()) > 0:
            self._ready.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready.wait(), left)
        await asyncio.sleep(0)  # outcomes of jobs that ended at the same moment come along
        out, self._done = self._done, []
        return out

    def _execute(self, invocation: Invocation) -> Outcome:
        from mnemos.trace.telemetry import span

        if not invocation.trace:
            return self._run(invocation)
        with span("neuron.run", carrier=invocation.trace, job_id=invocation.id, pool=self.pool):
            return self._run(invocation)

    def _run(self, invocation: Invocation) -> Outcome:
        from mnemos.errors import ValidationError
        from mnemos.neuron.codec import encode_text, encode_value, load_call

        job_id = invocation.id
        capture = _Capture(job_id=job_id, owner=invocation.owner, attempt=invocation.attempt)
        token = _CURRENT.set(capture)
        self._running[job_id] = capture
        outcome = Outcome(id=job_id, attempt=invocation.attempt, ok=False, worker=self.name, pool=self.pool,
                          started=time.time())  # fmt: skip
        try:
            try:
                fn, args, kwargs = load_call(invocation, self.engram)
            except ValidationError as exc:  # the function cannot be found: retrying will not help
                outcome.fatal, outcome.error = True, exc.message
                return outcome
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            outcome.finished = time.time()
            try:
                outcome.ok, outcome.result = True, encode_value(value, self.engram, self.inline_limit)
            except ValidationError as exc:  # running it again would return the same kind of value
                outcome.ok, outcome.fatal, outcome.error = False, True, exc.message
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the job's failure is reported, not raised
            outcome.ok, outcome.error = False, f"{type(exc).__name__}: {exc}"
            outcome.traceback = traceback.format_exc(limit=20)
        finally:
            _CURRENT.reset(token)
            capture.close()
            self._running.pop(job_id, None)
            if outcome.finished is None:
                outcome.finished = time.time()
            outcome.logs = encode_text(capture.text(), self.engram, self.inline_limit)
        return outcome

    async def logs(self, job_id: str) -> str | None:
        """The output so far of a job running here (``None`` when it is not running here)."""
        capture = self._running.get(job_id)
        return capture.text() if capture is not None else None

    async def ping(self) -> dict[str, Any]:
        """Who and where this worker is."""
        import ray

        return {
            "name": self.name,
            "pool": self.pool,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "running": len(self._running),
            "waiting": len(self._waiting),
        }


async def _awaited(value: Any) -> Any:
    return await value
