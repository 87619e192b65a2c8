"""What a run's caller may reach beyond the run: other runs' outputs, and embedding spaces.

SOUL's ownership rule (``mnemos.soul.ownership``) applied where a run starts (``_plan.prepare``):

- a parameter that names another run's output (``runs/<run>/<output>``, given as is or built by a
  step from parameters) needs a caller who reads that run's data (its owner, operators, admins);
  otherwise it is 404 naming ``params.<name>``, the message of a run that does not exist;
- an ``index`` step writes its space only for the space's owner (the principal of the run that
  first wrote it), operators and admins; a space written before spaces had owners, by operators
  and admins only. Anyone else is refused (403) before the run starts.

Checked only for an authenticated caller (a ``Principal`` with a ``role``): a notebook or the CLI
holds ENGRAM itself, and a subject string carries no role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from mnemos.errors import MnemosError, NotFoundError, PermissionDeniedError

__all__ = ["check_input_refs", "check_param_refs", "check_space", "enforced", "param_in", "run_of_ref"]

_RUN_REF = re.compile(r"^runs/([^/]+)/.")


def enforced(principal: Any) -> bool:
    """Whether ``principal`` is an authenticated caller whose reach is checked."""
    return principal is not None and hasattr(principal, "role")


def run_of_ref(value: Any) -> str | None:
    """The run a value names as an ENGRAM ref ``runs/<run>/<output>`` (as ``snapshot_input`` reads it)."""
    if not isinstance(value, str) or "\n" in value or len(value) > 4096:
        return None
    match = _RUN_REF.match(value)
    return match.group(1) if match else None


def _check_run(engram: Any, principal: Any, run_id: str, param: str) -> None:
    from mnemos.soul.ownership import reads_data
    from mnemos.synkron import _state

    try:
        owner = _state.load(engram, run_id).get("principal")
        readable = reads_data(principal, owner)
    except MnemosError:  # no such run, or not a run id at all
        readable = False
    if not readable:
        raise NotFoundError(f"{param}: run {run_id!r} not found", param=param)


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)


def check_param_refs(engram: Any, principal: Any, params: dict[str, Any]) -> None:
    """404 for a parameter value ``runs/<run>/…`` naming a run the caller does not read (or none)."""
    if not enforced(principal):
        return
    for name, value in params.items():
        for text in _leaves(value):
            run_id = run_of_ref(text)
            if run_id is not None:
                _check_run(engram, principal, run_id, f"params.{name}")


def param_in(text: str, params: dict[str, Any]) -> str | None:
    """The caller's parameter whose value went into ``text`` (the longest such value), if any."""
    found = [(len(leaf), name) for name, value in params.items() for leaf in _leaves(value)
             if leaf and leaf in text] + [(len(str(v)), n) for n, v in params.items()
                                          if isinstance(v, (int, float)) and str(v) in text]  # fmt: skip
    return max(found)[1] if found else None


def check_input_refs(engram: Any, principal: Any, refs: Iterable[str], params: dict[str, Any],
                     approved: Any) -> None:  # fmt: skip
    """404 for an input ref ``runs/<run>/…`` that the caller's parameters built (it is not written
    in the registered pipeline ``approved``) naming a run the caller does not read."""
    if not enforced(principal):
        return
    written = json.dumps(approved, default=str)
    for ref in refs:
        run_id = run_of_ref(ref)
        if run_id is None or json.dumps(ref)[1:-1] in written:
            continue
        name = param_in(ref, params)
        _check_run(engram, principal, run_id, f"params.{name}" if name else "params")


def check_space(engram: Any, principal: Any, space: str, param: str) -> None:
    """403 when ``principal`` may not write the space ``space`` (see the module docstring)."""
    from mnemos.soul.ownership import DATA_ROLES

    if not enforced(principal) or getattr(principal, "role", None) in DATA_ROLES:
        return
    try:
        manifest = engram.read_json(f"spaces/{space}/manifest.json")
    except MnemosError:
        return  # a new space: this run makes the caller its owner
    owner = manifest.get("owner") if isinstance(manifest, dict) else None
    if owner == getattr(principal, "subject", None) and owner:
        return
    why = f"it belongs to {owner!r}" if owner else "it was written before spaces had owners"
    raise PermissionDeniedError(
        f"{param}: space {space!r} belongs to another principal ({why}): only its owner, operators and "
        "admins write it; choose another space name",
        param=param,
    )
