"""``synkron.mnemos.dev/v1`` Pipeline: a DAG of steps run by SYNKRON.

A step's kind follows from its fields, so the seed's pipeline loads as written:

- ``script`` (+ ``image``, ``env``)          → a shell script on a NEURON worker
- ``call: module:function`` (+ ``params``)    → a Python function
- ``runtime`` + ``modelRef`` (+ ``params``)   → batch inference through the model's deployment
- ``index`` (+ ``modelRef`` of an embedding) → embed texts into an ENGRAM space
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import posixpath
import re
import secrets
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from mnemos._model import CoreModel, PositiveDuration, format_duration
from mnemos.errors import ValidationError
from mnemos.genome._base import ObjectMeta, Resource
from mnemos.genome._credentials import (
    URL,
    clear_reference,
    credential_default,
    shown_text,
    shown_uri,
    step_credential,
    string_leaves,
    url_credentials,
)
from mnemos.genome._shell import (
    VARIABLE,
    after_end_of_options,
    arithmetic_uses,
    shell_uses,
    text_in_arithmetic,
    unquoted_uses,
    where_evaluated,
)

__all__ = [
    "BUILTINS",
    "DATA_SUFFIXES",
    "GENERATION_PARAMS",
    "MAX_NAME",
    "MAX_RUN_ID",
    "MAX_SCRIPT",
    "MAX_STEP_TIMEOUT_S",
    "PARAM_ALIASES",
    "STEP_PARAMS",
    "URL",
    "VARIABLE",
    "EnvVar",
    "IndexSpec",
    "Output",
    "Pipeline",
    "PipelineMeta",
    "PipelineSpec",
    "Step",
    "StepType",
    "after_end_of_options",
    "arithmetic_uses",
    "check_steps",
    "default_outputs",
    "is_folder_file",
    "is_relative_file",
    "local_files",
    "with_local_files",
    "names_in",
    "new_run_id",
    "step_label",
    "shell_uses",
    "shown_text",
    "shown_uri",
    "string_leaves",
    "text_in_arithmetic",
    "unquoted_uses",
    "url_credentials",
    "where_evaluated",
]

StepType = Literal["script", "python", "infer", "index"]

# A step's vocabulary, which SYNKRON (a higher layer) runs by. CORTEX's job timeout limit is the one
# value restated here (GENOME may not import CORTEX): tests/genome/test_pipeline_checks.py keeps it equal.
BUILTINS = ("RUN_ID", "PIPELINE")
"""Variables every step may use besides params and outputs."""
GENERATION_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed")
"""The sampling ``params`` of an infer step (``mnemos.synkron._infer`` hands them to the model)."""
STEP_PARAMS: dict[str, tuple[str, ...]] = {
    "infer": (*GENERATION_PARAMS, "concurrency", "ready_timeout"),
    "index": ("batch_size", "concurrency", "ready_timeout"),
}
"""The ``params`` a model step takes."""
PARAM_ALIASES = {"maxTokens": "max_tokens", "topP": "top_p", "readyTimeout": "ready_timeout", "batchSize": "batch_size"}
"""camelCase spellings of those params."""
MAX_STEP_TIMEOUT_S = 30 * 86400.0
"""The longest ``timeout`` a step may ask for: a step is a CORTEX job, and one attempt of a job may
run at most ``mnemos.cortex.job.MAX_JOB_TIMEOUT_S``."""


class EnvVar(CoreModel):
    name: str
    value: str | None = None
    secret_ref: dict[str, str] | None = Field(None, description="{name, key} resolved through SOUL.")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")


def _check_name(value: str) -> str:
    """A step's or an output's name: what ``${name}`` may name, and one segment of an ENGRAM key."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a name: use letters, digits, '_', '.' and '-', starting "
                         "with a letter or '_', at most 63 characters (it is a ${name} and part of keys)")  # fmt: skip
    return value


class Output(CoreModel):
    name: str

    _name = field_validator("name")(_check_name)
    uri: str | None = Field(None, description="Where to also copy the output; it is always an ENGRAM ref.")


class IndexSpec(CoreModel):
    space: str = Field(description="ENGRAM space to write the embeddings into.")
    input: str = Field(description="JSONL ref or path; usually ${<output>} of an earlier step.")
    text_field: str = Field("text", description="Field of each record to embed.")


