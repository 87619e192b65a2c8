"""TRACE lineage: append-only events from intent to execution to result, in ENGRAM segments.

An event is a node of the lineage graph::

    {"id": "job:abc", "type": "execution", "ts": 1700000000.0,
     "parents": ["run:r1", "artifact:sha256:…"], "attrs": {...}}

``parents`` point upstream (what this node came from). Ids are prefixed by what they name:
``run:``, ``step:<run>/<step>``, ``job:``, ``request:``, ``artifact:sha256:…``,
``model:<name>@<gen>``, ``resource:<Kind>/<name>@<gen>``, ``file:<path>``, and nodes that the log
does not hold but a component above TRACE can describe on query (SYNKRON's indexed items,
``space:<space>/<item>``): the caller passes ``resolvers``, a prefix -> function table, so this module
knows nothing of them.

Events of one id are merged on read: parents are united, later (non-null) attributes win. ``graph()``
answers "where did this come from and what came of it": every ancestor and every descendant.

Who reads a graph is decided above TRACE: ``graph(..., reader=…)`` takes a ``LineageReader``. A
run, step, job, request or audit node has an ``owner`` (the subject that started it, or that acted);
so does an artifact that a job or run made: the owner of the nearest run, step, job or request
upstream of it (``owners``; CORTEX's check of a job's ``parents`` applies the same rule), else it is
shared (an input file, a model's weights). An indexed item (``space:``) has its space's owner
(``principal``; none for a shared space): who reaches it is for the caller to decide (whoever may
search its space), its text is read as an owned node's data. A node the reader does not see is left
out (as a root it is not found, as an id that does not exist), and one whose data the reader does
not read keeps its metadata (``METADATA``) only. One digest made by several owners is seen by a
reader who sees one of them, without the links (``ref``, ``run``) that may name another's run.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from mnemos.errors import NotFoundError

__all__ = [
    "LOG",
    "METADATA",
    "LineageIndex",
    "LineageReader",
    "LineageStore",
    "LineageWriter",
    "NodeResolver",
    "artifact_node",
    "event",
    "events",
    "graph",
    "mask_secrets",
    "model_node",
    "owner_of",
    "owners",
    "record",
    "render_tree",
    "request_event",
    "resolve",
    "secret_name",
]

LOG = "lineage"
EventType = str  # intent | execution | result | request | audit | artifact | model | file | resource
# Attribute names whose values are secrets (masked); token counts and credential ids are not.
_SECRET_NAMES = frozenset(
    {"token", "secret", "password", "passwd", "api_key", "apikey", "authorization", "bearer", "access_token",
     "refresh_token", "id_token", "client_secret", "private_key", "secret_key"}
)  # fmt: skip
_SECRET_SUFFIXES = ("_secret", "_password", "_api_key", "_apikey", "_token", "_private_key", "_secret_key",
                    "_access_key")  # fmt: skip
_SECRET_WORDS = ("secret", "password", "passwd")  # anywhere in a name: aws_secret_access_key, db_password_file
_NOT_SECRET_TOKENS = frozenset(
    {"bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token", "stop_token",
     "start_token", "end_token", "next_token", "first_token", "last_token", "max_token", "min_token"}
)  # fmt: skip
"""Names ending in ``_token`` that are a tokenizer's token or a count, not a credential (``hf_token`` is one)."""
_PREFIXES = ("run:", "job:", "request:", "step:", "artifact:", "model:", "resource:", "file:", "space:")
_OWNED = ("run:", "step:", "job:", "request:", "audit:")  # nodes with an owner of their own
_ITEMS = ("space:",)  # an indexed item: owned by its space's owner (``principal``), seen by whoever reaches it
_PARENT_ONLY = ("git:",)  # nodes only ever named as parents that an id may still name (shared: no owner)
_PRODUCED = "artifact:"  # nodes owned like the nearest producer (run, step, job, request) upstream, if any
_PRODUCER_SEARCH = 256  # upstream nodes looked at for an artifact's producer (as CORTEX's parents check)
_LINKS = ("ref", "run")  # attributes of a digest made by several owners that may name another's run
_ACTOR_KINDS = ("apikey:", "token:", "anonymous:")  # an audit actor is "<principal kind>:<subject>"
METADATA = frozenset(
    {"status", "kind", "step", "run", "pipeline", "generation", "name", "model", "model_digest", "digest", "cached",
     "cache_key", "cache_of", "bytes", "size", "output", "outputs", "ref", "result_digest", "result_inline",
     "result_bytes", "function", "queue", "priority", "labels", "attempt", "worker", "pool", "action", "resumes",
     "endpoint", "stream", "complete", "adapter", "space", "item", "path", "principal", "trace_id", "job_ids",
     "source"}
)  # fmt: skip
"""Node attributes that are metadata (status, names, digests, sizes, refs, links), shown to every reader
who sees the node. The others are data: a run's ``params`` (their names stay, with null values), an
``error`` (as ``LineageReader.shown_error`` shows it), a request's ``caller`` and ``usage``, an item's
``text``, and whatever a writer adds later."""


