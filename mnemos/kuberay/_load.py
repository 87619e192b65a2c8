"""Values from YAML files, mappings and ``--set key=value`` overrides, errors naming the field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from mnemos._model import to_validation_error, yaml_problem
from mnemos.errors import BadRequestError, ValidationError
from mnemos.kuberay._values import KubeRayValues

__all__ = ["load_values"]


def _set_path(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b[0].c=value`` to ``data`` (values parsed as YAML scalars/flows)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise BadRequestError(f"--set {assignment!r}: expected key=value, e.g. workerGroups[0].replicas=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts: list[str | int] = []
    for token in re.split(r"\.(?![^\[]*\])", key.strip()):
        match = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", token)
        if not match or (not match.group(1) and not match.group(2)):
            raise BadRequestError(f"--set {assignment!r}: cannot parse key {key!r}")
        if match.group(1):
            parts.append(int(match.group(1)) if match.group(1).isdigit() else match.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(str(p) for p in parts[: i + 1])
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise ValidationError(f"--set {assignment!r}: {where}: no such list item", param=where)
            if last:
                node[part] = value
            else:
                node = node[part]
        elif isinstance(node, dict):
            name = str(part)
            camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
            name = camel if camel in node or name not in node else name
            if last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
        else:
            raise ValidationError(f"--set {assignment!r}: {where} is not a mapping or list", param=where)


def load_values(
    file: str | Path | None = None,
    sets: Sequence[str] = (),
    data: dict[str, Any] | None = None,
) -> KubeRayValues:
    """Values from a YAML file and/or a mapping, then ``--set key=value`` overrides.

    Raises:
        BadRequestError: the file is not YAML, or a ``--set`` is not ``key=value``.
        ValidationError: a field is unknown or invalid; the message names its path.
    """
    merged: dict[str, Any] = {}
    if file is not None:
        path = Path(file)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise BadRequestError(f"cannot read values file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise BadRequestError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
        if not isinstance(loaded, dict):
            raise ValidationError(f"{path}: values must be a mapping, got {type(loaded).__name__}")
        merged.update(loaded)
    merged.update(data or {})
    try:
        values = KubeRayValues.model_validate(merged)
        if not sets:
            return values
        full = values.model_dump(mode="json", by_alias=True)
        for assignment in sets:
            _set_path(full, assignment)
        return KubeRayValues.model_validate(full)
    except PydanticValidationError as exc:
        raise to_validation_error(exc, prefix="values") from None
