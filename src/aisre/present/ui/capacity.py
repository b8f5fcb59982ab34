"""The capacity page: per saturation resource (GPU utilisation, KV cache, queue depth…) and per
rate-limited model (token throughput against its limit, the headroom left under it), its
level now, growth, and when the trend crosses the warning level (or a headroom falls to its
floor), with the 80 % band, drawn on
the same chart frame and label placement as the budget forecast (present/ui/cost.py). Every
number comes from evaluate/capacity.py, as /api/capacity."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.core import display
from aisre.core.errors import PermanentError
from aisre.core.series import parse_selector
from aisre.evaluate.capacity import (
    MIN_MINUTES,
    RESOURCES,
    SaturationResource,
    levels_of,
    tenant_resources,
    watched_resources,
)
from aisre.evaluate.cost import CostEngine
from aisre.present.api.cost import parse_duration_ns
from aisre.present.ui.cost import (
    HOUR_NS,
    MINUTE_NS,
    PAD_B,
    PAD_L,
    PAD_R,
    PAD_T,
    H,
    W,
    _budget_labels,
    _parse_ns,
    _scale,
    _time_ticks,
)
from aisre.present.ui.pages import _ctx, _page, _render

LOOKBACKS = ("6h", "1d", "3d", "7d")
# Labels the series of a resource are told apart by; the SDK's instance id is a long uuid.
_HIDDEN_LABELS = ("service.instance.id",)


def level_text(value: float | None, unit: str) -> str:
    """A level in its unit: ratios and percentages as %, counts as numbers."""
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "%":
        return f"{value:.1f}%"
    # Large counts (tokens a minute, MiB) in full with separators: ",.4g" would print 1.5e+05.
    return (f"{value:,.0f} {unit}" if abs(value) >= 1e4 else f"{value:,.4g} {unit}").strip()


def growth_text(per_hour: float, unit: str) -> str:
    """Growth per day in the metric's unit (percentage points for ratios)."""
    per_day = per_hour * 24
    sign = "+" if per_day > 0 else ""
    if unit == "ratio":
        return f"{sign}{per_day * 100:.2f} pts/day"
    if unit == "%":
        return f"{sign}{per_day:.2f} pts/day"
    return (f"{sign}{per_day:,.0f} {unit}/day" if abs(per_day) >= 1e4 else f"{sign}{per_day:,.3g} {unit}/day").strip()


def _tick(value: float, step: float, unit: str) -> str:
    if unit == "ratio":
        return f"{display.number_tick(value * 100, step * 100)}%"
    if unit == "%":
        return f"{display.number_tick(value, step)}%"
    return display.number_tick(value, step)


def labels_text(labels: dict[str, Any]) -> str:
    """A series' labels as k=v, without the SDK's instance id."""
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _HIDDEN_LABELS) or "—"


