"""A run's state: one JSON document at ``runs/<run-id>/state.json`` in ENGRAM.

Shape (snake_case, as the HTTP API returns it)::

    {"id", "pipeline": {"name", "generation", "digest"}, "doc", "source", "base_dir", "params",
     "principal", "meter": {"subject", "team", "limits_key", "limits", "models"}, "trace_id", "cache",
     "status", "error", "created", "started", "finished",
     "resumes", "inputs": {token: {"digest", "node", "path"}}, "order": [step, ...],
     "steps": {name: {"name", "type", "needs", "outputs", "definition", "status", "job_ids",
                      "executions", "cached", "cache_key", "digests", "result", "error",
                      "started", "finished", "progress": {"done", "total", "rate"}, "warnings"}},
     "outputs": {output name: "runs/<run-id>/<output>"}}

The values of ``params`` named like credentials (``hf_token``, ``db_password`` …, the names lineage
masks, at any depth), and texts with a URL's ``user:password@`` or query (a presigned URL), are sealed
when the run is prepared (``seal_params``: ``{"$sealed": base64}``, SOUL's at-rest encryption under the
master key, bound to the run and the param's path); ``inputs`` name such a URL by ``input_key``: the
state in ENGRAM, and so a backup or the bucket, never holds them in clear. Only the runner (and a
resume's checks) unseal them (``unseal_params``), to hand them to the steps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
from collections import OrderedDict
from typing import Any

from mnemos.engram import Engram, validate_key
from mnemos.errors import NotFoundError

# How a run shows a URL's credentials is GENOME's (it refuses a Pipeline that writes some): SYNKRON's modules
# name it here.
from mnemos.genome.pipeline import URL as URL
from mnemos.genome.pipeline import shown_text as shown_text
from mnemos.genome.pipeline import shown_uri as shown_uri
from mnemos.genome.pipeline import string_leaves, url_credentials
from mnemos.trace.events import publish as announce

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
DONE = frozenset({"succeeded", "cached"})


def state_key(run_id: str) -> str:
    return f"runs/{validate_key(run_id, what='run id')}/state.json"


def output_ref(run_id: str, output: str) -> str:
    return f"runs/{run_id}/{output}"


def save(engram: Engram, state: dict[str, Any]) -> None:
    engram.write_json(state_key(state["id"]), state)
    view = event_view(state)
    with _ANNOUNCED_LOCK:  # the event names the steps that changed since this process's last one of the run
        before = _ANNOUNCED.pop(state["id"], {})
        if state["status"] not in TERMINAL:
            _ANNOUNCED[state["id"]] = view["steps"]
            while len(_ANNOUNCED) > _ANNOUNCED_RUNS:
                _ANNOUNCED.popitem(last=False)
    view["steps"] = {name: step for name, step in view["steps"].items() if before.get(name) != step}
    announce(f"run.{state['status']}", f"run:{state['id']}", owner=state.get("principal"), **view)


_ANNOUNCED: OrderedDict[str, dict[str, Any]] = OrderedDict()
"""The steps each running run's last event showed (this process's): a run of 1,000 steps sent all
of them on every step's change, and the event bus kept gigabytes of them."""
_ANNOUNCED_RUNS = 256
_ANNOUNCED_LOCK = threading.Lock()


def event_view(state: dict[str, Any]) -> dict[str, Any]:
    """A run's status and each step's status, timing, cache hit: what the console renders, and what
    a ``run.*`` event carries, less the steps that did not change since the run's previous event."""
    keep = ("status", "needs", "cached", "started", "finished", "error", "job_ids", "outputs")
    steps = {name: {k: step.get(k) for k in keep} for name, step in state["steps"].items()}
    return {"id": state["id"], "pipeline": state["pipeline"]["name"], "status": state["status"],
            "created": state.get("created"), "finished": state.get("finished"), "steps": steps,
            "outputs": state.get("outputs", {})}  # fmt: skip


SEALED = "$sealed"


def _is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(SEALED), str) and set(value) <= {SEALED, "shown"}


