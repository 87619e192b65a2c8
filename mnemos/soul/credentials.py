"""The credential the Python client and the CLI send: ``Authorization: Bearer <credential>``.

Order: ``MNEMOS_API_KEY``, then ``MNEMOS_TOKEN``, then what ``mnemos login`` stored in
``$MNEMOS_HOME/credentials`` (mode 0600).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mnemos.config import default_home
from mnemos.errors import ValidationError
from mnemos.soul._crypto import write_private_file
from mnemos.soul.apikeys import is_api_key

__all__ = ["Credential", "authorization_header", "clear", "credentials_path", "current", "kind_of", "load", "save"]


@dataclass(frozen=True)
class Credential:
    """A stored credential: ``kind`` is ``token`` or ``apikey``."""

    kind: str
    value: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Credential(kind={self.kind!r}, value=<hidden>)"


def credentials_path() -> Path:
    return default_home() / "credentials"


def kind_of(value: str) -> str:
    """``apikey`` for ``mk_…``, ``token`` for a JWT; else a ``ValidationError``."""
    value = value.strip()
    if is_api_key(value):
        return "apikey"
    if value.count(".") == 2 and all(value.split(".")):
        return "token"
    raise ValidationError("not a MNEMOS credential: expected a JWT or an mk_… API key", param="credential")


def save(value: str, kind: str | None = None) -> Path:
    """Store ``value`` for later commands (mode 0600); returns the file."""
    value = value.strip()
    kind = kind or kind_of(value)
    path = credentials_path()
    write_private_file(path, json.dumps({"kind": kind, "value": value}).encode())
    return path


def load() -> Credential | None:
    """What ``mnemos login`` stored, or ``None``."""
    try:
        doc = json.loads(credentials_path().read_text())
        return Credential(str(doc["kind"]), str(doc["value"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def clear() -> bool:
    """Forget the stored credential; whether there was one."""
    try:
        credentials_path().unlink()
        return True
    except FileNotFoundError:
        return False


def current() -> str | None:
    """The credential to send: ``MNEMOS_API_KEY``, ``MNEMOS_TOKEN``, else the stored one."""
    for var in ("MNEMOS_API_KEY", "MNEMOS_TOKEN"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    stored = load()
    return stored.value if stored else None


def authorization_header() -> dict[str, str]:
    """``{"Authorization": "Bearer …"}`` when a credential is known, else ``{}``."""
    value = current()
    return {"Authorization": f"Bearer {value}"} if value else {}
