"""MNEMOS: an AI-operations platform on Ray.

>>> import mnemos
>>> client = mnemos.connect()          # embedded local Ray cluster by default
>>> client.apply("deployments/local/")
"""

from mnemos import errors
from mnemos.client import Client, connect
from mnemos.config import Settings, load_settings

__version__ = "0.1.0"

__all__ = ["Client", "Settings", "__version__", "connect", "errors", "load_settings"]
