"""Roles and the verbs each may perform: ``authorize(principal, verb)``.

==========  =====  ======  =======  =====  ======  ==============  ============  =================
role        apply  deploy  execute  infer  submit  read-artifacts  read-lineage  manage-identities
==========  =====  ======  =======  =====  ======  ==============  ============  =================
admin       yes    yes     yes      yes    yes     yes             yes           yes
operator    yes    yes     yes      yes    yes     yes             yes           no
developer   no     no      no       yes    yes     yes             yes           no
viewer      no     no      no       no     no      yes             yes           no
==========  =====  ======  =======  =====  ======  ==============  ============  =================

``submit`` runs registered code only (a ``Function`` by name, a registered ``Pipeline``);
``execute`` submits arbitrary code (an unregistered ``module:function``, a pickled function, a
pipeline document that is not registered). Ray runs submitted code with the cluster's rights, so
``execute`` equals cluster root: grant it only to those you would give the cluster's keys.

A credential's ``scopes`` (verbs) narrow its role further; empty scopes mean the whole role.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mnemos.errors import PermissionDeniedError, ValidationError
from mnemos.soul.identity import Principal

__all__ = [
    "ROLES",
    "ROLE_ORDER",
    "VERBS",
    "allowed",
    "authorize",
    "can",
    "check_role",
    "check_scopes",
    "check_scopes_held",
    "check_verb",
    "verbs_of",
]

VERBS: tuple[str, ...] = (
    "apply",
    "deploy",
    "execute",
    "infer",
    "submit",
    "read-artifacts",
    "read-lineage",
    "manage-identities",
)

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(VERBS),
    "operator": frozenset(VERBS) - {"manage-identities"},
    "developer": frozenset({"infer", "submit", "read-artifacts", "read-lineage"}),
    "viewer": frozenset({"read-artifacts", "read-lineage"}),
}

ROLE_ORDER: tuple[str, ...] = ("viewer", "developer", "operator", "admin")
"""Roles from least to most powerful (each holds every verb of the ones before it)."""


def _shown(value: str) -> str:
    """The rejected value quoted when it looks like a word, else nothing: text typed in the wrong
    place (a pasted credential) must not be echoed into errors."""
    return f" {value!r}" if isinstance(value, str) and re.fullmatch(r"[a-z][a-z-]{0,23}", value) else ""


def check_role(role: str, *, param: str = "role") -> str:
    """``role`` when it is a known role; else a ``ValidationError`` listing the roles."""
    if role not in ROLES:
        raise ValidationError(f"unknown role{_shown(role)}; valid roles: {', '.join(ROLES)}", param=param)
    return role


def check_verb(verb: str, *, param: str = "verb") -> str:
    """``verb`` when it is a known verb; else a ``ValidationError`` listing the verbs."""
    if verb not in VERBS:
        raise ValidationError(f"unknown verb{_shown(verb)}; valid verbs: {', '.join(VERBS)}", param=param)
    return verb


def check_scopes(scopes: Iterable[str], *, param: str = "scopes") -> tuple[str, ...]:
    """Validated, de-duplicated scopes (each one a verb)."""
    out: list[str] = []
    for scope in scopes:
        check_verb(scope, param=param)
        if scope not in out:
            out.append(scope)
    return tuple(out)


def check_scopes_held(role: str, scopes: Iterable[str], *, param: str = "scopes") -> tuple[str, ...]:
    """``scopes`` when ``role`` holds each of them; else a ``ValidationError`` naming the scope and the role.

    A scope only narrows a role: one the role lacks grants nothing, so a credential asked for with
    it is a mistake to report, not one to issue.
    """
    scopes = check_scopes(scopes, param=param)
    held = ROLES[check_role(role)]
    lacking = [scope for scope in scopes if scope not in held]
    if lacking:
        raise ValidationError(
            f"{param}: role {role!r} does not hold {', '.join(repr(s) for s in lacking)}, and a scope can only narrow "
            f"a role (role {role!r} holds {', '.join(v for v in VERBS if v in held)}); drop the scope or choose a "
            "role that holds it",
            param=param,
        )
    return scopes


def allowed(role: str, verb: str, scopes: Iterable[str] = ()) -> bool:
    """Whether ``role`` (narrowed by ``scopes``) may perform ``verb``."""
    scopes = tuple(scopes)
    return verb in ROLES.get(role, frozenset()) and (not scopes or verb in scopes)


def verbs_of(role: str, scopes: Iterable[str] = ()) -> frozenset[str]:
    """The verbs a credential of ``role`` narrowed by ``scopes`` may perform."""
    verbs = ROLES.get(role, frozenset())
    scopes = tuple(scopes)
    return verbs & frozenset(scopes) if scopes else verbs


def can(principal: Principal, verb: str) -> bool:
    """Whether ``principal`` may perform ``verb`` (no error, no audit)."""
    return verb in verbs_of(principal.role, principal.scopes)


def authorize(principal: Principal, verb: str) -> None:
    """Raise ``PermissionDeniedError`` (403) naming the role and the verb unless it is allowed."""
    check_verb(verb)
    if verb not in ROLES.get(principal.role, frozenset()):
        raise PermissionDeniedError(
            f"role {principal.role!r} may not {verb!r} (subject {principal.subject!r})", param="role"
        )
    if principal.scopes and verb not in principal.scopes:
        raise PermissionDeniedError(
            f"the credential of {principal.subject!r} (role {principal.role!r}) is scoped to "
            f"{', '.join(principal.scopes)} and may not {verb!r}",
            param="scopes",
        )
