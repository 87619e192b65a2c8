"""Artifacts around a step: the digest of a model's weights, and copies of outputs to their ``uri``."""

from __future__ import annotations

from typing import Any

from mnemos.errors import MnemosError

__all__ = ["copy_out", "model_digest"]

_DIGESTS: dict[str, str | None] = {}


def model_digest(model: Any, engram: Any) -> str | None:
    """The digest of a model's artifact: its pin, else what an ``engram://`` ref names now, else the
    tree digest of a local folder (``pypi://``, ``file://``), computed once per process."""
    artifact = model.spec.artifact
    if artifact.sha256 and "..." not in artifact.sha256:
        return str(artifact.sha256)
    uri = artifact.uri
    if model.spec.runtime.engine == "echo":
        return None  # loads no artifact
    if uri.startswith("engram://"):
        target = uri[len("engram://") :]
        try:
            return target if target.startswith("sha256:") else engram.get_ref(target)
        except MnemosError:
            return None
    if uri.startswith(("pypi://", "file://")) or "://" not in uri:
        if uri not in _DIGESTS:
            try:
                from mnemos.neuron.models import materialize, tree_digest

                _DIGESTS[uri] = tree_digest(materialize(model, engram))
            except (MnemosError, OSError, ImportError):
                _DIGESTS[uri] = None
        return _DIGESTS[uri]
    return None


def copy_out(engram: Any, digest: str, uri: str, name: str) -> None:
    """Also write an output where its ``uri`` says (a folder URI ending in ``/`` gets ``<name>``)."""
    import fsspec

    target = uri + name if uri.endswith("/") else uri
    scheme = target.split("://", 1)[0] if "://" in target else "file"
    if scheme == "file":
        options: dict[str, Any] = {"auto_mkdir": True}
    else:
        options = engram.storage_options if engram.uri.startswith(scheme + "://") else {}
    with engram.open(digest) as src, fsspec.open(target, "wb", **options) as dst:
        while chunk := src.read(8 * 1024 * 1024):
            dst.write(chunk)
