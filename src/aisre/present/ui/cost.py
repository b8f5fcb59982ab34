"""Cost pages: spend and tokens by journey, model, prompt version and release with cost per
1K runs over time (change markers on it), budgets (gauge and forecast chart with its 80 %
band and projected exhaustion), rate-limit headroom, and the explanation of a cost change
(a waterfall of the factors that add up to the delta, causes with evidence and exemplar
traces). Every number comes from the same CostEngine calls the /api/cost routes make."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.core import display
from aisre.core.errors import NotFound, PermanentError
from aisre.core.timefmt import rfc3339
from aisre.present.api.cost import budget_now, engine, parse_window
from aisre.present.ui import format as fmt
from aisre.present.ui.pages import RANGE_CHOICES, _ctx, _page, _render, _since

MINUTE_NS = 60 * 10**9
HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS
COST_RANGES = (*RANGE_CHOICES, "all")
# Bucket lengths of the cost chart, shortest first: the first that leaves at most
# CHART_BUCKETS buckets over the data's span (so young data still draws a line, not a dot).
BUCKETS = (
    (MINUTE_NS, "1 min"), (5 * MINUTE_NS, "5 min"), (15 * MINUTE_NS, "15 min"), (HOUR_NS, "1 hour"),
    (6 * HOUR_NS, "6 hours"), (DAY_NS, "1 day"), (7 * DAY_NS, "1 week"),
)
CHART_BUCKETS = 48
GROUPINGS = (
    ("journey", "By journey"), ("model", "By model"), ("prompt_version", "By prompt version"),
    ("service_version", "By release (service.version)"),
)
# Chart geometry in SVG user units (the SVG scales to its box), as the burn-down chart.
W, H = 1200, 260
PAD_L, PAD_R, PAD_T, PAD_B = 84, 18, 14, 40
FACTOR_LABELS = {
    "runs": "runs", "calls_per_run": "answered calls per run", "model_mix": "model mix",
    "resends_per_call": "re-sends per call", "input_per_call": "input tokens per call",
    "output_per_call": "output tokens per call", "price": "price paid per unit", "residual": "residual",
}


# -- charts ------------------------------------------------------------------------------


def _scale(lo: float, hi: float, a: float, b: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: round(a + (b - a) * (v - lo) / span, 1)


def _money_ticks(top: float, y: Any) -> list[dict[str, Any]]:
    step = display.nice_step(top, 4)
    return [{"y": y(v), "label": display.money_tick(v, step)} for v in display.nice_ticks(0.0, top, 4) if v <= top * (1 + 1e-9)]


def _time_ticks(t0: int, t1: int, x: Any) -> list[dict[str, Any]]:
    ticks = display.time_ticks(t0 / 1e9, t1 / 1e9)
    out = []
    for i, (moment, label) in enumerate(ticks):
        cx = x(int(moment * 1e9))
        anchor = "start" if i == 0 and cx - PAD_L < 45 else "end" if i == len(ticks) - 1 and W - PAD_R - cx < 45 else "middle"
        out.append({"x": cx, "label": label, "anchor": anchor})
    return out


def _frame(t0: int, t1: int, top: float) -> dict[str, Any]:
    x = _scale(t0, t1, PAD_L, W - PAD_R)
    y = _scale(0.0, top, H - PAD_B, PAD_T)
    return {"width": W, "height": H, "left": PAD_L, "right": W - PAD_R, "top": PAD_T, "bottom": H - PAD_B,
            "x": x, "y": y, "y_ticks": _money_ticks(top, y), "x_ticks": _time_ticks(t0, t1, x),
            "t0": t0 / 1e9, "t1": t1 / 1e9}


def _nice_top(value: float) -> float:
    """The top of a money axis: the first round tick at or above the highest value (plus 5 %)."""
    if value <= 0:
        return 1.0
    return display.nice_ticks(0.0, value * 1.05, 4)[-1]


def per_1k_chart(buckets: list[dict[str, Any]], bucket_ns: int) -> dict[str, Any] | None:
    """Cost per 1K runs per bucket as a line with a dot per bucket (buckets without runs are gaps)."""
    points = [b for b in buckets if b["cost_per_1k_runs_usd"] is not None]
    if not points:
        return None
    t0 = points[0]["bucket_ns"]
    t1 = points[-1]["bucket_ns"] + bucket_ns
    frame = _frame(t0, t1, _nice_top(max(p["cost_per_1k_runs_usd"] for p in points)))
    x, y = frame["x"], frame["y"]
    dots, path, last = [], [], None
    for p in points:
        cx, cy = x(p["bucket_ns"] + bucket_ns // 2), y(p["cost_per_1k_runs_usd"])
        joined = last is not None and p["bucket_ns"] - last == bucket_ns
        path.append(f"{'L' if joined else 'M'}{cx},{cy}")
        last = p["bucket_ns"]
        dots.append({"x": cx, "y": cy, "value": p["cost_per_1k_runs_usd"], "runs": p["runs"],
                     "cost": p["cost_usd"], "at": rfc3339(p["bucket_ns"])})
    return {**frame, "path": " ".join(path), "dots": dots}


def forecast_chart(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Cumulative spend this period, the forecast to period end with its 80 % band (the
    band is the forecast's hourly interval, accumulated), the budget and its thresholds."""
    spent = [(_parse_ns(p["hour_start"]), p["cumulative_usd"]) for p in doc.get("spent_series") or []]
    ahead = [(_parse_ns(p["time"]), p["cumulative_usd"], p["step_low_usd"], p["step_high_usd"])
             for p in doc.get("forecast_series") or []]
    if not spent:
        return None
    t0 = _parse_ns(doc["period_start"])
    t1 = _parse_ns(doc["period_end"])
    low, high, band_hi, band_lo = doc["spent_usd"], doc["spent_usd"], [], []
    for at, _, lo, hi in ahead:
        low, high = low + lo, high + hi
        band_lo.append((at, low))
        band_hi.append((at, high))
    top_value = max([doc["amount_usd"], doc["forecast_usd"], high, spent[-1][1]])
    frame = _frame(t0, t1, _nice_top(top_value))
    x, y = frame["x"], frame["y"]
    # Spend is cumulative at the end of each hour; the current hour's at the forecast's now.
    now_ns = _parse_ns(doc["as_of"]) if doc.get("as_of") else min(spent[-1][0] + HOUR_NS, t1)
    spent_path = " ".join(f"{'M' if i == 0 else 'L'}{x(min(h + HOUR_NS, t1, now_ns))},{y(v)}" for i, (h, v) in enumerate(spent))
    now_x, now_y = x(now_ns), y(spent[-1][1])
    forecast_path = f"M{now_x},{now_y} " + " ".join(f"L{x(at)},{y(v)}" for at, v, _, _ in ahead)
    band = ""
    if ahead:
        band = (f"M{now_x},{now_y} " + " ".join(f"L{x(a)},{y(v)}" for a, v in band_hi)
                + " " + " ".join(f"L{x(a)},{y(v)}" for a, v in reversed(band_lo)) + " Z")
    exhaustion = doc.get("projected_exhaustion")
    thresholds = [{"y": y(t * doc["amount_usd"]), "label": f"{t * 100:.4g}%"} for t in doc["thresholds"]]
    exhaustion_x = x(_parse_ns(exhaustion)) if exhaustion else None
    return {
        **frame, "spent_path": spent_path, "forecast_path": forecast_path, "band": band,
        "now": {"x": now_x, "y": now_y}, "end": {"x": x(t1), "y": y(doc["forecast_usd"])},
        "budget_y": y(doc["amount_usd"]),
        **_budget_labels(frame, thresholds, exhaustion_x),
    }


