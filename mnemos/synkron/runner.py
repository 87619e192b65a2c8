"""Executing a run: steps as CORTEX jobs in DAG order, outputs as ENGRAM refs, a cache, lineage.

``RunExecutor(client, state).run()`` drives one run to a terminal status. Steps whose upstream
steps are done start at once (independent steps run in parallel); a failed step stops new
steps from starting and the run ends ``failed`` once running steps finish; ``cancel()`` cancels
the running jobs. Completed steps keep their outputs, so a resumed run starts where it failed.

The cache: a step's key is the sha256 of its definition after interpolation (outputs and input
files replaced by their digests, ``${RUN_ID}`` kept as written unless the step uses the run id,
when the run id joins the key, scheduling fields left out),
the digests of its inputs and the name, generation and digest of the models it uses. Ref
``synkron/cache/<key>`` points at a blob naming the outputs; a step with a known key and
outputs still in ENGRAM is not run again.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import copy
import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from mnemos.errors import MnemosError, NotFoundError
from mnemos.genome.pipeline import names_in, string_leaves
from mnemos.synkron import _state
from mnemos.synkron._artifacts import copy_out, model_digest
from mnemos.synkron._interpolate import interpolate
from mnemos.synkron._jobs import job_key, submit_step
from mnemos.synkron._plan import SCHEDULING_FIELDS
from mnemos.synkron.spaces import publish
from mnemos.trace.lineage import LineageWriter, artifact_node, model_node
from mnemos.trace.metrics import SYNKRON_STEPS
from mnemos.trace.telemetry import PRINCIPAL_ATTRIBUTE, inject, join_carrier, span

__all__ = ["RunExecutor", "cache_key", "cancel_unfinished_jobs"]

CACHE_PREFIX = "synkron/cache"


class _Cancelled(Exception):
    pass


def _replace_values(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return mapping.get(value, value)
    if isinstance(value, dict):
        return {k: _replace_values(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_values(v, mapping) for v in value]
    return value


def cache_key(state: dict[str, Any], name: str, models: dict[str, dict[str, Any]],
              params: dict[str, Any] | None = None) -> str:  # fmt: skip
    """The cache key of step ``name`` given the outputs of the steps before it.

    A step whose definition uses ``${RUN_ID}`` (or names ``MNEMOS_RUN_ID``, the run id a script reads
    from its environment) may write the run id into its outputs: its key includes the run id, so it
    is never served another run's output. ``${PIPELINE}`` is interpolated into the key: the same
    pipeline name gives the same bytes. The run's principal is part of the key: a hit is one's own
    step run before, never another's (a hit told a developer that someone had run a value they
    guessed, a private text of another team's). A param named like a credential counts by a keyed
    hash of its value (``_state.fingerprint_params``): the key, stored, cannot confirm a guess of it.

    ``params``: the run's params unsealed (default: unsealed from ``state``)."""
    step = state["steps"][name]
    digests = {o: d for s in state["steps"].values() for o, d in s["digests"].items()}
    params = _state.unseal_params(state["id"], state["params"]) if params is None else params
    variables = {**_state.fingerprint_params(params), **digests, "PIPELINE": state["pipeline"]["name"]}
    doc = interpolate(step["definition"], variables, keep={"RUN_ID"})
    doc = _replace_values(doc, _input_digests(state, step, doc))
    for field in SCHEDULING_FIELDS:
        doc.pop(field, None)
    for out in doc.get("outputs") or []:
        out.pop("uri", None)
    payload = {
        "step": doc,
        "inputs": sorted(
            {state["inputs"][t]["digest"] for t in step["inputs"]}
            | {digests[n] for n in names_in(step["definition"]) if n in digests}
        ),
        "models": [[m, models[m].get("generation"), models[m].get("digest")] for m in sorted(models)],
        "principal": state.get("principal"),
    }
    if "RUN_ID" in names_in(step["definition"]) or "MNEMOS_RUN_ID" in json.dumps(step["definition"]):
        payload["run"] = state["id"]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RunExecutor:
    """Drives one run (its ``state`` dict, shared with whoever watches it) to a terminal status.

    Args:
        client: a connected ``RunContext`` or ``Client`` (``client.jobs`` submits the steps).
        state: the run's state, as ``_plan.prepare`` stored it (or a resumed one).
        on_change: called after every change of ``state`` (under no lock).
        service: the name of the actor steps report progress to.
    """

    def __init__(self, client: Any, state: dict[str, Any], *, on_change: Callable[[], None] | None = None,
                 service: str | None = None) -> None:  # fmt: skip
        self.client = client
        self.engram = client.engram
        self.state = state
        self.lock = threading.RLock()
        self._save_lock = threading.Lock()  # saves land in snapshot order
        self._on_change = on_change or (lambda: None)
        self._service = service
        self._cancel = threading.Event()
        self._handles: dict[str, Any] = {}
        self._lineage = LineageWriter(self.engram)
        self._carrier: dict[str, str] = {}  # the run span's, for the step threads' spans
        # the values the steps get: the state (shown, stored) keeps its credentials sealed
        self._params = _state.unseal_params(state["id"], state.get("params") or {})

    # -- state -----------------------------------------------------------------------------------
    def _changed(self, save: bool = True) -> None:
        if save:
            # Snapshot and write under one lock: a step thread's older snapshot must never be
            # written after a newer one (the final "succeeded" state was seen overwritten).
            with self._save_lock:
                with self.lock:
                    snapshot = copy.deepcopy(self.state)
                _state.save(self.engram, snapshot)
        self._on_change()

    def progress(self, step: str, done: int, total: int, rate: float) -> None:
        with self.lock:
            st = self.state["steps"].get(step)
            if st is None or st["status"] != "running":
                return
            st["progress"] = {"done": done, "total": total, "rate": round(rate, 2)}
        self._changed(save=False)

    def cancel(self) -> None:
        """Cancel the run: running jobs are cancelled, pending steps do not start."""
        self._cancel.set()
        with self.lock:
            handles = list(self._handles.values())
        for handle in handles:
            with contextlib.suppress(MnemosError):  # already finished
                handle.cancel()

    # -- the DAG ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        # The run's spans record its owner (a subject, never a credential): TRACE shows a developer
        # the trace of a run they started; its step jobs' spans are children of its step spans.
        state = self.state
        with span("synkron.run", carrier=join_carrier(str(state.get("trace_id") or "")), run_id=state["id"],
                  pipeline=(state.get("pipeline") or {}).get("name"),
                  attributes={PRINCIPAL_ATTRIBUTE: state.get("principal")}):  # fmt: skip
            self._carrier = inject()
            return self._drive()

    def _drive(self) -> dict[str, Any]:
        state = self.state
        with self.lock:
            state["status"] = "running"
            state["started"] = state.get("started") or time.time()
            state["finished"] = None
        self._changed()
        failed = False
        futures: dict[concurrent.futures.Future[None], str] = {}
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, len(state["order"])), thread_name_prefix="synkron-step"
        ) as pool:
            while True:
                if not failed and not self._cancel.is_set():
                    for name in self._ready():
                        with self.lock:
                            state["steps"][name]["status"] = "running"
                        futures[pool.submit(self._run_step, name)] = name
                if not futures:
                    break
                done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    name = futures.pop(future)
                    if future.exception() is not None:
                        failed = True
        if self._cancel.is_set():  # a step's job an earlier runner left in CORTEX, cancelled before it was waited for
            cancel_unfinished_jobs(self.client, state)
        with self.lock:
            statuses = [s["status"] for s in state["steps"].values()]
            error = state.get("error")
            if self._cancel.is_set():
                status = "cancelled"
            elif failed or not all(s in _state.DONE for s in statuses):
                status = "failed"
                first = next((s for s in state["steps"].values() if s["status"] == "failed"), None)
                error = f"step {first['name']!r} failed: {first['error']}" if first else "steps did not complete"
            else:
                status, error = "succeeded", None
            outputs = dict(state["outputs"])
        # The run's end is recorded in lineage before anyone can see it in its state (a watcher reads
        # the state as it changes): a run shown succeeded has its lineage final (`mnemos trace lineage`
        # showed status=pending for a moment after the run had ended).
        self._lineage.record(f"run:{state['id']}", "result", status=status, error=error, outputs=outputs)
        self._lineage.flush()
        with self.lock:
            if status == "cancelled":
                for st in state["steps"].values():
                    if st["status"] in ("pending", "running"):
                        st["status"] = "cancelled"
            state.update(status=status, error=error, finished=time.time())
        self._changed()
        return state

    def _ready(self) -> list[str]:
        with self.lock:
            steps = self.state["steps"]
            return [
                n for n in self.state["order"]
                if steps[n]["status"] == "pending" and all(steps[d]["status"] in _state.DONE for d in steps[n]["needs"])
            ]  # fmt: skip

    # -- one step --------------------------------------------------------------------------------
    def _models(self, step: dict[str, Any]) -> dict[str, dict[str, Any]]:
        ref = step["definition"].get("modelRef")
        if not ref or step["type"] not in ("infer", "index"):
            return {}
        model = self.client.registry.get("Model", ref)
        return {ref: {"name": ref, "generation": model.generation, "digest": model_digest(model, self.engram),
                      "engine": model.spec.runtime.engine}}  # fmt: skip

    def _run_step(self, name: str) -> None:
        with span("synkron.step", carrier=self._carrier, run_id=self.state["id"], step=name,
                  attributes={PRINCIPAL_ATTRIBUTE: self.state.get("principal")}):  # fmt: skip
            self._step(name)

    def _step(self, name: str) -> None:
        state = self.state
        st = state["steps"][name]
        with self.lock:
            st.update(started=time.time(), finished=None, error=None, cached=False,
                      progress={"done": 0, "total": None, "rate": None})  # fmt: skip
        self._changed()
        try:
            models = self._models(st)
            key = cache_key(state, name, models, self._params)
            with self.lock:
                st["cache_key"] = key
            hit = self._cache_lookup(key) if state.get("cache", True) else None
            job_ids: list[str] = []
            warnings: list[str] = []
            if hit is not None:
                outputs, result = hit["outputs"], hit.get("result")
                models = hit.get("models") or models
            else:
                out = self._execute(name, models)
                outputs, result, job_ids, warnings = (
                    out["outputs"],
                    out.get("result"),
                    out["job_ids"],
                    out.get("warnings") or [],
                )
                models = {**models, **(out.get("models") or {})}
                self._cache_store(key, name, outputs, result, models)
            self._finish(name, outputs, result, models, job_ids, warnings, cached=hit is not None, cache_of=hit)
        except BaseException as exc:
            message = "cancelled" if self._cancel.is_set() else _message(exc)
            status = "cancelled" if self._cancel.is_set() else "failed"
            with self.lock:
                job_ids = list(st["job_ids"])
            self._lineage.record(  # before the step is shown ended
                f"step:{state['id']}/{name}",
                "execution",
                parents=[f"run:{state['id']}"],
                step=name,
                status=status,
                error=message,
                job_ids=job_ids,
            )
            self._lineage.flush()
            with self.lock:
                st.update(status=status, error=message, finished=time.time())
            SYNKRON_STEPS.inc(status=status)
            self._changed()
            raise

    def _execute(self, name: str, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
        state = self.state
        st = state["steps"][name]
        refs = {o: _state.output_ref(state["id"], o) for s in state["steps"].values() for o in s["digests"]}
        variables = {**self._params, **refs, "RUN_ID": state["id"], "PIPELINE": state["pipeline"]["name"]}
        doc = interpolate(st["definition"], variables)
        inputs = _input_digests(state, st, doc)
        for out, ref in refs.items():
            if out in names_in(st["definition"]):
                inputs[ref] = next(s["digests"][out] for s in state["steps"].values() if out in s["digests"])
        ctx = {
            "engram": self.engram,
            "run_id": state["id"],
            "step": doc,
            "inputs": inputs,
            "outputs": list(st["outputs"]),
            "base_dir": state.get("base_dir"),
            "models": models,
            "meter": state.get("meter") or {"subject": state.get("principal")},
            "service": self._service,
            "allow_host_execution": bool(self.client.settings.synkron.allow_host_execution),
            "secrets": _secret_values(self._params),  # masked in a script's output, as secretRefs
        }
        ctx = _seal_job_context(ctx, self._params)
        if self._cancel.is_set():
            raise _Cancelled()
        handle = self._unfinished_job(st)
        if handle is None:
            job_id = ctx["job_id"] = job_key(state["id"], name, st["executions"] + 1)
            handle = submit_step(self.client, ctx, doc, job_id=job_id, parent=f"step:{state['id']}/{name}",
                                 principal=state.get("principal"))  # fmt: skip
            with self.lock:
                st["job_ids"].append(str(handle.id))
                st["executions"] += 1
        with self.lock:
            self._handles[name] = handle
        self._changed()
        if self._cancel.is_set():  # cancelled while it was submitted: cancel() saw no handle to cancel
            with contextlib.suppress(MnemosError):
                handle.cancel()
        try:
            result = handle.result(timeout=None)
        finally:
            with self.lock:
                self._handles.pop(name, None)
        if not isinstance(result, dict) or "outputs" not in result:
            raise NotFoundError(f"step {name!r}: its job returned no outputs", param="outputs")
        return {**result, "job_ids": [str(handle.id)], "doc": doc}

    def _unfinished_job(self, st: dict[str, Any]) -> Any:
        """The step's last job when it is queued, running or succeeded: a runner that stopped while
        the step ran (an actor restart, the cluster of an interrupted `mnemos run`) left it in CORTEX,
        which runs it again after a restart; waiting for it runs the step once, not twice."""
        if not st["job_ids"]:
            return None
        from mnemos.cortex.job import ACTIVE

        try:
            handle = self.client.jobs.get(st["job_ids"][-1])
            status = handle.status()
        except MnemosError:  # not in CORTEX's journal (compacted away): submit anew
            return None
        return handle if status in ACTIVE or status == "succeeded" else None

    def _finish(
        self,
        name: str,
        outputs: dict[str, str],
        result: Any,
        models: dict[str, dict[str, Any]],
        job_ids: list[str],
        warnings: list[str],
        *,
        cached: bool,
        cache_of: dict[str, Any] | None,
    ) -> None:
        state = self.state
        run_id = state["id"]
        st = state["steps"][name]
        step_node = f"step:{run_id}/{name}"
        for out, digest in outputs.items():
            self.engram.set_ref(_state.output_ref(run_id, out), digest)
        refs = {o: _state.output_ref(run_id, o) for s in state["steps"].values() for o in s["digests"]}
        refs.update({o: _state.output_ref(run_id, o) for o in outputs})
        variables = {"RUN_ID": run_id, "PIPELINE": state["pipeline"]["name"], **self._params, **refs}
        doc = interpolate(st["definition"], variables)
        for spec in doc.get("outputs") or []:
            if spec.get("uri") and spec["name"] in outputs:
                copy_out(self.engram, outputs[spec["name"]], spec["uri"], spec["name"])
        if st["type"] == "index":
            for digest in outputs.values():
                publish(self.engram, digest, run_id=run_id, step=name, owner=state.get("principal"))
        # lineage: models and inputs → step → outputs
        parents = [f"run:{run_id}"]
        for m, info in sorted(models.items()):
            node = model_node(m, info.get("generation"))
            self._lineage.record(node, "model", name=m, generation=info.get("generation"), digest=info.get("digest"))
            parents.append(node)
        digests = {o: d for s in state["steps"].values() for o, d in s["digests"].items()}
        parents += [artifact_node(state["inputs"][t]["digest"]) for t in st["inputs"]]
        parents += [artifact_node(digests[n]) for n in sorted(names_in(st["definition"])) if n in digests]
        status = "cached" if cached else "succeeded"
        # lineage first: a step shown done has its records written (the run's end waits for them too)
        self._lineage.record(step_node, "execution", parents=parents, step=name, kind=st["type"], status=status,
                             run=run_id, job_ids=job_ids, cached=cached, cache_key=st["cache_key"],
                             cache_of=self._cache_of(cache_of))  # fmt: skip
        for out, digest in outputs.items():
            size = _size(self.engram, digest)
            self._lineage.record(artifact_node(digest), "result", parents=[f"job:{j}" for j in job_ids] or [step_node],
                                 name=out, output=out, ref=refs[out], run=run_id, size=size)  # fmt: skip
        self._lineage.flush()
        with self.lock:
            st.update(status=status, digests=dict(outputs), result=result,
                      warnings=list(warnings), finished=time.time(), cached=cached)  # fmt: skip
            if st["progress"].get("total") is None and isinstance(result, dict) and "items" in result:
                st["progress"] = {"done": result["items"], "total": result["items"], "rate": result.get("items_per_s")}
        SYNKRON_STEPS.inc(status="cached" if cached else "ran")
        self._changed()

    # -- cache -----------------------------------------------------------------------------------
    def _cache_lookup(self, key: str) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.engram.get(self.engram.get_ref(f"{CACHE_PREFIX}/{key}")))
        except MnemosError:
            return None
        if not all(self.engram.has(d) for d in entry.get("outputs", {}).values()):
            return None
        return dict(entry)

    def _cache_store(self, key: str, name: str, outputs: dict[str, str], result: Any, models: dict[str, Any]) -> None:
        entry = {"outputs": outputs, "result": result, "run": self.state["id"], "step": name, "models": models,
                 "principal": self.state.get("principal"), "created": time.time()}  # fmt: skip
        self.engram.set_ref(f"{CACHE_PREFIX}/{key}", self.engram.put(json.dumps(entry, sort_keys=True).encode()))

    def _cache_of(self, hit: dict[str, Any] | None) -> str | None:
        """The run a cache hit came from, as this step's lineage records it: one of this run's owner's
        (the key holds the principal; an entry naming another owner is never shown)."""
        run, owner = (hit or {}).get("run"), (hit or {}).get("principal")
        return str(run) if run and owner == self.state.get("principal") else None


