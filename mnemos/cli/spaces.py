"""``mnemos spaces search|list``: semantic search over the spaces pipelines indexed."""

from __future__ import annotations

import typer

from mnemos.cli._output import Output, console, emit

__all__ = ["app", "list_spaces", "search"]

app = typer.Typer(help="Embedding spaces written by pipeline index steps.", no_args_is_help=True)
_MOST = 1000
"""The most items a search answers (``POST /v1/spaces/{space}/search``'s ``k``)."""


def _client():  # type: ignore[no-untyped-def]
    from mnemos.cli._session import open_client, platform_address

    return open_client(connect=bool(platform_address()))


@app.command("search")
def search(
    space: str = typer.Argument(..., help="The space (an index step's `space`)."),
    query: str = typer.Argument(..., help="Text to search for, by meaning."),
    k: int = typer.Option(5, "-k", "--top", help="How many items."),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """The K items of SPACE closest in meaning to QUERY (cosine similarity)."""
    if not 1 <= k <= _MOST:  # named as typed, before anything is asked (the API's field is `k`)
        from mnemos.errors import ValidationError

        raise ValidationError(f"-k/--top: {k} is not between 1 and {_MOST}", param="top")
    hits = _client().spaces.search(space, query, k)
    rows = [(h["score"], h["id"], h["text"][:80].replace("\n", " "), h["lineage"]) for h in hits]
    emit(hits, output, ("SCORE", "ID", "TEXT", "LINEAGE"), rows)


@app.command("list")
def list_spaces(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """The spaces you may list: items, embedding model, owner, the run that wrote it.

    Against a gateway, a developer lists their own spaces, their team's and the shared (ownerless)
    ones; viewers, operators and admins list every space."""
    from mnemos.cli._session import open_client

    spaces = open_client().spaces.list()
    emit(spaces, output, ("SPACE", "ITEMS", "MODEL", "OWNER", "RUN"),
         [(s["space"], s["count"], (s.get("model") or {}).get("name"), s.get("owner") or "-", s.get("run"))
          for s in spaces])  # fmt: skip
    if not spaces and output is Output.table:
        console.print("no spaces yet: run a pipeline with an index step")
