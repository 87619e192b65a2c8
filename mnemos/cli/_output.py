"""Printing for the CLI: ``-o yaml|json|table`` and error messages without tracebacks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
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
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


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
        table = Table(*columns, box=None, pad_edge=False)
        for row in rows:
            table.add_row(*(str(c) for c in row))
        console.print(table)
