"""PII redaction for models whose policy says ``pii: redact``.

``redact(text)`` replaces e-mail addresses, payment card numbers (13-19 digits that pass the Luhn
check) and phone numbers with ``[REDACTED:email]``, ``[REDACTED:card]`` and ``[REDACTED:phone]``.
``redact_request(body)`` applies it to what a model reads of an OpenAI request.

Where it runs: a Model whose ``policy.pii`` is ``redact`` redacts every request in its own
replicas, whoever sends it (the gateway, a pipeline's step, a notebook's handle); with
``relay.redactPrompts`` the gateway redacts every request it forwards, to Adapters too. Lineage
never holds a prompt or an answer, only counts and names.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CARD", "EMAIL", "PHONE", "luhn_valid", "redact", "redact_messages", "redact_request", "redact_value"]

EMAIL = "[REDACTED:email]"
CARD = "[REDACTED:card]"
PHONE = "[REDACTED:phone]"

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# 13-19 digits, optionally grouped by single spaces or dashes.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
# An optional +country code, an optional (area) code, then 2-4 groups of digits.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,4}(?![\w])"
)
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{4}$")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum (payment card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _IPV4.match(text) or _DATE.match(text):
        return text
    digits = sum(c.isdigit() for c in text)
    plus = text.startswith("+")
    if (plus and 8 <= digits <= 15) or (10 <= digits <= 15):
        return PHONE
    return text


def redact(text: str) -> str:
    """``text`` with e-mails, card numbers and phone numbers replaced by ``[REDACTED:<kind>]``."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL, text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside nested dicts, lists and tuples (keys kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_request(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of the OpenAI request ``body`` with PII redacted from the text a model reads: the
    messages (:func:`redact_messages`), ``prompt`` and ``input`` (a string or a list of them).
    Everything else (tool definitions, ids, sampling fields) is kept as sent."""
    out = dict(body)
    if isinstance(body.get("messages"), list):
        out["messages"] = redact_messages(body["messages"])
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            out[key] = redact(value)
        elif isinstance(value, list):
            out[key] = [redact(v) if isinstance(v, str) else v for v in value]
    return out


def redact_messages(messages: list[Any]) -> list[Any]:
    """Chat messages (OpenAI's dicts) with PII redacted from their ``content`` (a string or its
    ``text`` parts) and the arguments of earlier tool calls; roles, names and ids kept."""
    return [_redact_message(m) if isinstance(m, dict) else m for m in messages]


def _redact_message(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = redact(content)
    elif isinstance(content, list):
        out["content"] = [{**part, "text": redact(part["text"])}
                          if isinstance(part, dict) and isinstance(part.get("text"), str) else part
                          for part in content]  # fmt: skip
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_redact_call(call) if isinstance(call, dict) else call for call in calls]
    return out


def _redact_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
        return {**call, "function": {**function, "arguments": redact(function["arguments"])}}
    return call
