"""Printing for the CLI: ``-o yaml|json|table`` and error messages without tracebacks."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Column, Table

# markup=False: what a command prints is text, never rich markup: a job's name, an error or a path
# with brackets ("[/x]", "[red]") is printed as it is (a closing tag was a traceback); styles go in style=.
console = Console(highlight=False, soft_wrap=True, markup=False)
_document_out: Any = None  # where -o json|yaml documents go once stdout is reserved for them


def reserve_stdout() -> None:
    """Keep stdout for the JSON/YAML document alone: everything else (Ray, libraries) goes to stderr.

    Called by ``main()`` when ``-o json`` or ``-o yaml`` is asked for, so ``mnemos … -o json | jq``
    works even when Ray prints connection notices on file descriptor 1.
    """
    import os
    import sys

    global _document_out
    if _document_out is not None:
        return
    sys.stdout.flush()
    _document_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(os.dup(2), "w", buffering=1)
    console.file = sys.stdout
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def print_document(text: str) -> None:
    """Print ``text``, a document the command was asked for (``-o json|yaml``), on stdout: where
    ``reserve_stdout`` keeps it when stdout is reserved for the document."""
    import sys

    print(text, file=_document_out or sys.stdout, flush=True)


class Output(str, Enum):
    table = "table"
    yaml = "yaml"
    json = "json"


def emit(data: Any, output: Output, columns: Sequence[str] = (), rows: Sequence[Sequence[Any]] = ()) -> None:
    """Print ``data`` as YAML/JSON, or ``rows`` as a table."""
    out = _document_out
    if output is Output.json:
        print(json.dumps(data, indent=2, sort_keys=False, default=str), file=out, flush=True)
    elif output is Output.yaml:  # one document, as -o json: a listing is a YAML list (`[]` when empty)
        print(yaml.safe_dump(data, sort_keys=False).rstrip(), file=out, flush=True)
    else:
        _print_table(columns, [[str(c) for c in row] for row in rows])


_LEAST = 4
"""The fewest characters a column other than the first is given (its header, when shorter)."""


def _print_table(columns: Sequence[str], rows: list[list[str]]) -> None:
    """Print ``rows`` under ``columns``; the first column (the id or name a listing is looked up by)
    is never cut, whatever the width (a pipe's 80 columns, ``COLUMNS=60``): the others give way,
    to an ellipsis, down to a few characters each. A console too narrow for that gets longer
    lines (the terminal wraps them) rather than a cut id."""
    if not columns:
        table = Table(box=None, pad_edge=False, show_header=False)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(name), *(len(row[i]) for row in rows if i < len(row))]) for i, name in enumerate(columns)]
    rest = zip(widths[1:], columns[1:], strict=True)
    least = [widths[0]] + [min(width, max(len(name), _LEAST)) for width, name in rest]
    table = Table(
        Column(columns[0], no_wrap=True, overflow="fold", min_width=least[0]),
        *(Column(name, min_width=width) for name, width in zip(columns[1:], least[1:], strict=True)),
        box=None,
        pad_edge=False,
        show_header=any(columns),  # `mnemos status`'s name/value pairs: no blank first line
    )
    for row in rows:
        table.add_row(*row)
    need = sum(least) + 2 * (len(columns) - 1)  # Table's padding: one column each side between columns
    if need <= console.width:
        console.print(table)
        return
    wide = Console(file=console.file, width=need, highlight=False, soft_wrap=True, markup=False,
                   force_terminal=console.is_terminal, no_color=console.no_color)  # fmt: skip
    wide.print(table)


@contextlib.contextmanager
def waiting_for(kind: str, ident: str, lasting: bool, orphaned: str) -> Iterator[None]:
    """Ctrl-C while the command waits for job or run (``kind``) ``ident`` stops the waiting, not what
    it waits for when a platform runs it (``lasting``): say so and how to stop it (else ``orphaned``:
    what became of it with this command's embedded cluster); exit 130."""
    import typer

    try:
        yield
    except KeyboardInterrupt:
        if lasting:
            err_console.print(f"{kind} {ident} was not cancelled: `mnemos {kind}s get {ident}` shows it, "
                              f"`mnemos {kind}s cancel {ident}` stops it")  # fmt: skip
        else:
            err_console.print(f"{kind} {ident} stopped with the cluster this command started (no platform is up): "
                              f"{orphaned}")  # fmt: skip
        raise typer.Exit(130) from None
