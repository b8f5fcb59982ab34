"""UI presentation helpers: numbers, times, chat messages from every convention, bar geometry."""

from __future__ import annotations

from datetime import UTC, datetime

from aisre.present.ui import format as fmt


def test_numbers_and_times() -> None:
    assert [fmt.duration(v) for v in (None, 0.4234, 12.34, 479.4, 1234.0, 125_000.0)] == [
        "—", "0.42 ms", "12.3 ms", "479 ms", "1.23 s", "2m 05s",
    ]
    assert (fmt.percent(0.05), fmt.percent(0.0), fmt.percent(None)) == ("5.0%", "0%", "—")
    assert (fmt.number(119.5), fmt.number(71.0), fmt.number(12345), fmt.number(3.25, 2)) == (
        "119.5", "71", "12,345", "3.25",
    )
    assert (fmt.money(0.0), fmt.money(0.00123), fmt.money(12.5), fmt.money(None)) == (
        "$0", "$0.00123", "$12.50", "—",
    )
    # Per-call costs keep three significant digits (trailing zeros dropped) instead of $0.0000.
    assert (fmt.money(3e-7), fmt.money(0.000314), fmt.money(0.0429)) == ("$0.0000003", "$0.000314", "$0.0429")
    stamp = "2026-11-23T06:28:50.384747Z"
    assert fmt.utc(stamp) == "2026-11-23 06:28:50"
    assert fmt.utc(stamp, with_ms=True) == "2026-11-23 06:28:50.384"
    assert fmt.ago(stamp, datetime(2026, 11, 23, 10, 0, tzinfo=UTC)) == "3h ago"
    assert fmt.op_class("execute_tool") == "tool" and fmt.op_class("weird") == "other"


def _flat(messages: list[dict]) -> list[tuple[str, str, str]]:
    return [(m["role"], p["kind"], p["text"]) for m in messages for p in m["parts"]]


def test_messages_from_each_convention() -> None:
    # Current OTel GenAI: role + typed parts.
    current = [
        {"role": "user", "parts": [{"type": "text", "content": "Where is my order?"}]},
        {"role": "assistant", "parts": [
            {"type": "tool_call", "name": "lookup_order", "arguments": {"query": "42"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "response": "shipped"}]},
    ]
    assert _flat(fmt.messages(current)) == [
        ("user", "text", "Where is my order?"),
        ("assistant", "tool_call", '{\n  "query": "42"\n}'),
        ("tool", "tool_response", "shipped"),
    ]
    # Indexed gen_ai.prompt.N / OpenInference: role + content string.
    assert _flat(fmt.messages([{"role": "system", "content": "Be brief."}])) == [
        ("system", "text", "Be brief.")
    ]
    # OpenAI-style tool_calls, and a gen_ai.choice event wrapping its message.
    choice = {"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}}
    [message] = fmt.messages([choice], "assistant")
    assert message["finish_reason"] == "tool_calls"
    assert message["parts"][0]["label"] == "tool call f"
    # OpenInference tool calls, as the trace view rebuilds them from llm.output_messages.N.….
    openinference = {"role": "assistant", "tool_calls": [{"id": "c1", "name": "lookup_order", "arguments": {"orderId": "A-1"}}]}
    [message] = fmt.messages([openinference])
    assert (message["parts"][0]["kind"], message["parts"][0]["label"]) == ("tool_call", "tool call lookup_order")
    # System instructions as a bare list of parts are one message, not two.
    system = fmt.messages([{"type": "text", "content": "a"}, {"type": "text", "content": "b"}],
                          "system")
    assert _flat(system) == [("system", "text", "a"), ("system", "text", "b")]
    # Plain strings and unknown shapes degrade to readable text, never an error.
    assert _flat(fmt.messages("hello", "user")) == [("user", "text", "hello")]
    assert _flat(fmt.messages([{"weird": 1}])) == [("", "text", '{\n  "weird": 1\n}')]
    assert fmt.messages(None) == []


def test_waterfall_geometry() -> None:
    doc = {"duration_ms": 100.0, "spans": [
        {"name": "root", "offset_ms": 0.0, "duration_ms": 100.0, "operation": "other"},
        {"name": "chat", "offset_ms": 50.0, "duration_ms": 25.0, "operation": "chat",
         "request_model": "gpt-4o", "response_model": "gpt-4o-2024-08-06"},
        {"name": "tiny", "offset_ms": 99.99, "duration_ms": 0.0, "operation": None},
    ]}
    view = fmt.waterfall(doc)
    root, chat, tiny = view["rows"]
    assert (root["bar_left"], root["bar_width"]) == (0.0, 100.0)
    assert (chat["bar_left"], chat["bar_width"], chat["op_class"]) == (50.0, 25.0, "chat")
    assert chat["model"] == "gpt-4o-2024-08-06" and chat["model_note"] == "requested gpt-4o"
    assert tiny["bar_left"] + tiny["bar_width"] <= 100.0 and tiny["op_class"] == "other"
    assert [t["label"] for t in view["ticks"]] == ["0", "25.0 ms", "50.0 ms", "75.0 ms", "100 ms"]
