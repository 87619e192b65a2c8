"""Upstream adapters: route a model name to any OpenAI-compatible HTTP server.

An ``Adapter`` resource (``genome.mnemos.dev/v1``) names a ``baseUrl``, the ``models`` it serves,
the ``routes`` (paths) it accepts with a timeout each, an optional credential
(``auth.secretRef {name, key}``), ``retries`` and a ``fallback`` adapter. A request is sent to the
adapter; a connection error, a timeout or a 429/5xx answer is retried with exponential backoff
(0.1 s, 0.2 s, … up to 2 s) ``retries`` times, then the fallback adapter is tried the same way
(a chain of up to four adapters, never twice the same). 4xx answers are the caller's problem and
are passed through. Streams are passed through byte for byte; a stream is retried or sent to the
fallback only before its first byte reached the client; one the upstream breaks off later ends with
an ``upstream_error`` event and ``[DONE]``. A route's timeout bounds the connect, the wait for the
headers, a JSON answer's whole body, and each wait for a stream's next chunk (not a whole stream).

One pooled ``aiohttp`` session per gateway replica keeps connections to upstreams alive. It is
aiohttp rather than httpx because it costs about a millisecond less per request on the gateway's
hot path (measured here: 0.4 ms against 1.4 ms p50 for one POST to a loopback upstream). An idle
connection is kept 4 s, less than the 5 s common servers keep theirs (uvicorn, Node), and a
request whose pooled connection turns out closed by the upstream before any answer (the upstream's
idle timeout fired as it was sent) is sent once more on a new connection, outside ``retries``, as
HTTP clients do for a stale keep-alive connection.

Secrets: ``auth.secretRef`` is resolved through SOUL's secret store (``soul.secretStore``: file,
env or vault). Only when the store lacks it, and only when an admin listed that exact name in
``relay.adapterEnvAllowlist``, is the gateway's environment variable named by ``key``
(``OPENAI_KEY``) used: a resource never chooses which of the gateway's variables (the master
key, cloud credentials) are sent upstream. The value is sent in the ``auth.header``
(``Authorization: Bearer <value>`` by default) and never logged or echoed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from fastapi.responses import Response
from pydantic_core import from_json, to_json

from mnemos._model import dump_json
from mnemos.errors import NotFoundError, RateLimitError, UnavailableError, UpstreamError
from mnemos.genome import Adapter
from mnemos.relay._responses import ClosingStream

__all__ = ["AdapterRouter", "resolve_secret"]

logger = logging.getLogger("mnemos.relay")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_CHAIN = 4
_SECRET_TTL_S = 60.0
_DEFAULT_TIMEOUT_S = 60.0

if sys.version_info >= (3, 11):
    _within = asyncio.timeout
else:  # pragma: no cover - Python 3.10: aiohttp depends on async-timeout there
    from async_timeout import timeout as _within


def resolve_secret(name: str, key: str, settings: Any = None) -> str:
    """The value of secret ``name``/``key``: SOUL's secret store (``soul.secretStore``), else the
    variable ``$key`` when ``key`` is in ``relay.adapterEnvAllowlist``.

    Raises:
        UnavailableError: the secret is not set (the message names it, never a value).
    """
    from mnemos.soul import secrets as soul_secrets

    try:
        return str(soul_secrets.resolve_secret_ref({"name": name, "key": key}, settings=settings))
    except NotFoundError:
        pass
    allowed = set(getattr(getattr(settings, "relay", None), "adapter_env_allowlist", None) or ())
    value = os.environ.get(key) if key in allowed else None
    if not value:
        hint = f" or export {key}" if key in allowed else ""
        raise UnavailableError(
            f"secret {name}/{key} is not set: store it (mnemos secret set {name} {key}){hint}; environment "
            "variables are read only when an admin lists them in relay.adapterEnvAllowlist",
            param="auth.secretRef",
        )
    return value


class _Target:
    """One adapter, ready to send: its spec, routes and credential."""

    def __init__(self, adapter: Adapter) -> None:
        self.name = adapter.name
        self.spec = adapter.spec
        self.base = adapter.spec.base_url.rstrip("/")
        self.routes = {r.match.rstrip("/"): r.timeout for r in adapter.spec.routes}
        self._secret: tuple[str, float] | None = None  # the header's value, when it was resolved
        self.redacted: list[bytes] = []  # what ``headers`` sends that an answer must not show (``_secrets``)
        # Who answers through it: the response cache keys answers by it (``AdapterRouter.source``).
        served = adapter.spec.model_dump(mode="json", include={"type", "base_url", "auth", "upstream_model"})
        self.fingerprint = f"{self.name}:{dump_json(served).decode()}"

    def timeout(self, path: str) -> float | None:
        """The route's timeout, or None when this adapter does not serve ``path``."""
        if not self.routes:
            return _DEFAULT_TIMEOUT_S
        return self.routes.get(path.rstrip("/"))

    def url(self, path: str) -> str:
        # baseUrl ends with /v1 (as OpenAI's does); the request path starts with /v1.
        if self.base.endswith("/v1") and path.startswith("/v1/"):
            return self.base + path[3:]
        return self.base + path

    async def fresh_headers(self, settings: Any) -> dict[str, str]:
        """``headers``; when the credential is to be read from the store again (a file, ENGRAM on S3,
        Vault), read in a thread, so the replica's event loop never waits on it."""
        stale = self._secret is None or time.monotonic() - self._secret[1] > _SECRET_TTL_S
        if self.spec.auth is not None and stale:
            return await asyncio.to_thread(self.headers, settings)
        return self.headers(settings)

    def headers(self, settings: Any) -> dict[str, str]:
        auth = self.spec.auth
        if auth is None:
            return {}
        now = time.monotonic()
        if self._secret is None or now - self._secret[1] > _SECRET_TTL_S:
            # Around it, whitespace is no part of a credential (`echo KEY > file` ends it with a line
            # break, which made every request through the adapter a 500: no header may carry one).
            secret = resolve_secret(auth.secret_ref.name, auth.secret_ref.key, settings).strip()
            if any(ord(c) < 32 or ord(c) == 127 for c in secret):
                raise UpstreamError(f"adapter {self.name}: the secret {auth.secret_ref.name}/{auth.secret_ref.key} "
                                    "holds a line break or control character, which no HTTP header can carry: set "
                                    "it again without one", param="spec.auth.secretRef")  # fmt: skip
            value = f"{auth.scheme} {secret}" if auth.scheme else secret
            self._secret = (value, now)
            self.redacted = _secrets({auth.header: value})  # once per resolution, not per request
        return {auth.header: self._secret[0]}


