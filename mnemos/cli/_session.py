"""How CLI commands reach the platform.

With a gateway URL configured (``mnemos --url URL``, ``MNEMOS_URL``, or ``mnemos login URL``)
every command goes through RELAY's authenticated HTTP API with the stored credential (a
``RemoteClient``); so it does, to this machine's gateway, when only a credential is in the
environment (``MNEMOS_API_KEY``, ``MNEMOS_TOKEN``: ``mnemos.remote.implied_url``); without
either, the embedded mode reads and writes ENGRAM as the local admin.
"""

from __future__ import annotations

import os
from typing import Any

from mnemos.client import Client
from mnemos.config import load_settings

__all__ = ["NOTES", "check_url", "event_position", "gateway_client", "not_a_gateway", "open_client", "platform_address",
           "platform_up", "remote_url", "require_local"]  # fmt: skip


def check_url(url: str, option: str) -> str:
    """``url`` when it is a well-formed ``http(s)://host[:port]`` URL.

    Raises:
        ValidationError: naming ``option``: not http(s), no host, a bad port or bracket, or
            whitespace or control characters (which HTTP clients would silently drop).
    """
    import httpx

    from mnemos.errors import ValidationError
    from mnemos.remote import check_query, check_root, is_url

    problem = None if is_url(url) else "is not an http(s):// URL"
    example = "e.g. http://127.0.0.1:8000"
    if problem is None and any(c.isspace() or not c.isprintable() for c in url):
        problem = "contains whitespace or control characters"
    if problem is None:
        try:
            parsed = httpx.URL(url)
            if not parsed.host:
                problem = "has no host"
            elif parsed.port is not None and not 0 < parsed.port < 65536:
                problem = f"has port {parsed.port}, not one of 1-65535"
            elif parsed.userinfo:  # it would be echoed in errors and stored by `mnemos login`: not echoed here
                shown = str(parsed.copy_with(username=None, password=None)).replace("://", "://***@", 1)
                raise ValidationError(f"{option}: {shown!r} carries a user or password (the gateway takes API keys and "
                                      "tokens): drop it and give the credential with --api-key or MNEMOS_API_KEY",
                                      param="url")  # fmt: skip
            else:
                check_query(url, option)  # each request's path would land in it: every command "Not Found"
        except httpx.InvalidURL as exc:
            problem = f"is not a valid URL ({exc})"
    if problem:
        raise ValidationError(f"{option}: {url!r} {problem}: use {example}", param="url")
    check_root(url, option)
    return url


def remote_url() -> str | None:
    """The gateway URL the CLI talks to, or ``None`` for the embedded mode: the configured one,
    else this machine's gateway when a credential is in the environment (``implied_url``).

    Raises:
        ValidationError: the configured URL (``MNEMOS_URL`` or the one ``mnemos login`` stored) is malformed.
    """
    from mnemos.remote import endpoint_url, implied_url

    url = endpoint_url()
    if url:
        return check_url(url, "the gateway URL (--url, MNEMOS_URL or `mnemos login URL`)")
    implied = implied_url()
    return implied[0] if implied else None


def require_local(command: str) -> None:
    """Refuse ``mnemos <command>`` when a gateway URL is configured: it works on the platform's machine.

    Such commands read or write ENGRAM, the backup store or the Ray cluster of this machine; over
    ``--url`` they would act on the wrong platform (or fail), so they stop with one line instead.

    Raises:
        ValidationError: a gateway URL is configured (``--url``, ``MNEMOS_URL``, ``mnemos login``).
    """
    if remote_url():
        from mnemos.errors import ValidationError
        from mnemos.remote import credential_variable, implied_url

        implied = implied_url()
        if implied is not None:
            var = credential_variable()
            raise ValidationError(f"`mnemos {command}` works on the platform's own machine, not through a gateway, and "
                                  f"{var} is set (which sends commands to this machine's gateway {implied[0]}): run "
                                  f"it with {var} unset", param="url")  # fmt: skip
        raise ValidationError(
            f"`mnemos {command}` works on the platform's own machine, not over --url: "
            "run it there (or unset MNEMOS_URL / mnemos logout)",
            param="url",
        )


def platform_address() -> str | None:
    """The Ray address of a running platform, or ``None`` when none is up."""
    from mnemos.cradle import read_cluster

    settings = load_settings()
    info = read_cluster()
    return settings.ray.address or os.environ.get("MNEMOS_RAY_ADDRESS") or (info["address"] if info else None)


def platform_up() -> bool:
    """Whether a command reaches a running platform: a gateway URL, a platform ``mnemos up`` started,
    a connected Ray, or ``RAY_ADDRESS`` (a driver of ``ray job submit``)."""
    import ray

    return bool(remote_url() or ray.is_initialized() or platform_address() or os.environ.get("RAY_ADDRESS"))


