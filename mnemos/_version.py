"""The version of MNEMOS (the package and the default KubeRay image tag read it; keep pyproject.toml in step)."""

__version__ = "0.1.0"
