"""A restore never makes a revoked API key or token active again: the gateway refuses it by
``soul/revoked/``, which a restore leaves as it is, and ``mnemos token list`` reads its record, which a
snapshot taken before the revocation has active. Both must say revoked after a restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnemos.config import load_settings
from mnemos.engram import Engram
from mnemos.errors import AuthenticationError
from mnemos.soul.apikeys import ApiKeyRecord, parse_api_key, verify_api_key
from mnemos.soul.store import IdentityStore
from mnemos.wraith.backup import backup, restore


def _identities(engram: Engram) -> IdentityStore:
    return IdentityStore.from_settings(load_settings(engram={"uri": engram.uri}), engram)


def _state(store: IdentityStore, credential_id: str) -> str:
    (doc,) = [d for d in store.list(include_inactive=True) if d["id"] == credential_id]
    return str(doc["state"])


def test_a_forced_restore_of_an_older_snapshot_keeps_a_key_revoked_since(tmp_path: Path) -> None:
    root = Engram(str(tmp_path / "engram"))
    store = _identities(root)
    key = store.create_api_key("ci-bot", "developer")
    other = store.create_api_key("other-bot", "developer")
    backup(root, str(tmp_path / "backups"))  # both keys active in the snapshot
    store.revoke(key.id)

    restore(Engram(str(tmp_path / "backups")), "latest", root, force=True)

    assert key.id in store.revoked_ids()  # the gateway's view
    assert _state(store, key.id) == "revoked"  # `mnemos token list`'s: it showed "active"
    assert [d["id"] for d in store.list()] == [other.id]
    record = ApiKeyRecord.from_doc(root.read_json(f"soul/apikeys/{key.id}.json"))
    with pytest.raises(AuthenticationError, match="revoked"):  # by its record alone, as by the marker
        verify_api_key(record, *parse_api_key(key.secret))
    assert _state(store, other.id) == "active"  # one not revoked stays as the snapshot has it


def test_a_live_record_revoked_whose_marker_is_gone_stays_revoked(tmp_path: Path) -> None:
    root = Engram(str(tmp_path / "engram"))
    store = _identities(root)
    key = store.create_api_key("ci-bot", "developer")
    backup(root, str(tmp_path / "backups"))
    store.revoke(key.id)
    root.delete(f"soul/revoked/{key.id}.json")  # as retention drops the marker of an expired credential

    restore(Engram(str(tmp_path / "backups")), "latest", root, force=True)

    assert _state(store, key.id) == "revoked"


def test_a_snapshot_taken_between_a_revocations_two_writes_restores_the_key_revoked(tmp_path: Path) -> None:
    root = Engram(str(tmp_path / "engram"))
    store = _identities(root)
    key = store.create_api_key("ci-bot", "developer")
    record = root.read_json(f"soul/apikeys/{key.id}.json")
    store.revoke(key.id)
    root.write_json(f"soul/apikeys/{key.id}.json", record)  # the marker written, the record not yet
    backup(root, str(tmp_path / "backups"))

    target = Engram(str(tmp_path / "restored"))
    restore(Engram(str(tmp_path / "backups")), "latest", target)

    assert _state(_identities(target), key.id) == "revoked"
