"""Ray's token and address files, kept where Ray's own tools look for them.

``mnemos up`` starts its head with Ray token authentication. So that ``ray.init()``,
``ray.init(address="auto")``, ``ray status`` and ``ray job submit`` work in a new shell, the head
uses the token from Ray's standard places, in Ray's order of precedence:

1. ``RAY_AUTH_TOKEN`` (the token itself),
2. ``RAY_AUTH_TOKEN_PATH`` (a file holding it),
3. ``~/.ray/auth_token`` (Ray's default file).

When none holds a token, a new one is written to ``~/.ray/auth_token`` (mode 0600), as
``ray get-auth-token --generate`` does. An existing token is never replaced: a user with several
clusters keeps theirs, and selects another with ``RAY_AUTH_TOKEN_PATH``. A copy goes to
``$MNEMOS_HOME/ray-token`` so that MNEMOS's own clients reach the cluster whatever the shell says.

Ray 2.60's CLI (``ray status``, ``ray job submit``) sends the token only when ``RAY_AUTH_MODE=token``
is set in its environment; ``ray.init()`` with no address or ``"auto"`` turns it on by itself.
:func:`export_line` is the one line to paste, printed by ``mnemos up`` (as ``ray start`` prints its
next steps).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mnemos.config import default_home
from mnemos.errors import ValidationError

__all__ = [
    "RayToken",
    "export_line",
    "forget_ray_address",
    "keep_copy",
    "ray_address_file",
    "read_ray_address",
    "resolve_token",
]


@dataclass(frozen=True)
class RayToken:
    """The token a head uses, and where it came from.

    Attributes:
        value: the token (a secret: never printed or logged).
        source: where Ray's tools find it: ``RAY_AUTH_TOKEN``, a file path, or ``~/.ray/auth_token``.
        path: the file holding it, ``None`` when it came from ``RAY_AUTH_TOKEN``.
        created: ``True`` when MNEMOS generated it just now.
    """

    value: str
    source: str
    path: Path | None
    created: bool = False


def default_token_path() -> Path:
    """Ray's default token file, ``~/.ray/auth_token``."""
    return Path.home() / ".ray" / "auth_token"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new or existing file readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def resolve_token() -> RayToken:
    """The token for a new head, from Ray's standard places; generated into ``~/.ray`` if none.

    Raises:
        ValidationError: ``RAY_AUTH_TOKEN_PATH`` names a file that is missing or empty (Ray itself
            would abort on it).
    """
    if value := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return RayToken(value, "RAY_AUTH_TOKEN", None)
    if named := os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(named).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ValidationError(
                f"RAY_AUTH_TOKEN_PATH={named} cannot be read ({exc.strerror}); "
                "point it at a file holding the Ray token, or unset it",
                param="RAY_AUTH_TOKEN_PATH",
            ) from None
        if not value:
            raise ValidationError(f"RAY_AUTH_TOKEN_PATH={named} is empty", param="RAY_AUTH_TOKEN_PATH")
        return RayToken(value, str(path), path)
    path = default_token_path()
    if path.is_file() and (value := path.read_text().strip()):
        return RayToken(value, "~/.ray/auth_token", path)
    value = secrets.token_hex(32)
    try:
        _write_private(path, value)
    except OSError:  # no writable home: Ray's tools read MNEMOS's copy through RAY_AUTH_TOKEN_PATH
        return RayToken(value, str(default_home() / "ray-token"), None, created=True)
    return RayToken(value, "~/.ray/auth_token", path, created=True)


def keep_copy(token: RayToken) -> Path:
    """Write MNEMOS's copy of the token to ``$MNEMOS_HOME/ray-token`` (0600) and return its path."""
    path = default_home() / "ray-token"
    _write_private(path, token.value)
    return path


def export_line(token: RayToken, copy: Path) -> str:
    """The one shell line that lets Ray's CLI reach this cluster (no secret in it)."""
    if token.source == "RAY_AUTH_TOKEN":  # the shell that ran `mnemos up` already holds the token
        return "export RAY_AUTH_MODE=token"
    if token.path is None or token.path != default_token_path():
        return f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token.path or copy}"
    return "export RAY_AUTH_MODE=token"


def ray_address_file() -> Path:
    """Where ``ray start`` records the latest local cluster (``$RAY_TMPDIR/ray/ray_current_cluster``)."""
    from ray._common.utils import get_ray_address_file

    return Path(get_ray_address_file(None))


def read_ray_address() -> str | None:
    """The address recorded in Ray's current-cluster file, if any."""
    try:
        return ray_address_file().read_text().strip() or None
    except OSError:
        return None


def forget_ray_address(address: str | None) -> bool:
    """Remove Ray's current-cluster file if it still names ``address`` (the cluster we stopped).

    A file naming another cluster (a later ``ray start``, someone else's head) is left alone.
    Returns whether the file was removed.
    """
    if not address or read_ray_address() != address:
        return False
    ray_address_file().unlink(missing_ok=True)
    return True