_GUESSABLE = frozenset({"cache_key"})
"""Metadata that is a plain hash of data (a step's cache key hashes its params): a reader who does
not read the data could confirm a guess of it against the hash, so it is withheld with the data; so
is an inline job result's ``result_digest`` (the sha256 of a small result, such as a word count)."""


class LineageStore(Protocol):
    """What lineage needs of its store: an ENGRAM (``mnemos.engram.Engram``), passed in by the caller.

    TRACE sits below ENGRAM (ENGRAM reports its metrics to TRACE), so it names the methods it uses
    instead of importing the class.
    """

    uri: str

    def append(self, log: str, records: list[dict[str, Any]]) -> str: ...
    def segments(self, log: str) -> list[str]: ...
    def read_log(self, log: str) -> Iterable[dict[str, Any]]: ...
    def read_bytes(self, key: str) -> bytes: ...
    def get_ref(self, name: str) -> str: ...


NodeResolver = Callable[[Any, str], dict[str, Any]]
"""Describes a node the log does not hold: ``(engram, node_id) -> event``; ``NotFoundError`` if none."""


class LineageReader(Protocol):
    """Who asks for a graph, as the component above TRACE decides (RELAY: SOUL's ownership rule).

    An audit node exists only for a reader who reads it; other owned nodes (runs, steps, jobs,
    requests, artifacts they made) for a reader who sees them; nodes nobody owns (input artifacts,
    models, files, resources) and items (their space's owner reads their text) for every reader.
    """

    def sees(self, owner: str | None) -> bool:
        """Whether a run, step, job, request or produced artifact of ``owner`` exists for the reader."""
        ...

    def reads(self, owner: str | None) -> bool:
        """Whether the reader reads the data of a node of ``owner`` (``None``: a node nobody owns)."""
        ...

    def shown_error(self, error: Any) -> Any:
        """An ``error`` attribute as shown to a reader who does not read it."""
        ...


def event(node_id: str, type: EventType, *, parents: Iterable[str] = (), **attrs: Any) -> dict[str, Any]:
    """Build one lineage event; attribute names that look like secrets are masked."""
    return {"id": node_id, "type": type, "ts": time.time(), "parents": list(parents), "attrs": _mask(attrs)}


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.lru_cache(maxsize=4096)
def secret_name(key: str) -> bool:
    """Whether an attribute named ``key`` holds a secret (cached: the gateway masks the same few
    names on every request)."""
    name = _CAMEL_HUMP.sub("_", key).lower().replace("-", "_")  # accessToken, hfToken: access_token, hf_token
    if not name or name in _NOT_SECRET_TOKENS:
        return False
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES) or any(w in name for w in _SECRET_WORDS)


