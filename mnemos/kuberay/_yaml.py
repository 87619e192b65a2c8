"""YAML for manifests: key order kept, multi-line strings (``serveConfigV2``) as ``|`` blocks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["dump_yaml", "write_manifests"]


class _Dumper(yaml.SafeDumper):
    """A safe dumper that writes multi-line strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump_yaml(objects: Mapping[str, Any] | Iterable[Mapping[str, Any]], header: str = "") -> str:
    """One object, or several as a multi-document stream, optionally under a ``#`` comment header."""
    docs = [objects] if isinstance(objects, Mapping) else list(objects)
    body = yaml.dump_all([dict(d) for d in docs], Dumper=_Dumper, sort_keys=False, explicit_start=len(docs) > 1)
    lines = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return lines + body


def write_manifests(objects: Iterable[Mapping[str, Any]], folder: str | Path, header: str = "") -> list[Path]:
    """Write each object to ``<folder>/<kind lowercased>.yaml``; returns the paths written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for obj in objects:
        path = out / f"{str(obj['kind']).lower()}.yaml"
        path.write_text(dump_yaml(obj, header))
        written.append(path)
    return written
