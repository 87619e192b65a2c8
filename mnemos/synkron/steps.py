"""The step kinds, run as CORTEX jobs on NEURON workers: ``mnemos.synkron.steps:run_step``.

``run_step(ctx)`` gets everything a step needs in one picklable dict (built by the runner)::

    {"engram": Engram, "run_id": str, "step": {the interpolated step document},
     "inputs": {token: digest}, "outputs": [output names], "base_dir": str | None,
     "models": {name: {"name", "generation", "digest"}}, "service": "synkron" | None,
     "meter": {"subject", "team", "limits_key", "limits", "models"}}  # whose limits the model steps spend

and returns ``{"outputs": {name: digest}, "result", "items", "seconds", "warnings", "models"}``.
Outputs are written to ENGRAM here, on the worker; only digests travel back.

Kinds:
- ``python``: ``call: module:function`` with ``params`` as keyword arguments (plus ``ctx`` when the
  function takes one). Inputs (``${output}`` or a local file) arrive as local file paths. The
  function returns its output (bytes, str, a list of records → JSONL, a dict → JSON, a Path),
  or a dict ``{output name: value}``, or writes files to ``ctx.output_path(name)``.
- ``script``: ``bash -euo pipefail`` with only the declared ``env`` (and ``secretRef``s), a minimal
  ``PATH``/``HOME`` and the ``MNEMOS_*`` step variables; interpolated values are shell-quoted;
  inputs in the script are local paths, outputs are written to ``$MNEMOS_OUTPUT_<NAME>`` (or
  ``$MNEMOS_OUTPUT_DIR/<name>``). A step with ``image`` runs in that container (podman); without a
  container runtime it is refused unless ``synkron.allowHostExecution`` is true.
- ``infer`` / ``index``: see :mod:`mnemos.synkron._infer`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mnemos.engram import Engram
from mnemos.errors import ClientError, MnemosError, NotFoundError, ServerError, ValidationError

__all__ = [
    "HostExecutionRefusedError",
    "StepCancelledError",
    "StepContext",
    "StepFailedError",
    "prepare_prompts",
    "run_step",
]

logger = logging.getLogger("mnemos.synkron")
_LOG_TAIL = 4000
_WANTED_CHECK_S = 2.0
"""How often a running script checks that its run still wants it (a cancelled step's job runs on,
unheard, on its CORTEX worker: its script is stopped here)."""
_READ_CHARS = 65536
"""A script's output is read at most this much at a time (a line without an end is cut)."""


class StepFailedError(ServerError):
    """A step's own code failed (non-zero exit, exception); the message carries its output tail."""

    code = "step_failed"


class StepCancelledError(ServerError):
    """A ``python`` step stopped because its run no longer wants it (the run was cancelled)."""

    code = "step_cancelled"


class HostExecutionRefusedError(ClientError):
    """A step names an ``image`` this node cannot run, and ``synkron.allowHostExecution`` is off."""

    status = 422
    code = "host_execution_refused"


class StepContext:
    """What a ``python`` step function may ask for: ``run_id``, ``step``, ``output_path(name)``, ``engram``."""

    def __init__(self, ctx: dict[str, Any], workdir: Path) -> None:
        self.engram: Engram = ctx["engram"]
        self.run_id: str = ctx["run_id"]
        self.step: str = ctx["step"]["name"]
        self.outputs: list[str] = list(ctx["outputs"])
        self.output_dir = workdir / "outputs"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.params: dict[str, Any] = dict(ctx["step"].get("params") or {})

    def output_path(self, name: str) -> Path:
        if name not in self.outputs:
            raise NotFoundError(
                f"step {self.step!r} declares no output {name!r} (outputs: {self.outputs})", param="outputs"
            )
        return self.output_dir / name


