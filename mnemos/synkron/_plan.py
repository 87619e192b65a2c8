"""Turning a Pipeline into a run: validation, parameters, input snapshots, the first state.

This runs where the user is (the CLI, the notebook, the gateway): local input files are read
there, stored in ENGRAM by digest and recorded in lineage, so that the steps, wherever they
run, read exactly those bytes.

A caller without the verb ``execute`` (``restricted``: a developer over the gateway) reads no file
of the platform's by its parameters, and whether a file exists never changes its answer
(``check_caller_values``). Where a step reads an input file — an infer or index step's ``input``,
a python step's param ending in a ``DATA_SUFFIXES`` suffix, or one where the pipeline's defaults
give such a file (``prepare_prompts(source=${src})`` would read ``pyproject.toml`` too) — a value
the caller's parameters chose (one the defaults do not give there) must be an ENGRAM ref ``runs/<run>/<output>``:
anything else is refused (422 naming ``params.<name>``, the same body whether or not such a file
exists). The caller's other values in python params are data, passed as written and never
snapshotted; a value put into a script, or into a script step's ``env``, must be no option (see
``mnemos.synkron._interpolate`` and ``_env_option_risk``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnemos.errors import ModelAccessError, NotFoundError, PermissionDeniedError, ValidationError, redact_userinfo
from mnemos.genome import NAME_PATTERN, Pipeline, Resource, load_paths, parse_resource
from mnemos.genome.pipeline import (
    DATA_SUFFIXES,
    check_steps,
    default_outputs,
    is_relative_file,
    local_files,
    names_in,
    new_run_id,
    shell_uses,
    step_label,
    string_leaves,
)
from mnemos.synkron import _access, _state
from mnemos.synkron._infer import INDEX_PARAMS, INFER_PARAMS, normalize_params
from mnemos.synkron._interpolate import as_text, interpolate, option_like, option_risk
from mnemos.synkron._state import shown_uri
from mnemos.trace.lineage import LineageWriter, artifact_node

DEFAULT_EMBEDDING_MODEL = "minilm"
# Fields that change how a step is scheduled, not what it computes: not part of its cache key.
SCHEDULING_FIELDS = ("retries", "timeout", "queue", "resources", "needs")

Source = str | Path | Pipeline | dict[str, Any]


def load_pipeline(client: Any, source: Source) -> tuple[Pipeline, str | None, str]:
    """``(pipeline, base folder or None, source label)`` from a file, a document, or a registered name."""
    if isinstance(source, Pipeline):
        return source, None, "registry" if source.generation is not None else "object"
    if isinstance(source, dict):
        resource = parse_resource(source)
        return _only_pipeline([resource], "document"), None, "document"
    path = Path(source)
    if path.exists():
        return _only_pipeline(load_paths([path]), str(path)), str(path.resolve().parent), str(path)
    if "/" not in str(source) and not str(source).endswith((".yaml", ".yml", ".json")):
        return client.registry.get("Pipeline", str(source)), None, "registry"
    raise NotFoundError(f"{source}: no such file or directory", param="file")


def _only_pipeline(resources: list[Resource], where: str) -> Pipeline:
    pipelines = [r for r in resources if isinstance(r, Pipeline)]
    if len(pipelines) != 1:
        raise ValidationError(f"{where}: expected exactly one Pipeline, found {len(pipelines)}", param="kind")
    return pipelines[0]


def _register(client: Any, pipeline: Pipeline, label: str) -> Pipeline:
    """Apply the pipeline (a no-op when unchanged) so that runs name its generation."""
    if label == "registry":
        return pipeline
    try:
        return client.apply(pipeline, source_tag="synkron")[0].resource
    except PermissionDeniedError:  # GitOps guardrail: run it as written, with no generation
        return pipeline


def merge_params(pipeline: Pipeline, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Declared defaults updated by ``overrides``; an undeclared name is a ``ValidationError``."""
    params = dict(pipeline.spec.params)
    for key, value in (overrides or {}).items():
        if key not in params:
            declared = ", ".join(sorted(params)) or "none"
            shown = key if len(key) <= 80 else f"{key[:80]}…"  # no declared name is longer: not echoed whole
            raise ValidationError(
                f"param {shown!r} is not declared in spec.params (declared: {declared})", param=f"params.{shown}"
            )
        params[key] = _typed(key, value, params[key])
        problem = json_problem(params[key])
        if problem:
            raise ValidationError(f"param {key!r}: {problem}: give a value JSON can carry (quote a date, write each "
                                  "item out)", param=f"params.{key}")  # fmt: skip
        if _holds_nul(params[key]):
            raise ValidationError(f"param {key!r} holds a NUL character (\\x00), which no process argument, "
                                  "environment variable or file name can carry: remove it", param=f"params.{key}")
    return params


