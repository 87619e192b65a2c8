"""``Engram``: content-addressed blobs, named refs, JSON documents and segmented logs on fsspec.

Layout under the root URI (see DESIGN.md)::

    blobs/sha256/<2 hex>/<hex>     content-addressed, verified on read (see integrity.py)
    refs/<name>                    name -> digest
    <prefix>/<seq>.json            segments of append-only logs (journal/…, lineage/…)
    anything/else.json             JSON documents (registry/…)

Object stores cannot append, so logs are written as new segments, named so that they sort in
write order, and merged later by WRAITH.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import errno
import functools
import hashlib
import io
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import fsspec
from fsspec.asyn import sync
from fsspec.implementations.local import LocalFileSystem

from mnemos.config import unsupported_protocol
from mnemos.engram import logs
from mnemos.engram._metering import metered
from mnemos.engram.integrity import TAG_METADATA, Tagger, integrity_key, tag_matches
from mnemos.engram.keys import bucket_problem, normalize_digest, validate_key
from mnemos.errors import (
    IntegrityError,
    MissingDependencyError,
    NotFoundError,
    UnavailableError,
    ValidationError,
    redact_userinfo,
)

CHUNK = 8 * 1024 * 1024

__all__ = ["BlobReader", "Engram"]


class BlobReader(io.RawIOBase):
    """A file-like stream over a blob that checks its digest when the end is reached."""

    def __init__(self, handle: IO[bytes] | io.RawIOBase, digest: str) -> None:
        self._handle = handle
        self._digest = digest
        self._hash = hashlib.sha256()
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        if not data:
            self._verify()
            return 0
        self._hash.update(data)
        buffer[: len(data)] = data
        return len(data)

    def _verify(self) -> None:
        if not self._verified:
            self._verified = True
            if "sha256:" + self._hash.hexdigest() != self._digest:
                raise IntegrityError(f"blob {self._digest} is corrupted: its content no longer matches its digest")

    def close(self) -> None:
        self._handle.close()
        super().close()


class _S3Body(io.RawIOBase):
    """A blocking file over the body of one GET, read on s3fs's event loop."""

    def __init__(self, loop: Any, body: Any) -> None:
        self._loop = loop
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = sync(self._loop, self._body.read, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class Engram:
    """A store over any fsspec URI: a local folder, ``file://…`` or ``s3://bucket/prefix``.

    Args:
        uri: the root; a plain path is a local folder (created on demand).
        storage_options: passed to fsspec (``endpoint_url``, ``key``, ``secret`` … for s3fs).
    """

    _named = "ENGRAM"
    """What its errors call this store: ``from_settings`` names the setting of the root."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        if not uri:
            raise NotFoundError("ENGRAM root URI is empty: set MNEMOS_ENGRAM__URI or pass uri", param="uri")
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self._fs: fsspec.AbstractFileSystem | None = None
        if "://" not in uri or uri.startswith("file://"):
            path = uri[7:] if uri.startswith("file://") else uri
            self._root = str(Path(path).expanduser().resolve())
        else:
            self._root = uri.split("://", 1)[1].rstrip("/")
        self.is_local = "://" not in uri or uri.startswith("file://")

    @classmethod
    def from_settings(cls, settings: Any = None) -> Engram:
        """The ENGRAM root that ``Settings.engram`` names."""
        from mnemos.config import load_settings

        settings = settings or load_settings()
        store = cls(settings.engram.root(), settings.engram.storage_options)
        store._named = "engram.uri (MNEMOS_ENGRAM__URI)"  # what its errors call it: the setting to fix
        return store

    def __reduce__(self) -> tuple[Any, ...]:
        return (Engram, (self.uri, self.storage_options))

    def __repr__(self) -> str:
        return f"Engram({self.uri!r})"

    # -- filesystem -------------------------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            if self.is_local:
                self._fs = LocalFileSystem(auto_mkdir=True)
            else:
                # fsspec would try it (ftp: a TypeError); s3:// alone would write to a bucket per top-level key
                if (why := unsupported_protocol(self.uri) or bucket_problem(self.uri)) is not None:
                    raise ValidationError(f"{self._named} {redact_userinfo(self.uri)}: {why}", param="engram.uri")
                protocol = self.uri.split("://", 1)[0]
                # Other processes write here too: a cached listing would hide their new keys
                # (s3fs then answers "not found" for a key that exists). Never cache listings.
                try:
                    self._fs = fsspec.filesystem(protocol, **{"use_listings_cache": False, **self.storage_options})
                except ImportError as exc:  # gs:// without gcsfs: fsspec's "Please install gcsfs …"
                    from fsspec.registry import known_implementations

                    package = str(known_implementations.get(protocol, {}).get("class", "")).split(".")[0]
                    raise MissingDependencyError(
                        f"{self._named} {redact_userinfo(self.uri)}: {exc}: pip install {package or 'its package'}, "
                        "or use a local folder or s3://",
                        package=package or None,
                    ) from exc
        return self._fs

    def path(self, key: str) -> str:
        """The backend path of a validated key."""
        return f"{self._root}/{validate_key(key)}"

    def _write_atomic(self, path: str, data: bytes, metadata: dict[str, Any] | None = None) -> None:
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data, **(metadata or {}))  # an object PUT is atomic

    def check(self) -> None:
        """Raise ``UnavailableError`` when the root cannot be reached: a missing bucket, an object
        store that does not answer, credentials it refuses; each error names the setting to fix."""
        if self.is_local:
            try:
                os.makedirs(self._root, exist_ok=True)
            except OSError as exc:
                raise UnavailableError(f"ENGRAM root {self.uri} is not reachable: {exc}", param="engram.uri") from None
            return
        bucket = self._root.split("/", 1)[0]
        shown = bucket.rsplit("@", 1)[-1]  # never a user:password@ written into the URI
        try:
            if hasattr(self.fs, "_call_s3"):  # s3fs: its exists() answers False when the endpoint is down
                sync(self.fs.loop, self.fs._call_s3, "head_bucket", Bucket=bucket)
            elif not self.fs.exists(bucket):
                raise FileNotFoundError(bucket)
        except FileNotFoundError:
            # The cause names the bucket: the CLI names the store by its flag or setting from it (storage_errors)
            raise UnavailableError(
                f"ENGRAM bucket {shown!r} does not exist{self._at()}: create it, or point engram.uri "
                "(MNEMOS_ENGRAM__URI) at a bucket that exists",
                param="engram.uri",
            ) from FileNotFoundError(f"bucket {shown!r} does not exist")
        except PermissionError as exc:
            raise UnavailableError(
                f"ENGRAM bucket {shown!r}{self._at()} refused access ({exc}): check the credentials in "
                "engram.storageOptions (key, secret; MNEMOS_ENGRAM__STORAGE_OPTIONS) or the AWS_* environment",
                param="engram.storageOptions",
            ) from exc
        except OSError as exc:
            raise UnavailableError(
                f"ENGRAM root {redact_userinfo(self.uri)} is not reachable: {exc}", param="engram.uri"
            ) from exc
        except Exception as exc:
            if (error := self._unreachable(exc)) is not None:
                raise error from exc  # (the CLI names a store by its flag from the cause)
            raise

    def _at(self) -> str:
        """`` at <endpoint>`` when the storage options name one (its user and password left out)."""
        endpoint = str(self.storage_options.get("endpoint_url") or "")
        return f" at {_without_userinfo(endpoint)}" if endpoint else ""

    def _unreachable(self, exc: BaseException) -> UnavailableError | None:
        """The error for an object store that did not answer (``None`` when ``exc`` is another failure)."""
        try:
            from botocore.exceptions import ConnectionError as NoAnswer
            from botocore.exceptions import (
                CredentialRetrievalError,
                HTTPClientError,
                NoCredentialsError,
                PartialCredentialsError,
            )
        except ImportError:  # no S3 client installed: nothing of it can have failed
            return None
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            return UnavailableError(
                f"{self._named} {redact_userinfo(self.uri)}: no usable credentials ({exc}): set key and secret in "
                "engram.storageOptions (MNEMOS_ENGRAM__STORAGE_OPTIONS), or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); anon: true there for a public bucket",
                param="engram.storageOptions",
            )
        if not isinstance(exc, (NoAnswer, HTTPClientError)):
            return None
        return UnavailableError(
            f"ENGRAM {redact_userinfo(self.uri)} is not reachable{self._at()} ({type(exc).__name__}): check that the "
            "object store is up and engram.storageOptions.endpoint_url (MNEMOS_ENGRAM__STORAGE_OPTIONS)",
            param="engram.storageOptions",
        )

    # -- blobs ------------------------------------------------------------------------------
    def blob_key(self, digest: str) -> str:
        hexpart = normalize_digest(digest)[7:]
        return f"blobs/sha256/{hexpart[:2]}/{hexpart}"

    @property
    def _tags(self) -> bool:
        """Whether blobs here carry tags: on S3, where they ride along as object metadata."""
        return not self.is_local and hasattr(self.fs, "_call_s3")

    def _tagger(self) -> Tagger | None:
        key = integrity_key() if self._tags else None
        return Tagger(key) if key is not None else None

    @metered("put")
    def put(self, data: bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]) -> str:
        """Store bytes, a binary stream or an iterable of chunks; return ``sha256:<hex>``.

        Bytes are hashed in memory; a stream is spooled to a local temporary file while it is
        hashed, so that the upload goes straight to its final, content-addressed key.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            tagger = self._tagger()
            # The tag is computed beside the sha256 (both release the GIL).
            tagged = _beside(tagger.update, data, len(data)) if tagger is not None else None
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if tagged is not None:
                tagged.result()
            path = self.path(self.blob_key(digest))
            if not self._exists(path):
                self._write_atomic(path, bytes(data), _metadata(tagger, digest))
            return digest
        chunks: Iterable[bytes] = iter(lambda: data.read(CHUNK), b"") if hasattr(data, "read") else data
        with tempfile.NamedTemporaryFile(prefix="mnemos-blob-", delete=False) as spool:
            h, tagger = hashlib.sha256(), self._tagger()
            for chunk in chunks:
                h.update(chunk)
                if tagger is not None:
                    tagger.update(chunk)
                spool.write(chunk)
        try:
            digest = "sha256:" + h.hexdigest()
            self._put_file_as(spool.name, digest, tagger)
        finally:
            os.unlink(spool.name)
        return digest

    @metered("put_file")
    def put_file(self, local_path: str | os.PathLike[str], *, digest: str | None = None) -> str:
        """Store a local file by streaming it (hashed first, then uploaded once); return its digest.

        ``digest``: the digest the file is known by. When that blob is stored already, the file is
        not read at all; else its bytes are hashed and stored only if they still hash to it (the
        digest they hash to is returned either way: a caller compares).
        """
        if digest is not None and self.has(digest):
            return digest
        h, tagger = hashlib.sha256(), self._tagger()
        with open(local_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
                if tagger is not None:
                    tagger.update(chunk)
        actual = "sha256:" + h.hexdigest()
        if digest is None or actual == digest:
            self._put_file_as(str(local_path), actual, tagger)
        return actual

    def _put_file_as(self, local_path: str, digest: str, tagger: Tagger | None) -> None:
        path = self.path(self.blob_key(digest))
        if self._exists(path):
            return
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
            os.close(fd)
            import shutil

            shutil.copyfile(local_path, tmp)
            os.replace(tmp, path)
        else:
            self.fs.put_file(local_path, path, **_metadata(tagger, digest))

    def _no_bucket(self) -> None:
        """After a listing found nothing at all: on an object store that means its bucket may be
        missing (a prefix with no keys lists as empty), which ``check`` reports naming the setting."""
        if not self.is_local:
            self.check()

    def _exists(self, path: str) -> bool:
        return os.path.exists(path) if self.is_local else bool(self.fs.exists(path))

    def _missing(self, digest: str) -> NotFoundError:
        return NotFoundError(f"blob {digest} not found in {self.uri}", param="digest")

    def has(self, digest: str) -> bool:
        return self._exists(self.path(self.blob_key(digest)))

    def size(self, digest: str) -> int:
        """The size of a stored blob in bytes (``NotFoundError`` when it is not stored)."""
        digest = normalize_digest(digest)
        try:
            return int(self.fs.size(self.path(self.blob_key(digest))))
        except FileNotFoundError:
            raise self._missing(digest) from None

    @metered("open")
    def open(self, digest: str) -> BlobReader:
        """A stream over a blob; reading to its end raises ``IntegrityError`` if it was altered."""
        digest = normalize_digest(digest)
        path = self.path(self.blob_key(digest))
        handle: IO[bytes] | io.RawIOBase
        try:
            if self.is_local:
                handle = open(path, "rb")  # noqa: SIM115
            elif self._tags:  # one streamed GET (an s3fs file makes a ranged GET per block)
                body, _, _ = sync(self.fs.loop, self._s3_get_object, path)
                handle = _S3Body(self.fs.loop, body)
            else:
                handle = self.fs.open(path, "rb", block_size=CHUNK)
        except FileNotFoundError:
            raise self._missing(digest) from None
        return BlobReader(handle, digest)

    @metered("get")
    def get(self, digest: str) -> bytes:
        """A blob's bytes, verified (``IntegrityError`` if altered; see integrity.py for how)."""
        digest = normalize_digest(digest)
        path = self.path(self.blob_key(digest))
        try:
            if self.is_local:
                with open(path, "rb") as fh:
                    data = fh.read()
            elif self._tags:
                return self._get_tagged(path, digest)
            else:
                data = bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            raise self._missing(digest) from None
        _check_sha256([data], digest)
        return data

    def _get_tagged(self, path: str, digest: str) -> bytes:
        """One streamed GET; then the chunks are joined on a thread while this one verifies them
        (by tag when the object has one, else by sha256): both release the GIL, so the check
        costs little more than the join that any read of a large object pays."""
        parts, tag = sync(self.fs.loop, self._s3_fetch, path)
        joined = _beside(b"".join, parts, sum(map(len, parts)))
        try:
            tagger = self._tagger() if tag else None
            if tagger is not None:
                for part in parts:
                    tagger.update(part)
            # Without a matching tag (none, another master key's, or altered bytes), sha256 decides.
            if tagger is None or not tag_matches(tagger, digest, tag):
                _check_sha256(parts, digest)
        finally:
            data: bytes = joined.result()
        return data

    async def _s3_get_object(self, path: str) -> tuple[Any, AsyncIterator[bytes], str | None]:
        """One GET: its body, its chunks as they arrive, and the object's tag (``None`` if untagged)."""
        bucket, key, _ = self.fs.split_path(path)
        resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
        body = resp["Body"]
        content = getattr(getattr(body, "raw_stream", None), "content", None)
        chunks = content.iter_any() if content is not None else _chunks(body)
        return body, chunks, (resp.get("Metadata") or {}).get(TAG_METADATA)

    async def _s3_fetch(self, path: str) -> tuple[list[bytes], str | None]:
        """The chunks of one GET, and the object's tag."""
        body, chunks, tag = await self._s3_get_object(path)
        parts: list[bytes] = []
        try:
            async for chunk in chunks:
                parts.append(chunk)
        finally:
            body.close()
        return parts, tag

    async def _s3_fetch_to(self, path: str, dst: BinaryIO, tagger: Tagger | None) -> tuple[Any, str | None]:
        """Write the chunks of one GET to ``dst``, hashing them as they pass: by ``tagger`` when
        the object has a tag, else by sha256. Returns that hash and the tag."""
        body, chunks, tag = await self._s3_get_object(path)
        h: Any = tagger if tag and tagger is not None else hashlib.sha256()
        try:
            async for chunk in chunks:
                dst.write(chunk)
                h.update(chunk)
        finally:
            body.close()
        return h, tag

    @metered("get_to_file")
    def get_to_file(self, digest: str, local_path: str | os.PathLike[str]) -> None:
        """Write a blob to a local file, verified as ``get`` does; a corrupted blob leaves no file
        behind. On S3 one GET streams to the file."""
        digest = normalize_digest(digest)
        tmp = f"{local_path}.part-{uuid.uuid4().hex[:6]}"
        try:
            if self._tags:
                self._s3_get_to_file(digest, tmp)
            else:
                with self.open(digest) as src, open(tmp, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
            os.replace(tmp, local_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _s3_get_to_file(self, digest: str, local_path: str) -> None:
        try:
            with open(local_path, "wb") as dst:
                # The key is looked up here, not on the event loop (it may read the key file).
                h, tag = sync(self.fs.loop, self._s3_fetch_to, self.path(self.blob_key(digest)), dst, self._tagger())
        except FileNotFoundError:
            raise self._missing(digest) from None
        if isinstance(h, Tagger):
            if tag_matches(h, digest, str(tag)):
                return
            with open(local_path, "rb") as fh:  # no match: sha256 decides, from the local copy
                _check_sha256(iter(lambda: fh.read(CHUNK), b""), digest)
        else:
            _check_sha256([], digest, h)

    def blobs(self) -> Iterator[tuple[str, int, float]]:
        """Every blob as ``(digest, size, mtime)``."""
        base = f"{self._root}/blobs/sha256"
        try:
            entries = self.fs.find(base, detail=True)
        except FileNotFoundError:
            self._no_bucket()
            return
        for path, info in entries.items():
            name = path.rsplit("/", 1)[-1]
            if len(name) == 64:
                yield "sha256:" + name, int(info.get("size") or 0), _mtime(info)

    def delete_blob(self, digest: str) -> None:
        self.delete(self.blob_key(digest))

    # -- refs -------------------------------------------------------------------------------
    def set_ref(self, name: str, digest: str) -> None:
        """Point ``refs/<name>`` at a digest (the blob must exist)."""
        digest = normalize_digest(digest)
        validate_key(name, what="ref")
        if not self.has(digest):
            raise NotFoundError(f"ref {name!r} cannot point at {digest}: no such blob", param="digest")
        self._write_atomic(self.path(f"refs/{name}"), digest.encode())

    def get_ref(self, name: str) -> str:
        validate_key(name, what="ref")
        try:
            return self.read_bytes(f"refs/{name}").decode().strip()
        except NotFoundError:
            raise NotFoundError(f"ref {name!r} not found", param="ref") from None

    def refs(self, prefix: str = "") -> dict[str, str]:
        """All refs under ``prefix`` as ``{name: digest}``."""
        base = f"{self._root}/refs"
        start = f"{base}/{validate_key(prefix, what='prefix')}" if prefix else base
        try:
            paths = self.fs.find(start)
        except FileNotFoundError:
            self._no_bucket()
            return {}
        out = {}
        for path in sorted(paths):
            name = path[len(base) + 1 :]
            if name.rsplit("/", 1)[-1].startswith(".tmp-"):
                continue
            out[name] = self.fs.cat_file(path).decode().strip()
        return out

    def delete_ref(self, name: str) -> None:
        self.delete(f"refs/{validate_key(name, what='ref')}")

    # -- documents --------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> None:
        self._write_atomic(self.path(key), data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist: ``True`` when this call created it, ``False``
        when it already existed (another writer won). Atomic, and readers never see a partial file.

        Locally a complete temporary file is hard-linked to the key (``link`` fails when the name
        exists; ``O_EXCL`` where hard links are not supported). On S3 a conditional PUT
        (``If-None-Match: *``), which AWS S3 and moto honour; a store that ignores the header
        overwrites instead, so run the registry's writes through one writer there.
        """
        path = self.path(key)
        if not self.is_local:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here (some FUSE and network filesystems)
                return _create_exclusive(path, data)
            return True
        finally:
            os.unlink(tmp)

    def create_json(self, key: str, obj: Any) -> bool:
        """``create_bytes`` of a JSON document (written as ``write_json`` writes it)."""
        return self.create_bytes(key, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())

    def read_bytes(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(key)))
        except OSError as exc:
            if not _absent(exc):
                raise
            raise NotFoundError(f"{key} not found in {self.uri}", param="key") from None

    def write_json(self, key: str, obj: Any) -> None:
        self.write_bytes(key, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def exists(self, key: str) -> bool:
        return self._exists(self.path(key))

    def modified(self, key: str) -> float:
        """When ``key`` was last written (seconds since the epoch; 0 when the store does not say)."""
        return _mtime(self.fs.info(self.path(key)))

    def list(self, prefix: str) -> list[str]:
        """Keys directly or indirectly under ``prefix``, sorted (temporary files excluded)."""
        base = self.path(prefix)
        try:
            paths = self.fs.find(base)
        except FileNotFoundError:
            self._no_bucket()
            return []
        root_len = len(self._root) + 1
        return sorted(p[root_len:] for p in paths if not p.rsplit("/", 1)[-1].startswith(".tmp-"))

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when there is none (or its name is too long for one to exist)."""
        try:
            self.fs.rm_file(self.path(key))
        except OSError as exc:
            if not _absent(exc):
                raise

    def delete_prefix(self, prefix: str) -> None:
        path = self.path(prefix)
        if self._exists(path):
            self.fs.rm(path, recursive=True)

    # -- logs -------------------------------------------------------------------------------
    # (the log format and its reader live in logs.py)
    def append(self, log: str, records: builtins.list[dict[str, Any]]) -> str:
        """Write ``records`` as one new segment of ``log``; return the segment key."""
        return logs.append(self, log, records)

    def segments(self, log: str) -> builtins.list[str]:
        """Segment keys of a log in write order."""
        return logs.segments(self, log)

    def read_log(self, log: str) -> Iterator[dict[str, Any]]:
        """Every record of a log, in write order, exactly once (also while WRAITH compacts it)."""
        return logs.read_log(self, log)


def _reachable(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, raising ``UnavailableError`` naming the setting when the object store does not answer
    (botocore's connection errors would reach the user as a traceback naming no setting), and when its
    bucket does not exist (s3fs says only "The specified bucket does not exist")."""

    @functools.wraps(method)
    def call(self: Engram, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FileNotFoundError as exc:
            if not self.is_local and "bucket does not exist" in str(exc):
                self.check()
            raise
        except Exception as exc:
            if (error := self._unreachable(exc)) is not None:
                raise error from exc  # (the CLI names a store by its flag from the cause)
            raise

    return call


# Every call that reaches the store (generators are wrapped by what they call first).
for _name in (
    "put", "put_file", "has", "size", "open", "get", "get_to_file", "delete_blob", "set_ref", "get_ref",
    "refs", "delete_ref", "write_bytes", "create_bytes", "read_bytes", "exists", "modified", "list",
    "delete", "delete_prefix", "append", "segments",
):  # fmt: skip
    setattr(Engram, _name, _reachable(getattr(Engram, _name)))


def _without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rsplit('@', 1)[-1]}{slash}{path}" if sep else url


def _absent(exc: OSError) -> bool:
    """Whether a read or delete failed because there is no such file: it is missing, or a name in its path is
    longer than the filesystem allows (``ENAMETOOLONG``: nothing of that name can have been written)."""
    return isinstance(exc, FileNotFoundError) or exc.errno == errno.ENAMETOOLONG


@functools.cache
def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(min(32, os.cpu_count() or 2), thread_name_prefix="engram")


def _beside(fn: Callable[[Any], Any], arg: Any, size: int) -> concurrent.futures.Future[Any]:
    """``fn(arg)`` on a thread while the caller does other work on the same bytes (joins and
    hashes of large buffers release the GIL); small ones run at once, a thread would cost more."""
    if size >= CHUNK:
        return _pool().submit(fn, arg)
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    done.set_result(fn(arg))
    return done


def _create_exclusive(path: str, data: bytes) -> bool:
    """``O_CREAT | O_EXCL``: ``False`` when ``path`` exists (a reader may see it half written)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _metadata(tagger: Tagger | None, digest: str) -> dict[str, Any]:
    """The object metadata that carries a blob's tag (none without a tagger)."""
    return {} if tagger is None else {"Metadata": {TAG_METADATA: tagger.hexdigest(digest)}}


def _check_sha256(parts: Iterable[bytes], digest: str, h: Any = None) -> None:
    """``IntegrityError`` unless the sha256 of ``parts`` (fed to ``h``, if given) is ``digest``."""
    h = h if h is not None else hashlib.sha256()
    for part in parts:
        h.update(part)
    if "sha256:" + h.hexdigest() != digest:
        raise IntegrityError(f"blob {digest} is corrupted: its content no longer matches its digest")


async def _chunks(body: Any) -> Any:
    while chunk := await body.read(CHUNK):
        yield chunk


def _mtime(info: dict[str, Any]) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