MAX_SCRIPT = 64 * 1024
"""The most characters a step's ``script`` may have: every script is read through (``check_steps``)
on each write and run, and a longer program belongs in a Python step (``call: module:function``)."""


class StepResources(CoreModel):
    """What a step's job needs from the CORTEX pool that runs it, as a job's ``resources`` say it."""

    cpus: float = Field(0.0, ge=0, description="CPUs a pool's worker must have.")
    gpus: float = Field(0.0, ge=0, description="GPUs a pool's worker must have; 0: any pool (GPU pools first).")
    pool: str | None = Field(None, description="Run only on this pool (cortex.pools).")
    selector: dict[str, str] = Field(default_factory=dict, description="Labels the pool's selector must carry.")


class Step(CoreModel):
    name: str
    type: StepType | None = Field(None, description="Inferred from the fields when not given.")
    needs: list[str] | None = Field(None, description="Steps this one waits for; default: the previous step.")
    image: str | None = None
    script: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    call: str | None = Field(None, description="module:function for python steps.")
    runtime: str | None = None
    model_ref: str | None = None
    input: str | None = Field(None, description="Input dataset (JSONL) for infer steps.")
    index: IndexSpec | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    outputs: list[Output] = Field(default_factory=list)
    retries: int = Field(0, ge=0, le=19, description="Attempts after the first (a CORTEX job makes at most 20).")
    timeout: PositiveDuration | None = Field(None, description="Seconds one attempt may run (30s, 5m); above 0.")
    queue: str = "default"
    resources: StepResources | None = Field(None, description="{cpus, gpus, pool, selector} for the step's job.")

    _name = field_validator("name")(_check_name)

    @field_validator("script")
    @classmethod
    def _short_script(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_SCRIPT:
            raise ValueError(
                f"the script has {len(value)} characters, more than a step's script may have ({MAX_SCRIPT}): "
                "move the program into a Python step (call: module:function) or split it across steps"
            )
        return value

    @model_validator(mode="after")
    def _infer_type(self) -> Step:
        for field, value in (("call", self.call), ("image", self.image)):
            if value is not None and "${" in value:
                raise ValueError(
                    f"step {self.name!r}: {field} may not use ${{…}} variables: a run's parameters choose data, "
                    "never the code or image that runs"
                )
        inferred: list[StepType] = []
        if self.script is not None:
            inferred.append("script")
        if self.call is not None:
            inferred.append("python")
        if self.index is not None:
            inferred.append("index")
        elif self.model_ref is not None or self.runtime is not None:
            inferred.append("infer")
        if self.type is None:
            if len(inferred) != 1:
                raise ValueError(
                    f"step {self.name!r} needs exactly one of: script, call, index, or runtime+modelRef"
                    + (f" (found {', '.join(inferred)})" if inferred else "")
                )
            object.__setattr__(self, "type", inferred[0])
        if self.type == "infer" and self.model_ref is None:
            raise ValueError(f"step {self.name!r}: an infer step needs modelRef")
        return self


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_FILES = 100
MAX_STEPS = 1000
"""The most steps of one pipeline: each write and each run checks every step against its ancestors."""


def _refuse_file(path: str, message: str) -> NoReturn:
    """Refuse ``spec.files`` with an error at ``spec.files.<path>`` (a validator's own errors name ``spec.files``)."""
    error = PydanticCustomError("value_error", "{error}", {"error": message})
    raise PydanticValidationError.from_exception_data("files", [{"type": error, "loc": (path[:200],), "input": path}])


class PipelineSpec(CoreModel):
    params: dict[str, Any] = Field(default_factory=dict, description="Defaults for ${param} interpolation.")
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    files: dict[str, str] = Field(
        default_factory=dict,
        description="The local files its steps read, by the relative path they name → the ENGRAM digest of their "
        "bytes; filled in when the pipeline is applied from its file (see with_local_files).",
    )

    @field_validator("files")
    @classmethod
    def _check_files(cls, files: dict[str, str]) -> dict[str, str]:
        if len(files) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} files (got {len(files)}): put a folder's data in one file")
        for path, digest in files.items():
            if not is_folder_file(path):
                _refuse_file(path, "not a file of the pipeline's folder: write a relative path inside it, "
                             "normalized, with forward slashes (data/x.jsonl; no '/…', '..', './', '\\', URL, "
                             "runs/ ref or ${…})")  # fmt: skip
            if not _DIGEST.fullmatch(digest):
                _refuse_file(path, f"{digest[:80]!r} is not a digest: write sha256:<64 lowercase hex digits>, "
                             "the sha256 of its bytes, as loading the pipeline from its file writes it")  # fmt: skip
        return files

    @model_validator(mode="after")
    def _check_dag(self) -> PipelineSpec:
        names = [s.name for s in self.steps]
        dupes = {n for n, count in collections.Counter(names).items() if count > 1}
        if dupes:
            raise ValueError(f"step names must be unique: {', '.join(sorted(dupes))}")
        known = set(names)
        for step in self.steps:
            for need in step.needs or []:
                if need not in known:
                    raise ValueError(f"step {step.name!r} needs unknown step {need!r}")
        order = self.order()  # raises on a cycle
        del order
        return self

    def dependencies(self) -> dict[str, list[str]]:
        """Each step's upstream steps: ``needs`` or, by default, the previous step."""
        deps: dict[str, list[str]] = {}
        for i, step in enumerate(self.steps):
            deps[step.name] = list(step.needs) if step.needs is not None else ([self.steps[i - 1].name] if i else [])
        return deps

    def order(self) -> list[str]:
        """Steps in a topological order (stable: file order among ready steps)."""
        deps = self.dependencies()
        index = {s.name: i for i, s in enumerate(self.steps)}
        waiting = {name: len(set(needs)) for name, needs in deps.items()}  # upstream steps not yet placed
        dependents: dict[str, list[str]] = {name: [] for name in deps}
        for name, needs in deps.items():
            for need in set(needs):
                dependents[need].append(name)
        ready = [index[name] for name, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        done: list[str] = []
        while ready:  # always the first ready step in file order
            name = self.steps[heapq.heappop(ready)].name
            done.append(name)
            for child in dependents[name]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, index[child])
        if len(done) < len(self.steps):
            placed = set(done)
            raise ValueError(f"steps form a cycle: {', '.join(s.name for s in self.steps if s.name not in placed)}")
        return done


