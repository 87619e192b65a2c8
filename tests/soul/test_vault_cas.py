"""Two keys of one Vault secret set at once both stay.

The ``vault`` store reads a secret whole, changes one key and writes it whole: two writers at once
(``mnemos secret set db user …`` and ``… db password …``, two gateway replicas) each wrote what they
had read plus their own key, and the later write took the earlier one's key away. Writes now carry
KV v2's check-and-set (the version read; 0 for a new secret), and a refused one is read and changed
again.

Removing a secret's last key removed the whole entry, which KV v2 cannot check-and-set: a key
another writer set at that moment went with it. The last key's removal now writes a version with
no key (checked and set like any write) and deletes that version: the secret reads as absent,
Vault keeps its entry, and a key set meanwhile stays.

Vault cannot run here (no server, no network): ``KvServer`` is a stand-in for its KV v2 HTTP API, as
Vault documents it (``/v1/<mount>/data/<path>`` with ``options.cas``, 400 "check-and-set parameter did
not match the current version"; a deleted latest version read as 404 with its metadata's
``deletion_time``; ``/v1/<mount>/delete/<path>`` with ``versions``; ``LIST`` and ``DELETE`` of
``/v1/<mount>/metadata/<path>``), served on 127.0.0.1 to the real ``hvac`` client the store uses.
Its reads are slow, so that writers' reads and writes interleave.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("hvac")

from mnemos.errors import MissingDependencyError, NotFoundError  # noqa: E402
from mnemos.soul.secrets import VaultSecretStore  # noqa: E402

MOUNT = "kv"
READ_DELAY_S = 0.02


class KvServer(ThreadingHTTPServer):
    """KV v2's data, delete and metadata endpoints over one dict: path -> (latest version, its data,
    the versions deleted)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KvHandler)
        self.secrets: dict[str, tuple[int, dict[str, str], set[int]]] = {}
        self.lock = threading.Lock()
        self.refused = 0  # writes refused by check-and-set


class _KvHandler(BaseHTTPRequestHandler):
    server: KvServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass

    def _answer(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self, kind: str) -> str | None:
        prefix = f"/v1/{MOUNT}/{kind}/"
        path = self.path.split("?", 1)[0]
        return path[len(prefix) :] if path.startswith(prefix) else None

    def do_GET(self) -> None:
        path = self._path("data")
        if path is None:
            self._answer(404, {"errors": []})
            return
        with self.server.lock:
            found = self.server.secrets.get(path)
        time.sleep(READ_DELAY_S)  # a slow read: writers overlap
        if found is None:
            self._answer(404, {"errors": []})
            return
        version, data, deleted = found
        metadata = {"version": version, "created_time": "2026-12-06T00:00:00Z", "deletion_time": "", "destroyed": False}
        if version in deleted:  # Vault's answer for a deleted latest version: 404, with its metadata
            metadata["deletion_time"] = "2026-12-07T00:00:00Z"
            self._answer(404, {"data": {"data": None, "metadata": metadata}})
            return
        self._answer(200, {"data": {"data": data, "metadata": metadata}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        deleting = self._path("delete")
        if deleting is not None:  # soft-delete the versions named
            with self.server.lock:
                if deleting in self.server.secrets:
                    self.server.secrets[deleting][2].update(body["versions"])
            self._answer(204)
            return
        path = self._path("data")
        if path is None:
            self._answer(404, {"errors": []})
            return
        cas = (body.get("options") or {}).get("cas")
        with self.server.lock:
            current, _, deleted = self.server.secrets.get(path, (0, {}, set()))
            if cas is not None and cas != current:
                self.server.refused += 1
                self._answer(400, {"errors": ["check-and-set parameter did not match the current version"]})
                return
            self.server.secrets[path] = (current + 1, dict(body["data"]), deleted)
        self._answer(200, {"data": {"version": current + 1}})

    do_PUT = do_POST

    def do_LIST(self) -> None:  # noqa: N802 (the HTTP method's name)
        with self.server.lock:
            names = sorted(self.server.secrets)
        if names:
            self._answer(200, {"data": {"keys": names}})
        else:  # as Vault answers a LIST of nothing
            self._answer(404, {"errors": []})

    def do_DELETE(self) -> None:
        path = self._path("metadata")
        with self.server.lock:
            self.server.secrets.pop(path or "", None)
        self._answer(204)


@pytest.fixture()
def vault() -> Iterator[KvServer]:
    server = KvServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _store(server: KvServer) -> VaultSecretStore:
    return VaultSecretStore(f"http://127.0.0.1:{server.server_address[1]}", MOUNT, token="test-token")


def test_keys_set_at_once_are_all_kept(vault: KvServer) -> None:
    writers, keys = 4, 8

    def write(w: int) -> None:
        store = _store(vault)  # each its own client, as each replica has
        for k in range(keys):
            store.set("db", f"k{w}_{k}", f"v{w}_{k}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    store = _store(vault)
    assert store.list("db") == sorted(f"k{w}_{k}" for w in range(writers) for k in range(keys))
    assert store.get("db", "k3_7") == "v3_7"
    assert vault.refused > 0  # the writers did overlap: check-and-set refused some, and they wrote again


def test_keys_deleted_and_set_at_once(vault: KvServer) -> None:
    """Keys deleted while others are set all go, and the others all stay."""
    store = _store(vault)
    for k in range(8):
        store.set("api", f"old{k}", "x")

    def delete_old() -> None:
        mine = _store(vault)
        for k in range(8):
            mine.delete("api", f"old{k}")

    def add_new() -> None:
        mine = _store(vault)
        for k in range(8):
            mine.set("api", f"new{k}", "y")

    threads = [threading.Thread(target=delete_old), threading.Thread(target=add_new)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert store.list("api") == [f"new{k}" for k in range(8)]
    with pytest.raises(NotFoundError):
        store.get("api", "old0")


def test_a_key_set_while_the_last_key_goes_stays(vault: KvServer) -> None:
    """Removing the last key while another writer sets a new one, again and again: the new key is
    there every time (it went with the whole entry when the last key's removal removed it)."""
    for round_ in range(12):
        name = f"race{round_}"
        _store(vault).set(name, "old", "x")
        threads = [threading.Thread(target=_store(vault).delete, args=(name, "old")),
                   threading.Thread(target=_store(vault).set, args=(name, "new", "y"))]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert _store(vault).list(name) == ["new"], name


def test_a_secret_whose_last_key_went_is_absent_and_can_be_set_again(vault: KvServer) -> None:
    store = _store(vault)
    store.set("gone", "only", "x")
    store.set("kept", "k", "v")
    store.delete("gone", "only")
    with pytest.raises(NotFoundError) as err:
        store.get("gone", "only")
    assert "not found" in err.value.message
    with pytest.raises(NotFoundError):
        store.list("gone")
    with pytest.raises(NotFoundError):
        store.delete("gone", "only")
    assert store.list() == ["kept"]  # Vault still lists the entry; the store does not
    assert "gone" in vault.secrets and vault.secrets["gone"][1] == {}  # ... an empty version, deleted
    store.set("gone", "again", "y")  # written over the deleted version, checked and set
    assert store.get("gone", "again") == "y" and store.list() == ["gone", "kept"]
    store.delete("gone")  # the whole secret: the entry goes
    assert "gone" not in vault.secrets and store.list() == ["kept"]


def test_vault_without_hvac_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # an import of hvac fails, as where it is not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'mnemos\[vault\]'"):
        VaultSecretStore("http://127.0.0.1:8200")
