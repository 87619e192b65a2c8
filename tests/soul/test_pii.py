"""PII redaction: e-mails, phone numbers and Luhn-valid card numbers; the rest untouched."""

from __future__ import annotations

import pytest

from mnemos.soul.pii import luhn_valid, redact, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+ml@example.co.uk today", "write to [REDACTED:email] today"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [REDACTED:card] exp 12/29"),
        ("card 5555-5555-5555-4444", "card [REDACTED:card]"),
        ("amex 378282246310005.", "amex [REDACTED:card]."),
        ("call +1 (555) 123-4567 or 555.123.4567", "call [REDACTED:phone] or [REDACTED:phone]"),
        ("uk +44 20 7946 0958", "uk [REDACTED:phone]"),
        ("order 4111 1111 1111 1112 is not a card", "order 4111 1111 1111 1112 is not a card"),
        ("on 2024-01-15 from 192.168.100.200, 3 at 12.50", "on 2024-01-15 from 192.168.100.200, 3 at 12.50"),
        ("version 1.2.3 and year 2024", "version 1.2.3 and year 2024"),
        ("", ""),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_redact_value_walks_messages() -> None:
    messages = [{"role": "user", "content": "I am bob@corp.io, card 4242424242424242"}, {"n": 3}]
    assert redact_value(messages) == [
        {"role": "user", "content": "I am [REDACTED:email], card [REDACTED:card]"},
        {"n": 3},
    ]


def test_redact_request_touches_only_the_text_a_model_reads() -> None:
    from mnemos.soul.pii import redact_request

    body = {"model": "m@example.com", "user": "bob@corp.io", "temperature": 0, "prompt": ["bob@corp.io", 7],
            "messages": [{"role": "user", "name": "bob", "content": [{"type": "text", "text": "bob@corp.io"}]},
                         {"role": "assistant", "tool_calls": [{"id": "call_4155550100", "type": "function",
                          "function": {"name": "mail", "arguments": '{"to": "bob@corp.io"}'}}]},
                         "not a message"],
            "tools": [{"type": "function", "function": {"name": "mail", "description": "to bob@corp.io"}}]}  # fmt: skip
    out = redact_request(body)
    assert out["messages"][0]["content"] == [{"type": "text", "text": "[REDACTED:email]"}]
    assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"to": "[REDACTED:email]"}'
    assert out["messages"][1]["tool_calls"][0]["id"] == "call_4155550100" and out["messages"][2] == "not a message"
    assert out["prompt"] == ["[REDACTED:email]", 7]
    # The model name, the client's own fields and the operator's tool definitions are not prompts.
    assert {k: out[k] for k in ("model", "user", "tools", "temperature")} == {
        k: body[k] for k in ("model", "user", "tools", "temperature")}
    assert body["messages"][0]["content"][0]["text"] == "bob@corp.io"  # a copy: the caller's body is unchanged
    assert redact_request({"input": "call +1 415 555 0100"})["input"] == "call [REDACTED:phone]"


def test_redact_request_never_raises_on_any_json_a_client_sends() -> None:
    """The gateway redacts the JSON an Adapter forwards as the client sent it: any shape."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from mnemos.soul.pii import redact_request

    leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.sampled_from(["content", "text", "type", "tool_calls", "function",
                                                                 "arguments", "role", "x"]), inner, max_size=4),
                              max_leaves=20)  # fmt: skip
    body = st.dictionaries(st.sampled_from(["messages", "prompt", "input", "model", "other"]), json_value, max_size=5)

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body)
    def check(doc: dict) -> None:
        out = redact_request(doc)
        assert set(out) == set(doc) and all(out[k] == doc[k] for k in doc if k not in ("messages", "prompt", "input"))

    check()
