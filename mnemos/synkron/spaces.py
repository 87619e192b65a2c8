"""Embedding spaces written by ``index`` steps, and semantic search over them.

Layout: ``spaces/<space>/manifest.json`` (a document, with the space's ``owner`` and ``team``) names
the space's current manifest blob (``digest``), which names the vectors (``.npy``, float32,
L2-normalized), the records (JSONL: ``{"id", "text", "fields", "source": {"artifact", "line"}}``) and
the embedding model. An item's lineage id is ``space:<space>/<item id>``.

``spaces/<space>/owner.json`` is the space's *claim*, ``{"owner", "team"}``: created once, atomically
(``Engram.create_json``), when the first run that writes the space starts
(``mnemos.synkron._access.claim_space``), so that of two runs starting into the same new space only
one owns it. ``owner`` is ``null`` for a space claimed by a local caller (a notebook): it is shared.
A claimed space that no run has written yet has no manifest: it is neither listed nor searched.

Who lists and searches a space: ``mnemos.soul.ownership.reads_space`` (``list(principal=…)``,
``get``/``search(…, principal=…)``); a space the caller may not search is "not found", exactly as
one that does not exist.
"""

from __future__ import annotations

import io
import json
import re
import threading
from typing import Any

from mnemos._actors import any_loop_handle
from mnemos.engram import Engram
from mnemos.errors import ConflictError, MnemosError, NotFoundError, UnavailableError, ValidationError
from mnemos.trace.lineage import NodeResolver, artifact_node, event

__all__ = ["LINEAGE_RESOLVERS", "SpacesAPI", "check_space_name", "claim_key", "find_record", "item_event",
           "load_manifest", "publish", "space_owner", "top_k"]  # fmt: skip

_CACHE: dict[str, Any] = {}
_RUNTIMES: dict[str, Any] = {}  # embedding models loaded in this process (search without a platform)
_CACHE_LOCK = threading.Lock()


def check_space_name(space: Any, param: str) -> None:
    """422 for a space name that is not a DNS-1123 name (``NAME_PATTERN``), the names
    ``/v1/spaces/{space}/search`` takes: ``Alice-Space``, ``alice-space.``, ``alice‐space`` (U+2010) or
    a full-width ``ａlice-space`` would be listed as look-alikes of ``alice-space``, never searched;
    ``../tokens`` would name another route of the gateway."""
    from mnemos.genome import NAME_PATTERN

    if not isinstance(space, str) or re.fullmatch(NAME_PATTERN, space, flags=re.ASCII) is None:
        shown = repr(space[:80] + "…" if isinstance(space, str) and len(space) > 80 else space)
        raise ValidationError(f"{param}: {shown} is not a valid space name: it must match {NAME_PATTERN} "
                              "(lowercase letters, digits, '-' and '.', at most 253 characters)",
                              param=param)  # fmt: skip


def claim_key(space: str) -> str:
    """The ENGRAM key of a space's claim (see the module docstring)."""
    return f"spaces/{space}/owner.json"


def _read(engram: Engram, key: str) -> dict[str, Any] | None:
    try:
        doc = engram.read_json(key)
    except (MnemosError, ValueError):  # absent, or a key no space can have, or not JSON
        return None
    return doc if isinstance(doc, dict) else None


def space_owner(engram: Engram, space: str) -> tuple[str, str | None, str]:
    """Who owns ``space``: ``(source, owner, team)``.

    ``source`` is ``manifest`` (its manifest names its owner), ``claim`` (its claim does; ``owner``
    ``None``: claimed by a local caller, shared), ``unowned`` (written before spaces had owners, never
    claimed since) or ``new`` (nothing recorded).
    """
    manifest = _read(engram, f"spaces/{space}/manifest.json")
    if manifest is not None and manifest.get("owner"):
        return "manifest", str(manifest["owner"]), str(manifest.get("team") or "")
    claim = _read(engram, claim_key(space))
    if claim is not None:
        return "claim", (str(claim["owner"]) if claim.get("owner") else None), str(claim.get("team") or "")
    return ("unowned" if manifest is not None else "new"), None, ""