def _holds_nul(value: Any) -> bool:
    """Whether a string in ``value`` (nested in lists and mappings too, keys included) holds a NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return isinstance(value, (list, tuple)) and any(_holds_nul(v) for v in value)


def json_problem(value: Any) -> str | None:
    """What keeps ``value`` from being a JSON value, or ``None``: a type JSON has none of (a date a
    YAML text reads as ``2024-01-01``, bytes), a number that is infinite or NaN, a key that is no
    string, nesting deeper than ``MAX_JSON_DEPTH``, or a list or mapping it holds twice (a YAML alias
    ``*a``: a few hundred bytes of aliases to aliases stand for gigabytes once written out). A
    run's params are stored, shown and put into steps as JSON."""
    import math

    from mnemos._model import MAX_JSON_DEPTH

    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, (str, bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"the number {item} is not finite"
            continue
        if not isinstance(item, (list, dict)):
            return f"{str(item)[:80]!r} is a {type(item).__name__}, which JSON has no type for"
        if id(item) in seen:
            return "it holds the same list or mapping twice (a YAML alias, *name)"
        seen.add(id(item))
        if depth >= MAX_JSON_DEPTH:
            return f"it nests lists and mappings more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(item, dict):
            bad = next((k for k in item if not isinstance(k, str)), None)
            if bad is not None:
                return f"the key {str(bad)[:80]!r} is no string"
            stack.extend((v, depth + 1) for v in item.values())
        else:
            stack.extend((v, depth + 1) for v in item)
    return None


_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean (true or false)"), (int, "an integer"), (float, "a number"), (str, "a string"),
    (list, "a list"), (dict, "a mapping"),
)  # fmt: skip
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _typed(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the param's declared ``default`` (a string converts when it reads as
    one: ``-p limit=3``); another type, ``null`` included, is a ``ValidationError`` naming the param
    and the type. Only a param whose default is ``null`` takes any value."""
    want, label = next(((t, n) for t, n in _TYPE_NAMES if isinstance(default, t)), (None, ""))
    if want is None:
        return value  # a default of null (or of another type) takes any value
    if isinstance(value, str) and want is not str:
        value = _from_text(value, want)
    if want is str and isinstance(value, (bool, int, float)):  # the CLI reads `-p name=3` as the number 3
        return str(value).lower() if isinstance(value, bool) else str(value)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, want) and not (want is not bool and isinstance(value, bool)):
        return value
    raise ValidationError(
        f"param {key!r}: expected {label}, as its declared default {_shown(default)} is (got {_shown(value)})",
        param=f"params.{key}",
    )


def _shown(value: Any) -> str:
    """A param's value in an error, as JSON spells it (``true``, ``null``, ``["a"]``), at most 200 characters."""
    text = as_text(value) if not isinstance(value, str) else as_text([value])[1:-1]
    return text if len(text) <= 200 else f"{text[:200]}… ({len(text)} characters)"


def _from_text(text: str, want: type) -> Any:
    """``text`` read as ``want`` when it reads as one, else ``text`` unchanged."""
    import math

    import yaml

    try:
        if want is bool:
            return _BOOLS.get(text.strip().lower(), text)
        if want is int:
            return int(text.strip())
        if want is float:
            number = float(text.strip())
            return number if math.isfinite(number) else text
        parsed = yaml.safe_load(text)
        return parsed if isinstance(parsed, want) else text
    except (ValueError, yaml.YAMLError, RecursionError):  # RecursionError: thousands of nested [
        return text


def check_pipeline(pipeline: Pipeline, params: dict[str, Any] | None = None, *, base_dir: str | None = None,
                   inputs: bool = False) -> None:  # fmt: skip
    """The checks ``run`` makes before it starts, with no run and no cluster: params (declared, and
    of their default's type), outputs, ``needs``, ``call`` and every ``${name}`` (``mnemos validate``
    and ``apply`` make them too); with ``inputs``, also that local input files exist."""
    merged = merge_params(pipeline, params)
    _, steps = build_steps(pipeline, merged)
    variables = {**merged, "RUN_ID": "", "PIPELINE": pipeline.name}  # builtins over any param
    outputs = {o for s in steps.values() for o in s["outputs"]}
    for i, step in enumerate(pipeline.spec.steps):
        interpolate(steps[step.name]["definition"], variables, keep=outputs, where=step_label(i, step.name))
    if inputs:
        check_inputs(pipeline, steps, variables, base_dir)