_LABEL_H = 12  # SVG units an 11px label takes vertically


def _budget_labels(frame: dict[str, Any], thresholds: list[dict[str, Any]],
                   exhaustion_x: float | None) -> dict[str, Any]:
    """Threshold labels at the right edge and the "exhausted" label by its marker, placed so
    no two overlap: when the budget is small against the forecast its thresholds crowd
    together, and a label that would overlap one already placed gives way (its line keeps
    the tooltip); the exhaustion label moves down a lane, or is left out."""
    boxes: list[tuple[float, float, float, float]] = []  # left, top, right, bottom

    def free(box: tuple[float, float, float, float]) -> bool:
        return all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes)

    right = frame["right"] - 4
    for th in sorted(thresholds, key=lambda t: t["y"]):
        width = len(th["label"]) * fmt.LABEL_CHAR_W
        box = (right - width, th["y"] - 3 - _LABEL_H, right, th["y"] - 3)
        th["text"] = th["label"] if free(box) and box[1] >= 0 else ""
        if th["text"]:
            boxes.append(box)
    placed: dict[str, Any] | None = None
    if exhaustion_x is not None:
        width = len("exhausted") * fmt.LABEL_CHAR_W
        flip = exhaustion_x + 3 + width > frame["right"]
        left = exhaustion_x - 3 - width if flip else exhaustion_x + 3
        for lane in range(3):
            baseline = frame["top"] + 10 + 15 * lane
            if free((left, baseline - _LABEL_H + 2, left + width, baseline + 2)):
                placed = {"x": round(exhaustion_x - 3 if flip else exhaustion_x + 3, 1), "y": baseline,
                          "anchor": "end" if flip else "start"}
                break
    return {"thresholds": thresholds, "exhaustion_x": exhaustion_x, "exhaustion_label": placed}