def cancel_unfinished_jobs(client: Any, state: dict[str, Any]) -> None:
    """Cancel the last job of each step of ``state`` that did not complete, where CORTEX still holds
    it queued or running (it re-queues a running one when it restarts)."""
    for st in list(state["steps"].values()):
        if st["status"] in _state.DONE or not st["job_ids"]:
            continue
        with contextlib.suppress(MnemosError):  # finished, or no longer in the journal
            client.jobs.get(st["job_ids"][-1]).cancel()


def _input_digests(state: dict[str, Any], step: dict[str, Any], doc: dict[str, Any]) -> dict[str, str]:
    """The digests of the step's inputs by the values that name them in its document ``doc`` (its
    params unsealed): the state names an input with credentials by ``_state.input_key``."""
    named: dict[str, str] = {}
    for value in string_leaves(doc):
        named.setdefault(value, value)
        named.setdefault(_state.input_key(value), value)
    return {named.get(t, t): state["inputs"][t]["digest"] for t in step["inputs"]}


def _seal_job_context(ctx: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``ctx`` with the step's document, the credential values and the inputs sealed, when the run's
    params hold credentials (``_state.holds_credentials``): CORTEX keeps a job's call (its journal in
    ENGRAM, so a backup), and the document holds their values where the step puts them in.
    ``steps.run_step`` unseals it on the worker (which has the master key, as for ``secretRef``s)."""
    if not _state.holds_credentials(params):
        return ctx
    from mnemos.soul._crypto import encrypt

    step = ctx["step"]
    opened = {"step": step, "secrets": ctx["secrets"], "inputs": ctx["inputs"]}  # inputs: by the values naming them
    sealed = encrypt(json.dumps(opened).encode(), context=job_context(ctx["run_id"], step["name"]))
    return {**ctx, "step": {"name": step["name"], "type": step.get("type")}, "secrets": [], "inputs": {},
            "sealed": base64.b64encode(sealed).decode()}  # fmt: skip


def job_context(run_id: str, step: str) -> str:
    """What a step's sealed job context is bound to (``_seal_job_context``)."""
    return f"run:{run_id}/step:{step}"