def _mask(value: Any) -> Any:
    """``value`` with the value of every key that names a secret replaced by ``***``, at any depth."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if secret_name(str(k)):
                out[k] = "***"
            elif isinstance(v, (dict, list)):
                out[k] = _mask(v)
            else:  # most attributes: no call per value (the gateway's flusher masks two events a request)
                out[k] = v
        return out
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def mask_secrets(value: Any) -> Any:
    """``value`` (a mapping, at any depth) with what its keys name a secret (``hf_token``,
    ``db_password``, ``api_key`` …) replaced by ``***``, as lineage records it."""
    return _mask(value)


def artifact_node(digest: str) -> str:
    """``artifact:sha256:<hex>``."""
    return f"artifact:{digest}"


def model_node(name: str, generation: int | None) -> str:
    """``model:<name>@<generation>``."""
    return f"model:{name}@{generation if generation is not None else '?'}"


def request_event(
    request_id: str,
    *,
    model: str,
    generation: int | None,
    digest: str | None,
    principal: str | None,
    trace_id: str | None = None,
    with_model: bool = True,
    **attrs: Any,
) -> list[dict[str, Any]]:
    """The events a gateway request records: the model node (unless ``with_model`` is false: a
    writer that wrote it already) and the request under it."""
    model_id = model_node(model, generation)
    head = [event(model_id, "model", name=model, generation=generation, digest=digest)] if with_model else []
    return [
        *head,
        event(
            f"request:{request_id}",
            "request",
            parents=[model_id],
            principal=principal,
            model=model,
            generation=generation,
            model_digest=digest,
            trace_id=trace_id,
            **attrs,
        ),
    ]


class LineageWriter:
    """Buffers events and writes them as one ENGRAM segment per flush (group commit)."""

    def __init__(self, engram: LineageStore) -> None:
        self.engram = engram
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, node_id: str, type: EventType, *, parents: Iterable[str] = (), **attrs: Any) -> dict[str, Any]:
        ev = event(node_id, type, parents=parents, **attrs)
        with self._lock:
            self._buffer.append(ev)
        return ev

    def extend(self, evs: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            self._buffer.extend(evs)

    def flush(self) -> int:
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self.engram.append(LOG, batch)
        return len(batch)


def record(
    engram: LineageStore, node_id: str, type: EventType, *, parents: Iterable[str] = (), **attrs: Any
) -> dict[str, Any]:
    """Write one event now (its own segment)."""
    ev = event(node_id, type, parents=parents, **attrs)
    engram.append(LOG, [ev])
    return ev


def events(engram: LineageStore) -> list[dict[str, Any]]:
    """Every lineage event, in write order."""
    return list(engram.read_log(LOG))


def owner_of(node: Mapping[str, Any]) -> str | None:
    """The owner of a run, job, request or audit event (``{"id", "attrs"}``): who started it, or who
    acted (an audit ``actor`` without its ``<kind>:`` prefix, else its ``subject``); ``None`` for a
    node nobody owns. A step's owner is its run's, an artifact's that of what made it (``owners``)."""
    attrs = node.get("attrs") or {}
    if str(node.get("id", "")).startswith("audit:") or node.get("type") == "audit":
        actor = attrs.get("actor")
        if isinstance(actor, str) and actor:
            return actor.split(":", 1)[1] if actor.startswith(_ACTOR_KINDS) else actor
        who = attrs.get("subject") or attrs.get("principal")
        return str(who) if who else None
    who = attrs.get("principal")
    return str(who) if who else None


