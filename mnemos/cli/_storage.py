"""Storage errors on the CLI's backup and restore paths, as one line: the URL, the cause, the fix.

fsspec and its backends raise their own errors: ``ImportError`` for a protocol whose package is
missing (``gs://`` without gcsfs), ``ValueError`` for an unknown protocol, botocore's
``NoCredentialsError`` and ``EndpointConnectionError`` (not ``OSError``s: s3fs lets them through),
and ``OSError`` for what s3fs translates (``PermissionError`` for AccessDenied, ``FileNotFoundError``
for a missing bucket). :func:`storage_errors` turns each into a :class:`~mnemos.errors.MnemosError`
(``UnavailableError``, exit 10, as ``Engram.check`` does for a root it cannot reach;
``MissingDependencyError``, exit 9, for a missing package) that ``mnemos.cli.main`` prints without a
traceback. A message never shows a credential: a URL's ``user:password@`` and the values of
credential-like storage options and ``AWS_*`` variables are masked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from mnemos.errors import MissingDependencyError, MnemosError, UnavailableError, ValidationError
from mnemos.errors import redact_userinfo as redact

__all__ = ["check_store", "storage_errors"]

_STORAGE_MODULES = ("botocore", "aiobotocore", "s3fs", "fsspec", "aiohttp", "gcsfs", "adlfs", "azure", "google")
"""Packages whose exceptions are a store's failure (others go on with their traceback: a bug)."""

_SECRET_WORDS = ("secret", "key", "token", "password", "credential", "session")

_FIX_CREDENTIALS = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or key and secret in "
    "engram.storageOptions; anon: true there for a public bucket"
)
_FIX_ENDPOINT = "check the endpoint (AWS_ENDPOINT_URL or endpoint_url in engram.storageOptions) and that it is up"