class AdapterRouter:
    """Sends requests for adapter-served models upstream, with retries and fallbacks.

    Args:
        settings: MNEMOS settings (the secret store).
        session: the shared ``aiohttp.ClientSession`` (default: one per gateway replica, pooled,
            opened on the first request so that it belongs to the loop serving requests).
    """

    def __init__(self, settings: Any = None, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self.targets: dict[str, _Target] = {}
        self.models: dict[str, str] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session (opened on first use)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=_KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def update(self, docs: dict[str, dict[str, Any]]) -> None:
        """Replace the adapters with ``{name: Adapter document}`` from the routing table."""
        targets = {}
        for name, doc in docs.items():
            try:
                targets[name] = _Target(Adapter.model_validate(doc))
            except Exception:  # noqa: BLE001 - the registry admitted it; skip what no longer parses
                logger.warning("relay: adapter %s could not be loaded", name, exc_info=True)
        self.targets = targets
        self.models = {model: name for name, t in sorted(targets.items()) for model in t.spec.models}

    def adapter_for(self, model: str) -> str | None:
        return self.models.get(model)

    def source(self, adapter: str) -> str:
        """What answers through ``adapter`` and its fallbacks (their upstreams, credentials and
        upstream model names): an answer cached before one of them changed is not served after."""
        return "|".join(t.fingerprint for t in self._chain(adapter))

    def _chain(self, first: str) -> list[_Target]:
        chain: list[_Target] = []
        name: str | None = first
        while name and len(chain) < _MAX_CHAIN and all(t.name != name for t in chain):
            target = self.targets.get(name)
            if target is None:
                break
            chain.append(target)
            name = target.spec.fallback
        return chain

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, model: str, path: str, body: dict[str, Any], *, stream: bool) -> tuple[Response, str]:
        """Send ``body`` for ``model`` to its adapter (then its fallbacks): the upstream's answer and
        the name of the adapter that gave it (a fallback's prices and name then apply).

        Raises:
            NotFoundError: no adapter of the chain serves ``path``.
            RateLimitError: every adapter failed and the last one answered 429 (its ``Retry-After`` kept).
            UpstreamError: every adapter failed (connection errors, timeouts, 5xx, redirects).
        """
        first = self.models.get(model)
        chain = self._chain(first) if first else []
        failures: list[str] = []
        served = False
        limited: float | None = None  # the last answer was a 429: retry after this many seconds
        for target in chain:
            if target.spec.type != "http":
                failures.append(f"{target.name}: type {target.spec.type} adapters are not routed (only http)")
                continue
            timeout = target.timeout(path)
            if timeout is None:
                failures.append(f"{target.name}: does not serve {path}")
                continue
            served = True
            payload = dict(body, model=target.spec.upstream_model or model)
            headers = await target.fresh_headers(self.settings)
            for attempt in range(target.spec.retries + 1):
                if attempt:
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
                try:
                    try:
                        response = await self._send(target, path, payload, headers, timeout, stream)
                    except _STALE as exc:
                        if isinstance(exc, aiohttp.ClientConnectorError):  # no connection at all: not stale
                            raise
                        logger.info("relay: adapter %s closed a pooled connection (%s): once more on a new one",
                                    target.name, _failure(exc))  # fmt: skip
                        response = await self._send(target, path, payload, headers, timeout, stream)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    failures.append(f"{target.name}: {_failure(exc)}")
                    limited = None
                    continue
                if isinstance(response, _Refused):
                    failures.append(f"{target.name}: {response.why}")
                    limited = response.retry_after if response.status == 429 else None
                    if response.retry:
                        continue
                    break  # a redirect: the same again would be redirected again
                return response, target.name
        if chain and (name := chain[-1].spec.fallback) and name not in self.targets:  # said, not silently cut short
            failures.append(f"{chain[-1].name}: its fallback {name!r} is not an Adapter (apply it, or fix "
                            f"spec.fallback of Adapter {chain[-1].name!r})")  # fmt: skip
        if not served:
            detail = f" ({'; '.join(failures)})" if failures else ""
            raise NotFoundError(f"no adapter for model {model!r} serves {path}{detail}", param="model")
        detail = "; ".join(failures[-6:])
        if limited is not None:  # OpenAI clients back off on a 429 and its Retry-After, not on a 502
            raise RateLimitError(f"model {model!r}: the upstream is rate limiting ({detail}); retry after "
                                 f"{limited:g}s", param="model", retry_after=limited)  # fmt: skip
        raise UpstreamError(f"model {model!r}: every upstream failed ({detail})")

    async def _send(
        self, target: _Target, path: str, payload: dict[str, Any], headers: dict[str, str], timeout: float, stream: bool
    ) -> Response | _Refused:
        """One attempt: the response to return, or why not (a status worth a retry, or a redirect).

        Redirects are not followed: an upstream could otherwise point the gateway at any address
        it can reach (its own dashboard, a cloud metadata service) and have the answer relayed.
        """
        # The headers within the timeout, not each of their reads: an upstream dripping a header line now
        # and then (each within ``sock_read``) held the request for as long as it liked.
        async with _within(timeout):
            upstream = await self.session.post(
                target.url(path), data=to_json(payload), headers={**headers, "content-type": "application/json"},
                timeout=_client_timeout(timeout),
                allow_redirects=False,
            )  # fmt: skip
        if upstream.status in RETRY_STATUSES or 300 <= upstream.status < 400:
            upstream.close()
            logger.info("relay: adapter %s answered %s for %s", target.name, upstream.status, path)
            if upstream.status < 400:
                return _Refused(upstream.status, f"answered a redirect ({upstream.status}), which adapters do not "
                                "follow: set its baseUrl to the final address", retry=False)  # fmt: skip
            return _Refused(upstream.status, f"answered {upstream.status}",
                            retry_after=_retry_after(upstream.headers.get("retry-after")))  # fmt: skip
        if not stream or upstream.status >= 400:
            try:  # the whole body within the timeout too: an upstream dripping a byte a second held it for ever
                async with _within(timeout):  # (not ``wait_for``: a task of its own for every answer)
                    content = await _read_within(upstream, _MAX_ANSWER_BYTES)
            finally:
                upstream.release()
            # An upstream that echoes its request (a debugging proxy, an error page) must not hand our
            # credential to the caller, in any answer.
            content = _redact(content, target.redacted)
            return _passthrough(upstream.status, content, upstream.headers.get("content-type"))
        return ClosingStream(
            _relay_stream(upstream, target.redacted, target.name),
            on_close=upstream.close,  # also when the stream never started (the client left first)
            status_code=upstream.status,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
            headers={},
        )


