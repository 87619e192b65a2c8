"""NEURON: model runtimes behind one interface, and worker pools that run jobs."""

from mnemos.neuron.runtime import RUNTIMES, GenerationChunk, GenerationRequest, Runtime, runtime_class

__all__ = ["RUNTIMES", "GenerationChunk", "GenerationRequest", "Runtime", "runtime_class"]