def run_step(ctx: dict[str, Any]) -> dict[str, Any]:
    """CORTEX job entry point: run one step and store its outputs in ENGRAM."""
    started = time.monotonic()
    ctx = _unsealed(ctx)
    kind = ctx["step"].get("type")
    with tempfile.TemporaryDirectory(prefix="mnemos-step-") as tmp:
        workdir = Path(tmp)
        if kind == "python":
            out = _python_step(ctx, workdir)
        elif kind == "script":
            out = _script_step(ctx, workdir)
        elif kind in ("infer", "index"):
            from mnemos.synkron import _infer

            out = _infer.infer_step(ctx) if kind == "infer" else _infer.index_step(ctx)
        else:
            raise ValidationError(f"step {ctx['step'].get('name')!r}: unknown type {kind!r}", param="type")
    out.setdefault("warnings", [])
    out.setdefault("result", None)
    out["seconds"] = time.monotonic() - started
    return out


def _unsealed(ctx: dict[str, Any]) -> dict[str, Any]:
    """``ctx`` with its step document, credential values and inputs opened, where the runner sealed
    them (``runner._seal_job_context``: a run whose params hold credentials)."""
    if not ctx.get("sealed"):
        return ctx
    import base64

    from mnemos.soul._crypto import decrypt
    from mnemos.synkron.runner import job_context

    blob = base64.b64decode(ctx["sealed"])
    opened = json.loads(decrypt(blob, context=job_context(ctx["run_id"], ctx["step"]["name"])))
    return {**{k: v for k, v in ctx.items() if k != "sealed"}, **opened}


# -- inputs and outputs -------------------------------------------------------------------------
def _materialize(ctx: dict[str, Any], workdir: Path) -> dict[str, str]:
    """Each input token → a local file holding its bytes (verified), named by the last part of the
    token's path as a run shows it (``_state.shown_text``): a URL's ``user:password@`` and query (a
    presigned URL's signature) are no part of a file name (``/proc``, a traceback, the step's output)."""
    from mnemos.synkron._state import URL, shown_text

    engram: Engram = ctx["engram"]
    folder = workdir / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for i, (token, digest) in enumerate(sorted(ctx["inputs"].items())):
        shown = shown_text(token)
        if URL.fullmatch(shown):  # its path's last part
            shown = shown.split("#", 1)[0].split("?", 1)[0].partition("://")[2].partition("/")[2]
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", shown.rstrip("/").rsplit("/", 1)[-1])[:80] or "input"
        target = folder / f"{i}-{name}"
        engram.get_to_file(digest, target)
        paths[token] = str(target)
    return paths


def _substitute(value: Any, paths: dict[str, str]) -> Any:
    """Replace input tokens by local paths: whole values, and ENGRAM refs inside longer strings."""
    if isinstance(value, str):
        if value in paths:
            return paths[value]
        for token in sorted(paths, key=len, reverse=True):
            if token.startswith("runs/") and token in value:
                value = value.replace(token, paths[token])
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, paths) for v in value]
    return value


def _to_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Path):
        return value.read_bytes()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):  # records: compact JSONL
        return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in value).encode()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, indent=1).encode()
    raise ValidationError(f"{where}: cannot store a {type(value).__name__} as an output", param="outputs")


def _collect(ctx: dict[str, Any], outdir: Path, returned: Any) -> dict[str, Any]:
    """Store the declared outputs: files written to the output folder, else the returned value."""
    engram: Engram = ctx["engram"]
    names: list[str] = list(ctx["outputs"])
    step = ctx["step"]["name"]
    by_name: dict[str, Any] = {}
    if isinstance(returned, dict) and names and returned and set(returned) <= set(names):
        by_name = dict(returned)
        returned = None
    elif len(names) == 1 and returned is not None:
        by_name = {names[0]: returned}
        returned = None
    digests = {}
    for name in names:
        path = outdir / name
        if path.is_file():
            digests[name] = engram.put_file(path)
        elif name in by_name:
            digests[name] = engram.put(_to_bytes(by_name[name], f"step {step!r} output {name!r}"))
        else:
            raise StepFailedError(f"step {step!r} produced no output {name!r}: return it or write it to {path.name}")
    result = returned if _jsonable(returned) else repr(returned)
    return {"outputs": digests, "result": result}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return len(json.dumps(value)) < 64 * 1024
    except (TypeError, ValueError):
        return False