# -- the in-memory index ------------------------------------------------------------------------
class LineageIndex:
    """Nodes merged by id with parent and child edges, read incrementally from the segments."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, list[str]] = {}
        self.children: dict[str, list[str]] = {}
        self._segments: set[str] = set()

    def add(self, ev: dict[str, Any]) -> None:
        node_id = ev["id"]
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = {"id": node_id, "type": ev.get("type"), "ts": ev.get("ts"), "attrs": {}}
        attrs = node["attrs"]
        for key, value in (ev.get("attrs") or {}).items():
            if value is not None or key not in attrs:  # a later null does not erase what is known
                attrs[key] = value
        for parent in ev.get("parents") or []:
            ups = self.parents.setdefault(node_id, [])
            if parent not in ups:
                ups.append(parent)
                self.children.setdefault(parent, []).append(node_id)

    def drop(self, node_id: str) -> None:
        """Forget a node and its edges (a node derived on query, rebuilt each time)."""
        self.nodes.pop(node_id, None)
        for parent in self.parents.pop(node_id, []):
            kids = self.children.get(parent, [])
            if node_id in kids:
                kids.remove(node_id)

    def refresh(self, engram: LineageStore) -> LineageIndex:
        """Read the segments not read yet; start over when some were merged away (compaction)."""
        found = engram.segments(LOG)
        segments: list[str] = list(found)
        if not self._segments.issubset(segments):
            self._reset()
        for key in segments:
            if key in self._segments:
                continue
            try:
                batch = json.loads(engram.read_bytes(key))
            except NotFoundError:
                continue
            for ev in batch:
                self.add(ev)
            self._segments.add(key)
        return self


_INDEXES: dict[str, LineageIndex] = {}
_INDEX_LOCK = threading.RLock()  # one query at a time per process reads or grows the shared index


def _index(engram: LineageStore) -> LineageIndex:
    with _INDEX_LOCK:
        index = _INDEXES.setdefault(engram.uri, LineageIndex())
        return index.refresh(engram)


def resolve(
    engram: LineageStore,
    node_id: str,
    index: LineageIndex | None = None,
    resolvers: Mapping[str, NodeResolver] | None = None,
) -> str:
    """The node an id names: exact, ``sha256:…``, an ENGRAM ref (``runs/<run>/<output>``), a bare
    run/job/request id, or a node one of ``resolvers`` (keyed by id prefix) describes."""
    index = index or _index(engram)
    for prefix, describe in (resolvers or {}).items():
        if node_id.startswith(prefix):
            found = describe(engram, node_id)
            index.drop(node_id)  # it may have changed since the last query (a space indexed again)
            index.add(found)
            return node_id
    if node_id in index.nodes:
        return node_id
    if node_id in index.children and node_id.startswith(_PARENT_ONLY):
        return node_id  # named only as a parent (a sync's ``git:<repo>@<sha>``): shared, as nodes with no owner
    if node_id.startswith("sha256:") and f"artifact:{node_id}" in index.nodes:
        return f"artifact:{node_id}"
    for prefix in _PREFIXES:
        if prefix + node_id in index.nodes:
            return prefix + node_id
    if "/" in node_id and not node_id.startswith(_PREFIXES):
        try:
            digest = engram.get_ref(node_id)
        except Exception:  # noqa: BLE001 - not a ref: fall through to the not-found error
            digest = ""
        if digest and f"artifact:{digest}" in index.nodes:
            return f"artifact:{digest}"
    raise _not_found(node_id)


def _not_found(node_id: str) -> NotFoundError:
    return NotFoundError(f"no lineage for {node_id!r}: give a run, job, request, artifact or space item id", param="id")


def _walk(start: str, edges: dict[str, list[str]], limit: int, allow: Any = None) -> list[str]:
    seen: list[str] = []
    found = {start}
    frontier = [start]
    while frontier and len(seen) < limit:
        nxt = []
        for node in frontier:
            for other in edges.get(node, []):
                if other not in found and (allow is None or allow(other)):
                    found.add(other)
                    seen.append(other)
                    nxt.append(other)
        frontier = nxt
    return seen


_OPAQUE = ("run:", "step:", "job:", "request:")  # context stops here: other runs are not walked into


def _context(index: LineageIndex, members: set[str], downstream: list[str], limit: int, allow: Any = None) -> list[str]:
    """The other inputs of what came of the root (models, input files, artifacts) and where those
    came from, without walking into other runs, jobs or requests."""
    found: list[str] = []
    frontier = list(downstream)
    while frontier and len(found) < limit:
        nxt = []
        for node in frontier:
            for parent in index.parents.get(node, []):
                if parent not in members and (allow is None or allow(parent)):
                    members.add(parent)
                    found.append(parent)
                    if not parent.startswith(_OPAQUE):
                        nxt.append(parent)
        frontier = nxt
    return found


def graph(
    engram: LineageStore,
    node_id: str,
    *,
    limit: int = 5000,
    resolvers: Mapping[str, NodeResolver] | None = None,
    reader: LineageReader | None = None,
) -> dict[str, Any]:
    """The lineage graph of a node: it, every ancestor (upstream), every descendant (downstream),
    and the other inputs of those descendants (context: models, input files …).

    Args:
        resolvers: id prefix -> ``NodeResolver`` for nodes the log does not hold
            (``mnemos.synkron.spaces.LINEAGE_RESOLVERS`` for indexed items).
        reader: who asks (default: one who sees and reads everything). Nodes it does not see are
            left out and not walked through; a root it does not see is ``NotFoundError``, as an
            unknown id; nodes whose data it does not read keep their ``METADATA`` and list what
            was left out in ``withheld``.

    Returns ``{"root", "nodes": [{id, type, ts, attrs, owner, direction}], "edges": [{"from", "to"}]}``;
    an edge goes from a parent to the node that came from it; ``owner`` is ``None`` for a node
    nobody owns.
    """
    with _INDEX_LOCK:
        return _graph(_index(engram), engram, node_id, limit, resolvers, reader)


def owners(engram: LineageStore, node_id: str) -> tuple[str, ...]:
    """Who owns the lineage node ``node_id`` (an exact id), sorted: a run's, job's, request's or
    audit event's owner (``owner_of``), a step's run's, and for an artifact the owners of the
    nearest runs, steps, jobs or requests upstream that record one (several when one digest was made
    more than once); ``()`` for a shared node. ``NotFoundError`` if lineage does not hold it."""
    with _INDEX_LOCK:
        index = _index(engram)
        if node_id not in index.nodes:
            raise _not_found(node_id)
        return _owners(index, node_id)


def _owner(index: LineageIndex, node_id: str) -> str | None:
    """The owner of a node that has one of its own (a step: its run's, an item: its space's); ``None``
    for the others."""
    if node_id.startswith("step:"):  # a step's owner is its run's
        node_id = "run:" + node_id[len("step:") :].partition("/")[0]
    if not node_id.startswith(_OWNED + _ITEMS):
        return None
    return owner_of(index.nodes.get(node_id) or {"id": node_id})


def _owners(index: LineageIndex, node_id: str) -> tuple[str, ...]:
    """``owners`` from the index. An artifact's producer is almost always a direct parent (the job
    or step that wrote it), so this looks at a level or two of parents, not the graph."""
    if not node_id.startswith(_PRODUCED):
        owner = _owner(index, node_id)
        return (owner,) if owner else ()
    level, visited = index.parents.get(node_id, []), {node_id}
    while level and len(visited) < _PRODUCER_SEARCH:
        visited.update(level)
        found = {o for n in level if n.startswith(_OWNED) and not n.startswith("audit:") and (o := _owner(index, n))}
        if found:
            return tuple(sorted(found))
        level = list(dict.fromkeys(p for n in level for p in index.parents.get(n, []) if p not in visited))
    return ()


def _graph(
    index: LineageIndex,
    engram: LineageStore,
    node_id: str,
    limit: int,
    resolvers: Mapping[str, NodeResolver] | None,
    reader: LineageReader | None,
) -> dict[str, Any]:
    root = resolve(engram, node_id, index, resolvers)
    owners_of = functools.cache(functools.partial(_owners, index))  # for this query: the index is locked
    seen = None
    if reader is not None:

        def seen(node: str) -> bool:
            if node.startswith("audit:"):
                return reader.reads(_owner(index, node))
            if node.startswith(_OWNED):  # one without an owner too: not shared
                return reader.sees(_owner(index, node))
            if node.startswith(_ITEMS):  # who may reach a space's items is the caller's to check (its space)
                return True
            found = owners_of(node)  # an artifact a job or run made; () for a shared node
            return not found or any(reader.sees(owner) for owner in found)

        if not seen(root):  # as for an id that does not exist: nothing tells that it does
            raise _not_found(node_id)
    upstream = _walk(root, index.parents, limit, seen)
    allow = seen
    if root.startswith("run:"):  # what this run led to, not what other runs later did with the same bytes
        own = f"step:{root[len('run:') :]}/"

        def allow(node: str) -> bool:
            return (not node.startswith(("run:", "step:")) or node.startswith(own)) and (seen is None or seen(node))

    downstream = _walk(root, index.children, limit, allow)
    members = {root, *upstream, *downstream}
    context = _context(index, members, downstream, limit, seen)
    nodes = []
    directions = [(root, "root"), *((n, "upstream") for n in upstream), *((n, "downstream") for n in downstream),
                  *((n, "context") for n in context)]  # fmt: skip
    for nid, direction in directions:
        node = index.nodes.get(nid) or {"id": nid, "type": _type_of(nid), "ts": None, "attrs": {}}
        found = owners_of(nid)
        if reader is None:
            nodes.append({**node, "attrs": dict(node["attrs"]), "owner": found[0] if found else None,
                          "direction": direction})  # fmt: skip
            continue
        mine = [owner for owner in found if reader.sees(owner)] or list(found)
        shown = {**node, "attrs": dict(node["attrs"]), "owner": mine[0] if mine else None, "direction": direction}
        if not (any(reader.reads(owner) for owner in found) if found else reader.reads(None)):
            shown = _withhold(shown, reader)
        if len(mine) < len(found):  # one digest made by several owners: not the links to another's run
            shown = _unlinked(shown)
        nodes.append(shown)
    edges = [
        {"from": parent, "to": child}
        for child in sorted(members)
        for parent in index.parents.get(child, [])
        if parent in members
    ]
    return {"root": root, "nodes": nodes, "edges": edges}


def _type_of(node_id: str) -> str:
    return node_id.split(":", 1)[0] if ":" in node_id else "node"


def _unlinked(node: dict[str, Any]) -> dict[str, Any]:
    """A node without ``_LINKS`` (listed in ``withheld``): its merged attributes may be another's."""
    attrs = {k: v for k, v in node["attrs"].items() if k not in _LINKS}
    if len(attrs) == len(node["attrs"]):
        return node
    withheld = set(node.get("withheld", ())) | (node["attrs"].keys() & set(_LINKS))
    return {**node, "attrs": attrs, "withheld": sorted(withheld)}


