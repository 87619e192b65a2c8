"""``spec.routing: prefix-aware``: Ray Serve LLM's prefix-cache-affinity router, reading MNEMOS's calls.

Serve runs a deployment's request router where the handle is (the gateway replica, a pipeline
worker). Ray Serve LLM's ``PrefixCacheAffinityRouter`` finds the prompt in the first call argument
that has ``messages`` or ``prompt``, and fails on a call that has neither. The calls MNEMOS makes
on a vLLM deployment are ``openai(kind, body, …)`` (``body``: the gateway's typed request, whose
messages are pydantic objects), ``complete(request)`` (a ``GenerationRequest``, whose messages are
dicts) and ``info()``/``stats()`` (no prompt). :class:`PrefixRouter` reads all of them; a call
without a prompt is routed as an empty prefix (Serve's load-based choice), never refused. The
routing policy itself is Ray's.
"""

from __future__ import annotations

from typing import Any

from ray.serve.llm.request_router import PrefixCacheAffinityRouter

__all__ = ["PrefixRouter", "prompt_text"]


def _content(value: Any) -> str:
    """The text of a message's ``content`` (a string, or parts with ``text``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_content(part) for part in value)
    if isinstance(value, dict):
        return _content(value.get("text", value.get("content")))
    return _content(getattr(value, "text", None))


def prompt_text(arg: Any) -> str | None:
    """The prompt of one call argument (chat messages joined), or None when it carries none."""
    if isinstance(arg, dict):
        messages, prompt = arg.get("messages"), arg.get("prompt")
    else:
        messages, prompt = getattr(arg, "messages", None), getattr(arg, "prompt", None)
    if messages is not None:
        return "".join(_content(m.get("content") if isinstance(m, dict) else getattr(m, "content", None))
                       for m in messages)  # fmt: skip
    if prompt is not None:
        return _content(prompt)
    return None


class PrefixRouter(PrefixCacheAffinityRouter):  # type: ignore[misc]
    """``PrefixCacheAffinityRouter`` that reads the prompt of MNEMOS's calls (see the module docstring)."""

    def _extract_text_from_request(self, pending_request: Any) -> str:
        for arg in list(pending_request.args or ()) + list((pending_request.kwargs or {}).values()):
            text = prompt_text(arg)
            if text is not None:
                return text
        return ""
