"""Who reads a job's or a run's *data*, as against its metadata.

Everyone allowed to see a job or run sees its metadata: status, owner, timings, output refs.
Its data (a job's result value and error text, a run's parameters, its steps' results, logs and
error texts) is read only by its owner and by those who may run any code on the platform:
operators and admins whose credential keeps the verb ``execute`` (cluster root: they could read
it anyway). A credential whose scopes leave ``execute`` out (a team's identity admin, a read-only
operator key) reads its own data only. Viewers may list and read every job and run for
dashboards; data is what a job or run was given or made. CORTEX, SYNKRON, the console, lineage,
the audit page and the event stream withhold the same fields with :func:`reads_data`.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["WITHHELD", "reads_all_data", "reads_data", "reads_space", "withheld_error"]

WITHHELD = "details withheld: only the owner and operators read them"
_CLASS = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]{0,127}):")


def reads_data(principal: Any, owner: str | None) -> bool:
    """Whether ``principal`` reads the data of a job or run owned by ``owner``.

    ``None`` (authentication off) is the local admin and reads everything.
    """
    if reads_all_data(principal):
        return True
    return bool(owner) and owner == getattr(principal, "subject", None)


def reads_all_data(principal: Any) -> bool:
    """Whether ``principal`` reads every job's and run's data and writes every space: it holds
    ``execute`` (an operator or admin whose scopes keep it). ``None`` (authentication off) is the
    local admin."""
    from mnemos.soul.rbac import verbs_of

    if principal is None:
        return True
    return "execute" in verbs_of(getattr(principal, "role", ""), getattr(principal, "scopes", None) or ())


def reads_space(principal: Any, owner: str | None, team: str | None = "", *, metadata: bool = False) -> bool:
    """Whether ``principal`` searches (``metadata``: lists) an embedding space of ``owner`` and ``team``.

    Its owner, a developer of its (non-empty) team, operators and admins do; a space without an owner
    (written by a local caller, or before spaces had owners) is shared, like models. Viewers list
    every space (``metadata``), as they list every job. ``None`` or a bare subject (a local caller,
    who holds ENGRAM itself) reads everything.
    """
    if principal is None or not hasattr(principal, "role") or reads_data(principal, owner) or not owner:
        return True
    if metadata and getattr(principal, "role", None) == "viewer":
        return True
    mine = getattr(principal, "team", "") or ""
    return bool(mine) and team == mine


def withheld_error(error: Any) -> Any:
    """An error as shown to a caller who does not read the data: that it failed and the exception's
    class name (``RuntimeError: …`` → ``RuntimeError (details withheld …)``), never its message."""
    if not error:
        return error
    match = _CLASS.match(str(error))
    return f"{match.group(1) if match else 'failed'} ({WITHHELD})"