def _withhold(node: dict[str, Any], reader: LineageReader) -> dict[str, Any]:
    """A graph node without its data: its ``METADATA`` attributes, ``params`` names with null values,
    the error as the reader is shown it; ``withheld`` names what was left out."""
    attrs: dict[str, Any] = {}
    withheld = []
    guessable = _GUESSABLE | ({"result_digest"} if node["attrs"].get("result_inline") else set())
    for key, value in node["attrs"].items():
        if key in METADATA and key not in guessable:
            attrs[key] = value
        elif key == "params" and isinstance(value, dict):
            attrs[key] = dict.fromkeys(value)
            withheld.append(key)
        elif key == "error":
            attrs[key] = reader.shown_error(value)
            if value:
                withheld.append(key)
        else:
            withheld.append(key)
    out = {**node, "attrs": attrs}
    if withheld:
        out["withheld"] = sorted(withheld)
    return out


# -- rendering ----------------------------------------------------------------------------------
_SHOWN = ("status", "output", "digest", "principal", "cached", "path", "size")


def _label(node: dict[str, Any]) -> str:
    from rich.markup import escape

    attrs = node.get("attrs") or {}
    bits = []
    for key in _SHOWN:
        value = attrs.get(key)
        if value is None or value == "" or value is False:
            continue
        if isinstance(value, str) and value.startswith("sha256:"):
            value = value[:19] + "…"
        bits.append(f"{key}={escape(str(value))}")
    nid = node["id"]
    if nid.startswith("artifact:sha256:"):
        nid = nid[:25] + "…"
    kind = node.get("type") or _type_of(node["id"])
    return f"[bold]{escape(nid)}[/bold] [dim]({escape(str(kind))})[/dim]" + (" " + " ".join(bits) if bits else "")


