"""The lineage node of an indexed item (``space:<space>/<item>``) carries its space's owner: the owner
(and operators, admins) read its text; another developer who reaches it (a teammate, who searches the
space) gets its metadata only, as for every other owned node."""

from __future__ import annotations

import json
from pathlib import Path

from mnemos.engram import Engram
from mnemos.relay.control import LineageReader
from mnemos.soul.identity import Principal
from mnemos.synkron.spaces import LINEAGE_RESOLVERS
from mnemos.trace.lineage import graph

TEXT = "ALICE-PRIVATE notes on photosynthesis"
ALICE = Principal("alice", "developer", "apikey", team="red")
RUBY = Principal("ruby", "developer", "apikey", team="red")  # her teammate
BOB, OPERATOR = Principal("bob", "developer", "apikey"), Principal("olga", "operator", "apikey")


def _space(engram: Engram, space: str, owner: str | None, team: str = "") -> None:
    """A space as an index step publishes it: its manifest names its records, its owner and team."""
    records = engram.put(json.dumps({"id": "item-1", "text": TEXT}).encode() + b"\n")
    manifest = {"space": space, "count": 1, "model": {"name": "minilm"}, "run": "r", "records": records}
    digest = engram.put(json.dumps(manifest).encode())
    engram.write_json(f"spaces/{space}/manifest.json", {**manifest, "digest": digest, "owner": owner, "team": team})


def _item(engram: Engram, space: str, who: Principal) -> dict:
    g = graph(engram, f"space:{space}/item-1", resolvers=LINEAGE_RESOLVERS, reader=LineageReader(who))
    return next(n for n in g["nodes"] if n["id"] == g["root"])


def test_the_spaces_owner_reads_its_items_text_and_another_developer_does_not(tmp_path: Path) -> None:
    engram = Engram(str(tmp_path / "engram"))
    _space(engram, "alice-space", "alice", "red")
    for reader in (ALICE, OPERATOR, None):  # the owner; operators and admins read every data
        node = _item(engram, "alice-space", reader)
        assert node["attrs"]["text"] == TEXT and node["owner"] == "alice", node
        assert "withheld" not in node
    for other in (RUBY, BOB):  # her teammate searches the space (RELAY lets him reach it); neither reads it
        node = _item(engram, "alice-space", other)
        assert "text" not in node["attrs"] and node["withheld"] == ["text"], node
        assert node["attrs"]["item"] == "item-1" and node["owner"] == "alice"

    _space(engram, "shared-space", None)  # written by a local caller: nobody's, its text is not a developer's
    assert "text" not in _item(engram, "shared-space", ALICE)["attrs"]
    assert _item(engram, "shared-space", OPERATOR)["attrs"]["text"] == TEXT
