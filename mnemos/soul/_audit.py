"""Audit events of SOUL (identity changes, key rotations, secret changes) in the lineage log.

Attributes are names, ids, roles and reasons; a secret, token or key value is never passed here.
"""

from __future__ import annotations

import getpass
import secrets
from typing import Any

from mnemos.engram import Engram


def audit_id() -> str:
    """A fresh lineage node id for an audit event."""
    return f"audit:{secrets.token_hex(8)}"


def local_actor() -> str:
    """Who acts when a command runs with direct ENGRAM access: ``local:<os user>``."""
    try:
        return f"local:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "local:unknown"


def audit(engram: Engram, action: str, **attrs: Any) -> dict[str, Any]:
    """Write one ``audit`` event now (its own lineage segment)."""
    from mnemos.trace.lineage import record

    return record(engram, audit_id(), "audit", action=action, **attrs)
