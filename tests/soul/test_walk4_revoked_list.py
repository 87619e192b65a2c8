"""``mnemos token list`` says revoked for every credential the gateway refuses as revoked: the
gateway reads ``soul/revoked/``, the listing read only the key's own record, which a restore from
before the revocation (or a read between the revocation's two writes) holds as active."""

from __future__ import annotations

from typing import Any

from mnemos.engram import Engram
from mnemos.soul import IdentityStore
from mnemos.soul.apikeys import APIKEYS_PREFIX


def test_a_key_revoked_in_soul_revoked_lists_as_revoked_whatever_its_record_says(settings: Any) -> None:
    store = IdentityStore.from_settings(settings, Engram.from_settings(settings))
    kept = store.create_api_key("kept", "developer")
    gone = store.create_api_key("gone", "developer")
    record = store.engram.read_json(f"{APIKEYS_PREFIX}/{gone.id}.json")
    store.revoke(gone.id)
    store.engram.write_json(f"{APIKEYS_PREFIX}/{gone.id}.json", record)  # the record as before, revoked_at: None
    assert store.engram.read_json(f"{APIKEYS_PREFIX}/{gone.id}.json")["revoked_at"] is None
    assert gone.id in store.revoked_ids()

    states = {d["id"]: d["state"] for d in store.list(include_inactive=True)}
    assert states[gone.id] == "revoked" and states[kept.id] == "active"
    assert [d["id"] for d in store.list() if d["name"] in ("kept", "gone")] == [kept.id]
