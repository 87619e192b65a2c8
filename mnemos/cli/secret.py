"""``mnemos secret set|get|list|delete``: the secret stores of SOUL (file, engram, env, vault).

Values are never echoed: ``set`` reads them from ``--value`` or stdin, ``get`` prints one only with
``--reveal``, ``list`` prints names. Changes are audit events in lineage (names only).
"""

from __future__ import annotations

import sys

import typer

from mnemos.cli._output import Output, emit

__all__ = ["app", "delete", "get", "list_", "set_"]

app = typer.Typer(help="Manage secrets (file, engram, env or vault store).", no_args_is_help=True)

_STORE_HELP = "Secret store: file, engram, env or vault (default: soul.secretStore)."


class _GatewayStore:
    """The platform's secret store through the gateway (``/v1/secrets``): values are write-only.

    Names and keys are checked before they become a URL path (``RemoteSecrets``)."""

    kind = "gateway"

    def __init__(self, secrets: object) -> None:
        self._secrets = secrets

    def set(self, name: str, key: str, value: str) -> None:
        self._secrets.set(name, key, value)  # type: ignore[attr-defined]

    def list(self, name: str | None = None) -> list[str]:
        return self._secrets.list(name)  # type: ignore[attr-defined, no-any-return]

    def delete(self, name: str, key: str | None = None) -> None:
        self._secrets.delete(name, key)  # type: ignore[attr-defined]

    def has(self, name: str, key: str) -> bool:
        """Whether ``name`` has ``key`` (``NotFoundError`` when there is no secret ``name``)."""
        from mnemos.soul.secrets import check_secret_name

        return check_secret_name(key, "key") in self.list(name)

    def get(self, name: str, key: str) -> str:
        from mnemos.errors import PermissionDeniedError

        raise PermissionDeniedError("secret values are write-only through the gateway: nothing reads them back",
                                    param="reveal")  # fmt: skip


def _open(store: str | None):  # noqa: ANN202 - (SecretStore, settings)
    from mnemos.cli._session import open_client, remote_url
    from mnemos.config import load_settings
    from mnemos.soul.secrets import secret_store

    if store is None and remote_url():
        return _GatewayStore(open_client().secrets), None  # the gateway audits each change
    settings = load_settings()
    return secret_store(store, settings), settings


def _audit(settings: object, action: str, **attrs: object) -> None:
    if settings is None:
        return
    from mnemos.engram import Engram
    from mnemos.soul._audit import audit, local_actor

    audit(Engram.from_settings(settings), action, actor=local_actor(), **attrs)


@app.command("set")
def set_(
    name: str = typer.Argument(..., help="Secret name, e.g. llm-keys."),
    key: str = typer.Argument(..., help="Key inside the secret, e.g. OPENAI_KEY."),
    value: str | None = typer.Option(None, "--value", help="The value (default: stdin, or a prompt on a terminal)."),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Set NAME/KEY; the value comes from --value or stdin and is never printed."""
    from mnemos.errors import ValidationError

    if value is None:
        if sys.stdin.isatty():
            value = typer.prompt(f"{name}/{key}", hide_input=True)
        else:
            value = sys.stdin.read()
            value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise ValidationError(f"the secret value is empty: pass --value VALUE, or the value on standard input "
                              f"(printf %s \"$VALUE\" | mnemos secret set {name} {key})", param="value")  # fmt: skip
    secrets, settings = _open(store)
    secrets.set(name, key, value)
    _audit(settings, "secret.set", store=secrets.kind, name=name, key=key)
    typer.echo(f"secret {name}/{key} set ({secrets.kind} store)")


@app.command()
def get(
    name: str = typer.Argument(...),
    key: str = typer.Argument(...),
    reveal: bool = typer.Option(False, "--reveal", help="Print the value."),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Check NAME/KEY exists; print its value only with --reveal."""
    secrets, _ = _open(store)
    if isinstance(secrets, _GatewayStore) and not reveal:  # the gateway tells whether it is set, never its value
        if not secrets.has(name, key):
            from mnemos.errors import NotFoundError

            raise NotFoundError(f"secret {name!r} has no key {key!r}", param="key")
        typer.echo(f"secret {name}/{key} is set (gateway store; values are write-only through the gateway)")
        return
    value = secrets.get(name, key)
    if reveal:
        typer.echo(value)
    else:
        typer.echo(f"secret {name}/{key} is set ({len(value)} characters); --reveal prints it")


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="List this secret's keys instead of the secret names."),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Secret names (or the keys of NAME); never values."""
    secrets, _ = _open(store)
    items = secrets.list(name)
    emit(items, output, ("KEY" if name else "NAME",), [(i,) for i in items])


@app.command()
def delete(
    name: str = typer.Argument(...),
    key: str | None = typer.Argument(None, help="Delete only this key (default: the whole secret)."),
    store: str | None = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Delete a secret, or one key of it."""
    secrets, settings = _open(store)
    secrets.delete(name, key)
    _audit(settings, "secret.deleted", store=secrets.kind, name=name, key=key)
    typer.echo(f"secret {name}{'/' + key if key else ''} deleted ({secrets.kind} store)")