def capacity_chart(item: dict[str, Any], now_ns: int, horizon_ns: int) -> dict[str, Any] | None:
    """The headline series' per-minute level, its trend ahead with the 80 % band (when there is
    enough data), the warning level and the crossing marker, with axes in the metric's unit."""
    w, unit, threshold = item["worst"], item["unit"], item["threshold"]
    history = w.get("history") or []
    if not history:
        return None
    t0 = history[0]["time_ns"] - MINUTE_NS // 2
    ahead: list[tuple[int, float, float, float]] = []
    t1 = now_ns
    if w["enough_data"]:
        reach = max(now_ns - t0, 6 * HOUR_NS)
        crossing = w["latest_ns"] or w["crossing_ns"]
        if crossing is not None:
            reach = max(reach, int((crossing - now_ns) * 1.15))
        t1 = now_ns + min(horizon_ns, reach)
        ahead = [(at, p["mean"], p["low"], p["high"]) for p in w["series"] if (at := _parse_ns(p["time"])) <= t1]
    values = [p["value"] for p in history] + [v for _, m, lo, hi in ahead for v in (m, hi)] + [threshold]
    top = display.nice_ticks(0.0, max(values) * 1.05, 4)[-1] if max(values) > 0 else 1.0
    full = {"ratio": 1.0, "%": 100.0}.get(unit)
    if full is not None and max(values) <= full:
        top = min(top, full)  # a utilisation axis ends at 100 %
    x = _scale(t0, t1, PAD_L, W - PAD_R)
    y = _scale(0.0, top, H - PAD_B, PAD_T)

    def yc(v: float) -> float:
        return float(y(min(max(v, 0.0), top)))

    step = display.nice_step(top, 4)
    frame = {"width": W, "height": H, "left": PAD_L, "right": W - PAD_R, "top": PAD_T, "bottom": H - PAD_B,
             "y_ticks": [{"y": y(v), "label": _tick(v, step, unit)} for v in display.nice_ticks(0.0, top, 4) if v <= top * (1 + 1e-9)],
             "x_ticks": _time_ticks(t0, t1, x), "t0": t0 / 1e9, "t1": t1 / 1e9}
    level_path = " ".join(f"{'M' if i == 0 else 'L'}{x(p['time_ns'])},{yc(p['value'])}" for i, p in enumerate(history))
    out: dict[str, Any] = {**frame, "level_path": level_path, "forecast_path": "", "band": "", "now_x": x(now_ns)}
    if ahead and w["current"] is not None:
        now_y = yc(w["current"])
        out["forecast_path"] = f"M{x(now_ns)},{now_y} " + " ".join(f"L{x(a)},{yc(m)}" for a, m, _, _ in ahead)
        out["band"] = (f"M{x(now_ns)},{now_y} " + " ".join(f"L{x(a)},{yc(hi)}" for a, _, _, hi in ahead)
                       + " " + " ".join(f"L{x(a)},{yc(lo)}" for a, _, lo, _ in reversed(ahead)) + " Z")
    name = "floor" if item.get("direction") == "falling" else "warning"
    warning = [{"y": yc(threshold), "label": f"{name} {level_text(threshold, unit)}"}]
    crossing_x = x(w["crossing_ns"]) if w["enough_data"] and w["crossing_ns"] is not None and w["crossing_ns"] <= t1 else None
    return {**out, "threshold_y": yc(threshold), **_budget_labels(frame, warning, crossing_x)}


def _custom(request: Request) -> SaturationResource | None:
    q = request.query_params
    metric, threshold = (q.get("metric") or "").strip(), (q.get("threshold") or "").strip()
    if not metric and not threshold:
        return None
    if not metric or not threshold:
        raise PermanentError("give both metric (a series selector) and threshold to watch another resource")
    try:
        parse_selector(metric)
        level = float(threshold)
    except ValueError as exc:
        raise PermanentError(f"metric or threshold: {exc}") from None
    direction = (q.get("direction") or "rising").strip()
    if direction not in ("rising", "falling"):
        raise PermanentError(f"direction must be rising or falling; got {direction!r}")
    return SaturationResource(metric, metric, level, (q.get("unit") or "").strip(), falling=direction == "falling",
                              level_source="query")


async def capacity_page(request: Request) -> Response:
    """Every saturation resource with series and every rate-limited model with calls: level,
    growth, forecast crossing and chart."""
    ctx = _ctx(request)
    tenant = ctx.tenant_for(request)
    lookback = request.query_params.get("lookback") or "1d"
    if lookback not in LOOKBACKS:
        raise PermanentError(f"lookback must be one of {', '.join(LOOKBACKS)}; got {lookback!r}")
    horizon_ns = 7 * 24 * HOUR_NS
    custom = _custom(request)
    levels = await run_in_threadpool(levels_of, ctx.store, tenant)
    watched = tenant_resources(levels)  # at the tenant's own levels, without those it turned off
    off = [r for r in RESOURCES if r.metric not in {w.metric for w in watched}]
    resources = (custom, *watched) if custom else watched
    now = time.time_ns()
    found = ctx.extra.get("cost")
    cost = found.db if isinstance(found, CostEngine) else None
    items = await run_in_threadpool(watched_resources, ctx.store, cost, tenant, now, resources,
                                    parse_duration_ns(lookback, "lookback"), horizon_ns)
    for item in items:
        item["chart"] = capacity_chart(item, now, horizon_ns)
        for row in item["series"]:
            row["labels_text"] = labels_text(row["labels"])
    context = {"nav": "capacity", "items": items, "now_ns": now, "lookback": lookback, "lookbacks": LOOKBACKS,
               "min_minutes": MIN_MINUTES, "custom": custom, "known": watched, "off": off,
               "built_in": {r.metric: r.threshold for r in RESOURCES},
               "level": level_text, "growth": growth_text}
    return _render(request, "capacity.html", context)


def capacity_ui_routes() -> list[BaseRoute]:
    """Route of the capacity page."""
    return [Route("/capacity", _page(capacity_page), methods=["GET"], include_in_schema=False)]
