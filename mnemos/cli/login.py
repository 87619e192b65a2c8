"""``mnemos login`` / ``mnemos logout``: the credential the CLI and the Python client send."""

from __future__ import annotations

import sys

import typer


def register(app: typer.Typer) -> None:
    app.command()(login)
    app.command()(logout)


def _read_stdin() -> str:
    if sys.stdin.isatty():
        return typer.prompt("credential", hide_input=True)
    return sys.stdin.readline().strip()


def login(
    token: str | None = typer.Option(None, "--token", help="A JWT ('-' reads it from stdin)."),
    api_key: str | None = typer.Option(None, "--api-key", help="An mk_… API key ('-' reads it from stdin)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check it against this platform's keys first."),
) -> None:
    """Store a token or API key in $MNEMOS_HOME/credentials (0600); MNEMOS_API_KEY overrides it."""
    from mnemos.errors import ValidationError
    from mnemos.soul import credentials

    if (token is None) == (api_key is None):
        raise ValidationError("pass exactly one of --token or --api-key", param="credential")
    value = token if token is not None else (api_key or "")
    if value == "-":
        value = _read_stdin()
    kind = credentials.kind_of(value)
    if kind != ("token" if token is not None else "apikey"):
        flag = "--token" if token is not None else "--api-key"
        raise ValidationError(f"{flag} was given {'a JWT' if kind == 'token' else 'an API key'}", param="credential")
    who = _verify(value, kind) if verify else None
    path = credentials.save(value, kind)
    if who is None and verify:
        note = " (not verified: the local ENGRAM holds no SOUL identities)"
    else:
        note = f" as {who}" if who else ""
    typer.echo(f"logged in{note}; credential stored in {path}")


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
    """Forget the stored credential."""
    from mnemos.soul import credentials

    typer.echo("logged out" if credentials.clear() else "no stored credential")
