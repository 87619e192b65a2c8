"""What a run's caller may reach beyond the run: other runs' outputs, and embedding spaces.

SOUL's ownership rule (``mnemos.soul.ownership``) applied where a run starts (``_plan.prepare``):

- a parameter that names another run's output (``runs/<run>/<output>``, given as is or built by a
  step from parameters) needs a caller who reads that run's data (its owner, operators, admins);
  otherwise it is 404 naming ``params.<name>``, the message of a run that does not exist;
- an ``index`` step writes its space only for the space's owner (the principal of the run that
  first claimed it), operators and admins — not for the owner's team, who only search it; a space
  without an owner (written before spaces had owners, or by a local caller), by operators and
  admins only. Anyone else is refused (403) before the run starts. A new space is claimed
  atomically when the run starts (``claim_space``), so two runs racing for it cannot both own it.
  The 403 names the owner only to a caller who lists the space (a teammate): to anyone else, whom
  search and lineage tell it does not exist, it says only that it is another principal's;
- an ``index`` step's space name must be a DNS-1123 name (``mnemos.genome.NAME_PATTERN``, the names
  ``/v1/spaces/{space}/search`` takes), for every caller: otherwise 422 naming the param.

Checked only for an authenticated caller (a ``Principal`` with a ``role``): a notebook or the CLI
holds ENGRAM itself, and a subject string carries no role (its new spaces are claimed with no
owner: shared). The same checks run again, with the resuming principal, when a run is resumed
(``mnemos.synkron._plan.check_resume``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mnemos.errors import ConflictError, MnemosError, NotFoundError, PermissionDeniedError, ValidationError
from mnemos.genome.pipeline import string_leaves
from mnemos.synkron.spaces import check_space_name

__all__ = ["check_input_refs", "check_param_refs", "check_resumer", "check_space", "check_space_name", "claim_space",
           "enforced", "param_in", "run_of_ref", "run_output"]  # fmt: skip


def enforced(principal: Any) -> bool:
    """Whether ``principal`` is an authenticated caller whose reach is checked."""
    return principal is not None and hasattr(principal, "role")


def run_of_ref(value: Any) -> str | None:
    """The run a value may name as an ENGRAM ref ``runs/<run>/…``, read generously: empty and ``.``
    segments are dropped (``runs//<run>/out``, ``runs/./<run>``, ``/runs/<run>``), so no spelling of a
    ref slips past the check; a ``..`` in the run's place is returned as is and found by no run."""
    if not isinstance(value, str) or "\n" in value or len(value) > 4096:
        return None
    parts = [part for part in value.split("/") if part not in ("", ".")]
    return parts[1] if len(parts) >= 2 and parts[0] == "runs" else None


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


def run_output(engram: Any, principal: Any, state: dict[str, Any], output: str) -> str:
    """The digest of the output ``output`` of the run ``state``: 403 unless ``principal`` reads the
    run's data, 404 for an output the run does not have, 409 while the step that writes it has not
    completed (whatever the run's status)."""
    from mnemos.soul.ownership import reads_data
    from mnemos.synkron._state import DONE

    if not reads_data(principal, state.get("principal")):
        role = getattr(principal, "role", "admin")
        raise PermissionDeniedError(f"role {role!r} may not read the outputs of another's run: only its owner, "
                                    "operators and admins read a run's data", param="role")  # fmt: skip
    run_id = state.get("id")
    outputs: dict[str, str] = state.get("outputs") or {}
    ref = outputs.get(output)
    if ref is None:
        raise NotFoundError(f"run {run_id!r} has no output {output[:80]!r} (outputs: {', '.join(outputs) or 'none'})",
                            param="output")  # fmt: skip
    steps: dict[str, dict[str, Any]] = state.get("steps") or {}
    step = next((s for s in steps.values() if output in (s.get("outputs") or [])), {})
    if step.get("status") not in DONE:
        raise ConflictError(f"output {output!r} of run {run_id!r} is not written yet: step {step.get('name')!r} "
                            f"is {step.get('status')} (run {state.get('status')})", param="output")  # fmt: skip
    try:
        return str(engram.get_ref(ref))
    except NotFoundError:
        raise NotFoundError(f"output {output!r} of run {run_id!r} is no longer stored ({ref})",
                            param="output") from None  # fmt: skip


def check_param_refs(engram: Any, principal: Any, params: dict[str, Any]) -> None:
    """404 for a parameter value ``runs/<run>/…`` naming a run the caller does not read (or none)."""
    if not enforced(principal):
        return
    for name, value in params.items():
        for text in string_leaves(value):
            run_id = run_of_ref(text)
            if run_id is not None:
                _check_run(engram, principal, run_id, f"params.{name}")


def param_in(text: str, params: dict[str, Any]) -> str | None:
    """The caller's parameter whose value went into ``text`` (the longest such value), if any."""
    found = [(len(leaf), name) for name, value in params.items() for leaf in string_leaves(value)
             if leaf and leaf in text] + [(len(str(v)), n) for n, v in params.items()
                                          if isinstance(v, (int, float)) and str(v) in text]  # fmt: skip
    return max(found)[1] if found else None


def check_input_refs(engram: Any, principal: Any, refs: Iterable[str], params: dict[str, Any],
                     approved: Any) -> None:  # fmt: skip
    """404 for an input ref ``runs/<run>/…`` that the caller's parameters built (it is not written
    in the registered pipeline ``approved``) naming a run the caller does not read."""
    if not enforced(principal):
        return
    written = set(string_leaves(approved))  # a ref the pipeline writes as a value: its author's, not the caller's
    for ref in refs:
        run_id = run_of_ref(ref)
        if run_id is None or ref in written:
            continue
        name = param_in(ref, params)
        _check_run(engram, principal, run_id, f"params.{name}" if name else "params")


def check_resumer(principal: Any, state: dict[str, Any]) -> None:
    """Only a run's owner, operators and admins resume it: another developer's run is 404 (the
    message of a run that does not exist), a viewer is 403 (as ``synkron.http.check_run_owner``)."""
    from mnemos.soul.ownership import reads_data

    if not enforced(principal):
        return
    if getattr(principal, "role", None) == "viewer":
        raise PermissionDeniedError("role 'viewer' may not change runs", param="role")
    if not reads_data(principal, state.get("principal")):
        raise NotFoundError(f"run {state.get('id')!r} not found", param="run_id")


def check_space(engram: Any, principal: Any, space: str, param: str) -> None:
    """422 for a space name that is not a valid name (``check_space_name``), for every caller; 403
    when ``principal`` may not write the space ``space`` (see the module docstring). The owner is
    named only to a caller who lists the space (``reads_space(…, metadata=True)``: a teammate);
    to anyone else the space is another principal's, as search and lineage say it does not exist."""
    from mnemos.soul.ownership import reads_all_data, reads_space
    from mnemos.synkron.spaces import space_owner

    check_space_name(space, param)
    if not enforced(principal) or reads_all_data(principal):
        return
    source, owner, team = space_owner(engram, space)
    if source == "new" or (owner and owner == getattr(principal, "subject", None)):
        return  # a new space: this run claims it (``claim_space``)
    choose = "choose another space name"
    if param.startswith("params."):  # the caller can: name the param to set
        choose += f": pass -p {param[7:]}=<yours> ({param} over the API)"
    if owner and not reads_space(principal, owner, team, metadata=True):
        raise PermissionDeniedError(f"{param}: space {space!r} belongs to another principal: {choose}", param=param)
    if owner:
        why = f"it belongs to {owner!r}"
    elif source == "claim":
        why = "it was first written without an authenticated principal: it is shared"
    else:
        why = "it was written before spaces had owners"
    raise PermissionDeniedError(
        f"{param}: space {space!r} belongs to another principal ({why}): only its owner, operators and "
        f"admins write it; {choose}",
        param=param,
    )


def claim_space(engram: Any, principal: Any, space: str, param: str) -> None:
    """Claim ``space`` for ``principal`` when nothing owns it yet, atomically, then ``check_space``
    again: of two runs starting into the same new space at once, one claims it and the other is
    refused (403) as for a space that exists. Done once every other check of the run passed.

    The claim (``spaces/<space>/owner.json``) records the principal's subject and team; a local
    caller's (not ``enforced``) records no owner: the space is shared. A space with an owner (in its
    manifest or its claim) is not claimed again; one written before spaces had owners is claimed by
    its first writer after them (operators and admins: developers may not write it).
    """
    from mnemos.synkron.spaces import claim_key, space_owner

    check_space(engram, principal, space, param)  # never claim what the caller may not write
    source, _owner, _team = space_owner(engram, space)
    if source in ("new", "unowned"):
        claim = {"owner": getattr(principal, "subject", None), "team": getattr(principal, "team", "") or ""}
        if not enforced(principal):
            claim = {"owner": None, "team": ""}
        try:
            engram.create_json(claim_key(space), claim)  # False: another run claimed it first
        except MnemosError as exc:  # a name no ENGRAM key can have
            raise ValidationError(f"{param}: {space!r} is not a valid space name ({exc.message})",
                                  param=param) from None  # fmt: skip
    check_space(engram, principal, space, param)
