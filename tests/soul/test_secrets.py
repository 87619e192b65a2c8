"""Secret stores behind one interface: file (encrypted at rest), env (read-only), vault (optional)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from mnemos.errors import BadRequestError, IntegrityError, NotFoundError, ValidationError
from mnemos.genome import parse_resource
from mnemos.soul.secrets import (
    EnvSecretStore,
    FileSecretStore,
    VaultSecretStore,
    resolve_secret_ref,
    secret_store,
)

PLAINTEXT = "sk-live-Zq9v3t8L0pA7-very-secret"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MNEMOS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MNEMOS_MASTER_KEY", raising=False)
    monkeypatch.delenv("MNEMOS_MASTER_KEY_FILE", raising=False)
    return tmp_path / "home"


def test_file_store_encrypts_at_rest(home: Path) -> None:
    store = FileSecretStore()
    store.set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    store.set("llm-keys", "OTHER", "x")
    store.set("db", "PASSWORD", "hunter2-hunter2")
    assert store.get("llm-keys", "OPENAI_KEY") == PLAINTEXT
    assert store.list() == ["db", "llm-keys"]
    assert store.list("llm-keys") == ["OPENAI_KEY", "OTHER"]

    files = list((home / "secrets").iterdir())
    assert {f.name for f in files} == {"llm-keys.enc", "db.enc"}
    for path in files:
        raw = path.read_bytes()
        assert PLAINTEXT.encode() not in raw and b"hunter2" not in raw and b"OPENAI_KEY" not in raw
        assert base64.b64encode(PLAINTEXT.encode()) not in raw
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_file = home / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "secrets").stat().st_mode) == 0o700

    store.delete("llm-keys", "OTHER")
    assert store.list("llm-keys") == ["OPENAI_KEY"]
    store.delete("db")
    assert store.list() == ["llm-keys"]
    with pytest.raises(NotFoundError, match="secret 'db' not found"):
        store.get("db", "PASSWORD")
    with pytest.raises(NotFoundError, match="secret 'llm-keys' has no key 'NOPE'"):
        store.get("llm-keys", "NOPE")
    with pytest.raises(NotFoundError, match="secret 'llm-keys' has no key 'NOPE'"):
        store.delete("llm-keys", "NOPE")
    with pytest.raises(NotFoundError, match="secret 'db' not found"):
        store.delete("db")
    store.delete("llm-keys", "OPENAI_KEY")  # its last key: the secret goes with it
    assert store.list() == []
    assert not (home / "secrets" / "llm-keys.enc").exists()


def test_file_store_with_another_master_key_cannot_read(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMOS_MASTER_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
    FileSecretStore().set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    monkeypatch.setenv("MNEMOS_MASTER_KEY", "a different passphrase")
    with pytest.raises(IntegrityError, match="cannot decrypt") as caught:
        FileSecretStore().get("llm-keys", "OPENAI_KEY")
    assert PLAINTEXT not in str(caught.value)
    assert not (home / "master.key").exists()  # a key from the environment creates no file


def test_a_key_file_named_but_missing_is_an_error_not_a_new_key(home: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in MNEMOS_MASTER_KEY_FILE (or a key Secret not mounted) made a fresh key there: what the
    process then encrypted no other could read. Only $MNEMOS_HOME/master.key is made on first use."""
    key_file = tmp_path / "mounted" / "master.key"
    key_file.parent.mkdir()
    key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    monkeypatch.setenv("MNEMOS_MASTER_KEY_FILE", str(key_file))
    FileSecretStore().set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    monkeypatch.setenv("MNEMOS_MASTER_KEY_FILE", str(tmp_path / "mountd" / "master.key"))
    with pytest.raises(ValidationError, match="MNEMOS_MASTER_KEY_FILE names .*mountd/master.key.*does not exist") as e:
        FileSecretStore().set("llm-keys", "OTHER", "x")
    assert e.value.param == "MNEMOS_MASTER_KEY_FILE"
    assert not (tmp_path / "mountd").exists() and not (home / "master.key").exists()


def test_names_are_validated(home: Path) -> None:
    with pytest.raises(ValidationError, match="invalid secret name: use"):
        FileSecretStore().set("../etc", "k", "v")
    with pytest.raises(ValidationError, match="invalid secret key: use"):
        FileSecretStore().set("ok", "a b", "v")


