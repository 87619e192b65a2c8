"""``mnemos login`` / ``mnemos logout``: the credential the CLI and the Python client send."""

from __future__ import annotations

import sys

import typer

__all__ = ["login", "logout", "register"]


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)


def _read_stdin() -> str:
    if sys.stdin.isatty():
        return typer.prompt("credential", hide_input=True)
    return sys.stdin.readline().strip()


def login(
    url: str | None = typer.Argument(None, help="The gateway (http(s)://host:port); later commands talk to it."),
    token: str | None = typer.Option(None, "--token", help="A JWT ('-' reads it from stdin)."),
    api_key: str | None = typer.Option(None, "--api-key", help="An mk_… API key ('-' reads it from stdin)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check it with the platform first."),
) -> None:
    """Store a token or API key in $MNEMOS_HOME/credentials (0600), and the gateway URL if given.

    With URL, every later command (and mnemos.connect()) goes through that gateway's API and
    sends this credential; MNEMOS_URL and MNEMOS_API_KEY override what is stored.
    """
    from mnemos.cli._session import check_url
    from mnemos.errors import ValidationError
    from mnemos.soul import credentials

    if url is not None:
        check_url(url, "URL")
    if (token is None) == (api_key is None):
        raise ValidationError("pass exactly one of --token or --api-key", param="credential")
    value = token if token is not None else (api_key or "")
    flag = "--token" if token is not None else "--api-key"
    if value == "-":
        value = _read_stdin()
    try:
        kind = credentials.kind_of(value)
    except ValidationError as exc:
        raise ValidationError(f"{flag}: {exc.message}", param="credential") from None
    if kind != ("token" if token is not None else "apikey"):
        raise ValidationError(f"{flag} was given {'a JWT' if kind == 'token' else 'an API key'}", param="credential")
    if url is not None:
        who = _verify_remote(url, value) if verify else None
    else:
        who = _verify(value, kind) if verify else None
    path = credentials.save(value, kind)
    if url is not None:
        from mnemos.remote import save_endpoint

        save_endpoint(url)
    if who is None and verify:
        note = " (not verified: the local ENGRAM holds no SOUL identities)"
    else:
        note = f" as {who}" if who else ""
    where = f" to {url.rstrip('/')}" if url else ""
    typer.echo(f"logged in{where}{note}; credential stored in {path}")


def _verify_remote(url: str, value: str) -> str:
    """``name (role)`` as the gateway at ``url`` sees the credential (its errors as they are: 401 …)."""
    from mnemos.cli._session import gateway_client

    with gateway_client(url, value) as client:
        me = client.whoami()
    return f"{me['subject']} ({me['role']})"


def _verify(value: str, kind: str) -> str | None:
    """``name (role)`` of the credential, checked against the local ENGRAM's keys and API keys;
    ``None`` when that ENGRAM holds none (the credential is for a platform this machine cannot see)."""
    import asyncio

    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.soul.apikeys import APIKEYS_PREFIX
    from mnemos.soul.edge import EdgeGuard
    from mnemos.soul.keys import KEYS_PREFIX
    from mnemos.soul.ratelimit import LocalRateLimiter

    settings = load_settings()
    engram = Engram.from_settings(settings)
    if not engram.list(KEYS_PREFIX if kind == "token" else APIKEYS_PREFIX):
        return None
    guard = EdgeGuard(settings, engram, limiter=LocalRateLimiter())
    principal = asyncio.run(guard.verify_credential(value))
    return f"{principal.subject} ({principal.role})"


def logout() -> None:
    """Forget the stored credential and gateway URL."""
    from mnemos.remote import forget_endpoint
    from mnemos.soul import credentials

    had = credentials.clear()
    had = forget_endpoint() or had
    from mnemos.config import default_home

    where = f"commands now act on this machine's platform ({default_home()}), not a gateway"
    from mnemos.remote import credential_variable, implied_url

    implied = implied_url()
    if implied is not None:  # the environment still sends commands to a gateway
        where = (f"{credential_variable()} is still set, so commands go to this machine's gateway {implied[0]}; "
                 f"unset it to act on this machine's platform ({default_home()}) directly")  # fmt: skip
    typer.echo(f"logged out: {where}" if had else f"no stored credential: {where}")
