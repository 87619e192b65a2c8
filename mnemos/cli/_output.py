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
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class Output(str, Enum):
    table = "table"
    yaml = "yaml"
    json = "json"


def emit(data: Any, output: Output, columns: Sequence[str] = (), rows: Sequence[Sequence[Any]] = ()) -> None:
    """Print ``data`` as YAML/JSON, or ``rows`` as a table."""
    if output is Output.json:
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
    elif output is Output.yaml:
        if isinstance(data, list):
            print(yaml.safe_dump_all(data, sort_keys=False).rstrip())
        else:
            print(yaml.safe_dump(data, sort_keys=False).rstrip())
    else:
        table = Table(*columns, box=None, pad_edge=False)
        for row in rows:
            table.add_row(*(str(c) for c in row))
        console.print(table)
