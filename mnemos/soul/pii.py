"""PII redaction for models whose policy says ``pii: redact``.

``redact(text)`` replaces e-mail addresses, payment card numbers (13-19 digits that pass the Luhn
check) and phone numbers with ``[REDACTED:email]``, ``[REDACTED:card]`` and ``[REDACTED:phone]``.
RELAY applies it to what it writes to lineage and, with ``relay.redactPrompts``, to prompts.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CARD", "EMAIL", "PHONE", "luhn_valid", "redact", "redact_value"]

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
