"""MNEMOS: an AI-operations platform on Ray.

>>> import mnemos
>>> client = mnemos.connect()          # embedded local Ray cluster by default (the local admin)
>>> client.apply("deployments/local/")
>>> remote = mnemos.connect("https://mnemos.example", api_key="mk_…")  # a platform, over HTTP
"""

from mnemos import errors
from mnemos._version import __version__
from mnemos.client import Client, connect
from mnemos.config import Settings, load_settings
from mnemos.remote import RemoteClient

__all__ = ["Client", "RemoteClient", "Settings", "__version__", "connect", "errors", "load_settings"]
