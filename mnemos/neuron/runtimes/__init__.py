"""Runtime backends; import them through ``mnemos.neuron.runtime_class``."""

__all__: list[str] = []