def gauge(doc: dict[str, Any]) -> dict[str, Any]:
    """Spend and forecast as shares of the budget on a 0..max(120 %, forecast) bar."""
    top = max(1.2, doc["forecast_share"], doc["spent_share"], max(doc["thresholds"], default=1.0))

    def at(share: float) -> float:
        return round(100 * min(share, top) / top, 2)

    level = "bad" if doc["forecast_share"] >= 1 else "warn" if doc.get("alert") is not None else "ok"
    return {"spent": at(doc["spent_share"]), "forecast": at(doc["forecast_share"]), "budget": at(1.0),
            "marks": [{"left": at(t), "label": f"{t * 100:.4g}%"} for t in doc["thresholds"]], "level": level}


def waterfall(doc: dict[str, Any]) -> dict[str, Any]:
    """The decomposition as floating bars: the baseline (scaled to the current window's
    length), each factor's contribution and the residual stacked from it, then the current
    cost. The factor bars add up to the delta by construction of the decomposition."""
    current = float(doc["current"]["cost_usd"])
    delta = float(doc["delta_usd"])
    base = current - delta
    terms = dict(doc["decomposition"]["terms_usd"])
    residual = float(doc["decomposition"].get("residual_usd") or 0.0)
    steps = [(k, float(v)) for k, v in terms.items()] + ([("residual", residual)] if residual else [])
    rows: list[dict[str, Any]] = [{"label": "baseline", "key": "baseline", "from": 0.0, "to": base, "value": base}]
    running = base
    for key, value in steps:
        rows.append({"label": FACTOR_LABELS.get(key, key), "key": key, "from": running, "to": running + value, "value": value})
        running += value
    rows.append({"label": "current", "key": "current", "from": 0.0, "to": current, "value": current})
    lo = min(0.0, *(min(r["from"], r["to"]) for r in rows))
    hi = max(max(r["from"], r["to"]) for r in rows) or 1.0
    left, right, row_h = 210, 1070, 26  # room on the right for the value of the longest bar
    x = _scale(lo, hi * 1.05, left, right)
    bars = []
    for i, r in enumerate(rows):
        a, b = sorted((x(r["from"]), x(r["to"])))
        kind = "total" if r["key"] in ("baseline", "current") else "up" if r["value"] > 0 else "down" if r["value"] < 0 else "flat"
        bars.append({**r, "y": 8 + i * row_h, "x": a, "w": max(b - a, 1.0), "kind": kind, "text_x": max(a, b) + 6})
    bottom = 12 + len(rows) * row_h
    step = display.nice_step(hi * 1.05 - lo, 5)
    ticks = [{"x": x(v), "label": display.money_tick(v, step)} for v in display.nice_ticks(lo, hi * 1.05, 5)
             if lo - 1e-12 <= v <= hi * 1.05 + 1e-12]
    return {"bars": bars, "width": 1200, "height": bottom + 40, "left": left, "right": right, "row_h": row_h,
            "top": 8, "bottom": bottom, "zero_x": x(0.0), "sum_terms": running - base, "x_ticks": ticks}


def _parse_ns(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 10**9)


# -- pages -------------------------------------------------------------------------------


def bucket_for(span_ns: int) -> tuple[int, str]:
    """The chart's bucket for data spanning ``span_ns``: the shortest leaving at most
    CHART_BUCKETS buckets (8 minutes of data → 1-minute buckets, a month → 1-day ones)."""
    return next((b for b in BUCKETS if span_ns / b[0] <= CHART_BUCKETS), BUCKETS[-1])


