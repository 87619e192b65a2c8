"""Runtime backends; import them through ``mnemos.neuron.runtime_class``."""
