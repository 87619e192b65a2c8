"""NEURON: model runtimes behind one interface, and worker pools that run jobs."""

from mnemos.neuron.models import build_runtime, init_tiny, materialize, register
from mnemos.neuron.runtime import RUNTIMES, GenerationChunk, GenerationRequest, Runtime, runtime_class

__all__ = [
    "RUNTIMES",
    "GenerationChunk",
    "GenerationRequest",
    "Runtime",
    "build_runtime",
    "init_tiny",
    "materialize",
    "register",
    "runtime_class",
]
