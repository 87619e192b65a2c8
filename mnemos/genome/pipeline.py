"""``synkron.mnemos.dev/v1`` Pipeline: a DAG of steps run by SYNKRON.

A step's kind follows from its fields, so the seed's pipeline loads as written:

- ``script`` (+ ``image``, ``env``)          → a shell script on a NEURON worker
- ``call: module:function`` (+ ``params``)    → a Python function
- ``runtime`` + ``modelRef`` (+ ``params``)   → batch inference through the model's deployment
- ``index`` (+ ``modelRef`` of an embedding) → embed texts into an ENGRAM space
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from mnemos._model import CoreModel, PositiveDuration
from mnemos.genome._base import Resource

__all__ = ["EnvVar", "IndexSpec", "Output", "Pipeline", "PipelineSpec", "Step", "StepType"]

StepType = Literal["script", "python", "infer", "index"]


class EnvVar(CoreModel):
    name: str
    value: str | None = None
    secret_ref: dict[str, str] | None = Field(None, description="{name, key} resolved through SOUL.")


class Output(CoreModel):
    name: str
    uri: str | None = Field(None, description="Where to also copy the output; it is always an ENGRAM ref.")


class IndexSpec(CoreModel):
    space: str = Field(description="ENGRAM space to write the embeddings into.")
    input: str = Field(description="JSONL ref or path; usually ${<output>} of an earlier step.")
    text_field: str = Field("text", description="Field of each record to embed.")


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
    resources: dict[str, float] = Field(default_factory=dict, description="{cpus, gpus} for the step's job.")

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


class PipelineSpec(CoreModel):
    params: dict[str, Any] = Field(default_factory=dict, description="Defaults for ${param} interpolation.")
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_dag(self) -> PipelineSpec:
        names = [s.name for s in self.steps]
        dupes = {n for n in names if names.count(n) > 1}
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
        done: list[str] = []
        pending = [s.name for s in self.steps]
        while pending:
            ready = [n for n in pending if all(d in done for d in deps[n])]
            if not ready:
                raise ValueError(f"steps form a cycle: {', '.join(pending)}")
            done.append(ready[0])
            pending.remove(ready[0])
        return done


class Pipeline(Resource):
    API_VERSION: ClassVar[str] = "synkron.mnemos.dev/v1"

    api_version: str = API_VERSION
    kind: Literal["Pipeline"] = "Pipeline"
    spec: PipelineSpec