def new_run_id(pipeline: str) -> str:
    """``<pipeline>-<yyyymmdd-hhmmss>-<4 hex>``: a run's id, unique, sortable by time within a pipeline."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{pipeline}-{stamp}-{secrets.token_hex(2)}"


MAX_RUN_ID = 255
"""The longest run id: SYNKRON stores a run as the folder ``runs/<id>/``, and a file name has at most
255 bytes on common filesystems (ENGRAM's local store)."""
MAX_NAME = MAX_RUN_ID - len(new_run_id(""))
"""The longest pipeline name: its runs' ids (``new_run_id``) must fit ``MAX_RUN_ID``."""


class PipelineMeta(ObjectMeta):
    """A pipeline's ``metadata``: its name also begins the id of each of its runs."""

    @field_validator("name")
    @classmethod
    def _fits_run_ids(cls, value: str) -> str:
        if len(value) > MAX_NAME:
            raise ValueError(
                f"{value[:40]!r}… has {len(value)} characters: a pipeline's name may have at most {MAX_NAME}, "
                f"as its runs' ids (<name>-<yyyymmdd-hhmmss>-<4 hex>) are folder names of at most {MAX_RUN_ID}"
            )
        return value


class Pipeline(Resource):
    API_VERSION: ClassVar[str] = "synkron.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Pipeline"] = "Pipeline"
    metadata: PipelineMeta
    spec: PipelineSpec
    _local_files: dict[str, Path] = PrivateAttr(default_factory=dict)
    """The local file of each digest in ``spec.files`` this pipeline was loaded beside (not stored)."""


DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet")
"""A python step's param ending so names an input file (when relative, it must exist)."""


def is_folder_file(path: str) -> bool:
    """Whether ``path`` names a file inside a folder as ``spec.files`` keys do: a relative file
    (``is_relative_file``) written normalized with forward slashes, not leading out (``..``)."""
    return is_relative_file(path) and "\\" not in path and posixpath.normpath(path) == path \
        and path != "." and path != ".." and not path.startswith("../")  # fmt: skip


