"""``mnemos token create|list|revoke``: JWTs and API keys (SOUL).

With a gateway URL (``--url``, ``MNEMOS_URL`` or ``mnemos login``) they are ``POST/GET/DELETE
/v1/tokens`` with the logged-in credential, which SOUL holds to its own role and team (a team's
admin mints and lists its team's keys only). Without one they act on ENGRAM directly, as the local
admin (whoever can write ENGRAM and holds the master key is the platform's root).
"""

from __future__ import annotations

import datetime as dt
import re
import sys

import typer

from mnemos.cli._output import Output, emit
from mnemos.errors import ValidationError

__all__ = ["app", "create", "list_", "parse_ttl", "revoke"]

app = typer.Typer(help="Create, list and revoke tokens and API keys.", no_args_is_help=True)


def _store():  # noqa: ANN202 - IdentityStore, imported lazily
    from mnemos.config import load_settings
    from mnemos.engram import Engram
    from mnemos.soul.store import IdentityStore

    settings = load_settings()
    return IdentityStore.from_settings(settings, Engram.from_settings(settings))


def _gateway():  # noqa: ANN202 - RemoteClient, imported lazily
    """The gateway's client when a URL is configured (the commands go through ``/v1/tokens``), else ``None``."""
    from mnemos.cli._session import open_client, remote_url

    return open_client() if remote_url() else None


def parse_ttl(value: str | None, flag: str = "ttl") -> float | None:
    """``1h``/``30m``/``3600`` → seconds; a bad value is a ``ValidationError`` naming ``--<flag>``."""
    if value is None:
        return None
    from pydantic import TypeAdapter
    from pydantic import ValidationError as PydanticValidationError

    from mnemos._model import Duration
    from mnemos.errors import ValidationError

    try:
        seconds = TypeAdapter(Duration).validate_python(value)
    except PydanticValidationError:
        # Echoed only when it looks like a duration mistyped, not a credential pasted in the wrong place.
        shown = f" {value!r}" if len(value) <= 24 and not value.startswith("mk_") else ""
        raise ValidationError(f"--{flag}{shown} is not a duration (e.g. 30m, 1h, 7d)", param=flag) from None
    if seconds <= 0:
        raise ValidationError(f"--{flag} must be positive", param=flag)
    return float(seconds)


_FLAGS = {"limits.rpm": "rpm", "limits.tpm": "tpm", "limits.budget.amount": "budget",
          "limits.budget.tokens": "budget-tokens", "limits.budget.window": "budget-window",
          "scope": "scope", "model": "model"}  # fmt: skip
"""The option of ``create`` that sets each field of ``POST /v1/tokens`` (its errors name the field)."""


def _as_flags(exc: ValidationError) -> ValidationError:
    """``exc`` naming the option the user typed (``--rpm``), not the field it fills (``limits.rpm``)."""
    param = exc.param or ""
    field = next((f for f in sorted(_FLAGS, key=len, reverse=True) if param == f or param.startswith(f + "[")), None)
    if field is None:
        return exc
    flag = _FLAGS[field]
    message = re.sub(rf"^{re.escape(field)}(\[\d+\])?(?=:)", f"--{flag}", exc.message)
    return ValidationError(message, param=flag)


def _when(ts: float | None) -> str:
    """An expiry as a UTC date; one no calendar can show (10^12 days away, or not a number) as it is stored."""
    if ts is None:
        return "never"
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(ts)


