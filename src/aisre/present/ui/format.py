"""Presentation helpers for the web UI: number/time formatting (Jinja filters) and the
shaping of a trace document into waterfall rows and readable chat messages.

Nothing here decides anything about the data; it only changes how it is shown.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

# Operation → CSS class of its badge and bar; anything unknown is shown as "other".
_OP_CLASS = {
    "chat": "chat",
    "text_completion": "chat",
    "generate_content": "chat",
    "embeddings": "embeddings",
    "retrieval": "retrieval",
    "execute_tool": "tool",
    "agent": "agent",
    "invoke_agent": "agent",
    "create_agent": "agent",
}


def duration(ms: float | None) -> str:
    """Milliseconds → '0.42 ms', '12.3 ms', '480 ms', '1.23 s', '2m 05s'."""
    if ms is None:
        return "—"
    value = float(ms)
    if value < 1:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(round(value / 1000), 60)
    return f"{minutes}m {seconds:02d}s"


def percent(ratio: float | None) -> str:
    """0.05 → '5.0%'; 0 stays a plain '0%' so healthy rows stay quiet."""
    if ratio is None:
        return "—"
    if ratio == 0:
        return "0%"
    return f"{ratio * 100:.1f}%"


def number(value: float | int | None, digits: int = 1) -> str:
    """Thousands separators; floats keep ``digits`` decimals unless they are whole."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.{digits}f}"
    return f"{int(value):,}"


def money(value: float | None) -> str:
    """USD with enough decimals to tell small per-run costs apart."""
    if value is None:
        return "—"
    if value == 0:
        return "$0"
    if abs(value) < 1:
        # Three significant digits, never scientific notation: $0.000314, $0.0429.
        decimals = max(4, 2 - math.floor(math.log10(abs(value))))
        return f"${value:.{decimals}f}"
    return f"${value:,.2f}"


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def utc(stamp: str | None, with_ms: bool = False) -> str:
    """RFC 3339 → '2026-11-23 06:28:50' (UTC; the column header says so)."""
    parsed = _parse(stamp)
    if parsed is None:
        return stamp or "—"
    text = parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{parsed.microsecond // 1000:03d}" if with_ms else text


def ago(stamp: str | None, now: datetime | None = None) -> str:
    """RFC 3339 → '42s ago', '3h ago', '2d ago'."""
    parsed = _parse(stamp)
    if parsed is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - parsed).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def pretty(value: Any) -> str:
    """Structured values as indented JSON; strings unchanged (escaping is Jinja's job)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def compact(value: Any) -> str:
    """Structured values as one-line JSON, for table cells."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def op_class(operation: str | None) -> str:
    """CSS class for an operation badge/bar."""
    return _OP_CLASS.get(operation or "", "other")


# --- chat messages ---------------------------------------------------------------------


def _part(part: Any) -> dict[str, str]:
    """One message part → {kind, label, text}; unknown shapes fall back to JSON."""
    if isinstance(part, str):
        return {"kind": "text", "label": "", "text": part}
    if not isinstance(part, dict):
        return {"kind": "data", "label": "", "text": pretty(part)}
    kind = part.get("type")
    text = part.get("content", part.get("text"))
    if kind in (None, "text") and isinstance(text, str):
        return {"kind": "text", "label": "", "text": text}
    if kind == "tool_call" or "function" in part:
        # OpenAI nests name/arguments under "function"; GenAI parts carry them directly.
        inner = part.get("function")
        function: dict[str, Any] = inner if isinstance(inner, dict) else part
        args = function.get("arguments")
        return {
            "kind": "tool_call",
            "label": f"tool call {function.get('name') or ''}".strip(),
            "text": pretty(args) if args is not None else "",
        }
    if kind == "tool_call_response":
        response = pretty(part.get("response"))
        return {"kind": "tool_response", "label": "tool result", "text": response}
    return {"kind": "data", "label": str(kind or ""), "text": pretty(part)}


def _message(item: Any, default_role: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"role": default_role, "parts": [_part(item)], "finish_reason": None}
    if isinstance(item.get("message"), dict):  # gen_ai.choice events wrap the message
        inner = dict(item["message"])
        inner.setdefault("finish_reason", item.get("finish_reason"))
        item = inner
    parts: list[dict[str, str]] = []
    if isinstance(item.get("parts"), list):
        parts = [_part(p) for p in item["parts"]]
    content = item.get("content")
    if isinstance(content, list):
        parts += [_part(p) for p in content]
    elif content is not None:
        parts.append(_part(content if isinstance(content, str) else pretty(content)))
    for call in item.get("tool_calls") or []:
        parts.append(_part(call))
    if not parts:
        rest = {k: v for k, v in item.items() if k not in ("role", "finish_reason")}
        if rest:
            parts.append(_part(pretty(rest)))
    return {
        "role": str(item.get("role") or default_role),
        "parts": parts,
        "finish_reason": item.get("finish_reason"),
    }


def messages(value: Any, default_role: str = "") -> list[dict[str, Any]]:
    """Any convention's prompt/completion value → [{role, parts: [{kind, label, text}]}]."""
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list):
        return [{"role": default_role, "parts": [_part(pretty(value))], "finish_reason": None}]
    # System instructions arrive as a bare list of parts: one message, not many.
    if value and all(isinstance(v, dict) and "role" not in v and "type" in v for v in value):
        return [{"role": default_role, "parts": [_part(v) for v in value], "finish_reason": None}]
    return [_message(item, default_role) for item in value]


# --- waterfall -------------------------------------------------------------------------


def waterfall(doc: dict[str, Any]) -> dict[str, Any]:
    """Bar geometry (percent of the trace), ticks and readable messages for each span."""
    spans = doc.get("spans") or []
    end = max((s["offset_ms"] + s["duration_ms"] for s in spans), default=0.0)
    total = max(end, doc.get("duration_ms") or 0.0) or 1.0
    rows = []
    for span in spans:
        left = min(100.0, 100.0 * span["offset_ms"] / total)
        width = max(0.25, 100.0 * span["duration_ms"] / total)
        genai = span.get("genai") or {}
        model = span.get("response_model") or span.get("request_model")
        requested = span.get("request_model")
        rows.append(
            {
                **span,
                "bar_left": round(left, 3),
                "bar_width": round(min(width, 100.0 - left) if left < 100 else 0.25, 3),
                "op_class": op_class(span.get("operation")),
                "model": model,
                "model_note": f"requested {requested}" if requested and requested != model else "",
                "system": messages(genai.get("system_instructions"), "system"),
                "prompt": messages(genai.get("input_messages"), "user"),
                "completion": messages(genai.get("output_messages"), "assistant"),
                "other_events": [
                    e for e in span.get("events") or [] if e.get("name") != "exception"
                ],
            }
        )
    ticks = [
        {"left": pct, "label": duration(total * pct / 100) if pct else "0"}
        for pct in (0, 25, 50, 75, 100)
    ]
    return {"rows": rows, "total_ms": total, "ticks": ticks}