def is_relative_file(value: str) -> bool:
    """Whether ``value`` may name a file beside the pipeline's: a relative path, not a URL, a run's
    output ref or a ``${…}`` left to interpolate (``spec.files`` holds such paths)."""
    return bool(value) and len(value) <= 4096 and "\n" not in value and "${" not in value and "://" not in value \
        and not value.startswith(("/", "~", "runs/"))  # fmt: skip


def _input_values(pipeline: Pipeline) -> list[tuple[int, str, str]]:
    """``(step index, field, value)`` (``${param}`` defaults put in) for each value by which a step
    names an input file: an infer or index step's input, and a python step's params ending with a
    ``DATA_SUFFIXES`` suffix."""
    defaults = {k: v for k, v in pipeline.spec.params.items() if isinstance(v, (str, int, float))}

    def put_in(value: str) -> str:
        return VARIABLE.sub(lambda m: str(defaults.get(m.group(2), m.group(0))) if not m.group(1) else m.group(0),
                            value)  # fmt: skip

    values: list[tuple[int, str, str]] = []
    for i, step in enumerate(pipeline.spec.steps):
        if step.type == "infer" and step.input:
            values.append((i, "input", put_in(step.input)))
        elif step.type == "index" and step.index is not None:
            values.append((i, "index.input", put_in(step.index.input)))
        elif step.type == "python":
            leaves = [put_in(v) for v in string_leaves(step.params)]
            values.extend((i, "params", v) for v in leaves if v.endswith(DATA_SUFFIXES))
    return values


def with_local_files(pipeline: Pipeline, folder: Path) -> Pipeline:
    """``pipeline`` with ``spec.files`` naming, by digest, each relative input file its steps read
    that exists under ``folder`` (the folder of the pipeline's file). The files travel with it:
    applying it stores them in ENGRAM (``mnemos.genome.registry.Registry.apply``) or uploads them
    (``PUT /v1/files/{digest}``, by the remote client), so that a run reads the bytes that were
    applied wherever it runs, by name, from any working directory or machine. Paths already in
    ``spec.files`` are kept as written.

    Raises:
        ValidationError: a relative input file leads out of ``folder`` (``..``, a symbolic link:
            a run would read it wherever it runs, and a GitOps repository cannot pick the
            applier's files), or one that exists is not written normalized (``./x``, ``a//b``).
    """
    found: dict[str, Path] = {}
    inside = folder.resolve()
    for i, field, value in _input_values(pipeline):
        if value in pipeline.spec.files or not is_relative_file(value):
            continue
        path, normal = folder / value, posixpath.normpath(value.replace("\\", "/"))
        where, param = f"pipeline/{pipeline.name}: {step_label(i, pipeline.spec.steps[i].name)}.{field}", \
            f"spec.steps[{i}].{field}"  # fmt: skip
        if normal == ".." or normal.startswith("../") or (path.is_file() and not path.resolve().is_relative_to(inside)):
            raise ValidationError(
                f"{where}: input file {value!r} is outside the pipeline's folder {str(folder)!r}: a run would read "
                "it from wherever it runs, not the bytes applied; move the file into the pipeline's folder (beside "
                "its file or below), or pass an absolute path or an ENGRAM ref runs/<run>/<output>",
                param=param,
            )
        if path.is_file() and normal != value:
            raise ValidationError(f"{where}: write the input file {value!r} as {normal!r} (normalized, with forward "
                                  "slashes), the path spec.files names it by", param=param)  # fmt: skip
        if path.is_file():
            found[value] = path
    if not found:
        return pipeline
    digests = {value: file_digest(path) for value, path in found.items()}
    spec = pipeline.spec.model_copy(update={"files": {**pipeline.spec.files, **digests}})
    loaded = pipeline.model_copy(update={"spec": spec})
    loaded._local_files = {digests[value]: path for value, path in found.items()}
    return loaded


def local_files(resource: Resource) -> dict[str, Path]:
    """The local file of each digest of a pipeline's ``spec.files`` it was loaded beside (else ``{}``)."""
    return dict(getattr(resource, "_local_files", None) or {})


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes: its ENGRAM digest."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def step_label(index: int, name: str) -> str:
    """How errors name a step: ``spec.steps[1] (second)``."""
    return f"spec.steps[{index}] ({name})"