def seal_params(run_id: str, params: dict[str, Any], *, keep_sealed: bool = False) -> dict[str, Any]:
    """``params`` with each credential in it sealed: a value named like one (``hf_token``,
    ``db_password`` …, as lineage masks them, at any depth) as ``{"$sealed": base64}``, a text with a
    URL's ``user:password@`` or query (a presigned URL) as ``{"$sealed": base64, "shown": its shown
    form}``. SOUL's at-rest encryption under the master key, bound to ``run:<run-id>/param:<path>``:
    another run's, or another param's, sealed value does not open here. (A caller's value that looks
    sealed is sealed as it is: opened, it is that value again.) ``keep_sealed``: the params are a
    stored run's (``seal_stored``): a sealed value stays as it is, only those in clear are sealed."""
    from mnemos.soul._crypto import encrypt
    from mnemos.trace.lineage import mask_secrets

    def seal(value: Any, where: str, shown: str | None = None) -> dict[str, str]:
        blob = encrypt(json.dumps(value).encode(), context=f"run:{run_id}/param:{where}")
        marker = {SEALED: base64.b64encode(blob).decode()}
        return marker if shown is None else {**marker, "shown": shown}

    def walk(value: Any, masked: Any, where: str) -> Any:
        if _is_sealed(value):
            return value if keep_sealed else seal(value, where, "***")
        if isinstance(value, dict):
            masked = masked if isinstance(masked, dict) else {}
            out = {}
            for k, v in value.items():
                at = f"{where}.{k}" if where else str(k)
                named = masked.get(k) == "***" and v != "***" and not (keep_sealed and _is_sealed(v))
                out[k] = seal(v, at) if named else walk(v, masked.get(k), at)  # named: like a credential
            return out
        if isinstance(value, list):
            masked = masked if isinstance(masked, list) else [None] * len(value)
            return [walk(v, m, f"{where}[{i}]") for i, (v, m) in enumerate(zip(value, masked, strict=True))]
        if isinstance(value, str) and url_credentials(value):
            return seal(value, where, shown_text(value))
        return value

    return dict(walk(params, mask_secrets(params), ""))


