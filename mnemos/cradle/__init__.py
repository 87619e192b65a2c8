"""CRADLE: bootstrap (`mnemos up/down/status`) and declarative apply."""

from mnemos.cradle.cluster import init_ray, read_cluster, resolve_address, start_local, stop_local
from mnemos.cradle.control import ACTORS, COMPONENTS, actor_states, down, up

__all__ = [
    "ACTORS",
    "COMPONENTS",
    "actor_states",
    "down",
    "init_ray",
    "read_cluster",
    "resolve_address",
    "start_local",
    "stop_local",
    "up",
]
