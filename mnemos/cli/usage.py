"""``mnemos usage``: requests, tokens and spend per principal, team and model (``GET /v1/usage``).

Asks the gateway (``--url``, ``MNEMOS_URL`` or the URL of ``mnemos login``; default
``http://<relay.host>:<relay.port>``) with the credential of ``mnemos login`` (or
``MNEMOS_API_KEY``); admins and operators see everyone (one bound to a team: its team), others
their own. Without a credential the error says how to get one.
"""

from __future__ import annotations

from typing import Any

import typer

from mnemos.cli._output import Output, emit

__all__ = ["fetch_usage", "register", "usage"]

def register(app: typer.Typer) -> None:
    app.command()(usage)


def fetch_usage(url: str, params: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    """The body of ``GET {url}/v1/usage``; an error answer becomes the matching ``MnemosError``."""
    import httpx

    from mnemos import errors

    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/usage", params=params, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise errors.UnavailableError(f"the gateway at {url} cannot be reached ({type(exc).__name__}); "
                                      "is the platform up (mnemos up) and --url right?") from None  # fmt: skip
    from mnemos.cli._session import not_a_gateway

    refused = not_a_gateway(response, url.rstrip("/"))
    if refused is not None:
        raise refused
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message, param = str(error["message"]), error.get("param")
        except (ValueError, KeyError, TypeError):
            message, param = f"HTTP {response.status_code}", None
        by_status: dict[int, type[errors.MnemosError]] = {
            401: errors.AuthenticationError, 403: errors.PermissionDeniedError, 404: errors.NotFoundError,
            422: errors.ValidationError, 429: errors.RateLimitError,
        }  # fmt: skip
        raise by_status.get(response.status_code, errors.MnemosError)(message, param=param)
    return response.json()  # type: ignore[no-any-return]


def usage(
    principal: str | None = typer.Option(None, "--principal", help="Only this principal (API key name, subject)."),
    team: str | None = typer.Option(None, "--team", help="Only this team."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    window: str = typer.Option("24h", "--window", help="How far back: 1h, 24h, 30d."),
    by: str = typer.Option("principal,team,model", "--by", help="Group by some of principal,team,model."),
    url: str | None = typer.Option(None, "--url", envvar="MNEMOS_URL", help="The gateway (default: relay.host:port)."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Usage and spend per principal, team and model over a window."""
    from mnemos.cli._session import check_url, remote_url
    from mnemos.cli.token import parse_ttl
    from mnemos.config import load_settings
    from mnemos.errors import AuthenticationError, ValidationError
    from mnemos.relay.usage_http import GROUPS
    from mnemos.soul.credentials import authorization_header

    parse_ttl(window, "window")  # a bad window (or --by) is named before anything is asked of the gateway
    groups = list(dict.fromkeys(g.strip() for g in by.split(",") if g.strip()))  # team,team: one TEAM column
    if not groups or any(g not in GROUPS for g in groups):
        raise ValidationError(f"--by {by[:40]!r}: give some of {', '.join(GROUPS)}, comma-separated "
                              "(e.g. --by team,model)", param="by")  # fmt: skip
    url = check_url(url, "--url") if url else remote_url()
    if url is None:
        settings = load_settings()
        url = f"http://{settings.relay.host}:{settings.relay.port}"
    params = {"window": window, "group_by": by}
    params.update({k: v for k, v in (("principal", principal), ("team", team), ("model", model)) if v is not None})
    headers = authorization_header()
    try:
        body = fetch_usage(url, params, headers)
    except AuthenticationError as exc:
        if headers:
            raise
        raise AuthenticationError(
            f"{exc.message.rstrip('.')}: usage is read from the gateway with a credential: run "
            "`mnemos login --api-key …` (the bootstrap admin key `mnemos up` printed) or set MNEMOS_API_KEY",
            param=exc.param,
        ) from None
    columns = tuple(g.upper() for g in groups) + ("REQUESTS", "PROMPT", "COMPLETION", "SPEND", "CACHED")
    rows = [
        tuple(str(e.get(g) or "-") for g in groups)
        + (e["requests"], e["prompt_tokens"], e["completion_tokens"], f"{e['spend']:.6g}", e["cached"])
        for e in body["data"]
    ]
    total = body["total"]
    if output is Output.table and rows:
        rows.append(tuple("TOTAL" if i == 0 else "" for i in range(len(groups)))
                    + (total["requests"], total["prompt_tokens"], total["completion_tokens"],
                       f"{total['spend']:.6g}", total["cached"]))  # fmt: skip
    emit(body, output, columns, rows)