def test_env_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMOS_SECRET_LLM_KEYS_OPENAI_KEY", PLAINTEXT)
    store = EnvSecretStore()
    assert store.get("llm-keys", "OPENAI_KEY") == PLAINTEXT
    assert "LLM_KEYS_OPENAI_KEY" in store.list()
    assert store.list("llm-keys") == ["OPENAI_KEY"]
    with pytest.raises(NotFoundError, match="set MNEMOS_SECRET_LLM_KEYS_MISSING"):
        store.get("llm-keys", "MISSING")
    with pytest.raises(BadRequestError, match="read-only: export MNEMOS_SECRET_LLM_KEYS_X") as caught:
        store.set("llm-keys", "X", PLAINTEXT)
    assert PLAINTEXT not in str(caught.value)


def test_registry_and_secret_refs(home: Path, monkeypatch: pytest.MonkeyPatch, settings: object) -> None:
    with pytest.raises(ValidationError, match="unknown secret store 'nope'; valid stores: file, engram, env, vault"):
        secret_store("nope", settings)
    assert isinstance(secret_store(None, settings), FileSecretStore)  # soul.secretStore: file
    secret_store("file", settings).set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    adapter = parse_resource(
        {
            "apiVersion": "genome.mnemos.dev/v1",
            "kind": "Adapter",
            "metadata": {"name": "openai"},
            "spec": {
                "baseUrl": "https://api.example-llm.local/v1",
                "auth": {"secretRef": {"name": "llm-keys", "key": "OPENAI_KEY"}},
            },
        }
    )
    assert resolve_secret_ref(adapter.spec.auth.secret_ref, settings=settings) == PLAINTEXT
    assert resolve_secret_ref({"name": "llm-keys", "key": "OPENAI_KEY"}, settings=settings) == PLAINTEXT
    monkeypatch.setenv("MNEMOS_SECRET_LLM_KEYS_OPENAI_KEY", "from-env")
    assert resolve_secret_ref({"name": "llm-keys", "key": "OPENAI_KEY"}, store=EnvSecretStore()) == "from-env"
    with pytest.raises(ValidationError, match="needs both name and key"):
        resolve_secret_ref({"name": "llm-keys"}, settings=settings)


def _hvac_installed() -> bool:
    try:
        import hvac  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not (_hvac_installed() and os.environ.get("VAULT_ADDR")),
    reason="needs hvac (pip install 'mnemos[vault]') and a Vault server at VAULT_ADDR with VAULT_TOKEN",
)
def test_vault_store_round_trip() -> None:
    store = VaultSecretStore(os.environ["VAULT_ADDR"], os.environ.get("MNEMOS_TEST_VAULT_MOUNT", "secret"))
    name = f"mnemos-test-{os.urandom(4).hex()}"
    store.set(name, "K", PLAINTEXT)
    try:
        assert store.get(name, "K") == PLAINTEXT
        assert store.list(name) == ["K"]
    finally:
        store.delete(name)
    with pytest.raises(NotFoundError):
        store.get(name, "K")


def test_file_store_keeps_every_key_written_at_once(home: Path) -> None:
    """Setting (or deleting) different keys of one secret at once (two gateway requests, a CLI command
    beside the gateway) loses none: each read-modify-write holds the store's lock."""
    import threading

    store = FileSecretStore()
    store.set("shared", "FIRST", "v")
    keys = [f"K{i}" for i in range(24)]
    start = threading.Barrier(len(keys))

    def write(key: str) -> None:
        start.wait()
        FileSecretStore().set("shared", key, f"value-of-{key}")

    threads = [threading.Thread(target=write, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.list("shared") == sorted(["FIRST", *keys])
    assert all(store.get("shared", key) == f"value-of-{key}" for key in keys)

    threads = [threading.Thread(target=lambda k=key: (start.wait(), FileSecretStore().delete("shared", k)))
               for key in keys]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.list("shared") == ["FIRST"]
    assert {p.name for p in (home / "secrets").iterdir()} == {"shared.enc"}  # no lock file beside the secrets