def publish(engram: Engram, manifest_digest: str, *, run_id: str, step: str,
            owner: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Make the manifest blob ``manifest_digest`` the current state of its space.

    The space's ``owner`` and ``team`` are those its manifest already names, else those of its claim
    (made when the first run writing it started, ``mnemos.synkron._access.claim_space``): they stay
    when others (operators) rewrite it. ``owner`` (the run's principal) is used only for a space
    nothing claimed (a run prepared before spaces were claimed). Who may write a space is checked
    when a run starts (``mnemos.synkron._access.check_space``).
    """
    manifest = json.loads(engram.get(manifest_digest))
    source, recorded, team = space_owner(engram, manifest["space"])
    if source in ("manifest", "claim"):
        owner = recorded
    doc = {**manifest, "digest": manifest_digest, "published_by": {"run": run_id, "step": step}, "owner": owner,
           "team": team}  # fmt: skip
    engram.write_json(f"spaces/{manifest['space']}/manifest.json", doc)
    return doc


def _missing(space: str) -> NotFoundError:
    """The answer for a space that does not exist, and for one the caller may not search (the same)."""
    return NotFoundError(f"space {space!r} not found: no index step has written it", param="space")


def load_manifest(engram: Engram, space: str, principal: Any = None) -> dict[str, Any]:
    """The space's manifest; ``NotFoundError`` when there is none or ``principal`` may not search it."""
    from mnemos.soul.ownership import reads_space

    try:
        manifest = dict(engram.read_json(f"spaces/{space}/manifest.json"))
    except NotFoundError:
        raise _missing(space) from None
    if not reads_space(principal, manifest.get("owner"), manifest.get("team")):
        raise _missing(space)
    return manifest


def _cached(key: str, load: Any) -> Any:
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    value = load()
    with _CACHE_LOCK:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = value
    return value


def records(engram: Engram, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    digest = manifest["records"]
    return _cached(digest, lambda: [json.loads(line) for line in engram.get(digest).decode().splitlines() if line])  # type: ignore[no-any-return]


def vectors(engram: Engram, manifest: dict[str, Any]) -> Any:
    import numpy as np

    digest = manifest["vectors"]
    return _cached(digest, lambda: np.load(io.BytesIO(engram.get(digest)), allow_pickle=False))


def find_record(engram: Engram, manifest: dict[str, Any], item: str) -> dict[str, Any] | None:
    """The record of item ``item`` (its id) in a space, or ``None``."""
    for rec in records(engram, manifest):
        if rec.get("id") == item:
            return rec
    return None


def item_event(engram: Engram, node_id: str) -> dict[str, Any]:
    """The lineage event of an indexed item ``space:<space>/<item>``: a child of the space's index artifact."""
    space, _, item = node_id[len("space:") :].partition("/")
    try:
        manifest = engram.read_json(f"spaces/{space}/manifest.json")
    except Exception:  # noqa: BLE001 - bad key or missing space: both are "not found"
        raise NotFoundError(f"space {space!r} not found", param="space") from None
    found = find_record(engram, manifest, item)
    if found is None:
        raise NotFoundError(f"space {space!r} has no item {item!r}", param="id")
    parent = artifact_node(manifest["digest"]) if manifest.get("digest") else None
    parents = [parent] if parent else []
    owner = manifest.get("owner") or None  # the space's owner reads the item's text (TRACE: ``principal``)
    return event(node_id, "item", parents=parents, space=space, item=item, principal=owner,
                 text=str(found.get("text", ""))[:200])  # fmt: skip


LINEAGE_RESOLVERS: dict[str, NodeResolver] = {"space:": item_event}
"""Pass to ``mnemos.trace.lineage.graph(..., resolvers=...)`` so item ids resolve."""


def top_k(matrix: Any, query: Any, k: int) -> list[tuple[int, float]]:
    """Indexes and cosine scores of the ``k`` rows of ``matrix`` closest to ``query`` (both normalized)."""
    import numpy as np

    if len(matrix) == 0:
        return []
    q = np.asarray(query, dtype=np.float32)
    q = q / (np.linalg.norm(q) or 1.0)
    scores = matrix @ q
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


class SpacesAPI:
    """``client.spaces``: search the spaces ``index`` steps wrote.

    Args:
        client: the MNEMOS client (or anything with ``engram``, ``registry`` and ``connected``).
        local_models: when the space's model is not served, load it in this process to embed the
            query (a notebook's default). The gateway passes False: a search must not load a model
            into the gateway's replica; it is refused with 503 instead.
    """

    def __init__(self, client: Any, *, local_models: bool = True) -> None:
        self._client = client
        self._local_models = local_models

    def get(self, space: str, *, principal: Any = None) -> dict[str, Any]:
        """The space's manifest (``NotFoundError`` also when ``principal`` may not search it)."""
        return load_manifest(self._client.engram, space, principal)

    def search(self, space: str, query: str, k: int = 5, *, principal: Any = None) -> list[dict[str, Any]]:
        """The ``k`` items of ``space`` closest in meaning to ``query`` (cosine), best first.

        Each hit: ``{"id", "score", "text", "fields", "lineage"}``; ``lineage`` is the id to give
        ``client.lineage`` (``space:<space>/<id>``). ``principal``: who asks (the gateway's caller);
        a space they may not search is ``NotFoundError``, as one that does not exist.
        """
        return self.search_counted(space, query, k, principal=principal)[0]

    def search_counted(self, space: str, query: str, k: int = 5, *, principal: Any = None
                       ) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        """``search``'s hits and the tokens of the query the model read (what the gateway charges)."""
        check_space_name(space, "space")  # the names the gateway's route takes, in a notebook too
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query must be a non-empty string", param="query")
        if k < 1:
            raise ValidationError("k must be at least 1", param="k")
        engram = self._client.engram
        manifest = load_manifest(engram, space, principal)
        model = manifest["model"]
        digest = self._weights(model["name"]) if model.get("digest") else None
        if digest and model["digest"] != digest:  # other weights of the same width: it would rank by noise
            raise ConflictError(
                f"space {space!r} was embedded by model {model['name']!r} (generation {model.get('generation')}, "
                f"weights {model['digest'][:19]}…), and the model served as {model['name']!r} now has weights "
                f"{digest[:19]}…: its vectors would not compare; run the index step that writes the space again",
                param="space")  # fmt: skip
        vector, tokens = self._embed(model["name"], query)
        matrix, recs = vectors(engram, manifest), records(engram, manifest)
        if len(matrix) and matrix.shape[-1] != len(vector):  # the name serves another model since
            raise ConflictError(
                f"space {space!r} was embedded by model {model['name']!r} (generation {model.get('generation')}) "
                f"in {matrix.shape[-1]} dimensions, and the model served as {model['name']!r} now embeds in "
                f"{len(vector)}: run the index step that writes the space again", param="space")  # fmt: skip
        hits = []
        for i, score in top_k(matrix, vector, k):
            rec = recs[i]
            hits.append({"id": rec["id"], "score": round(score, 4), "text": rec["text"], "fields": rec["fields"],
                         "lineage": f"space:{space}/{rec['id']}"})  # fmt: skip
        return hits, tokens

    def _weights(self, model: str) -> str | None:
        """The digest of the weights the Model named ``model`` has now, as a run records them (``None``:
        not known, or no such Model: the embedding itself then says what is wrong)."""
        from mnemos.synkron._artifacts import model_digest

        try:
            return model_digest(self._client.registry.get("Model", model), self._client.engram)
        except MnemosError:
            return None

    def _embed(self, model: str, text: str) -> tuple[list[float], int]:
        """Embed the query with the space's model (and count its tokens): its deployment when
        the platform serves it, else the same model loaded in this process."""
        from mnemos.synkron._models import _app_running, app_name, run_async

        if self._client.connected and _app_running(app_name(model)):
            handle = any_loop_handle(model)

            async def call() -> Any:
                return await handle.embed_counted.remote([text])

            vectors, tokens = run_async(call)
            return vectors[0], tokens
        if not self._local_models:
            raise UnavailableError(f"model {model!r} is not served: apply it (and wait for it to be Ready) "
                                   "to search the spaces it embedded", param="model")  # fmt: skip
        return self._local_embed(model, text)

    def _local_embed(self, model: str, text: str) -> tuple[list[float], int]:
        from mnemos.synkron._models import run_async

        resource = self._client.registry.get("Model", model)
        key = f"{self._client.engram.uri}|{model}@{resource.generation}"
        runtime = _RUNTIMES.get(key)
        if runtime is None:
            from mnemos.neuron.models import build_runtime

            runtime = build_runtime(resource, self._client.engram)
            run_async(runtime.start)
            _RUNTIMES[key] = runtime
        vectors, tokens = run_async(lambda: runtime.embed_counted([text]))
        return vectors[0], tokens

    def list(self, *, principal: Any = None) -> list[dict[str, Any]]:
        """Every space (that ``principal`` lists) with its model, size, owner and the run that wrote it.

        Only written spaces: one claimed by a run that has not written it yet is not listed.
        """
        from mnemos.soul.ownership import reads_space

        engram = self._client.engram
        out = []
        for key in engram.list("spaces"):
            if not (key.endswith("/manifest.json") and key.count("/") == 2):
                continue  # claims (owner.json) and anything else under spaces/
            m = _read(engram, key)
            if m is None or not reads_space(principal, m.get("owner"), m.get("team"), metadata=True):
                continue
            out.append({"space": m.get("space") or key.split("/")[1], "count": m.get("count", 0),
                        "model": m.get("model") or {}, "run": m.get("run"), "owner": m.get("owner"),
                        "team": m.get("team") or ""})  # fmt: skip
        return out