def default_outputs(pipeline: Pipeline) -> dict[str, list[str]]:
    """Each step's outputs: those it names, else (a model step) one named after the step."""
    return {s.name: [o.name for o in s.outputs] or ([s.name] if s.type in ("infer", "index") else [])
            for s in pipeline.spec.steps}  # fmt: skip


def check_steps(pipeline: Pipeline) -> None:
    """What a run would refuse, checked on every write of a Pipeline (GENOME admission, before the
    Policy rules), so that ``mnemos validate``/``apply``, the Python API and ``PUT /apis/…`` refuse
    the same pipelines with the same error: output names, an infer step's input, a model step's
    params, ``call``, ``timeout`` (CORTEX's limit), every ``${name}`` a step uses (declared, and an
    output of a step it depends on), and no credential written in clear (a default, a step's own).
    Only the pipeline is read: no params given, no files, no cluster. A ``ValidationError`` (422)
    names ``spec.steps[i] (name).field``.
    """
    spec = pipeline.spec
    params = spec.params
    deps = spec.dependencies()

    def refuse(message: str, param: str) -> ValidationError:
        return ValidationError(f"pipeline/{pipeline.name}: {message}", param=param)

    for name in params:
        if name in BUILTINS:  # a run's caller would set it: ${RUN_ID} naming another run's folder
            raise refuse(f"spec.params: {name!r} is the name of a builtin every step reads (${{{name}}}, set by "
                         "the run): give the param another name", f"spec.params.{name}")  # fmt: skip
    credential = credential_default(params)
    if credential is not None:  # every reader of the Pipeline (and its runs' stored documents) has it in clear
        at, message = credential
        raise refuse(f"spec.params.{at}: {message}", f"spec.params.{at}")
    outputs_of = default_outputs(pipeline)
    producers: dict[str, str] = {}
    definitions: dict[str, dict[str, Any]] = {}
    for i, step in enumerate(spec.steps):
        where, path = step_label(i, step.name), f"spec.steps[{i}]"
        definition = step.model_dump(by_alias=True, exclude_none=True)
        for out in outputs_of[step.name]:
            if out in producers or out in params or out in BUILTINS:
                raise refuse(f"{where}.outputs: name {out!r} is already used by a step, param or builtin",
                             f"{path}.outputs")  # fmt: skip
            producers[out] = step.name
        if step.type == "infer" and not step.input:
            upstream = [o for d in deps[step.name] for o in outputs_of[d]]
            if len(upstream) != 1:
                raise refuse(f"{where}.input: an infer step needs an input (JSONL file or ${{output}}); its upstream "
                             f"steps have {len(upstream)} outputs to default to", f"{path}.input")  # fmt: skip
            definition["input"] = "${" + upstream[0] + "}"
        known = STEP_PARAMS.get(str(step.type), ())
        for key in step.params if known else ():
            if PARAM_ALIASES.get(key, key) not in known:
                message = f"{where}.params: unknown param {key!r} (known: {', '.join(known)})"
                raise refuse(message, f"{path}.params.{key}")
        credential = step_credential(step) or clear_reference(step, params)
        if credential is not None:  # as a credential default: kept in the registry and every run's document
            written, message = credential
            raise refuse(f"{where}.{written}: {message}", f"{path}.{written}")
        text = {name for name, default in params.items() if not isinstance(default, (int, float))}  # any text
        for name, context in unquoted_uses(step.script or ""):
            if name in text and context in _EVALUATED_FIX:
                fix = _EVALUATED_FIX[context].format(name=name)
                raise refuse(f"{where}.script: ${{{name}}} stands in {context}, {fix}", f"{path}.script")
            if name in text:
                raise refuse(f"{where}.script: ${{{name}}} stands in {context}, where the one shell-quoted word it "
                             f"becomes would still run $(…) or end the line: write it as a bare word (grep ${{{name}}} "
                             f"f.txt, not \"${{{name}}}\"), or pass it as a variable (env: [{{name: V, value: "
                             f"${{{name}}}}}], then \"$V\")", f"{path}.script")  # fmt: skip
        script = step.script or ""  # a text param reaches arithmetic through env and copies (x=$V, read x) too
        sources = {f"${{{name}}}": "a text param" for name in sorted(names_in(script) & text)}
        sources |= {var.name: f"env: ${{{min(carried)}}}, a text param" for var in step.env if script
                    and (carried := names_in(var.value or "") & text)}  # fmt: skip
        for variable, how in text_in_arithmetic(script, sources):
            context = where_evaluated(script)[variable]
            fix = _EVALUATED_FIX[context].format(name=min(names_in(how)))
            raise refuse(f"{where}.script: ${variable} ({how}) stands in {context}, {fix}", f"{path}.script")
        if step.type == "python" and ":" not in (step.call or ""):
            raise refuse(f"{where}.call: use 'module:function' (got {step.call!r})", f"{path}.call")
        if step.timeout is not None and step.timeout > MAX_STEP_TIMEOUT_S:
            raise refuse(f"{where}.timeout: {format_duration(step.timeout)} is longer than a step may run: at most "
                         f"{format_duration(MAX_STEP_TIMEOUT_S)} ({MAX_STEP_TIMEOUT_S:.0f} s), CORTEX's limit for one "
                         "attempt of a job", f"{path}.timeout")  # fmt: skip
        definitions[step.name] = definition
    for i, step in enumerate(spec.steps):
        where, path = step_label(i, step.name), f"spec.steps[{i}]"
        ancestors = _ancestors(deps, step.name)
        definition = definitions[step.name]
        for name in sorted(names_in(definition)):
            if name in BUILTINS or name in params:
                continue
            field = _field_using(definition, name)
            producer = producers.get(name)
            if producer is None:
                known_names = ", ".join(sorted({*BUILTINS, *params, *producers}))
                raise refuse(f"{where}.{field}: unknown variable ${{{name}}} (known: {known_names})", f"{path}.{field}")
            if producer not in ancestors:
                raise refuse(f"{where}.{field}: uses ${{{name}}}, the output of step {producer!r}, without depending "
                             f"on it: add {producer!r} to needs", f"{path}.needs")  # fmt: skip


