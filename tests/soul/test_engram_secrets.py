"""The ``engram`` secret store: secrets that every node reads. The ``file`` store is one machine's
folder, so on a cluster (the Helm chart, KubeRay) a secret set through one gateway replica was
missing on the replicas of other pods, and gone with its pod. Each key is one encrypted object in
ENGRAM (local folder and the loopback S3 here), keyed by the master key every pod shares."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mnemos.config import load_settings
from mnemos.errors import IntegrityError, NotFoundError, ValidationError
from mnemos.soul.secrets import EngramSecretStore, FileSecretStore, resolve_secret_ref, secret_store

PLAINTEXT = "sk-live-Zq9v3t8L0pA7-engram-secret"


@pytest.fixture()
def two_pods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two pods' homes (each its own MNEMOS_HOME), one master key, as the chart gives every pod."""
    monkeypatch.setenv("MNEMOS_MASTER_KEY", "q" * 43)
    return tmp_path / "pod-a", tmp_path / "pod-b"


def test_a_secret_set_on_one_pod_is_read_on_another(engram, two_pods, monkeypatch: pytest.MonkeyPatch) -> None:
    pod_a, pod_b = two_pods
    monkeypatch.setenv("MNEMOS_HOME", str(pod_a))
    EngramSecretStore(engram).set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    FileSecretStore().set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    monkeypatch.setenv("MNEMOS_HOME", str(pod_b))
    with pytest.raises(NotFoundError):  # what the file store did on a cluster
        FileSecretStore().get("llm-keys", "OPENAI_KEY")
    other = EngramSecretStore(engram)
    assert other.get("llm-keys", "OPENAI_KEY") == PLAINTEXT
    assert resolve_secret_ref({"name": "llm-keys", "key": "OPENAI_KEY"}, other) == PLAINTEXT
    assert other.list() == ["llm-keys"] and other.list("llm-keys") == ["OPENAI_KEY"]
    stored = [k for k in engram.list("soul/secrets/")]
    assert stored == ["soul/secrets/llm-keys/OPENAI_KEY.enc"], stored
    assert PLAINTEXT.encode() not in engram.read_bytes(stored[0])  # encrypted at rest


def test_keys_set_at_once_on_two_replicas_are_all_kept(engram, two_pods) -> None:
    """The file store's read-modify-write is safe under its folder's lock, on one machine only;
    here every key is an object of its own, so writers on other nodes cannot drop each other's."""
    stores = [EngramSecretStore(engram), EngramSecretStore(engram)]
    threads = [threading.Thread(target=stores[i % 2].set, args=("db", f"K{i}", f"v{i}")) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].list("db") == sorted(f"K{i}" for i in range(12))
    assert [stores[1].get("db", f"K{i}") for i in range(12)] == [f"v{i}" for i in range(12)]


@pytest.mark.parametrize("kind", ["file", "engram"])
def test_a_missing_secret_or_key_is_named_as_in_every_store(kind: str, local_engram, two_pods, monkeypatch) -> None:
    monkeypatch.setenv("MNEMOS_HOME", str(two_pods[0]))
    store = FileSecretStore() if kind == "file" else EngramSecretStore(local_engram)
    store.set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    for call, said in ((lambda: store.get("nope", "X"), "secret 'nope' not found"),
                       (lambda: store.list("nope"), "secret 'nope' not found"),
                       (lambda: store.delete("nope"), "secret 'nope' not found"),
                       (lambda: store.get("llm-keys", "NOPE"), "secret 'llm-keys' has no key 'NOPE'"),
                       (lambda: store.delete("llm-keys", "NOPE"), "secret 'llm-keys' has no key 'NOPE'")):  # fmt: skip
        with pytest.raises(NotFoundError, match=said) as missing:
            call()
        assert missing.value.param == "secretRef" and PLAINTEXT not in missing.value.message


def test_errors_name_the_secret_and_key_and_never_a_value(engram, two_pods) -> None:
    store = EngramSecretStore(engram)
    store.set("llm-keys", "OPENAI_KEY", PLAINTEXT)
    with pytest.raises(ValidationError) as bad:
        store.set("../escape", "K", PLAINTEXT)
    assert bad.value.param == "name" and PLAINTEXT not in bad.value.message
    with pytest.raises(ValidationError):
        store.get("llm-keys", "../../soul/keys/x")
    # A blob moved to another key does not decrypt there (the name and key are bound to it).
    engram.write_bytes("soul/secrets/other/K.enc", engram.read_bytes("soul/secrets/llm-keys/OPENAI_KEY.enc"))
    with pytest.raises(IntegrityError) as moved:
        store.get("other", "K")
    assert PLAINTEXT not in str(moved.value)
    store.delete("llm-keys", "OPENAI_KEY")
    with pytest.raises(NotFoundError, match="secret 'llm-keys' not found"):
        store.list("llm-keys")
    assert store.list() == ["other"]
    store.delete("other")
    assert store.list() == []


def test_the_setting_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMOS_MASTER_KEY", "q" * 43)
    settings = load_settings(engram={"uri": str(tmp_path / "engram")}, soul={"secretStore": "engram"})
    store = secret_store(None, settings)
    assert isinstance(store, EngramSecretStore)
    store.set("s", "k", "v")
    assert (tmp_path / "engram" / "soul" / "secrets" / "s" / "k.enc").is_file()
