"""``mnemos apply|get|delete|validate|schema|history``: declarative resources (CRADLE + GENOME)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mnemos.cli._output import Output, console, emit
from mnemos.cli._session import open_client
from mnemos.genome import resolve_kind


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(get)
    app.command()(delete)
    app.command()(validate)
    app.command()(schema)
    app.command()(history)


def apply(
    file: list[Path] = typer.Option(..., "-f", "--file", help="File or folder of YAML resources (repeatable)."),
) -> None:
    """Create or update resources; unchanged ones are reported as such."""
    client = open_client(publish=True)
    for result in client.apply([r for f in file for r in client.validate(f)]):
        console.print(str(result))


def get(
    kind: str = typer.Argument(..., help="Model, Policy, Adapter or Pipeline."),
    name: str | None = typer.Argument(None),
    generation: int | None = typer.Option(None, "--generation", "-g"),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Show one resource or list a kind."""
    client = open_client()
    cls = resolve_kind(kind)
    found = client.get(cls.__name__, name, generation=generation)
    items = [found] if name else found
    data = [r.dump() for r in items]
    emit(
        data[0] if name and output is not Output.table else data,
        output,
        ("KIND", "NAME", "GENERATION", "CREATED"),
        [(cls.__name__, r.name, r.generation, r.metadata.creation_timestamp) for r in items],
    )


def delete(kind: str, name: str) -> None:
    """Delete a resource (its history is kept)."""
    resource = open_client(publish=True).delete(kind, name)
    console.print(f"{type(resource).__name__.lower()}/{resource.name} deleted (generation {resource.generation})")


def validate(
    file: list[Path] = typer.Option(..., "-f", "--file", help="File or folder of YAML resources."),
) -> None:
    """Check schema and admission without applying."""
    client = open_client()
    for f in file:
        for resource in client.admit(f):
            console.print(f"{type(resource).__name__.lower()}/{resource.name} valid")


def schema(kind: str) -> None:
    """Print the JSON Schema of a kind."""
    from mnemos.client import Client

    print(json.dumps(Client.schema(kind), indent=2))


def history(kind: str, name: str, output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Every generation of a resource."""
    items = open_client().history(kind, name)
    emit(
        [r.dump() for r in items],
        output,
        ("GENERATION", "CREATED"),
        [(r.generation, r.metadata.creation_timestamp) for r in items],
    )
