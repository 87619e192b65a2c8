"""``mnemos trace lineage ID``: where something came from and what came of it (TRACE)."""

from __future__ import annotations

import typer

from mnemos.cli._output import Output, console, emit

__all__ = ["app", "lineage"]

app = typer.Typer(help="Lineage and traces.", no_args_is_help=True)


@app.command("lineage")
def lineage(
    node_id: str = typer.Argument(
        ..., metavar="ID", help="A run, job, request, artifact (sha256:…), ref or space:<space>/<item>."
    ),
    output: Output = typer.Option(Output.table, "-o", "--output", help="table prints a tree."),
) -> None:
    """The lineage of ID as a tree: upstream (came from) and downstream (led to)."""
    from mnemos.cli._session import open_client
    from mnemos.trace.lineage import render_tree

    graph = open_client().lineage(node_id)
    if output is Output.table:
        from rich.console import Console

        # Wrap long ids in a terminal; never crop them when the output goes to a file or a pipe.
        Console(highlight=False, width=None if console.is_terminal else 240).print(render_tree(graph))
    else:
        emit(graph, output)