_ARITHMETIC_FIX = ("where bash evaluates it as arithmetic and a value a[$(…)] would run its $(…), quoted or not: "
                   "declare the param's default as a number (then callers can send only numbers), or compare it as "
                   "text (env: [{{name: V, value: ${{{name}}}}}], then [ \"$V\" = … ] or case)")  # fmt: skip
_NAME_FIX = ("where bash takes the value as a variable's name (read, printf -v, declare, unset, test -v, ${{!V}}) "
             "or as code (eval, trap, source), and a name a[$(…)] would run its $(…), quoted or not: write a fixed "
             "name or code there and use the param only as a value (env: [{{name: V, value: ${{{name}}}}}], then "
             "x=\"$V\")")  # fmt: skip
_CODE_FIX = ("(bash -c, sh -c, python -c, perl -e, node -e, awk's program, a shell's stdin), which runs any code "
             "a caller sends: write the code in the script and give it the param as an argument "
             "(env: [{{name: V, value: ${{{name}}}}}], then bash -c 'echo \"$1\"' _ \"$V\")")  # fmt: skip
_EVALUATED_FIX = {"an arithmetic test": _ARITHMETIC_FIX, "a variable name": _NAME_FIX, "code bash runs": _NAME_FIX,
                  "code a program runs": _CODE_FIX}  # fmt: skip
"""The fix an error names, by where ``where_evaluated`` (and ``unquoted_uses``) says bash evaluates a value."""


def names_in(value: Any) -> set[str]:
    """Every ``${name}`` used anywhere in a (nested) value."""
    if isinstance(value, str):
        return {m.group(2) for m in VARIABLE.finditer(value) if not m.group(1)}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return set().union(*(names_in(item) for item in items))


def _field_using(value: Any, name: str, path: str = "") -> str | None:
    """The path (``script``, ``params.a.deep[1]``) of the first string of ``value`` that uses ``${name}``."""
    if isinstance(value, str):
        return path if name in names_in(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _field_using(item, name, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def _ancestors(deps: dict[str, list[str]], name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(deps[name])
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(deps[dep])
    return seen