@functools.lru_cache(maxsize=64)
def _client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A route's timeout for the connect and each read (one object per value, not one a request)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)


@dataclass(frozen=True)
class _Refused:
    """An upstream answer not relayed: ``why`` in words, whether to try again, its Retry-After."""

    status: int
    why: str
    retry: bool = True
    retry_after: float = 1.0


def _retry_after(value: str | None) -> float:
    """A ``Retry-After`` in seconds (1 when absent, a date, or not a number; at most an hour)."""
    try:
        seconds = float(value or "")
    except ValueError:
        return 1.0
    return min(max(seconds, 0.001), 3600.0) if seconds == seconds else 1.0


_KEEPALIVE_S = 4.0
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
"""A pooled connection the upstream closed as the request went out (reset, or closed unanswered)."""


def _failure(exc: BaseException) -> str:
    """A failed attempt, in words that do not depend on the HTTP client (no URL, no credential)."""
    if isinstance(exc, asyncio.TimeoutError):  # the builtin one on Python >= 3.11
        return "Timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"
    if isinstance(exc, _TooLarge):
        return str(exc)
    return type(exc).__name__


async def _relay_stream(upstream: aiohttp.ClientResponse, secrets: list[bytes], name: str) -> AsyncIterator[bytes]:
    """The upstream's stream, chunk by chunk, each credential in ``secrets`` replaced by
    ``[redacted]``, also across chunks: bytes that could begin one wait for the next chunk (an SSE
    event's end, a newline, never can, so events are not delayed).

    An upstream that breaks off mid-stream (closes the connection, sends no chunk within the
    route's timeout) ends it with an OpenAI error event and ``[DONE]``, as a model's failing stream
    does: the answer started, so its status cannot change, and a stream cut without a word (and a
    traceback in the gateway's log) left the client to guess. A line the upstream had not ended when
    it broke off is not sent (``_held_back``): half a JSON chunk, ended as an event, made the openai
    client raise a ``JSONDecodeError`` before it read the error event."""
    finished = False
    held = b""
    last = b"\n\n"  # the end of what the client was sent: an event boundary or not
    try:
        yield b""  # started by ClosingStream
        try:
            async for chunk in upstream.content.iter_any():
                if not secrets and not held and chunk[-1:] in _LINE_ENDS:  # whole lines (what upstreams flush)
                    last = chunk[-2:]
                    yield chunk
                    continue
                data = _redact(held + chunk, secrets) if secrets else held + chunk
                keep = _held_back(data, secrets)
                held = data[len(data) - keep:] if keep else b""
                if len(data) > keep:
                    last = data[: len(data) - keep][-2:]
                    yield data[: len(data) - keep]
            if held:
                yield held
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.info("relay: adapter %s broke off its stream (%s)%s", name, _failure(exc),
                        f", {len(held)} bytes of a line not sent" if held else "")  # fmt: skip
            error = UpstreamError(f"adapter {name}: the upstream broke off its stream ({_failure(exc)}); the "
                                  "answer is incomplete")  # fmt: skip
            yield (b"" if last.endswith(b"\n\n") else b"\n\n") + b"data: " + dump_json(error.to_openai()) + b"\n\n"
            yield b"data: [DONE]\n\n"
            return
        finished = True
    finally:
        if finished:
            upstream.release()
        else:  # the client went away mid-stream: drop the connection, it cannot be reused
            upstream.close()