@app.command()
def create(
    name: str = typer.Option(..., "--name", help="The principal's name (token subject)."),
    role: str = typer.Option(..., "--role", help="admin, operator, developer or viewer."),
    ttl: str | None = typer.Option(None, "--ttl", help="Lifetime, e.g. 1h (default 1h; API keys: never)."),
    api_key: bool = typer.Option(False, "--api-key", help="Create an API key instead of a JWT."),
    scope: list[str] = typer.Option([], "--scope", help="Limit to these verbs (repeatable)."),
    team: str = typer.Option("", "--team", help="The team (limits, budgets and usage per team)."),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens per minute (prompt + completion)."),
    budget: float | None = typer.Option(None, "--budget", help="Most spend per budget window."),
    budget_tokens: int | None = typer.Option(None, "--budget-tokens", help="Most tokens per window."),
    budget_window: str | None = typer.Option(None, "--budget-window", help="Budget window, e.g. 1d (default 30d)."),
    model: list[str] = typer.Option([], "--model", help="The only models it may call (repeatable; default: any)."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Create a token (or --api-key); the credential is printed once, on stdout (-o json|yaml: the
    answer of POST /v1/tokens, the secret as "token" or "apiKey")."""
    from mnemos.soul.identity import check_models
    from mnemos.soul.limits import parse_limits
    from mnemos.soul.rbac import check_role, check_scopes_held
    from mnemos.soul.store import check_name, check_ttl

    window = parse_ttl(budget_window, "budget-window") if budget_window is not None else None
    try:
        limits = parse_limits(rpm, tpm, budget, budget_tokens, window)
        seconds = parse_ttl(ttl)
        check_ttl(seconds)  # from 1 s to 100 years, as POST /v1/tokens
        check_scopes_held(check_role(role), scope, param="scope")  # a scope the role lacks grants nothing
        models = check_models(model, param="model")
        if team:  # as without a gateway, not as a field of POST /v1/tokens and its pattern
            check_name(team, "team")
    except ValidationError as exc:  # named as the option the user typed
        raise _as_flags(exc) from None
    if (gateway := _gateway()) is not None:  # the gateway holds it to the caller's role, team and limits
        body = {"name": name, "role": role, "ttl": seconds, "scopes": scope, "apiKey": api_key, "team": team,
                "limits": limits, "models": list(models) or None}  # fmt: skip
        answer = gateway.request("POST", "/v1/tokens", json_body={k: v for k, v in body.items() if v is not None})
    else:
        from mnemos.soul.http import check_name_taken, created_answer
        from mnemos.soul.identity import Principal

        store = _store()
        # a name is one principal, here as over POST /v1/tokens (the local admin has no team)
        check_name_taken(store, Principal("local", "admin", "anonymous"), name, team)
        create = store.create_api_key if api_key else store.create_token
        created = create(name, role, ttl=seconds, scopes=scope, team=team, limits=limits, models=models)
        answer = created_answer(created, team=team, limits=limits, models=models)
    if output is Output.table:
        typer.echo(answer["apiKey" if answer["kind"] == "apikey" else "token"])
        print(
            f"{answer['kind']} {answer['id']} for {answer['name']} ({answer['role']}), expires "
            f"{_when(answer.get('expiresAt'))}; shown once, store it now",
            file=sys.stderr,
        )
    else:  # what POST /v1/tokens answers: team and limits included, the secret once (token or apiKey)
        emit(answer, output)


@app.command("list")
def list_(
    all_: bool = typer.Option(False, "--all", help="Include revoked and expired credentials."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """List tokens and API keys (never their secrets); over a gateway, those the caller manages."""
    if (gateway := _gateway()) is not None:
        items = gateway.request("GET", "/v1/tokens", params={"all": "true" if all_ else None})["data"]
    else:  # as GET /v1/tokens lists them: camelCase keys
        from pydantic.alias_generators import to_camel

        items = [{to_camel(k): v for k, v in d.items()} for d in _store().list(include_inactive=all_)]
    scoped = any(d.get("scopes") for d in items)
    listed = any(d.get("models") for d in items)
    rows = [
        (d["id"], "session" if d.get("audience") == "console" else d["kind"], d.get("name", ""), d.get("role", ""))
        + ((",".join(d.get("scopes") or []) or "-",) if scoped else ())
        + ((",".join(d.get("models") or []) or "any",) if listed else ())
        + (_when(d.get("expiresAt")), d["state"])
        for d in items
    ]
    columns = ("ID", "KIND", "NAME", "ROLE") + (("SCOPES",) if scoped else ()) + (("MODELS",) if listed else ()) \
        + ("EXPIRES", "STATE")
    emit(items, output, columns, rows)


@app.command()
def revoke(credential_id: str = typer.Argument(..., metavar="ID", help="Token id (tok-…) or API key id.")) -> None:
    """Revoke a token or an API key; the gateway refuses it within seconds."""
    if (gateway := _gateway()) is not None:
        from mnemos.soul.store import check_credential_id

        doc = gateway.request("DELETE", f"/v1/tokens/{check_credential_id(credential_id)}")
    else:
        doc = _store().revoke(credential_id)
    typer.echo(f"{doc.get('kind', 'credential')} {credential_id} ({doc.get('name')}) revoked")