def open_client(*, publish: bool = False, connect: bool = False) -> Any:
    """A client for a command: a ``RemoteClient`` when a gateway URL is configured, else embedded.

    Embedded reads need no cluster: they go to ENGRAM directly. Writes (``publish``) connect when
    a platform is up, so that its controllers see the change; ``connect`` always connects.
    """
    url = remote_url()
    if url:
        return gateway_client(url)
    if connect or (publish and platform_address()):
        import mnemos

        return mnemos.connect(platform_address())
    settings = load_settings()
    if publish:
        _note_an_empty_store(settings.engram.root())
    return Client(settings)


def gateway_client(url: str, api_key: str | None = None) -> Any:
    """A ``RemoteClient`` of ``url`` whose every answer is checked to come from a MNEMOS gateway
    (``not_a_gateway``): a URL that is some other server (a web server, the Ray dashboard) is one
    line saying so, not ``HTTP 404`` or a traceback of a web page read as JSON."""
    from mnemos.remote import RemoteClient, implied_url

    client = RemoteClient(url, api_key)
    implied = implied_url() if api_key is None else None
    if implied is not None and implied[0] == url:
        client._why = implied[1]

    def check(response: Any) -> None:
        refused = not_a_gateway(response, client.url)
        if refused is not None:
            raise refused

    client._http.event_hooks["response"].append(check)
    request = client.request

    def request_saying_what_to_check(*args: Any, **kwargs: Any) -> Any:
        from mnemos.errors import UnavailableError

        try:
            return request(*args, **kwargs)
        except UnavailableError as exc:  # nothing answers there: a typo in the URL, or the platform is down
            if exc.param is not None or not exc.message.startswith(f"the MNEMOS gateway at {client.url} is not"):
                raise
            if client._why:  # the message says why this URL, and how to choose another
                raise UnavailableError(exc.message, param="url") from None
            raise UnavailableError(f"{exc.message}: {_WHERE} and that the platform is up (`mnemos up` on its "
                                   "machine); `mnemos logout` forgets a stored gateway",
                                   param="url") from None  # fmt: skip

    client.request = request_saying_what_to_check  # type: ignore[method-assign]
    return client


_WHERE = "check the URL (--url, MNEMOS_URL or `mnemos login URL`)"


def not_a_gateway(response: Any, url: str) -> Any:
    """The ``UnavailableError`` for an answer no MNEMOS gateway gives (``None`` for one it gives):
    a web page, or an error without MNEMOS's error body (``{"error": {"message": …}}``, which the
    gateway sends with every error status)."""
    from mnemos.errors import UnavailableError

    status = response.status_code
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if status < 400 and media != "text/html":
        return None
    if status >= 400:
        response.read()  # an error's body is small (and a stream's reader reads it too)
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("message"):
            return None
    what = f"HTTP {status} for {response.request.method} {response.request.url.path}"
    what += ", a web page" if media == "text/html" else ""
    if status in (502, 503, 504):  # a proxy's own answer, when what it fronts is down
        return UnavailableError(f"{url} answered {what}, not a MNEMOS error: not a MNEMOS gateway, or a proxy "
                                f"in front of one that is down; {_WHERE} and that the platform is up",
                                param="url")  # fmt: skip
    return UnavailableError(f"{url} does not answer as a MNEMOS gateway ({what}): {_WHERE}", param="url")


NOTES: list[str] = []
"""Lines a command that succeeded ends with on stderr (``mnemos.cli.main`` prints them)."""


def _note_an_empty_store(uri: str) -> None:
    """Note that a command writes to a local ENGRAM where nothing was ever stored: after ``mnemos
    logout``, or with a mistyped ``MNEMOS_HOME``, its "created" is otherwise indistinguishable from
    a change to the platform the user meant."""
    if "://" in uri and not uri.startswith("file://"):
        return  # S3 and the like: a bucket is there or the command fails
    path = os.path.expanduser(uri.removeprefix("file://"))
    if not os.path.exists(path):
        NOTES.append(f"note: no gateway is configured (`mnemos login URL`) and no platform is up here: this wrote "
                     f"to the local store {path}, where nothing was stored before")  # fmt: skip


def event_position(client: Any) -> int | None:
    """Where the platform's event stream is now: ``client.watch(after=…)`` from here misses nothing
    (take it before reading a state, then follow its changes). ``None`` when it cannot be read."""
    if hasattr(client, "position"):  # a RemoteClient: over /v1/events
        return client.position()  # type: ignore[no-any-return]
    import ray

    from mnemos.trace.events import bus

    try:
        return int(ray.get(bus().last.remote(), timeout=30))
    except Exception:  # noqa: BLE001 - without the bus a follower starts from now
        return None