def _secrets(headers: dict[str, str]) -> list[bytes]:
    """The credentials sent upstream: each header value, and its secret part after a scheme such
    as ``Bearer``; none shorter than 8 bytes (nothing that short to match ordinary text)."""
    found = {secret for value in headers.values() for secret in (value, value.partition(" ")[2])}
    return sorted((s.encode() for s in found if len(s) >= 8), key=len, reverse=True)  # the whole value first


def _redact(content: bytes, secrets: list[bytes]) -> bytes:
    """``content`` with each of ``secrets`` replaced by ``[redacted]``."""
    for secret in secrets:
        if secret in content:
            content = content.replace(secret, b"[redacted]")
    return content


_MAX_ANSWER_BYTES = 256 << 20
"""The largest JSON answer an upstream may send (decompressed): about 25 times OpenAI's largest
embeddings answer. Past it the attempt fails, as a broken answer does, before the gateway's memory."""


class _TooLarge(aiohttp.ClientPayloadError):
    """An answer past ``_MAX_ANSWER_BYTES``: a failed attempt, said in its own words."""


async def _read_within(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, ``_TooLarge`` past ``limit`` bytes: a hostile or broken
    upstream (a body of gigabytes, or a small gzip that inflates to them) must not fill the gateway's
    memory. A body whose declared length is within the limit and not compressed is read at once."""
    declared = upstream.content_length
    if declared is not None and declared <= limit and "content-encoding" not in upstream.headers:
        return await upstream.read()
    if declared is not None and declared > limit:
        raise _TooLarge(f"its answer declares {declared} bytes, more than the {limit} a gateway reads")
    parts, size = [], 0
    async for chunk in upstream.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"its answer is more than the {limit} bytes a gateway reads")
        parts.append(chunk)
    return b"".join(parts)


_LINE_ENDS = (b"\n", b"\r")
_MAX_PARTIAL_LINE = 1 << 16
"""Bytes of a stream's unended line held back; a longer one (an event of megabytes) goes to the client as it comes."""


def _held_back(data: bytes, secrets: list[bytes]) -> int:
    """How many bytes at the end of ``data`` wait for the next chunk: the line not yet ended (up to
    ``_MAX_PARTIAL_LINE``; a stream broken off then sends none of it), else the longest end that
    begins one of ``secrets``."""
    partial = len(data) - 1 - max(data.rfind(b"\n"), data.rfind(b"\r"))
    if partial <= _MAX_PARTIAL_LINE:
        return partial
    return _secret_prefix(data, secrets) if secrets else 0


def _secret_prefix(data: bytes, secrets: list[bytes]) -> int:
    """The length of the longest end of ``data`` that begins one of ``secrets`` (0: none)."""
    longest = 0
    for secret in secrets:
        tail = data[-(len(secret) - 1):]
        at = tail.find(secret[:1])
        while at != -1 and len(tail) - at > longest:
            if secret.startswith(tail[at:]):
                longest = len(tail) - at
                break
            at = tail.find(secret[:1], at + 1)
    return longest


def _passthrough(status: int, content: bytes, content_type: str | None) -> Response:
    """The upstream's answer; an error that is not in OpenAI's shape is wrapped in it, and a success
    whose body is not a JSON object is a 502 ``upstream_error`` (a client could not read it)."""
    try:
        answer = from_json(content)
    except ValueError:
        answer = None
    if status >= 400 and not (isinstance(answer, dict) and isinstance(answer.get("error"), dict)):
        text = content[:500].decode("utf-8", "replace")
        error = {"message": f"upstream answered {status}: {text}", "type": "upstream_error", "param": None,
                 "code": "upstream_error"}  # fmt: skip
        return Response(dump_json({"error": error}), status_code=status, media_type="application/json")
    if not isinstance(answer, dict):  # an OpenAI answer is a JSON object: anything else is the upstream's fault
        text = content[:200].decode("utf-8", "replace")
        error = {"message": f"upstream answered {status} with a body that is not a JSON object: {text}",
                 "type": "upstream_error", "param": None, "code": "upstream_error"}  # fmt: skip
        return Response(dump_json({"error": error}), status_code=502, media_type="application/json")
    return UpstreamAnswer(content, answer, status_code=status, media_type=content_type or "application/json")


class UpstreamAnswer(Response):
    """An adapter's JSON answer, relayed as it came, with the object it parses to (``answer``): the
    meter reads its usage from that rather than parsing the body a second time."""

    def __init__(self, content: bytes, answer: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.answer = answer