def render_tree(g: dict[str, Any]) -> Any:
    """A ``rich.tree.Tree`` of a lineage graph: the root, what it came from ("came from"), and what
    came of it ("led to"), each node of the latter with its other inputs (``↖``)."""
    from rich.tree import Tree

    nodes = {n["id"]: n for n in g["nodes"]}
    parents: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for edge in g["edges"]:
        parents.setdefault(edge["to"], []).append(edge["from"])
        children.setdefault(edge["from"], []).append(edge["to"])
    root = g["root"]
    top = set(children.get(root, []))  # expanded at the first level of "led to"
    shown: set[str] = {root}

    def label(node_id: str) -> str:
        return _label(nodes.get(node_id, {"id": node_id}))

    def by_time(ids: list[str]) -> list[str]:
        return sorted(ids, key=lambda n: (nodes.get(n, {}).get("ts") or 0, n))

    def add(branch: Any, node_id: str, prefix: str = "") -> Any | None:
        if node_id in shown:
            branch.add(prefix + label(node_id) + " [dim](see above)[/dim]")
            return None
        shown.add(node_id)
        return branch.add(prefix + label(node_id))

    def upward(branch: Any, node_id: str, prefix: str = "") -> None:
        for parent in by_time(parents.get(node_id, [])):
            sub = add(branch, parent, prefix)
            if sub is not None:
                upward(sub, parent, prefix)

    def downward(branch: Any, node_id: str, came_from: str) -> None:
        for parent in by_time(parents.get(node_id, [])):
            if parent != came_from and nodes.get(parent, {}).get("direction") == "context":
                sub = add(branch, parent, "↖ ")
                if sub is not None:
                    upward(sub, parent, "↖ ")
        for child in by_time(children.get(node_id, [])):
            if child in top and child not in shown:
                branch.add("→ " + label(child) + " [dim](below)[/dim]")
                continue
            sub = add(branch, child)
            if sub is not None:
                downward(sub, child, node_id)

    tree = Tree(label(root))
    if parents.get(root):
        upward(tree.add("[cyan]came from[/cyan]"), root)
    if children.get(root):
        led = tree.add("[green]led to[/green]")
        for child in by_time(children[root]):
            sub = add(led, child)
            if sub is not None:
                downward(sub, child, root)
    return tree