@contextlib.contextmanager
def storage_errors(stores: Mapping[str, str], options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Turn a store's failure inside the block into one line naming the store.

    Args:
        stores: what the command calls each store it touches (``"--to"``, ``"the backup store"``)
            → its URL; the message names the one the error's text names, else all of them.
        options: the storage options in use, whose credential values are masked in the message.

    Raises:
        MissingDependencyError: a protocol whose fsspec package is not installed (exit 9).
        ValidationError: a protocol fsspec does not know (exit 2).
        UnavailableError: any other failure of a store: credentials, endpoint, access, bucket (exit 10).
    """
    for name, url in stores.items():  # before fsspec sees it (ftp:// ended in a TypeError)
        check_store(name, url)
    try:
        yield
    except MnemosError as exc:
        cause = exc.__cause__  # ENGRAM's own "not reachable" names engram.*: here the store is the flag's
        if isinstance(exc, MissingDependencyError) and isinstance(cause, ImportError):
            raise _missing(cause, stores, options) from None
        if not (isinstance(exc, UnavailableError) and isinstance(cause, Exception) and _from_storage(cause)):
            raise
        raise _unavailable(cause, stores, options) from None
    except ImportError as exc:
        raise _missing(exc, stores, options) from None
    except ValueError as exc:
        if "Protocol not known" not in str(exc):
            raise
        store = _which(stores, str(exc), protocol_only=True)
        raise ValidationError(f"{_name(stores, store)}: {_clean(str(exc), options, stores)}: use a local folder, "
                              "file://, s3:// or gs://", param=store) from None  # fmt: skip
    except Exception as exc:
        if not _from_storage(exc):
            raise
        raise _unavailable(exc, stores, options) from None


def check_store(name: str, url: str) -> None:
    """Refuse store ``url``, which the command calls ``name``, when no store can be there: a protocol
    ENGRAM does not support, an object store URI without a bucket or with a name S3 refuses.

    Raises:
        ValidationError: naming the store and the fix (exit 2).
    """
    from mnemos.config import unsupported_protocol
    from mnemos.engram.keys import bucket_problem

    if (why := unsupported_protocol(url) or bucket_problem(url)) is not None:
        raise ValidationError(f"{_name({name: url}, name)}: {why}", param=name)
    if "://" not in url or url.startswith("file://"):  # a file there is no store (it was "not reachable", exit 10)
        path = os.path.expanduser(url.removeprefix("file://"))
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValidationError(f"{_name({name: url}, name)}: is a file, not a folder: give a folder or an object "
                                  "store URI", param=name)  # fmt: skip


def _missing(exc: ImportError, stores: Mapping[str, str], options: Mapping[str, Any] | None) -> MissingDependencyError:
    """The one line for a protocol whose package is missing: the store, fsspec's words, what to install."""
    store = _which(stores, str(exc), protocol_only=True)
    package = _package(_url(stores, store))
    return MissingDependencyError(
        f"{_name(stores, store)}: {_clean(str(exc), options, stores)}: pip install {package}, "
        "or use a local folder or s3://",
        package=package,
    )


def _unavailable(exc: BaseException, stores: Mapping[str, str], options: Mapping[str, Any] | None) -> UnavailableError:
    """The one line for a store's failure ``exc``: the store (by what the command calls it), cause, fix."""
    store = _which(stores, str(exc))
    cause, fix = _cause_and_fix(exc)
    return UnavailableError(f"{_name(stores, store)}: {_clean(cause, options, stores)}: {fix}", param=store)


def _from_storage(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a storage backend (any ``OSError`` does: s3fs translates to them)."""
    if isinstance(exc, OSError):
        return True
    return any(cls.__module__.split(".")[0] in _STORAGE_MODULES for cls in type(exc).__mro__)


def _cause_and_fix(exc: BaseException) -> tuple[str, str]:
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc) or type(exc).__name__
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return f"no usable credentials ({text})", _FIX_CREDENTIALS
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError"}:
        return f"cannot connect ({text})", _FIX_ENDPOINT
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text:
        return f"access denied ({text})", "check the credentials and their permissions on the bucket"
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        return f"not found ({text})", "create the bucket first, or correct the URL"
    return f"{type(exc).__name__}: {text}", "check the URL, the credentials and the endpoint"


def _which(stores: Mapping[str, str], text: str, *, protocol_only: bool = False) -> str | None:
    """The store the error is about: the only one, the only one ``text`` names (its bucket; for a
    missing package its protocol), the only remote one; ``None`` when that cannot be told."""
    if len(stores) == 1:
        return next(iter(stores))
    remote = [name for name, url in stores.items() if _bucket(url)]
    if protocol_only:
        named = [name for name in remote if _protocol(stores[name]) not in ("s3", "s3a")]
    else:
        named = [name for name in remote if _bucket(stores[name]) in text]
    for candidates in (named, remote):
        if len(candidates) == 1:
            return candidates[0]
    return None


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def _bucket(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0] if "://" in url and not url.startswith("file://") else ""


def _url(stores: Mapping[str, str], store: str | None) -> str:
    return stores[store] if store else next(iter(stores.values()), "")


def _package(url: str) -> str:
    """The package fsspec names for ``url``'s protocol (``gcsfs`` for ``gs://``)."""
    from fsspec.registry import known_implementations

    entry = known_implementations.get(_protocol(url), {})
    return str(entry.get("class", "the filesystem's package")).split(".")[0]


def _name(stores: Mapping[str, str], store: str | None) -> str:
    """``--to s3://b/x``: the store and its URL (each of them when ``store`` is not known)."""
    chosen = {store: stores[store]} if store is not None else stores
    return " / ".join(f"{name}{_variable(name)} {redact(url)}" for name, url in chosen.items())


def _variable(name: str) -> str:
    """`` (MNEMOS_ENGRAM__BACKUPS__DESTINATION)`` for a setting's name (``engram.backups.destination``),
    the environment variable that sets it; nothing for an option (``--to``) or a description."""
    parts = name.split(".")
    if len(parts) < 2 or not all(part.isascii() and part.isalpha() for part in parts):
        return ""
    snake = ["".join(f"_{c}" if c.isupper() else c for c in part).upper() for part in parts]
    return f" (MNEMOS_{'__'.join(snake)})"


def _clean(text: str, options: Mapping[str, Any] | None, stores: Mapping[str, str]) -> str:
    """``text`` on one line, without a URL's user info (the stores' own, wherever the text quotes
    it) or a credential's value."""
    text = redact(" ".join(text.split()))
    userinfo = [info for url in stores.values() if (info := urlsplit(url).netloc.rpartition("@")[0])]
    for value in [*userinfo, *_secrets(options or {})]:
        text = text.replace(value, "***")
    return text


def _secrets(options: Mapping[str, Any]) -> list[str]:
    values = [str(v) for k, v in os.environ.items() if k.startswith("AWS_") and _secret_name(k)]
    for key, value in options.items():
        if isinstance(value, Mapping):
            values += _secrets(value)
        elif _secret_name(str(key)) and value:
            values.append(str(value))
    return [v for v in values if len(v) >= 4]


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS) and lowered not in ("endpoint_url", "aws_endpoint_url")