# -- python -------------------------------------------------------------------------------------
def _import_call(call: str, base_dir: str | None) -> Any:
    if base_dir and os.path.isdir(base_dir) and base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    module_name, _, attr = call.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise NotFoundError(f"call {call!r}: module {exc.name!r} not found on the worker", param="call") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise NotFoundError(f"call {call!r}: {module_name} has no function {attr!r}", param="call")
    return fn


def _python_step(ctx: dict[str, Any], workdir: Path) -> dict[str, Any]:
    step = ctx["step"]
    fn = _import_call(step["call"], ctx.get("base_dir"))
    params = _substitute(dict(step.get("params") or {}), _materialize(ctx, workdir))
    context = StepContext(ctx, workdir)
    try:
        accepted = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature (``builtins:dict``): no ``ctx``
        accepted = {}
    if "ctx" in accepted:
        params["ctx"] = context
    mask = _Masker(_python_secrets(ctx))
    wanted = _still_wanted(ctx)
    try:
        with _masked_output(mask), _Stopper(wanted):
            try:
                returned = fn(**params)
            except MnemosError as exc:
                if mask(exc.message) != exc.message:
                    raise StepFailedError(f"step {step['name']!r}: {mask(exc.message)}") from None
                raise
            except TypeError as exc:
                if "argument" in str(exc):
                    raise ValidationError(f"step {step['name']!r}: {step['call']} {mask(str(exc))}",
                                          param="params") from None  # fmt: skip
                _raise_masked(exc, mask, step["name"])
                raise
            except Exception as exc:
                _raise_masked(exc, mask, step["name"])
                raise
    except _Stop:
        raise StepCancelledError(f"step {step['name']!r}: stopped: the step was cancelled") from None
    if wanted is not None and not wanted():  # cancelled since the last check: nothing is stored
        raise StepCancelledError(f"step {step['name']!r}: stopped: the step was cancelled")
    out = _collect(ctx, context.output_dir, returned)
    out["result"] = _mask_value(out["result"], mask)
    return out


class _Stop(BaseException):
    """Raised in a ``python`` step's thread once its run no longer wants it (cancelled, or a later
    job runs it): a ``BaseException``, so the step's own ``except Exception`` does not swallow it."""


def _python_secrets(ctx: dict[str, Any]) -> list[str]:
    """What a python step's output, result and errors must not show: the run's credential params
    (``ctx["secrets"]``), and the values of the step's own params named like credentials."""
    from mnemos.synkron.runner import _secret_values

    return sorted({*(ctx.get("secrets") or []), *_secret_values(dict(ctx["step"].get("params") or {}))})


def _raise_masked(exc: BaseException, mask: _Masker, step: str) -> None:
    """Raise ``exc`` again as a ``StepFailedError`` with the secrets masked, when its text holds one."""
    text = f"{type(exc).__name__}: {exc}"
    if mask(text) != text:
        raise StepFailedError(f"step {step!r}: {mask(text)}") from None


def _mask_value(value: Any, mask: _Masker) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(k)) if isinstance(k, str) else k: _mask_value(v, mask) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v, mask) for v in value]
    return value


class _MaskedCapture:
    """The job's output capture, with ``mask`` applied: the end of a text without a newline that may
    hold the start of a secret is held back until the rest comes (as a script's output is read)."""

    def __init__(self, capture: Any, mask: _Masker) -> None:
        self._capture, self._mask, self._held = capture, mask, ""

    def write(self, text: str) -> None:
        text = self._mask(self._held + text)
        cut = len(text) if text.endswith("\n") else max(0, len(text) - self._mask.longest + 1)
        shown, self._held = text[:cut], text[cut:]
        if shown:
            self._capture.write(shown)

    def flush(self) -> None:
        if self._held:
            self._capture.write(self._held)
            self._held = ""


