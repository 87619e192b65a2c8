"""What a model name resolves to in the gateway: one route interface, whoever serves the model.

``Gateway.model(name)`` answers a :class:`ModelRoute` (a Model this platform serves: a NEURON
runtime, or vLLM through Ray Serve LLM) or an :class:`AdapterModelRoute` (a model an Adapter
forwards upstream). Both are a :class:`Route`: lineage, metering and the cache read only that
interface, and the handlers dispatch on ``route.serving``, which tells the two apart for mypy too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from ray import serve

__all__ = ["AdapterModelRoute", "AnyRoute", "ModelRoute", "Route", "Serving"]

Serving = Literal["adapter", "llm", "runtime"]
"""Who answers: an Adapter's upstream, vLLM through Ray Serve LLM, or a NEURON runtime (``ModelServer``)."""


class Route(Protocol):
    """The interface every route has: what the handlers dispatch on and what lineage records."""

    @property
    def name(self) -> str:
        """The model name the client asked for."""

    @property
    def serving(self) -> Serving: ...

    @property
    def generation(self) -> int | None:
        """The Model's generation (None for an adapter-served model)."""

    @property
    def digest(self) -> str | None:
        """The Model's artifact digest (None for an adapter-served model)."""

    @property
    def adapter(self) -> str | None:
        """The name of the Adapter serving the model, else None."""

    @property
    def max_tokens(self) -> int | None:
        """The model's completion token limit, when it has one."""


@dataclass(frozen=True, slots=True)
class AdapterModelRoute:
    """A model served by an Adapter: the gateway forwards the request upstream."""

    name: str
    adapter: str

    @property
    def serving(self) -> Literal["adapter"]:
        return "adapter"

    @property
    def generation(self) -> None:
        return None

    @property
    def digest(self) -> None:
        return None

    @property
    def max_tokens(self) -> None:
        return None


@dataclass
class ModelRoute:
    """A served model: its route entry from the controller and its Serve handles."""

    name: str
    entry: dict[str, Any]
    complete: Any = None
    generate: Any = None
    embed: Any = None
    llm: Any = None
    parent: str = field(default="")

    @classmethod
    def build(cls, entry: dict[str, Any], previous: ModelRoute | None) -> ModelRoute:
        """The route of ``entry``, reusing ``previous``'s handles when the application is unchanged."""
        same = previous is not None and previous.entry.get("app") == entry.get("app")
        if (same and previous is not None and previous.complete is not None
                and previous.entry.get("serving") == entry.get("serving")):  # fmt: skip
            handles = (previous.complete, previous.generate, previous.embed, previous.llm)
        elif entry.get("status") == "ready":
            base = serve.get_deployment_handle(entry["deployment"], app_name=entry["app"], _check_exists=False)
            handles = (
                base.options(method_name="complete"),
                base.options(method_name="generate", stream=True),
                base.options(method_name="embed_counted"),  # (vectors, prompt tokens the model read)
                # vLLM models (Ray Serve LLM): the typed request goes to ``ModelLLMServer.openai``.
                base.options(method_name="openai", stream=True) if entry.get("serving") == "llm" else None,
            )
        else:
            handles = (None, None, None, None)
        return cls(entry["name"], entry, *handles, parent=f"model:{entry['name']}@{entry.get('generation')}")

    @property
    def serving(self) -> Literal["llm", "runtime"]:
        """``llm`` for vLLM models served by Ray Serve LLM, ``runtime`` for NEURON runtimes."""
        return "llm" if self.entry.get("serving") == "llm" else "runtime"

    @property
    def generation(self) -> int | None:
        return self.entry.get("generation")

    @property
    def digest(self) -> str | None:
        return self.entry.get("digest")

    @property
    def adapter(self) -> None:
        return None

    @property
    def max_tokens(self) -> int | None:
        return int(self.entry.get("max_tokens") or 0) or None

    @property
    def ready(self) -> bool:
        return self.entry.get("status") == "ready" and self.complete is not None

    @property
    def kind(self) -> str:
        return str(self.entry.get("kind", "generate"))


AnyRoute: TypeAlias = AdapterModelRoute | ModelRoute
"""What ``Gateway.model`` answers: a :class:`Route` whose ``serving`` narrows it to its class."""
