"""Secret stores behind one interface: ``file`` (encrypted at rest), ``engram`` (encrypted, shared
by every node), ``env`` and ``vault``.

A secret is a named group of keys, as a Kubernetes Secret: ``secretRef: {name: llm-keys, key:
OPENAI_KEY}`` in an Adapter resolves through ``resolve_secret_ref``. Values never appear in errors,
logs or lineage: messages name the secret and the key only.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from mnemos._deps import require
from mnemos.config import default_home
from mnemos.errors import BadRequestError, ConflictError, NotFoundError, UnavailableError, ValidationError
from mnemos.soul._crypto import decrypt, encrypt, write_private_file

__all__ = [
    "EngramSecretStore",
    "EnvSecretStore",
    "FileSecretStore",
    "SECRET_STORES",
    "SecretStore",
    "VaultSecretStore",
    "check_secret_name",
    "env_var",
    "from_settings",
    "resolve_secret_ref",
    "secret_store",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_secret_name(value: str, what: str = "name") -> str:
    """A secret name or key: 1-128 of letters, digits, ``._-``, not starting with a symbol."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        # The rejected text is not echoed: a value typed in the wrong place must not reach output.
        raise ValidationError(f"invalid secret {what}: use 1-128 letters, digits, '.', '_' or '-'", param=what)
    return value