@contextlib.contextmanager
def _masked_output(mask: _Masker) -> Any:
    """What the step prints (``print``, ``sys.stdout``/``sys.stderr`` on its own thread: the job's
    log on a NEURON worker) with ``mask`` applied."""
    from mnemos.neuron.worker import _CURRENT

    capture = _CURRENT.get()
    if capture is None or not mask.pieces:
        yield
        return
    masked = _MaskedCapture(capture, mask)
    token = _CURRENT.set(masked)  # type: ignore[arg-type]
    try:
        yield
    finally:
        _CURRENT.reset(token)
        masked.flush()


def _raise_in(thread: int, exc: Any) -> None:
    """Have ``exc`` raised in ``thread`` at its next Python instruction (``None``: a pending one is dropped)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(exc) if exc else None)


class _Stopper:
    """Stops a ``python`` step's function when ``wanted()`` turns false (checked every
    ``_WANTED_CHECK_S``: the run was cancelled): ``_Stop`` is raised in the step's
    thread at its next Python instruction (a call blocked in C, a long ``time.sleep``, a read
    without a timeout, ends first), once, and never after the function has returned."""

    def __init__(self, wanted: Any) -> None:
        self._wanted = wanted
        self._thread = threading.get_ident()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._live = self._stopped = False

    def __enter__(self) -> _Stopper:
        if self._wanted is not None:
            self._live = True
            threading.Thread(target=self._watch, name="synkron-step-wanted", daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(_WANTED_CHECK_S):
            if not self._wanted():
                with self._lock:
                    if self._live:
                        self._stopped = True
                        _raise_in(self._thread, _Stop)
                return

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self._done.set()
        with self._lock:
            self._live = False
            if self._stopped:
                _raise_in(self._thread, None)  # one not raised yet is raised here, not later
        if self._stopped and not (kind is not None and issubclass(kind, _Stop)):
            raise _Stop()  # the function caught it, or returned before it was raised


# -- script -------------------------------------------------------------------------------------
def _container_runtime() -> str | None:
    """``podman`` when this node can run Ray's ``image_uri`` runtime env, else ``None``."""
    if os.environ.get("MNEMOS_SYNKRON_CONTAINERS", "auto") == "off":
        return None
    return shutil.which("podman")