def _secret_values(params: dict[str, Any]) -> list[str]:
    """The text values of the params named like credentials (``hf_token``, ``db_password`` …, as
    lineage masks them), at any depth, and the credentials of URLs in params (``_url_credentials``);
    one of under 4 characters is no credential worth masking (it
    would mask those characters everywhere in the output)."""
    from mnemos.trace.lineage import mask_secrets

    found: list[str] = []

    def walk(value: Any, masked: Any) -> None:
        if isinstance(value, dict) and isinstance(masked, dict):
            for k, v in value.items():
                if masked.get(k) == "***" and v != "***":
                    found.extend(t for t in string_leaves(v) if len(t) >= 4)
                else:
                    walk(v, masked.get(k))
        elif isinstance(value, list) and isinstance(masked, list):
            for v, m in zip(value, masked, strict=True):  # the same list, masked
                walk(v, m)

    walk(params, mask_secrets(params))
    for text in string_leaves(params):  # a URL's credentials: its user:password and its query's values
        if _state.shown_text(text) != text:
            found.extend(t for t in _url_credentials(text) if len(t) >= 4)
    return sorted(set(found))


def _url_credentials(text: str) -> list[str]:
    """The ``user:password`` (and password) of each URL in ``text``, and a URL's query values (a
    presigned URL's signature): what a step's output must not show of a param."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    found: list[str] = []
    for url in _state.URL.findall(text):
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        userinfo = parts.netloc.rpartition("@")[0]
        if userinfo:
            found += [userinfo, unquote(userinfo), userinfo.partition(":")[2], unquote(userinfo.partition(":")[2])]
        found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
        found += [pair.partition("=")[2] for pair in parts.query.split("&")]  # as written (percent-encoded)
    return [t for t in found if t]


def _size(engram: Any, digest: str) -> int | None:
    try:
        return int(engram.size(digest))
    except (OSError, MnemosError):
        return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, _Cancelled):
        return "cancelled"
    if isinstance(exc, MnemosError):
        return exc.message[-4000:]
    return f"{type(exc).__name__}: {exc}"[-4000:]