class SecretStore(abc.ABC):
    """A place secrets live. Contract:

    - ``get(name, key)`` returns the value or raises ``NotFoundError`` naming name/key (never a value);
    - ``set(name, key, value)`` creates or replaces one key of a secret;
    - ``list(name=None)`` lists secret names, or the keys of one secret (never values);
    - ``delete(name, key=None)`` removes one key, or the whole secret; ``NotFoundError`` if absent.
    """

    kind: ClassVar[str]

    @abc.abstractmethod
    def get(self, name: str, key: str) -> str: ...

    @abc.abstractmethod
    def set(self, name: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def list(self, name: str | None = None) -> list[str]: ...

    @abc.abstractmethod
    def delete(self, name: str, key: str | None = None) -> None: ...

    @staticmethod
    def _missing(name: str, key: str | None = None) -> NotFoundError:
        what = f"secret {name!r}" if key is None else f"secret {name!r} has no key {key!r}"
        return NotFoundError(what if key is not None else f"{what} not found", param="secretRef")


class _WholeSecretStore(SecretStore):
    """A store that reads and writes a secret whole (a dict of keys): ``get``, ``set`` and
    ``delete`` are read-modify-write over ``_read``, ``_write`` and ``_remove``, each under
    ``_lock`` so that two writers of one secret (two keys set at once) do not lose a key."""

    def _lock(self) -> contextlib.AbstractContextManager[Any]:
        """Held across a read-modify-write (default: none; Vault's writes of one secret are not serialized)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def _read(self, name: str) -> dict[str, str]:
        """The secret's keys; ``NotFoundError`` (``self._missing(name)``) when it does not exist."""

    def _versioned(self, name: str) -> tuple[dict[str, str] | None, int | None]:
        """The secret's keys (``None``: it holds none, at that version) and the version a write of it
        names (``None``: the store keeps none); ``NotFoundError`` when it does not exist."""
        return self._read(name), None

    @abc.abstractmethod
    def _write(self, name: str, data: dict[str, str], version: int | None = None) -> int | None:
        """Write the secret whole; ``version``: the one its keys were read at (0: absent), for a store that
        checks it (``_Stale`` when another writer got in first). Returns the version written, if kept."""

    @abc.abstractmethod
    def _remove(self, name: str) -> None:
        """Remove the whole secret; ``NotFoundError`` when it does not exist."""

    def _emptied(self, name: str, version: int | None) -> None:
        """The secret's last key was removed, from the keys read at ``version``: remove the secret."""
        self._remove(name)

    def get(self, name: str, key: str) -> str:
        check_secret_name(key, "key")  # (a value pasted as the key is not echoed by "has no key …")
        data = self._read(name)
        if key not in data:
            raise self._missing(name, key)
        return str(data[key])

    def _change(self, name: str, change: Callable[[dict[str, str] | None], dict[str, str]]) -> None:
        """Write ``change(keys)`` as the secret (``None``: it does not exist; an empty result removes it),
        read and written under ``_lock``."""
        with self._lock():
            data: dict[str, str] | None
            try:
                data, version = self._versioned(name)
            except NotFoundError:
                data, version = None, 0
            changed = change(data)
            if changed:
                self._write(name, changed, version)
            else:
                self._emptied(name, version)

    def set(self, name: str, key: str, value: str) -> None:
        check_secret_name(key, "key")
        self._change(name, lambda data: {**(data or {}), key: value})

    def delete(self, name: str, key: str | None = None) -> None:
        if key is None:
            self._remove(name)
            return
        check_secret_name(key, "key")

        def without(data: dict[str, str] | None) -> dict[str, str]:
            if data is None:
                raise self._missing(name)
            if key not in data:
                raise self._missing(name, key)
            return {k: v for k, v in data.items() if k != key}

        self._change(name, without)


class FileSecretStore(_WholeSecretStore):
    """One AES-256-GCM encrypted file per secret under ``root`` (default ``$MNEMOS_HOME/secrets``),
    mode 0600, keyed by the master key (``MNEMOS_MASTER_KEY`` or ``$MNEMOS_HOME/master.key``)."""

    kind = "file"

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_home() / "secrets"

    def _path(self, name: str) -> Path:
        return self.root / f"{check_secret_name(name)}.enc"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """An exclusive ``flock`` on the store's folder: gateway threads, replicas and CLI commands on
        this machine write one at a time (no lock file: the folder holds secrets only)."""
        import fcntl

        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # (releases the lock)

    def _read(self, name: str) -> dict[str, str]:
        path = self._path(name)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise self._missing(name) from None
        return dict(json.loads(decrypt(blob, context=f"secret:{name}")))

    def _write(self, name: str, data: dict[str, str], version: int | None = None) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # (under _lock: no version to check)
        blob = encrypt(json.dumps(data, sort_keys=True).encode(), context=f"secret:{name}")
        write_private_file(self._path(name), blob)

    def _remove(self, name: str) -> None:
        try:
            self._path(name).unlink()  # no need to decrypt it first
        except FileNotFoundError:
            raise self._missing(name) from None

    def list(self, name: str | None = None) -> list[str]:
        if name is not None:
            return sorted(self._read(name))
        if not self.root.is_dir():
            return []
        return sorted(p.name[:-4] for p in self.root.glob("*.enc") if _NAME.fullmatch(p.name[:-4]))


def env_var(name: str, key: str) -> str:
    """The variable holding ``name``/``key`` in the env store: ``MNEMOS_SECRET_<NAME>_<KEY>``."""
    def norm(s: str) -> str:
        return re.sub(r"[^A-Z0-9]", "_", s.upper())

    return f"MNEMOS_SECRET_{norm(check_secret_name(name))}_{norm(check_secret_name(key, 'key'))}"


class EnvSecretStore(SecretStore):
    """Read-only: ``name``/``key`` is the variable ``MNEMOS_SECRET_<NAME>_<KEY>`` (upper case,
    other characters as ``_``). ``list`` returns the ``<NAME>_<KEY>`` suffixes it can see."""

    kind = "env"
    PREFIX = "MNEMOS_SECRET_"

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def get(self, name: str, key: str) -> str:
        var = env_var(name, key)
        if var not in self.environ:
            raise NotFoundError(f"secret {name!r} has no key {key!r} (set {var})", param="secretRef")
        return self.environ[var]

    def _read_only(self, name: str, key: str | None) -> BadRequestError:
        hint = env_var(name, key) if key else f"{self.PREFIX}<NAME>_<KEY>"
        return BadRequestError(f"the env secret store is read-only: export {hint} instead", param="store")

    def set(self, name: str, key: str, value: str) -> None:
        raise self._read_only(name, key)

    def delete(self, name: str, key: str | None = None) -> None:
        raise self._read_only(name, key)

    def list(self, name: str | None = None) -> list[str]:
        suffixes = sorted(v[len(self.PREFIX) :] for v in self.environ if v.startswith(self.PREFIX))
        if name is None:
            return suffixes
        stem = env_var(name, "x")[len(self.PREFIX) : -1]
        return [s[len(stem) :] for s in suffixes if s.startswith(stem) and len(s) > len(stem)]


_CAS_TRIES = 16
"""How often a Vault write is read and changed again when other writers of the secret got in first."""


class _Stale(Exception):
    """A write refused because the secret changed since it was read (Vault's check-and-set)."""


class VaultSecretStore(_WholeSecretStore):
    """HashiCorp Vault KV v2 (``pip install 'mnemos[vault]'``): secret ``name`` is the KV path
    under ``soul.vault.mount``; its keys are the data fields. Token from ``VAULT_TOKEN``."""

    kind = "vault"

    def __init__(self, address: str, mount: str = "mnemos/", token: str | None = None) -> None:
        hvac = require("hvac", why="the vault secret store", param="soul.secretStore")
        self.address = address
        self.mount = mount.strip("/")
        self.client = hvac.Client(url=address, token=token or os.environ.get("VAULT_TOKEN"))

    def _kv(self) -> Any:
        return self.client.secrets.kv.v2

    def _read(self, name: str) -> dict[str, str]:
        data = self._versioned(name)[0]
        if data is None:
            raise self._missing(name)
        return data

    def _versioned(self, name: str) -> tuple[dict[str, str] | None, int]:
        """The secret's keys and its KV version; ``(None, version)`` when its latest version was
        deleted or holds no key (its last key was removed: ``_emptied``); ``NotFoundError`` when it
        never existed or was removed whole."""
        import hvac.exceptions

        try:
            response = self._kv().read_secret_version(
                path=check_secret_name(name), mount_point=self.mount, raise_on_deleted_version=False
            )
        except hvac.exceptions.InvalidPath:
            raise self._missing(name) from None
        except hvac.exceptions.VaultError as exc:
            raise self._unavailable(exc) from None
        data, metadata = response["data"]["data"], response["data"]["metadata"]
        if not data or metadata.get("deletion_time") or metadata.get("destroyed"):
            return None, int(metadata["version"])
        return dict(data), int(metadata["version"])

    def _unavailable(self, exc: Exception) -> UnavailableError:
        return UnavailableError(f"vault at {self.address}: {type(exc).__name__}", param="soul.vault")

    def _write(self, name: str, data: dict[str, str], version: int | None = None) -> int:
        """Write with KV v2's check-and-set when ``version`` is given: Vault refuses the write when another
        writer (another key of the secret set at once, on another replica) wrote since that version.
        Returns the version written."""
        import hvac.exceptions

        try:
            response = self._kv().create_or_update_secret(path=check_secret_name(name), secret=data, cas=version,
                                                          mount_point=self.mount)  # fmt: skip
        except hvac.exceptions.InvalidRequest as exc:  # "check-and-set parameter did not match the current version"
            raise _Stale() if "check-and-set" in str(exc) else self._unavailable(exc) from None
        except hvac.exceptions.VaultError as exc:
            raise self._unavailable(exc) from None
        return int(response["data"]["version"])

    def _emptied(self, name: str, version: int | None) -> None:
        """The last key removed, checked and set as every write is: a version with no key is written
        at ``version`` (a key another writer set meanwhile makes it stale, and the change is made
        again on what that writer wrote), then that version is deleted, so the secret reads as
        absent. The entry stays: Vault cannot check-and-set removing it, and a key set at that
        moment would have gone with it."""
        import hvac.exceptions

        written = self._write(name, {}, version)
        try:
            self._kv().delete_secret_versions(path=name, versions=[written], mount_point=self.mount)
        except hvac.exceptions.VaultError:  # an empty latest version reads as absent all the same
            log.warning("secret %r: its emptied version %d could not be deleted", name, written, exc_info=True)

    def _change(self, name: str, change: Callable[[dict[str, str] | None], dict[str, str]]) -> None:
        """The read-modify-write of every store, read and changed again (after a short random pause) when
        Vault refused the write as stale (removing the last key too: ``_emptied``)."""
        for attempt in range(_CAS_TRIES):
            if attempt:  # writers that collided try again at different moments, not in lockstep
                time.sleep(random.uniform(0, 0.01 * attempt))
            try:
                super()._change(name, change)
                return
            except _Stale:
                continue
        raise ConflictError(f"secret {name!r}: other writers changed it {_CAS_TRIES} times while this write was made: "
                            "try again", param="name")  # fmt: skip

    def _remove(self, name: str) -> None:
        self._read(name)  # NotFoundError when absent (Vault's delete would succeed silently)
        self._kv().delete_metadata_and_all_versions(path=name, mount_point=self.mount)

    def list(self, name: str | None = None) -> list[str]:
        import hvac.exceptions

        if name is not None:
            return sorted(self._read(name))
        try:
            names = self._kv().list_secrets(path="", mount_point=self.mount)["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return []
        return sorted(n for n in names if self._holds_keys(n))

    def _holds_keys(self, name: str) -> bool:
        """Whether ``name`` is a secret with keys (an entry whose last key was removed stays listed by Vault)."""
        try:
            return self._versioned(name)[0] is not None
        except NotFoundError:
            return False
        except ValidationError:  # a name made outside MNEMOS, which its own checks would refuse: listed as before
            return True


class EngramSecretStore(SecretStore):
    """Secrets in ENGRAM, the platform's shared store: each key one AES-256-GCM object under
    ``soul/secrets/<name>/<key>.enc``, keyed by the master key (the same in every pod: the chart's
    ``soul.masterKey``). Every gateway replica on every node reads the same secrets, and a secret
    outlives the pod that set it (the ``file`` store is one machine's folder). One object per key:
    two keys of one secret set at once, on two replicas, cannot overwrite each other.

    Args:
        engram: the store (default: the one the settings name).
    """

    kind = "engram"
    PREFIX = "soul/secrets"

    def __init__(self, engram: Any = None, settings: Any = None) -> None:
        if engram is None:
            from mnemos.engram import Engram

            engram = Engram.from_settings(settings)
        self.engram = engram

    def _key(self, name: str, key: str) -> str:
        return f"{self.PREFIX}/{check_secret_name(name)}/{check_secret_name(key, 'key')}.enc"

    def _keys(self, name: str) -> list[str]:
        folder = f"{self.PREFIX}/{check_secret_name(name)}/"
        return sorted(k[len(folder) : -4] for k in self.engram.list(folder)
                      if k.endswith(".enc") and _NAME.fullmatch(k[len(folder) : -4]))  # fmt: skip

    def get(self, name: str, key: str) -> str:
        try:
            blob = self.engram.read_bytes(self._key(name, key))
        except NotFoundError:
            raise self._missing(name, key) if self._keys(name) else self._missing(name) from None
        return str(json.loads(decrypt(blob, context=f"secret:{name}/{key}")))

    def set(self, name: str, key: str, value: str) -> None:
        blob = encrypt(json.dumps(value).encode(), context=f"secret:{name}/{key}")
        self.engram.write_bytes(self._key(name, key), blob)

    def list(self, name: str | None = None) -> list[str]:
        if name is not None:
            keys = self._keys(name)
            if not keys:
                raise self._missing(name)
            return keys
        names = set()  # from one listing: a secret is a name with at least one key object under it
        for stored in self.engram.list(self.PREFIX + "/"):
            name, _, file = stored[len(self.PREFIX) + 1 :].partition("/")
            if file.endswith(".enc") and _NAME.fullmatch(name) and _NAME.fullmatch(file[:-4]):
                names.add(name)
        return sorted(names)

    def delete(self, name: str, key: str | None = None) -> None:
        if key is not None:
            check_secret_name(key, "key")
        keys = self._keys(name)
        if key is not None and key not in keys:
            raise self._missing(name, key) if keys else self._missing(name)
        if not keys:
            raise self._missing(name)
        for each in keys if key is None else [key]:
            self.engram.delete(self._key(name, each))


SECRET_STORES: dict[str, type[SecretStore]] = {
    "file": FileSecretStore,
    "engram": EngramSecretStore,
    "env": EnvSecretStore,
    "vault": VaultSecretStore,
}


def secret_store(name: str | None = None, settings: Any = None) -> SecretStore:
    """The store ``name`` (default ``soul.secretStore``); an unknown name lists the valid ones."""
    if settings is None:
        from mnemos.config import load_settings

        settings = load_settings()
    name = name or settings.soul.secret_store
    if name not in SECRET_STORES:
        raise ValidationError(
            f"unknown secret store {name!r}; valid stores: {', '.join(SECRET_STORES)}", param="soul.secretStore"
        )
    if name == "vault":
        address = os.environ.get("VAULT_ADDR") or settings.soul.vault.address
        return VaultSecretStore(address, settings.soul.vault.mount)
    if name == "engram":
        return EngramSecretStore(settings=settings)
    return SECRET_STORES[name]()


def from_settings(settings: Any = None) -> SecretStore:
    """The store ``settings.soul.secretStore`` names."""
    return secret_store(None, settings)


def resolve_secret_ref(ref: Any, store: SecretStore | None = None, settings: Any = None) -> str:
    """The value behind ``secretRef {name, key}`` (a dict or the GENOME ``SecretRef`` model)."""
    if isinstance(ref, dict):
        name, key = ref.get("name"), ref.get("key")
    else:
        name, key = getattr(ref, "name", None), getattr(ref, "key", None)
    if not name or not key:
        raise ValidationError("secretRef needs both name and key", param="secretRef")
    return (store or from_settings(settings)).get(str(name), str(key))