async def cost_page(request: Request) -> Response:
    """Spend over the chosen range: totals, cost per 1K runs over time, the four breakdowns,
    unpriced models, budgets and rate-limit headroom."""
    ctx = _ctx(request)
    cost = engine(request)
    tenant = ctx.tenant_for(request)
    since, since_ns = _since(request)
    journey = request.query_params.get("journey") or None
    now = time.time_ns()
    groups = {}
    for by, _ in GROUPINGS:
        keys = ("model", "provider") if by == "model" else (by,)
        doc = await run_in_threadpool(cost.breakdown, tenant, since_ns, None, keys, None, journey, None)
        groups[by] = sorted(doc["groups"], key=lambda g: -(g["cost_usd"] or 0.0))
    total = doc["total"]
    unpriced = doc["unpriced"]
    # The time range is the data's (within the chosen look-back), the bucket what gives it
    # several points: a minute-by-minute probe finds where the data begins and ends.
    probe = await run_in_threadpool(cost.breakdown, tenant, since_ns, None, (), DAY_NS, journey, None)
    days = sorted(g["bucket_ns"] for g in probe["groups"] if g["runs"] or g["cost_usd"])
    span = (days[-1] - days[0] + DAY_NS) if days else HOUR_NS
    if days and span <= 2 * DAY_NS:
        minutes = await run_in_threadpool(cost.breakdown, tenant, since_ns, None, (), MINUTE_NS, journey, None)
        stamps = sorted(g["bucket_ns"] for g in minutes["groups"] if g["runs"] or g["cost_usd"])
        span = stamps[-1] - stamps[0] + MINUTE_NS if stamps else HOUR_NS
    bucket_ns, bucket_label = bucket_for(span)
    shaped = await run_in_threadpool(cost.breakdown, tenant, since_ns, None, (), bucket_ns, journey, None)
    buckets = sorted(shaped["groups"], key=lambda g: g["bucket_ns"])
    chart = per_1k_chart(buckets, bucket_ns)
    markers: list[dict[str, Any]] = []
    if chart and ctx.incidents is not None:
        rows = await run_in_threadpool(
            ctx.incidents.store.list_changes, tenant, int(chart["t0"] * 1e9), int(chart["t1"] * 1e9) + 1, journey, None, 200,
        )
        markers = fmt.change_markers(chart, [dict(r, at=rfc3339(r["at_ns"])) for r in rows])
    budgets = await run_in_threadpool(cost.budgets, tenant, now)
    for b in budgets:
        b["gauge"] = gauge(b)
    headroom = await run_in_threadpool(cost.headroom, tenant, since_ns or 0, now + DAY_NS)
    context = {
        "nav": "cost", "since": since, "since_choices": COST_RANGES, "journey": journey,
        "total": total, "groups": groups, "groupings": GROUPINGS, "unpriced": unpriced,
        "chart": chart, "markers": markers, "bucket": bucket_label, "bucket_s": bucket_ns // 10**9,
        "buckets": len(buckets), "budgets": budgets, "headroom": headroom,
        "journeys": [g["journey"] for g in groups["journey"]],
    }
    return _render(request, "cost.html", context)


async def budget_page(request: Request) -> Response:
    """One budget: gauge, cumulative spend and forecast with its band, exhaustion date
    (as of ``?now=``, default the current time)."""
    ctx = _ctx(request)
    now = budget_now(request)
    doc = await run_in_threadpool(engine(request).budget, ctx.tenant_for(request), request.path_params["name"], now)
    alerts = await run_in_threadpool(ctx.store.list_alerts, ctx.tenant_for(request), None, None, 200)
    prefix = f"budget:{doc['name']}@"
    context = {"nav": "cost", "b": doc, "gauge": gauge(doc), "chart": forecast_chart(doc),
               "alerts": [dict(a, at=rfc3339(a["pending_since_ns"]), ended=rfc3339(a["ended_ns"]))
                          for a in alerts if a["slo"].startswith(prefix)]}
    return _render(request, "cost_budget.html", context)


async def explain_page(request: Request) -> Response:
    """The form; with journey, baseline and current, the explanation of the change."""
    ctx = _ctx(request)
    cost = engine(request)
    tenant = ctx.tenant_for(request)
    q = request.query_params
    journey, baseline, current = q.get("journey") or "", q.get("baseline") or "", q.get("current") or ""
    names = await run_in_threadpool(cost.breakdown, tenant, None, None, ("journey",), None, None, None)
    context: dict[str, Any] = {
        "nav": "cost", "journey": journey, "baseline": baseline, "current": current,
        "journeys": sorted(g["journey"] for g in names["groups"]), "doc": None, "error": None,
    }
    if journey or baseline or current:
        try:
            if not journey:
                raise PermanentError("journey is required")
            now = time.time_ns()
            windows = parse_window(baseline, "baseline", now), parse_window(current, "current", now)
            doc = await run_in_threadpool(cost.explain, tenant, journey, *windows)
        except (PermanentError, NotFound) as exc:
            context["error"] = exc.message
            return _render(request, "cost_explain.html", context, 404 if isinstance(exc, NotFound) else 400)
        context["doc"] = doc
        # Too little data: the counts only, no waterfall of factors that were never computed.
        context["chart"] = waterfall(doc) if doc.get("status") == "explained" else None
    return _render(request, "cost_explain.html", context)


def cost_ui_routes() -> list[BaseRoute]:
    """Routes of the cost pages."""
    return [
        Route("/cost", _page(cost_page), methods=["GET"], include_in_schema=False),
        Route("/cost/explain", _page(explain_page), methods=["GET"], include_in_schema=False),
        Route("/cost/budgets/{name}", _page(budget_page), methods=["GET"], include_in_schema=False),
    ]