def seal_stored(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a stored run's, changed in place) with its credentials sealed as ``prepare`` seals
    them now: a run stored before params were sealed kept them in clear, in its ``params`` and as the
    names of its URL ``inputs``. Done where such a run is written again (a resume, a runner's restart,
    a cancel): it stays sealed afterwards. A value sealed already stays as it is; a sealed one that
    does not open (another master key) is an ``IntegrityError`` before anything changes."""
    unseal_params(str(state["id"]), dict(state.get("params") or {}))
    state["params"] = seal_params(str(state["id"]), dict(state.get("params") or {}), keep_sealed=True)
    if isinstance(state.get("inputs"), dict):
        state["inputs"] = {input_key(t): found for t, found in state["inputs"].items()}
    for step in (state.get("steps") or {}).values():
        if isinstance(step.get("inputs"), list):
            step["inputs"] = [input_key(t) for t in step["inputs"]]
    return state


def shown_state(state: dict[str, Any]) -> dict[str, Any]:
    """A run's state as its readers see it (``GET /v1/runs/{id}``, ``client.pipelines``' handles,
    ``mnemos runs get``): its params as ``shown_params`` shows them and, with the defaults in
    ``doc.spec.params``, those named like credentials (``hf_token``, ``db_password`` … at any depth) as
    ``***``, as lineage records them; a URL with credentials as ``shown_uri`` (``https://***@host/x?sig=***``),
    sealed or (a run stored before sealing) not. Only the runner reads the values."""
    from mnemos.trace.lineage import mask_secrets

    def shown(value: Any) -> Any:
        if isinstance(value, str):
            return shown_text(value)
        if isinstance(value, dict):
            return {k: shown(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shown(v) for v in value]
        return value

    out = dict(state)
    if isinstance(out.get("params"), dict):
        out["params"] = shown(mask_secrets(shown_params(out["params"])))
    if isinstance(out.get("inputs"), dict):
        out["inputs"] = {input_key(t): v for t, v in out["inputs"].items()}
    if isinstance(out.get("steps"), dict):  # (a run stored before sealing named them as given)
        out["steps"] = {n: {**st, "inputs": [input_key(t) for t in st["inputs"]]}
                        if isinstance(st, dict) and isinstance(st.get("inputs"), list) else st
                        for n, st in out["steps"].items()}  # fmt: skip
    spec = (out.get("doc") or {}).get("spec") if isinstance(out.get("doc"), dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("params"), dict):
        out["doc"] = {**out["doc"], "spec": {**spec, "params": shown(mask_secrets(spec["params"]))}}
    return out


def unseal_params(run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``seal_params`` (the values a run's steps get). A credential stored in clear (a run
    prepared before params were sealed) stays as it is; a sealed one that does not open (another
    master key) is an ``IntegrityError`` naming ``MNEMOS_MASTER_KEY``."""
    from mnemos.soul._crypto import decrypt

    def walk(value: Any, where: str) -> Any:
        if _is_sealed(value):
            return json.loads(decrypt(base64.b64decode(value[SEALED]), context=f"run:{run_id}/param:{where}"))
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    return dict(walk(params, ""))


def shown_params(params: Any) -> Any:
    """``params`` as stored (sealed) with each sealed value as a reader sees it: ``***``, or a URL's
    shown form (``https://***@host/x?sig=***``)."""
    if _is_sealed(params):
        return str(params.get("shown") or "***")
    if isinstance(params, dict):
        return {k: shown_params(v) for k, v in params.items()}
    if isinstance(params, list):
        return [shown_params(v) for v in params]
    return params


def holds_credentials(params: dict[str, Any]) -> bool:
    """Whether ``params`` (unsealed) hold a value ``seal_params`` seals."""
    from mnemos.trace.lineage import mask_secrets

    return mask_secrets(params) != params or any(url_credentials(t) for t in string_leaves(params))


def input_key(token: str) -> str:
    """How a run's state names an input (``inputs`` and each step's ``inputs``): the value that named it,
    or, for a URL with credentials, its shown form and a keyed hash of it (``https://***@host/x.jsonl
    #<12 hex>``): the runner finds the value again among its step's (unsealed) values."""
    shown = shown_text(token)
    if shown == token:
        return token
    named, hashed, digits = token.rpartition("#")
    if hashed and re.fullmatch(r"[0-9a-f]{12}", digits) and shown_text(named) == named:
        return token  # a name it gave already (a state sealed before, shown again)
    return f"{shown}#{_keyed_hash(token)[:12]}"


def _keyed_hash(value: Any) -> str:
    """HMAC-SHA256 of ``value`` (as JSON) under a key derived from the master key: not a hash a guess
    of ``value`` is checked against without the key."""
    from mnemos.soul._crypto import master_key

    key = hmac.new(master_key(), b"mnemos synkron credential params", hashlib.sha256).digest()
    return hmac.new(key, json.dumps(value, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def fingerprint_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (unsealed) with each value named like a credential replaced by a keyed hash of it:
    what a step's cache key hashes, so that the key, kept in the state and the cache's ref names,
    cannot confirm a guess of the credential."""
    from mnemos.trace.lineage import mask_secrets

    def walk(value: Any, masked: Any) -> Any:
        if isinstance(value, dict) and isinstance(masked, dict):
            return {k: "hmac-sha256:" + _keyed_hash(v) if masked.get(k) == "***" and v != "***"
                    else walk(v, masked.get(k)) for k, v in value.items()}  # fmt: skip
        if isinstance(value, list) and isinstance(masked, list):
            return [walk(v, m) for v, m in zip(value, masked, strict=True)]
        return value

    return dict(walk(params, mask_secrets(params)))


def load(engram: Engram, run_id: str) -> dict[str, Any]:
    """The stored state of a run; ``NotFoundError`` naming the run when there is none."""
    try:
        return dict(engram.read_json(state_key(run_id)))
    except NotFoundError:
        raise NotFoundError(f"run {run_id!r} not found", param="run_id") from None


def list_runs(engram: Engram, pipeline: str | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
    """The most recent runs (newest first; all of them when ``limit`` is None), optionally of one pipeline
    (by its exact name)."""
    keys = [k for k in engram.list("runs") if k.endswith("/state.json") and k.count("/") == 2]
    ids = [k.split("/")[1] for k in keys]
    if pipeline:  # a run's id starts with its pipeline's name, and so do those of `<pipeline>-more`'s runs
        ids = [i for i in ids if i.startswith(pipeline + "-")]
    out = []
    for run_id in ids:
        try:
            state = load(engram, run_id)
        except NotFoundError:
            continue
        if pipeline and (state.get("pipeline") or {}).get("name") != pipeline:
            continue
        out.append(state)
    out.sort(key=lambda s: s.get("created") or 0, reverse=True)
    return out if limit is None else out[:limit]


def new_step(name: str, kind: str, needs: list[str], outputs: list[str], definition: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "needs": needs,
        "outputs": outputs,
        "definition": definition,
        "status": "pending",
        "job_ids": [],
        "executions": 0,
        "cached": False,
        "cache_key": None,
        "digests": {},
        "result": None,
        "error": None,
        "started": None,
        "finished": None,
        "progress": {"done": 0, "total": None, "rate": None},
        "warnings": [],
    }


def principal_default() -> str:
    """The principal of a local caller: ``local:<user>``."""
    try:
        user = os.getlogin()
    except OSError:
        import getpass

        user = getpass.getuser()
    return f"local:{user}"


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """The short form of a run for listings."""
    return {
        "id": state["id"],
        "pipeline": state["pipeline"]["name"],
        "status": state["status"],
        "owner": state.get("principal"),
        "created": state.get("created"),
        "steps": {n: s["status"] for n, s in state["steps"].items()},
    }