_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def _script_env(ctx: dict[str, Any], outdir: Path) -> tuple[dict[str, str], list[str]]:
    """The script's whole environment: a minimal ``PATH``/``HOME``/``LANG``, the step's declared
    ``env`` (values and ``secretRef``s) and the ``MNEMOS_*`` step variables — never the
    worker's own variables (which may hold the cluster's credentials)."""
    from mnemos.synkron._interpolate import as_text

    step = ctx["step"]
    python_bin = str(Path(sys.executable).parent)
    # PYTHONUNBUFFERED: a python the script runs prints each line when it is written (into job.log)
    env = {"PATH": f"{python_bin}:{_BASE_PATH}", "HOME": str(outdir.parent), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    secrets: list[str] = []
    for var in step.get("env") or []:
        if var.get("secretRef"):
            env[var["name"]] = _secret(var["name"], var["secretRef"])
            secrets.append(env[var["name"]])
        else:  # "${n}" alone keeps the param's type: a number, a flag, a list is put in as its JSON text
            env[var["name"]] = "" if var.get("value") is None else as_text(var["value"])
    env.update({"MNEMOS_RUN_ID": ctx["run_id"], "MNEMOS_STEP": step["name"], "MNEMOS_OUTPUT_DIR": str(outdir)})
    for name in ctx["outputs"]:
        env["MNEMOS_OUTPUT_" + re.sub(r"[^A-Z0-9]", "_", name.upper())] = str(outdir / name)
    return env, secrets


def _secret(var: str, ref: dict[str, str]) -> str:
    """The value of an env var's ``secretRef`` from SOUL's secret store (never logged)."""
    from mnemos.soul.secrets import resolve_secret_ref

    try:
        return resolve_secret_ref(ref)
    except NotFoundError as exc:
        raise NotFoundError(f"env {var}: {exc.message}", param="env") from None


def _script_step(ctx: dict[str, Any], workdir: Path) -> dict[str, Any]:
    step = ctx["step"]
    outdir = workdir / "outputs"
    outdir.mkdir(parents=True, exist_ok=True)
    script = _substitute(step["script"], _materialize(ctx, workdir))
    env, secrets = _script_env(ctx, outdir)
    secrets += ctx.get("secrets") or []  # the values of the run's params named like credentials (hf_token …)
    base = ctx.get("base_dir")
    cwd = base if base and os.path.isdir(base) else str(workdir)
    warnings: list[str] = []
    image = step.get("image")
    if image and _container_runtime() is None:
        if not ctx.get("allow_host_execution"):
            raise HostExecutionRefusedError(
                f"step {step['name']!r}: image {image} cannot be used: this node has no container runtime "
                "(podman); install one, remove `image:` to run on the worker as it is, or set "
                "synkron.allowHostExecution: true (MNEMOS_SYNKRON__ALLOW_HOST_EXECUTION=true) to run such steps "
                "in the worker's environment",
                param="image",
            )
        warnings.append(
            f"image {image} not used: this cluster has no container runtime; ran in the current environment"
        )
        logger.warning("step %s: %s", step["name"], warnings[-1])
    timeout = step.get("timeout")
    if image and _container_runtime() is not None:
        code, log = _run_in_image(image, script, env, cwd, timeout, secrets, wanted=_still_wanted(ctx))
    else:
        code, log = _run_script(script, env, cwd, timeout, secrets, wanted=_still_wanted(ctx))
    if code != 0:
        raise StepFailedError(f"step {step['name']!r}: script exited with {code}:\n{log[-_LOG_TAIL:]}")
    out = _collect(ctx, outdir, None)
    out["warnings"] = warnings
    out["result"] = {"log": log[-_LOG_TAIL:]}
    return out


def _still_wanted(ctx: dict[str, Any]) -> Any:
    """Whether the step's job (``ctx["job_id"]``) is still the one its run waits for: ``False`` once
    the run's state says the step was cancelled or failed, or a later job runs it (a resume). A job
    the state does not name yet (just submitted), or a state that cannot be read, is wanted."""
    engram, run_id, job_id = ctx.get("engram"), ctx.get("run_id"), ctx.get("job_id")
    if engram is None or not run_id or not job_id:
        return None

    def wanted() -> bool:
        from mnemos.synkron import _state

        try:
            step = _state.load(engram, run_id)["steps"].get(ctx["step"].get("name")) or {}
        except Exception:  # noqa: BLE001 - no answer is no reason to stop a step
            return True
        jobs = step.get("job_ids") or []
        return job_id not in jobs or (jobs[-1] == job_id and step.get("status") not in ("cancelled", "failed"))

    return wanted


def _run_script(script: str, env: dict[str, str], cwd: str, timeout: Any, secrets: list[str] = (),  # type: ignore[assignment]
                wanted: Any = None) -> tuple[int, str]:  # fmt: skip
    """Run ``script`` with bash: its exit code and the tail of its output (stdout and stderr), with
    ``secrets`` masked. Each line is also written to this thread's stdout as it comes, which is the
    job's output on a NEURON worker: ``job.log`` lines while the step runs (``mnemos run --follow``
    and ``mnemos jobs logs -f`` show them). A timeout kills the script's whole process group, and so
    does ``wanted()`` turning false (checked every ``_WANTED_CHECK_S``: the step was cancelled)."""
    mask = _Masker(secrets)
    proc = subprocess.Popen(
        [*_guarded(), "bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
    )  # fmt: skip
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(float(timeout), expire) if timeout else None
    unwanted, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(_WANTED_CHECK_S):
            if not wanted():
                unwanted.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return

    tail = ""
    try:
        if timer is not None:
            timer.start()
        if wanted is not None:
            threading.Thread(target=watch, name="synkron-step-wanted", daemon=True).start()
        assert proc.stdout is not None
        held = ""  # the end of a line cut at _READ_CHARS that may hold the start of a secret
        for piece in iter(lambda: proc.stdout.readline(_READ_CHARS), ""):  # type: ignore[union-attr]
            text = mask(held + piece)
            cut = len(text) if text.endswith("\n") else max(0, len(text) - mask.longest + 1)
            shown, held = text[:cut], text[cut:]
            sys.stdout.write(shown)
            tail = (tail + shown)[-2 * _LOG_TAIL :]
        sys.stdout.write(held)
        tail = (tail + held)[-2 * _LOG_TAIL :]
        code = proc.wait()
    except BaseException:  # the job was cancelled (or the worker is stopping): the script stops too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        done.set()
        if timer is not None:
            timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    if expired.is_set():
        return 124, f"{tail}\ntimed out after {timeout}s"
    if unwanted.is_set():
        return 137, f"{tail}\nstopped: the step was cancelled"
    return code, tail


_GUARD = """
import ctypes, os, signal, subprocess, sys
def stop(*_):
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGTERM, stop)
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the worker dies
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):  # it died before the line above
    stop()
code = subprocess.Popen(sys.argv[2:]).wait()
sys.exit(128 - code if code < 0 else code)
"""
"""The process between a NEURON worker and a script (Linux): the head of the script's process group,
it kills the whole group when the worker dies (``kill -9``, a lost node's raylet taking it down), so no
process of a step declared failed keeps running, writing, spending. Only the standard library."""


def _guarded() -> list[str]:
    """The command prefix that runs a script under ``_GUARD`` (nothing where there is no ``prctl``)."""
    if not sys.platform.startswith("linux"):
        return []
    return [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid())]


class _Masker:
    """Masks ``secrets`` (``***``) in a line of output. A secret of several lines (a PEM key)
    cannot be seen whole in one line: each of its lines of 8 characters or more is masked on its
    own. ``longest``: the longest text masked (a line cut short keeps that much less one back)."""

    def __init__(self, secrets: list[str]) -> None:
        self.pieces = sorted({p for s in secrets if s for p in (s, *s.splitlines()) if len(p) >= 8 or p == s},
                             key=len, reverse=True)  # fmt: skip
        self.longest = len(self.pieces[0]) if self.pieces else 1

    def __call__(self, line: str) -> str:
        for piece in self.pieces:
            line = line.replace(piece, "***")
        return line


def _run_in_image(image: str, script: str, env: dict[str, str], cwd: str, timeout: Any, secrets: list[str],
                  wanted: Any = None) -> tuple[int, str]:  # fmt: skip
    """Run the script in a Ray task whose runtime env is the container ``image`` (:func:`_run_script`
    there). It stops as a script on the worker does: when the job is cancelled (the exception raised
    in this thread, which waits in short steps so that one can be) and when ``wanted()`` turns false
    (the run cancelled the step). It used to go on in its container, the run long over."""
    import ray

    task = ray.remote(num_cpus=0.25, runtime_env=_image_env(image))(_run_script_in_task)
    inside = {k: v for k, v in env.items() if k not in ("PATH", "HOME")}  # the image has its own
    ref = task.remote(script, inside, "/tmp", timeout, secrets)
    try:
        while not ray.wait([ref], timeout=_WANTED_CHECK_S)[0]:
            if wanted is not None and not wanted():
                _stop_task(ref)
                return 137, "stopped: the step was cancelled"
    except BaseException:
        _stop_task(ref)
        raise
    return ray.get(ref)  # type: ignore[no-any-return]


def _run_script_in_task(script: str, env: dict[str, str], cwd: str, timeout: Any, secrets: list[str]
                        ) -> tuple[int, str]:  # fmt: skip
    """:func:`_run_script` in a task that its cancel stops: the script runs from a thread while the
    task's own waits in one-second steps, so that the ``KeyboardInterrupt`` a cancel raises there is
    raised at once (a read of the script's output blocks in C until the script writes), and the
    script's process group is killed then."""
    unwanted = threading.Event()
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = _run_script(script, env, cwd, timeout, secrets, wanted=lambda: not unwanted.is_set())
        except BaseException as exc:  # noqa: BLE001 - raised in the task's thread below
            out["error"] = exc

    thread = threading.Thread(target=run, name="synkron-step-script", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(1.0)
    except BaseException:
        unwanted.set()
        thread.join(_WANTED_CHECK_S + 5)
        raise
    if "error" in out:
        raise out["error"]
    return out["result"]  # type: ignore[no-any-return]


def _image_env(image: str) -> dict[str, Any]:
    """The runtime env of a step's task in the container ``image`` (Ray runs it with podman)."""
    return {"image_uri": image}


_STOP_GRACE_S = 10.0


def _stop_task(ref: Any) -> None:
    """Stop a running :func:`_run_script_in_task` task: cancelled, it kills its script's process
    group; one still running ``_STOP_GRACE_S`` later is killed with its worker (in a container, the
    container)."""
    import ray

    ray.cancel(ref)
    if not ray.wait([ref], timeout=_STOP_GRACE_S)[0]:
        ray.cancel(ref, force=True)


# -- a built-in python step ---------------------------------------------------------------------
def prepare_prompts(
    source: str, *, limit: int | None = None, system: str | None = None, field: str = "prompt", ctx: Any = None
) -> list[dict[str, Any]]:
    """Read prompts (JSONL, a JSON list, or plain text lines) into ``{"id", "prompt"}`` records.

    Args:
        source: the file (a local path on the worker; pipelines pass a snapshotted input).
        limit: keep the first ``limit`` prompts.
        system: add a system message: records become ``{"id", "messages": [...], "prompt"}``.
        field: the field holding the prompt in JSON records.
        ctx: the step's context, when a pipeline runs it: then ``source`` must be a file the run
            snapshotted (an absolute path on the worker). A relative one was none — a caller's
            text, never read from the worker's directory (422 naming ``source``).
    """
    if ctx is not None and not os.path.isabs(source):
        raise ValidationError(f"source: {str(source)[:200]!r} is no input file of this run: name a file the pipeline "
                              "carries, or an ENGRAM ref runs/<run>/<output>", param="source")  # fmt: skip
    try:
        text = Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"source: not UTF-8 text (byte {exc.start}): prompts are read from JSONL, a JSON list "
                              "or lines of text", param="source") from None  # fmt: skip
    stripped = text.lstrip()
    if stripped.startswith("["):
        raw: list[Any] = _json(text, "source")
    elif stripped.startswith("{"):
        raw = [_json(line, f"source line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        raw = [line for line in text.splitlines() if line.strip()]
    records = []
    for i, item in enumerate(raw[:limit] if limit else raw):
        rec = dict(item) if isinstance(item, dict) else {field: str(item)}
        if field not in rec:
            raise ValidationError(f"{Path(source).name} record {i}: no field {field!r}", param="field")
        out = {"id": str(rec.pop("id", i)), "prompt": str(rec.pop(field)).strip(), **rec}
        if system:
            out["messages"] = [{"role": "system", "content": system}, {"role": "user", "content": out["prompt"]}]
        records.append(out)
    return records


def _json(text: str, where: str) -> Any:
    """``text`` read as JSON; else an error naming ``where`` and the problem (a 422, not a traceback)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if "\n" in text.strip() else f"column {exc.colno}"
        raise ValidationError(f"{where}: not JSON ({exc.msg} at {at})", param="source") from None
