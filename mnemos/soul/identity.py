"""Who is calling: the ``Principal`` every authenticated request carries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from mnemos.errors import ValidationError

__all__ = ["MAX_MODELS", "Principal", "PrincipalKind", "check_models"]

PrincipalKind = Literal["token", "apikey", "anonymous"]

MAX_MODELS = 256
"""The most models one credential's model list names."""


def check_models(models: Iterable[Any], param: str = "models") -> tuple[str, ...]:
    """A credential's model list: at most ``MAX_MODELS`` names of 1-256 characters, none blank or
    holding whitespace or control characters (a model's name as a request's ``model`` gives it),
    each once, in the order given.

    Raises:
        ValidationError: names ``models`` (or ``models[i]``) and what a name may be.
    """
    if isinstance(models, (str, bytes)) or not isinstance(models, Iterable):
        raise ValidationError(f"{param}: give a list of model names", param=param)
    names = list(models)
    if len(names) > MAX_MODELS:
        raise ValidationError(f"{param}: at most {MAX_MODELS} models, not {len(names)}", param=param)
    for i, name in enumerate(names):
        if not isinstance(name, str) or not 0 < len(name) <= 256 or not name.isprintable() or any(
                c.isspace() for c in name):  # fmt: skip
            raise ValidationError(f"{param}[{i}]: a model name is 1-256 printable characters without spaces",
                                  param=f"{param}[{i}]")  # fmt: skip
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        subject: the identity's name (``sub`` of a token, name of an API key); rate limits and
            audit events are keyed by it.
        role: one of ``mnemos.soul.rbac.ROLES``.
        kind: ``token`` (a JWT), ``apikey`` or ``anonymous`` (auth disabled, or a public route).
        scopes: verbs the credential is limited to; empty means every verb of the role.
        credential_id: the JWT's ``jti`` or the API key id (never the secret).
        expires_at: when the credential expires (epoch seconds), ``None`` for never.
        team: the team the credential belongs to (limits, budgets and usage are also kept per team).
        limits: the credential's own ``UsageLimits`` (rpm, tpm, budget), ``None`` for none.
        limits_key: the credential whose per-credential counters ``limits`` spend (a console
            session's token spends its API key's); empty: ``credential_id``.
        parents: the credentials this one was made from, nearest first (a console session's
            token: the API key or token it signed in with); it is refused once any is revoked.
        audience: a token's ``aud``: ``console`` for a console session's (the API refuses it).
        models: the only models the credential may call (its model list); empty: any model a
            Policy's access rules open to it.
    """

    subject: str
    role: str
    kind: PrincipalKind
    scopes: tuple[str, ...] = field(default=())
    credential_id: str = ""
    expires_at: float | None = None
    team: str = ""
    limits: Any = field(default=None, compare=False, hash=False)
    limits_key: str = ""
    parents: tuple[str, ...] = field(default=())
    audience: str = ""
    models: tuple[str, ...] = field(default=())

    @classmethod
    def anonymous(cls, role: str = "admin") -> Principal:
        """The principal of a request when authentication is off (or on a public route)."""
        return cls(subject="anonymous", role=role, kind="anonymous")

    def describe(self) -> dict[str, object]:
        """The fields safe to put in lineage and logs (no secret is ever part of a principal)."""
        return {
            "subject": self.subject,
            "role": self.role,
            "kind": self.kind,
            # The credential's id (a JWT's jti, an API key's id), never its secret. Not named
            # "credential…": TRACE masks attributes whose names look like secrets.
            "grant_id": self.credential_id,
            "scopes": list(self.scopes),
            "team": self.team,
        }