def build_steps(pipeline: Pipeline, params: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Each step's effective definition (default outputs, inputs and embedding model filled in),
    once the pipeline passes the checks every write of it passed (``genome.pipeline.check_steps``)."""
    check_steps(pipeline)
    spec = pipeline.spec
    deps = spec.dependencies()
    steps: dict[str, dict[str, Any]] = {}
    outputs_of = default_outputs(pipeline)
    for i, step in enumerate(spec.steps):
        doc = step.model_dump(by_alias=True, exclude_none=True)  # timeout stays seconds
        if not step.outputs and step.type in ("infer", "index"):
            doc["outputs"] = [{"name": step.name}]
        if step.type == "infer" and not step.input:  # check_steps: exactly one upstream output
            doc["input"] = "${" + next(o for d in deps[step.name] for o in outputs_of[d]) + "}"
        if step.type == "index" and not step.model_ref:
            doc["modelRef"] = DEFAULT_EMBEDDING_MODEL
        if step.type in ("infer", "index"):
            known = INFER_PARAMS if step.type == "infer" else INDEX_PARAMS
            normalize_params(step.params, known, step_label(i, step.name))
        steps[step.name] = _state.new_step(step.name, str(step.type), deps[step.name], outputs_of[step.name], doc)
    return spec.order(), steps


MAX_ARGUMENT_BYTES = 128 * 1024 - 1
"""The longest single program argument or environment string Linux passes to a process
(``MAX_ARG_STRLEN``, 32 pages): a script step's program (``bash -c SCRIPT``) and each ``env`` value."""


def _check_arguments(definition: dict[str, Any], where: str) -> None:
    """Refuse, when the run starts, a script step that its params make too long to start: bash would
    fail on the worker with "Argument list too long" (``OSError``) after the run was accepted."""
    fields = [("script", definition.get("script") or "")]
    fields += [(f"env.{var.get('name')}", var.get("value") or "") for var in definition.get("env") or ()
               if isinstance(var, dict) and isinstance(var.get("value"), str)]  # fmt: skip
    for field, text in fields:
        size = len(str(text).encode())
        if size > MAX_ARGUMENT_BYTES:
            raise ValidationError(f"{where}.{field}: {size} bytes once the run's params are put in, more than a "
                                  f"program argument may hold ({MAX_ARGUMENT_BYTES + 1} bytes): pass large data "
                                  "as a file (an input, or an earlier step's output), not as a param",
                                  param="params")  # fmt: skip


def _input_candidates(step: dict[str, Any]) -> list[str]:
    """The values of a step that may name an input dataset or file."""
    doc = step["definition"]
    if step["type"] == "infer":
        return [doc["input"]]
    if step["type"] == "index":
        return [doc["index"]["input"]]
    return string_leaves(doc.get("params") or {}) if step["type"] == "python" else []


def _absent_file(kind: str, value: Any, base_dir: str | None) -> list[Path]:
    """The paths tried for ``value`` when it names a local input file that is not there, else ``[]``:
    an infer or index step's input, or a python step's relative ``*.jsonl``/``*.csv``… param."""
    if not isinstance(value, str) or not value or "\n" in value or "${" in value or len(value) > 4096:
        return []
    if "://" in value or value.startswith("runs/") or kind not in ("python", "infer", "index"):
        return []
    if kind == "python" and (os.path.isabs(value) or not value.endswith(DATA_SUFFIXES)):
        return []  # other strings are data, and an absolute path is read where the step runs
    tried = [Path(value)] if os.path.isabs(value) else [Path(base_dir or ".") / value, Path(value)]
    return [] if any(p.is_file() for p in tried) else tried


def check_inputs(pipeline: Pipeline, steps: dict[str, dict[str, Any]], variables: dict[str, Any],
                 base_dir: str | None, *, principal: Any = None) -> None:  # fmt: skip
    """Refuse a run whose step reads a local input file that does not exist, naming step and file
    (and, but to a ``restricted`` caller, the paths it looked for)."""
    outputs = {o for s in steps.values() for o in s["outputs"]}
    for i, spec_step in enumerate(pipeline.spec.steps):
        step = steps[spec_step.name]
        resolved = interpolate(step["definition"], variables, keep=outputs)
        if step["type"] == "script":
            _check_arguments(resolved, step_label(i, spec_step.name))
        for value in _input_candidates({**step, "definition": resolved}):
            tried = [] if value in pipeline.spec.files else _absent_file(step["type"], value, base_dir)
            if tried:
                shown = " or ".join(dict.fromkeys(_display_path(p.absolute()) for p in tried))
                where = "" if restricted(principal) else f" (looked for {shown})"
                raise NotFoundError(f"{step_label(i, spec_step.name)}: input file {value!r} does not exist{where}",
                                    param=f"spec.steps[{i}]")  # fmt: skip


def restricted(principal: Any) -> bool:
    """Whether ``principal`` is an authenticated caller without ``execute``, whose parameters are
    data only (see the module docstring)."""
    if not _access.enforced(principal):
        return False
    from mnemos.soul.rbac import can

    return not can(principal, "execute")


def check_caller_values(pipeline: Pipeline, steps: dict[str, dict[str, Any]], variables: dict[str, Any],
                        params: dict[str, Any], principal: Any) -> set[str]:  # fmt: skip
    """For a ``restricted`` caller: refuse (422 naming the param) a value of its ``params`` put into a
    script as an option (as ``${name}``, or through the step's ``env`` as ``$V``), and one that
    chose an input file that is no ENGRAM ref; refuse (404) a relative input file the pipeline
    names but was not applied with (``spec.files``): it would be read from the gateway's
    directory. Return the python params' other values, which are data (never snapshotted from
    the gateway)."""
    if not restricted(principal):
        return set()
    for name in params:
        for step in steps.values():
            env = _env_option_risk(step["definition"], name, variables)
            if env is None and not option_risk(step["definition"], name, variables.get(name)):
                continue
            written = f'-- "${env}" (the variable of its env that takes it)' if env else f"-- ${{{name}}}"
            raise ValidationError(
                f"params.{name}: a value starting with '-' would reach a script of this pipeline as an option; "
                f"pass one that does not, or ask its author to write {written} in the script (the end of "
                "options), which accepts such values (or use a key with the verb execute)",
                param=f"params.{name}",
            )
    outputs = {o for s in steps.values() for o in s["outputs"]}
    defaults = {**variables, **pipeline.spec.params}
    approved = set(pipeline.spec.files)  # the files the pipeline carries
    index = {s.name: i for i, s in enumerate(pipeline.spec.steps)}
    chosen: set[str] = set()
    for step in steps.values():
        given = _input_candidates({**step, "definition": interpolate(step["definition"], variables, keep=outputs)})
        defaulted = _input_candidates({**step, "definition": interpolate(step["definition"], defaults, keep=outputs)})
        ours = approved | set(defaulted)
        # where the pipeline's defaults give a file, whatever the caller gives instead is read as one
        pairs = zip(given, defaulted, strict=True) if len(given) == len(defaulted) else ()
        at_a_file = {g for g, d in pairs
                     if g != d and isinstance(d, str) and (d in approved or d.endswith(DATA_SUFFIXES))}  # fmt: skip
        for value in given:
            if not isinstance(value, str) or value in approved or value.startswith("runs/"):
                continue
            if value in ours:  # the pipeline's own value: a relative file of it must travel with it
                if is_relative_file(value) and (step["type"] != "python" or value.endswith(DATA_SUFFIXES)):
                    i = index[step["name"]]
                    raise NotFoundError(f"{step_label(i, step['name'])}: input file {value!r} was not applied with "
                                        "the pipeline (spec.files): its author applies it again from its folder, "
                                        "with the file beside it", param=f"spec.steps[{i}]")  # fmt: skip
                if step["type"] == "python":
                    chosen.add(value)  # data, never a file of the gateway's directory
                continue
            if step["type"] != "python" or value.endswith(DATA_SUFFIXES) or value in at_a_file:
                param = _access.param_in(value, params)
                where = f"params.{param}" if param else "params"
                raise ValidationError(
                    f"{where}: a step of this pipeline reads this value as an input file: pass an ENGRAM ref "
                    "runs/<run>/<output> (a file of the platform's needs a key with the verb execute)",
                    param=where,
                )
            chosen.add(value)
    return chosen


def _env_option_risk(definition: dict[str, Any], name: str, variables: dict[str, Any]) -> str | None:
    """The variable ``V`` of a script step's ``env`` that takes the param ``name`` and would reach
    the script as an option: its value is ``option_like`` and the script expands ``V`` (``"$V"``,
    ``$${V}``, ``${V:-x}``; ``shell_uses``) other than right after ``-- ``; else ``None``."""
    script = str(definition.get("script") or "")
    for var in definition.get("env") or [] if script else []:
        value = var.get("value")
        if not isinstance(value, str) or name not in names_in(value):
            continue
        text = str(interpolate(value, variables, keep=names_in(value)))
        if option_like(text) and not all(after for _, after in shell_uses(script, var["name"])):
            return str(var["name"])
    return None


def check_reach(client: Any, pipeline: Pipeline, steps: dict[str, dict[str, Any]], variables: dict[str, Any],
                params: dict[str, Any], *, principal: Any, claim: bool = True) -> None:  # fmt: skip
    """Refuse, before anything is stored, a caller's run that would read another's run outputs (404)
    or write a space the caller does not own (403): see ``mnemos.synkron._access``. Once every check
    passed, claim (``claim``) the new spaces the run writes (a local caller's too: with no owner)."""
    enforced = _access.enforced(principal)
    if enforced:
        _access.check_param_refs(client.engram, principal, params)
    outputs = {o for s in steps.values() for o in s["outputs"]}
    approved = pipeline.dump()
    spaces: list[tuple[str, str]] = []
    for i, spec_step in enumerate(pipeline.spec.steps):
        step = steps[spec_step.name]
        resolved = interpolate(step["definition"], variables, keep=outputs)
        if enforced:
            refs = [v for v in _input_candidates({**step, "definition": resolved}) if isinstance(v, str)]
            _access.check_input_refs(client.engram, principal, refs, params, approved)
        if step["type"] == "index":
            space, written = str(resolved["index"]["space"]), str(step["definition"]["index"]["space"])
            name = _access.param_in(space, params) if space not in written else None
            if name is None and space != written:  # a default, or an empty value (in every text): the param used
                used = [n for n in sorted(names_in(written)) if n in pipeline.spec.params]
                name = used[0] if len(used) == 1 else None
            where = f"params.{name}" if name else f"spec.steps[{i}].index.space"
            _access.check_space(client.engram, principal, space, where)
            spaces.append((space, where))
    for space, where in spaces if claim else []:
        _access.claim_space(client.engram, principal, space, where)


def check_resume(client: Any, state: dict[str, Any], principal: Any) -> None:
    """The start checks of ``check_reach`` and ``check_scheduling`` again, for ``principal`` resuming
    the run ``state``: a space taken over since it started, a run output the resumer may not read, a
    queue or pool the platform no longer declares, is refused.

    A space still unclaimed (a run prepared before spaces were claimed) is claimed only when the
    run's owner resumes it: an operator resuming another's run does not take its new spaces (its
    ``index`` step publishes them as the run's owner's)."""
    pipeline = parse_resource(state["doc"])
    if not isinstance(pipeline, Pipeline):
        raise ValidationError(f"run {state.get('id')!r} is not a pipeline run", param="run_id")
    _check_still_registered(client, state, pipeline, principal)
    merged = _state.unseal_params(str(state["id"]), dict(state.get("params") or {}))
    defaults = dict(pipeline.spec.params)
    given = {k: v for k, v in merged.items() if k not in defaults or defaults[k] != v}  # the caller's
    variables = {**merged, "RUN_ID": state["id"], "PIPELINE": pipeline.name}
    mine = state.get("principal") == getattr(principal, "subject", None)
    check_caller_values(pipeline, state["steps"], variables, given, principal)
    if getattr(client, "connected", False):  # a queue or pool an operator removed since the run started
        check_scheduling(pipeline, state["steps"], variables, client.jobs.stats(), principal=principal)
    check_reach(client, pipeline, state["steps"], variables, given, principal=principal, claim=mine)


def _check_still_registered(client: Any, state: dict[str, Any], pipeline: Pipeline, principal: Any) -> None:
    """Without the verb ``execute``, a run resumes only while its steps are still those of the
    registered pipeline: what it runs again is code an operator approved, as a new run's is (a
    Pipeline deleted or changed since, a fix of an unsafe step, is 403 naming ``pipeline``)."""
    if not restricted(principal):
        return
    try:
        steps = client.registry.get("Pipeline", pipeline.name).dump()["spec"]["steps"]
    except NotFoundError:
        steps = None
    if steps != pipeline.dump()["spec"]["steps"]:
        why = "was deleted" if steps is None else "has other steps now"
        raise PermissionDeniedError(
            f"pipeline: run {state.get('id')!r} ran pipeline {pipeline.name!r} (generation {pipeline.generation}), "
            f"which {why}: its steps are no longer registered code; start a new run of the registered pipeline",
            param="pipeline",
        )


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def applied_file(client: Any, pipeline: Pipeline, value: str) -> dict[str, Any] | None:
    """The file ``value`` names in the pipeline's ``spec.files`` (the bytes applied with it), stored
    in ENGRAM when the pipeline was loaded beside it; ``None`` when it names none."""
    digest = pipeline.spec.files.get(value)
    if digest is None:
        return None
    local = local_files(pipeline).get(digest)
    if local is not None:  # loaded beside it here: lineage names the file as a snapshot of it would
        if client.engram.put_file(local, digest=digest) != digest:
            raise ValidationError(f"{value}: the file changed since the pipeline was loaded; run it again",
                                  param="spec.files")  # fmt: skip
        value = _display_path(local.resolve())
    elif not client.engram.has(digest):
        raise NotFoundError(f"spec.files[{value!r}]: {digest} is not in ENGRAM (deleted since the pipeline was "
                            "applied?): apply the pipeline again from its file", param="spec.files")  # fmt: skip
    return {"digest": digest, "node": f"file:{value}", "path": value}


def _without_userinfo(value: Any) -> Any:
    """``value`` with every string as a run shows it (``shown_text``: the ``user:password@`` of every URL
    masked, a string that is a URL as ``shown_uri`` shows it, and in a longer text a URL whose query
    names a credential): lineage keeps them."""
    if isinstance(value, str):
        return _state.shown_text(value)
    if isinstance(value, dict):
        return {k: _without_userinfo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_userinfo(v) for v in value]
    return value


def snapshot_input(client: Any, value: str, base_dir: str | None, *, remote_ok: bool, where: str = "input",
                   param: str = "input") -> dict[str, Any] | None:  # fmt: skip
    """Store the file or dataset ``value`` names in ENGRAM; ``None`` when it names none. A URL that
    cannot be read is an error naming ``where`` (the step; ``param``, its field) and the URL as
    ``shown_uri`` shows it."""
    if not value or "\n" in value or "${" in value or len(value) > 4096:
        return None
    engram = client.engram
    if value.startswith("runs/") and value.count("/") >= 2:
        try:
            return {"digest": engram.get_ref(value), "node": None, "path": value}
        except Exception:  # noqa: BLE001 - not a ref
            return None
    if "://" in value:
        if not remote_ok or value.startswith("file://"):
            value = value[7:] if value.startswith("file://") else value
        else:
            import fsspec

            from mnemos.errors import MnemosError

            shown = shown_uri(value)
            try:
                with fsspec.open(value, "rb") as fh:
                    digest = engram.put(fh)
            except MnemosError:
                raise
            except FileNotFoundError:  # its message is the URL as given, password and all
                raise NotFoundError(f"{where}: input {shown!r} does not exist", param=param) from None
            except Exception as exc:  # noqa: BLE001 - aiohttp, botocore, gcsfs …: each its own errors
                why = redact_userinfo(str(exc).replace(value, shown))[:300]
                raise ValidationError(f"{where}: input {shown!r} could not be read ({type(exc).__name__}: {why})",
                                      param=param) from None  # fmt: skip
            return {"digest": digest, "node": f"file:{shown}", "path": shown}
    if os.path.isabs(value) and not remote_ok:
        return None  # an absolute path in python params is passed as written
    candidates = [Path(value)] if os.path.isabs(value) else [Path(base_dir or ".") / value, Path(value)]
    for path in candidates:
        if path.is_file():
            shown = _display_path(path.resolve())
            return {"digest": engram.put_file(path), "node": f"file:{shown}", "path": shown}
    return None


def prepare(
    client: Any,
    source: Source,
    params: dict[str, Any] | None = None,
    *,
    principal: Any = None,
    cache: bool = True,
) -> dict[str, Any]:
    """Validate ``source``, snapshot its inputs and store the first state of a new run.

    ``principal``: who starts it, a ``Principal`` or a subject (default ``local:<user>``); its
    limits and budgets apply to the run's model steps.
    """
    from mnemos.soul.limits import MeteredIdentity

    pipeline, base_dir, label = load_pipeline(client, source)
    identity = MeteredIdentity.of(principal or _state.principal_default())  # as its model steps are metered
    merged = merge_params(pipeline, params)
    order, steps = build_steps(pipeline, merged)
    run_id = new_run_id(pipeline.name)
    variables = {**merged, "RUN_ID": run_id, "PIPELINE": pipeline.name}
    outputs = {o for s in steps.values() for o in s["outputs"]}
    for i, step in enumerate(steps[s.name] for s in pipeline.spec.steps):
        where = step_label(i, step["name"])
        interpolate(step["definition"], variables, keep=outputs, where=where)  # raises on unknown names
        ref = step["definition"].get("modelRef")
        if ref and step["type"] in ("infer", "index"):
            ref = step["definition"]["modelRef"] = chosen_model(str(ref), variables, where, i)
            check_registered(client, ref, where, i)
            _check_model_access(client, identity, ref, where, f"spec.steps[{i}].modelRef")
    if getattr(client, "connected", False):  # the platform's queues and pools, as its CORTEX has them
        check_scheduling(pipeline, steps, variables, client.jobs.stats(), principal=principal)
    data = check_caller_values(pipeline, steps, variables, params or {}, principal)
    check_inputs(pipeline, steps, variables, base_dir, principal=principal)
    check_reach(client, pipeline, steps, variables, params or {}, principal=principal)
    writer = LineageWriter(client.engram)
    inputs: dict[str, dict[str, Any]] = {}
    index = {spec_step.name: i for i, spec_step in enumerate(pipeline.spec.steps)}
    for name in order:
        step = steps[name]
        step["inputs"] = []
        resolved = interpolate(step["definition"], variables, keep=outputs)
        for value in _input_candidates({**step, "definition": resolved}):
            if step["type"] == "python" and value in data:
                continue  # a restricted caller's data: never a file of the gateway's
            found = inputs.get(value) or applied_file(client, pipeline, value) \
                or snapshot_input(client, value, base_dir, remote_ok=step["type"] != "python",
                                  where=step_label(index[name], name), param=f"spec.steps[{index[name]}]")  # fmt: skip
            if found is None:
                continue
            inputs[value] = found
            step["inputs"].append(value)
            if found["node"]:
                writer.record(found["node"], "file", path=found["path"])
                writer.record(artifact_node(found["digest"]), "artifact", parents=[found["node"]], path=found["path"])
    inputs = {_state.input_key(t): found for t, found in inputs.items()}  # a URL's credentials never in clear
    for step in steps.values():
        step["inputs"] = [_state.input_key(t) for t in step["inputs"]]
    pipeline = _register(client, pipeline, label)  # valid, and its inputs are there: now it gets a generation
    doc = pipeline.dump()
    now = time.time()
    state: dict[str, Any] = {
        "id": run_id,
        "pipeline": {"name": pipeline.name, "generation": pipeline.generation},
        "doc": doc,
        "source": label,
        "base_dir": base_dir,
        "params": _state.seal_params(run_id, merged),  # its credentials never in clear in ENGRAM
        "principal": identity.subject,
        "meter": identity.dump(),
        "trace_id": _trace_id(),
        "cache": cache,
        "status": "pending",
        "error": None,
        "created": now,
        "started": None,
        "finished": None,
        "resumes": 0,
        "inputs": inputs,
        "order": order,
        "steps": steps,
        "outputs": {o: _state.output_ref(run_id, o) for s in order for o in steps[s]["outputs"]},
    }
    resource = f"resource:Pipeline/{pipeline.name}@{pipeline.generation if pipeline.generation is not None else '?'}"
    writer.record(resource, "resource", kind="Pipeline", name=pipeline.name, generation=pipeline.generation)
    writer.record(
        f"run:{run_id}",
        "intent",
        parents=[resource],
        pipeline=pipeline.name,
        generation=pipeline.generation,
        principal=state["principal"],
        params=_without_userinfo(merged),
        source=label,
        trace_id=state["trace_id"],
        status="pending",
    )
    _state.save(client.engram, state)
    writer.flush()
    return state


def check_scheduling(pipeline: Pipeline, steps: dict[str, dict[str, Any]], variables: dict[str, Any],
                     cluster: dict[str, Any], *, principal: Any = None) -> None:  # fmt: skip
    """Refuse (422 naming the step's ``queue`` or ``resources.<field>``), before anything runs or is
    stored, a step whose queue the running CORTEX does not declare, or whose ``resources`` no pool it
    declares offers: CORTEX refuses its job only once the steps before it have run. A queue the
    platform keeps for its own work (``INTERNAL_QUEUES``: ``wraith``) is 403 for a run of a principal
    that is no operator or admin, as ``POST /v1/jobs`` refuses it (the run's step jobs are the
    principal's).

    ``cluster``: CORTEX's ``stats()`` (``queues`` by name, ``pools`` as described), the platform's
    own, not the caller's settings. Queues and pools are settings an operator changes, so these are
    checked for each run, not when the Pipeline is applied."""
    from mnemos.cortex.admission import describe_ask
    from mnemos.cortex.http import INTERNAL_QUEUES

    queues = set(cluster.get("queues") or {})
    pools = list(cluster.get("pools") or [])
    outputs = {o for s in steps.values() for o in s["outputs"]}
    for i, spec_step in enumerate(pipeline.spec.steps):
        where = step_label(i, spec_step.name)
        resolved = interpolate(steps[spec_step.name]["definition"], variables, keep=outputs)
        queue = resolved.get("queue") or "default"
        if queues and str(queue) not in queues:  # (a `${...}` left is an output: a file's path then, no queue)
            raise ValidationError(
                f"{where}.queue: {str(queue)[:80]!r} is not declared on the platform; declared queues: "
                f"{', '.join(sorted(queues))}. Name one of them, or have an operator declare it under "
                "cortex.queues (mnemos.yaml, Helm values)",
                param=f"spec.steps[{i}].queue",
            )
        if str(queue) in INTERNAL_QUEUES and _access.enforced(principal) \
                and getattr(principal, "role", "") not in ("admin", "operator"):  # fmt: skip
            raise PermissionDeniedError(
                f"{where}.queue: {str(queue)!r} is the platform's own queue (its maintenance tasks run there): "
                "operators and admins only; run the step on another queue (default)",
                param=f"spec.steps[{i}].queue",
            )
        request = resolved.get("resources") or {}
        if not request or not isinstance(request, dict):
            continue
        unfit = {str(p.get("name")): _unfit_pool(p, request) for p in pools}
        if not pools or all(unfit.values()):
            rules = sorted({rule for rule in unfit.values() if rule})
            named = unfit.get(str(request.get("pool") or ""))  # a declared pool it names: what that one lacks
            field: str = named or ("pool" if "pool" in rules or not rules else rules[0])
            ask = describe_ask(request, f"resources.{field}")  # in CORTEX admission's words
            why = "; ".join(f"{name}: {rule}" for name, rule in sorted(unfit.items())) or "no pools are declared"
            raise ValidationError(
                f"{where}.resources.{field}: it asks for {ask[:120]}, which no pool the platform declares offers "
                f"({why}); declared pools: {', '.join(sorted(unfit)) or 'none'}. Ask for what a pool offers, or "
                "have an operator declare one under neuron.pools",
                param=f"spec.steps[{i}].resources.{field}",
            )


def _unfit_pool(pool: dict[str, Any], request: dict[str, Any]) -> str | None:
    """The field of a step's ``resources`` that the pool (as CORTEX's ``stats`` describes it) does
    not offer, by CORTEX's own rule (``mnemos.neuron.pools.unfit_reason``); ``None`` when it fits."""
    from mnemos.config import PoolConfig
    from mnemos.neuron.pools import unfit_reason

    offered = {key: pool[key] for key in ("name", "selector", "numCpus", "numGpus") if pool.get(key) is not None}
    rule = unfit_reason(PoolConfig.model_validate(offered), request)
    return rule.removeprefix("resources.") if rule else None


def chosen_model(ref: str, variables: Mapping[str, Any], where: str, index: int) -> str:
    """Step ``index``'s ``modelRef`` with the run's params put in (they may choose the model: named
    once, for the whole run); a ``ValidationError`` when what they give is not a model name."""
    if "${" not in ref:
        return ref
    ref = str(interpolate(ref, variables, where=f"{where}.modelRef"))
    if not re.fullmatch(NAME_PATTERN, ref):
        raise ValidationError(f"{where}.modelRef: {ref[:80]!r} (from the run's params) is not a model name: give "
                              "the name of a registered Model", param=f"spec.steps[{index}].modelRef")  # fmt: skip
    return ref


def check_registered(client: Any, ref: str, where: str, index: int) -> None:
    """``NotFoundError`` naming step ``index``'s ``modelRef`` when no Model ``ref`` is registered."""
    try:
        client.registry.get("Model", ref)
    except NotFoundError:
        raise NotFoundError(f"{where}.modelRef: model {ref!r} is not registered",
                            param=f"spec.steps[{index}].modelRef") from None  # fmt: skip


def _check_model_access(client: Any, identity: Any, model: str, where: str, param: str) -> None:
    """Refuse (403 naming the step's ``modelRef``), before the run starts, a model step whose model
    the run's principal may not call (its key's model list, a Policy's access rules): its step would
    fail only once the steps before it had run, and spent the caller's limits."""
    from mnemos.soul.limits import Governor
    from mnemos.synkron._models import run_async

    governor = Governor(client.engram)
    try:
        run_async(lambda: governor.check_access(identity, model))
    except ModelAccessError as exc:
        raise ModelAccessError(f"{where}.modelRef: {exc.message}", param=param) from None


def _trace_id() -> str:
    """The current OpenTelemetry trace id when there is one, else a new random one."""
    from opentelemetry import trace  # opentelemetry-api is a core dependency

    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        return f"{ctx.trace_id:032x}"
    return os.urandom(16).hex()
