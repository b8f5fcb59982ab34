"""Presentation helpers for the web UI: number/time formatting (Jinja filters) and the
shaping of a trace document into waterfall rows and readable chat messages.

Nothing here decides anything about the data; it only changes how it is shown.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from aisre.core import display
from aisre.core.slo import format_duration

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
    """USD in the one format UI, CLI and API messages share (core.display.money)."""
    return display.money(value)


def measure(value: float | None, unit: str = "") -> str:
    """A measured value in its unit: money for USD, otherwise four significant digits
    without scientific notation ('0.0000884', '1,234', '0.72')."""
    if value is None:
        return "—"
    if unit == "USD":
        return display.money(value)
    size = abs(float(value))
    if size >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    if size == 0:
        return "0"
    decimals = max(0, 3 - math.floor(math.log10(size)))
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def utc(stamp: str | int | None, with_ms: bool = False) -> str:
    """RFC 3339 or Unix ns → '2026-11-23 06:28:50' (UTC; the page header says so)."""
    if not with_ms or not isinstance(stamp, str):
        return display.utc_text(stamp)
    parsed = _parse(stamp)
    if parsed is None:
        return stamp or "—"
    return f"{display.utc_text(parsed)}.{parsed.microsecond // 1000:03d}"


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
    if kind == "tool_call" or "function" in part or (kind is None and "name" in part and "arguments" in part):
        # OpenAI nests name/arguments under "function"; GenAI parts (and the tool calls aisre
        # rebuilds from OpenInference's llm.*_messages.N.message.tool_calls.M) carry them directly.
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


# --- SLOs ------------------------------------------------------------------------------

# Worst first: what needs a person now, then what needs one soon, then what cannot be judged.
SLO_STATUS_ORDER = ("page", "exhausted", "ticket", "insufficient_data", "no_data", "unsupported", "ok")
SLO_STATUS_LABEL = {
    "page": "page",
    "exhausted": "budget exhausted",
    "ticket": "ticket",
    "no_data": "no data",
    "insufficient_data": "too few events",
    "unsupported": "unsupported",
    "ok": "ok",
}


def objective(value: float | None) -> str:
    """99.5 → '99.5%', 99.0 → '99%'."""
    return "—" if value is None else f"{value:g}%"


def sli_ratio(ratio: float | None) -> str:
    """An SLI as a percentage with enough digits to compare against 99.9% objectives."""
    if ratio is None:
        return "—"
    if ratio == 1:
        return "100%"
    return f"{math.floor(ratio * 10_000) / 100:.2f}%"  # never rounds 99.996% up to 100%


def budget(ratio: float | None) -> str:
    """Remaining error budget: 0.875 → '87.5%', -49.0 → '−4,900%'."""
    if ratio is None:
        return "—"
    if not math.isfinite(ratio):
        return "−∞" if ratio < 0 else "∞"
    pct = ratio * 100
    text = f"{abs(pct):,.1f}" if abs(pct) < 100 else f"{abs(pct):,.0f}"
    text = text.removesuffix(".0")
    return f"−{text}%" if pct < 0 and text != "0" else f"{text}%"


def burn(rate: float | None) -> str:
    """A burn rate as a multiple of the sustainable one: '0×', '0.93×', '13.4×', '50×'."""
    if rate is None or not math.isfinite(rate):
        return "—"
    if rate == 0:
        return "0×"
    if rate < 10:
        text = f"{rate:.2f}"
    elif rate < 100:
        text = f"{rate:.1f}"
    else:
        text = f"{rate:,.0f}"
    return text.rstrip("0").rstrip(".") + "×" if "." in text else text + "×"


def span_seconds(seconds: float | None) -> str:
    """A length of time in seconds → '45s', '12m', '5h 12m', '3d 4h'."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    value = max(0, round(seconds))
    days, rest = divmod(value, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def sli_threshold(sli: dict[str, Any] | None) -> str:
    """What makes an event good, from the SLI's spec: 'answered ≤ 4 s', 'cost ≤ $0.002'."""
    if not sli:
        return ""
    kind = sli.get("kind")
    latency = sli.get("latency_ms")
    if kind == "outcome":
        return f"success ≤ {duration(latency)}" if latency is not None else "success"
    if kind == "latency" and latency is not None:
        return f"≤ {duration(latency)}"
    if kind == "cost" and sli.get("max_usd") is not None:
        return f"≤ {money(sli['max_usd'])}"
    if kind == "score":
        low, high = sli.get("min"), sli.get("max")
        bounds = [f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else ""]
        return " ".join(filter(None, [str(sli.get("subject") or ""), str(sli.get("score") or ""), *bounds]))
    if kind == "step":
        op = str(sli.get("operation") or "")
        return f"{op} ≤ {duration(latency)}" if latency is not None else op
    # Platform SLIs: the metric's name (its matchers are on the SLO page) and the bound.
    metric = str(sli.get("metric") or "").split("{", 1)[0]
    if kind == "threshold":
        low, high = sli.get("min"), sli.get("max")
        return " ".join(filter(None, [metric, f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else ""]))
    if kind == "histogram" and sli.get("le") is not None:
        return f"{metric} ≤ {sli['le']:g}"
    if kind == "freshness" and sli.get("max_age") is not None:
        metric = metric or str(sli.get("dataset") or "")
        return f"{metric} age ≤ {_span(sli['max_age'])}"
    if kind == "pipeline":
        return f"{sli.get('pipeline') or ''} succeeds"
    if kind == "deadline" and isinstance(sli.get("at"), timedelta):
        at, every = sli["at"], sli.get("every") or timedelta(days=1)
        clock = f"{int(at.total_seconds()) // 3600:02d}:{int(at.total_seconds()) // 60 % 60:02d} UTC"
        when = f"by {clock} daily" if every == timedelta(days=1) else f"by {_span(at)} into every {_span(every)}"
        return f"{sli.get('pipeline') or ''} done {when}"
    return ""


def _span(value: Any) -> str:
    """A duration as the spec writes it (``30m``), from a timedelta or its text."""
    if isinstance(value, timedelta):
        return format_duration(value) if value else "0s"
    return str(value)


def _level(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio) or ratio <= 0.1:
        return "bad"
    return "warn" if ratio <= 0.5 else "good"


def slo_view(doc: dict[str, Any], sli_spec: dict[str, Any] | None) -> dict[str, Any]:
    """An SLO document plus what its rows and tiles need.

    The document's ``sli`` is the SLI's spec until the SLO is evaluated and the measured ratio
    after, so the spec is passed in separately (from the engine's specs) when it was replaced.
    """
    raw = doc.get("sli")
    spec = raw if isinstance(raw, dict) else sli_spec or {}
    ratio = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    status = str(doc.get("status") or "no_data")
    remaining: float | None = (doc.get("error_budget") or {}).get("remaining_ratio")
    width = 0.0
    if remaining is not None and math.isfinite(remaining):
        width = round(min(1.0, max(0.0, remaining)) * 100, 1)
    return {
        **doc,
        "sli_spec": spec,
        "sli_kind": str(spec.get("kind") or "?"),
        "sli_ratio": ratio,
        "threshold": sli_threshold(spec),
        "status_label": SLO_STATUS_LABEL.get(status, status),
        "status_rank": (
            SLO_STATUS_ORDER.index(status) if status in SLO_STATUS_ORDER else len(SLO_STATUS_ORDER)
        ),
        "budget_width": width,
        "budget_level": _level(remaining),
        "burn_1h": (doc.get("burn_rates") or {}).get("1h"),
        "notices": slo_notices(doc),
    }


def slo_notices(doc: dict[str, Any]) -> list[str]:
    """What the SLO list marks on an SLO's row (the SLO's page shows them in full): why it is
    not evaluated (status unsupported), then its warnings."""
    out = []
    if doc.get("status") == "unsupported":
        out.append(f"Not evaluated: {doc['reason']}" if doc.get("reason") else "Not evaluated (status unsupported)")
    out += [f"Warning: {w}" for w in doc.get("warnings") or []]
    return out


def worst_first(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SLO views ordered by status, worst first, then by name."""
    return sorted(views, key=lambda v: (v["status_rank"], str(v.get("name"))))


def rate_bars(rates: dict[str, float] | None) -> dict[str, Any]:
    """Burn rates per window with bar widths on a shared scale where 1× is marked."""
    items = [(w, r) for w, r in (rates or {}).items() if r is not None and math.isfinite(r)]
    top = max([1.0, *(r for _, r in items)]) * 1.1
    return {
        "rows": [
            {"window": w, "rate": r, "width": round(100 * r / top, 2), "hot": r > 1}
            for w, r in items
        ],
        "one": round(100 / top, 2),
    }


def alert_rows(alerts: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Alert pairs with a gauge: short and long burn as bars, the factor as a threshold line."""
    rows = []
    for alert in alerts or []:
        burns = [alert.get("short_burn") or 0.0, alert.get("long_burn") or 0.0]
        finite = [b for b in burns if math.isfinite(b)]
        factor = float(alert.get("factor") or 0.0)
        top = max([factor * 2, *finite, 1e-9]) * 1.05
        rows.append(
            {
                **alert,
                "short_width": round(100 * min(top, burns[0]) / top, 2),
                "long_width": round(100 * min(top, burns[1]) / top, 2),
                "threshold_left": round(100 * factor / top, 2),
                "short_over": burns[0] >= factor,
                "long_over": burns[1] >= factor,
            }
        )
    return rows


# Burn-down chart geometry, in SVG user units (the SVG scales to its box).
CHART_W, CHART_H = 1200, 300
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 70, 18, 14, 40
_ZOOM_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)  # y tick steps when zoomed in
CHART_FLOOR = -1.0  # the line is clipped at −100%: a budget spent twice over is simply gone


def burn_down_chart(
    points: list[dict[str, Any]] | None, axis: tuple[float, float] | None = None
) -> dict[str, Any] | None:
    """Remaining budget over the window as an SVG polyline; None without points.

    y runs from 1.0 (untouched budget) down past 0 (exhausted) when the line goes below it.
    """
    parsed = [(_parse(p.get("time")), p.get("remaining_ratio")) for p in points or []]
    series = [
        (stamp, float(ratio) if ratio is not None and math.isfinite(ratio) else CHART_FLOOR)
        for stamp, ratio in parsed
        if stamp is not None
    ]
    if not series:
        return None
    t0, t1 = series[0][0].timestamp(), series[-1][0].timestamp()
    if axis is not None:  # a time axis shared with the chart below it
        t0, t1 = min(t0, axis[0]), max(t1, axis[1])
    span = (t1 - t0) or 1.0
    lowest = min(r for _, r in series)
    bottom = 0.0 if lowest >= 0 else max(CHART_FLOOR, math.floor(lowest * 4) / 4)
    top = max(1.0, max(r for _, r in series))
    step = 0.25 if top - bottom <= 1.25 else 0.5
    if 0.5 < lowest < 1.0 and top == 1.0:
        # Most of the budget left: fit the axis to what was spent, or a 2 % drop is a hairline.
        spent = 1.0 - lowest
        step = next(s for s in _ZOOM_STEPS if 4 * s >= 1.2 * spent)
        bottom = max(0.0, math.floor(round((lowest - 0.1 * spent) / step, 9)) * step)
    plot_w, plot_h = CHART_W - _PAD_L - _PAD_R, CHART_H - _PAD_T - _PAD_B

    def x(seconds: float) -> float:
        return round(_PAD_L + plot_w * (seconds - t0) / span, 1)

    def y(ratio: float) -> float:
        clipped = min(top, max(bottom, ratio))
        return round(_PAD_T + plot_h * (top - clipped) / (top - bottom), 1)

    coords = [(x(stamp.timestamp()), y(ratio)) for stamp, ratio in series]
    path = " ".join(f"{'M' if i == 0 else 'L'}{cx},{cy}" for i, (cx, cy) in enumerate(coords))
    y_ticks = []
    value = top
    while value >= bottom - 1e-9:
        y_ticks.append({"y": y(value), "label": budget(round(value, 4)), "zero": abs(value) < 1e-9})
        value -= step
    x_ticks = x_axis(t0, t1, x)
    last_x, last_y = coords[-1]
    return {
        "width": CHART_W,
        "height": CHART_H,
        "left": _PAD_L,
        "right": CHART_W - _PAD_R,
        "top": _PAD_T,
        "bottom": CHART_H - _PAD_B,
        "zero_y": y(0.0),
        "path": path,
        "area": f"{path} L{last_x},{y(bottom)} L{coords[0][0]},{y(bottom)} Z",
        "points": len(coords),
        "last": {"x": last_x, "y": last_y, "ratio": series[-1][1]},
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
        "clipped": lowest < bottom,
        "t0": t0,
        "t1": t1,
        "from": series[0][0].strftime("%Y-%m-%d %H:%M"),
        "to": series[-1][0].strftime("%Y-%m-%d %H:%M"),
    }


def x_axis(t0: float, t1: float, x: Any) -> list[dict[str, Any]]:
    """Tick marks on whole minutes/hours/days (Unix seconds → SVG x), labels never past an edge."""
    ticks = display.time_ticks(t0, t1)
    out = []
    for i, (moment, label) in enumerate(ticks):
        cx = x(moment)
        anchor = "middle"
        if i == 0 and cx - _PAD_L < 45:
            anchor = "start"
        if i == len(ticks) - 1 and CHART_W - _PAD_R - cx < 45:
            anchor = "end"
        out.append({"x": cx, "label": label, "anchor": anchor})
    return out


def sli_chart(
    rows: list[dict[str, Any]] | None, objective: float | None, bucket_s: int, axis: tuple[float, float] | None = None
) -> dict[str, Any] | None:
    """Error rate per bucket as bars against the objective's allowed error rate (a dashed line);
    buckets without events are gaps. None without any event."""
    series: list[tuple[datetime, float | None, int, int]] = []
    for r in rows or []:
        stamp = _parse(r.get("time"))
        if stamp is not None:
            series.append((stamp, r.get("error_ratio"), int(r.get("bad") or 0), int(r.get("total") or 0)))
    if not any(n for _, _, _, n in series):
        return None
    t0 = series[0][0].timestamp()
    t1 = max(series[-1][0].timestamp() + bucket_s, t0 + 60)
    if axis is not None:  # a time axis shared with the chart above it
        t0, t1 = min(t0, axis[0]), max(t1, axis[1])
    allowed = (100.0 - objective) / 100 if objective is not None else None
    worst = max([e for _, e, _, _ in series if e is not None] + [allowed or 0.0, 1e-4])
    step = display.nice_step(worst * 1.05, 4)
    top = math.ceil(round(worst * 1.05 / step, 9)) * step
    plot_w, plot_h = CHART_W - _PAD_L - _PAD_R, SLI_H - _PAD_T - _PAD_B

    def x(seconds: float) -> float:
        return round(_PAD_L + plot_w * (seconds - t0) / (t1 - t0), 1)

    def y(ratio: float) -> float:
        return round(_PAD_T + plot_h * (top - min(top, ratio)) / top, 1)

    width = max(1.0, plot_w * bucket_s / (t1 - t0) - 1)
    bars = []
    for stamp, ratio, bad, total in series:
        if not total:
            continue
        left = x(stamp.timestamp())
        value = ratio or 0.0
        bars.append({"x": left, "w": round(min(width, CHART_W - _PAD_R - left), 1), "y": y(value),
                     "h": round(y(0.0) - y(value), 1), "ratio": value, "bad": bad, "total": total,
                     "at": display.utc_text(stamp), "hot": allowed is not None and value > allowed})
    y_ticks = [{"y": y(v), "label": display.number_tick(v * 100, step * 100) + "%"}
               for v in display.nice_ticks(0, top, 4) if v <= top + 1e-12]
    return {
        "width": CHART_W, "height": SLI_H, "left": _PAD_L, "right": CHART_W - _PAD_R, "top": _PAD_T,
        "bottom": SLI_H - _PAD_B, "bars": bars, "y_ticks": y_ticks, "x_ticks": x_axis(t0, t1, x),
        "allowed_y": y(allowed) if allowed is not None and allowed <= top else None, "allowed": allowed,
        "bucket": span_seconds(bucket_s), "t0": t0, "t1": t1,
    }


SLI_H = 220
LABEL_CHAR_W = 6.6  # SVG units per character of an 11px label, for placing labels apart
_LABEL_LANES = 3


def time_span(rows: list[dict[str, Any]] | None, tail_s: float = 0.0) -> tuple[float, float] | None:
    """First and last time of a series (plus ``tail_s`` after the last), in Unix seconds."""
    stamps = [p.timestamp() for p in (_parse(r.get("time")) for r in rows or []) if p is not None]
    return (min(stamps), max(stamps) + tail_s) if stamps else None


def change_markers(chart: dict[str, Any] | None, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Vertical markers for the changes (at_ns, kind, summary) inside a chart's time range,
    each label in the first of a few lanes where it overlaps no other label and stays inside
    the plot (flipped to the left of its line near the right edge); a label that fits in no
    lane is left out (its line keeps the tooltip)."""
    if not chart:
        return []
    t0, t1 = chart["t0"], chart["t1"]
    span = (t1 - t0) or 1.0
    plot_w = chart["right"] - chart["left"]
    lanes: list[list[tuple[float, float]]] = [[] for _ in range(_LABEL_LANES)]
    out = []
    for change in sorted(changes, key=lambda c: c["at_ns"]):
        seconds = change["at_ns"] / 1e9
        if not t0 <= seconds <= t1:
            continue
        mx = round(chart["left"] + plot_w * (seconds - t0) / span, 1)
        text = str(change["kind"])
        width = len(text) * LABEL_CHAR_W + 6
        flip = mx + 3 + width > chart["right"]
        a, b = (mx - 3 - width, mx) if flip else (mx, mx + 3 + width)
        lane = next((i for i, used in enumerate(lanes) if all(b < ua or a > ub for ua, ub in used)), None)
        if lane is not None:
            lanes[lane].append((a, b))
        out.append({
            "x": mx, "kind": change["kind"],
            "label": f"{change['kind']}: {change['summary']} ({utc(change.get('at'))})",
            "text": text if lane is not None else "",
            "text_x": round(mx - 3 if flip else mx + 3, 1), "anchor": "end" if flip else "start",
            "text_y": chart["top"] + 10 + 15 * (lane or 0),
        })
    return out
