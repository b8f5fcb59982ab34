"""The Scorecards page: per journey, service or team, its level, the review's facts and a
sparkline of each headline fact over the last periods (server-rendered SVG)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.act.scorecards import parse_period, period_containing
from aisre.core.timefmt import span_text
from aisre.present.api.scorecards import scorecard_document
from aisre.present.ui.pages import _page, _render

PERIOD_CHOICES = ("week", "month", "quarter")
SCOPE_CHOICES = ("journey", "service", "team")
SPARK_W, SPARK_H = 120, 28

# (trend key, label, how the value reads, higher is better?)
TRENDS = (
    ("attainment_min", "worst SLO attainment", "pct", True),
    ("budget_remaining_min", "budget left", "pct", True),
    ("incidents", "incidents", "int", False),
    ("pages", "pages", "int", False),
    ("change_failure_rate", "change failure rate", "pct", False),
    ("deployments", "deployments", "int", True),
    ("cost_per_1k_successful_usd", "cost per 1K successful runs", "usd", False),
)


def shown(value: Any, kind: str) -> str:
    """A fact as people read it."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{float(value) * 100:.1f} %"
    if kind == "usd":
        return f"${float(value):.4f}" if float(value) < 1 else f"${float(value):,.2f}"
    if kind == "s":
        return span_text(float(value)) if float(value) >= 60 else f"{float(value):.0f} s"
    if kind == "rate":
        return f"{float(value):.2f}/day"
    return f"{int(value):,}" if isinstance(value, int) or float(value).is_integer() else f"{float(value):.3g}"


def sparkline(values: list[Any]) -> dict[str, Any]:
    """An SVG polyline of a trend, oldest first, with a dot per period that has a value; gaps
    (no value) break the line."""
    nums = [float(v) for v in values if v is not None]
    n = len(values)
    if not nums:
        return {"segments": [], "dots": [], "width": SPARK_W, "height": SPARK_H}
    lo, hi = min(nums), max(nums)
    span = hi - lo or 1.0
    step = (SPARK_W - 6) / max(1, n - 1)
    points: list[tuple[float, float] | None] = []
    for i, v in enumerate(values):
        if v is None:
            points.append(None)
            continue
        y = SPARK_H - 4 - (float(v) - lo) / span * (SPARK_H - 8) if hi != lo else SPARK_H / 2
        points.append((round(3 + i * step, 1), round(y, 1)))
    segments: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for p in points:
        if p is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append(p)
    if current:
        segments.append(current)
    return {
        "segments": [" ".join(f"{x},{y}" for x, y in seg) for seg in segments],
        "dots": [{"x": p[0], "y": p[1]} for p in points if p is not None],
        "width": SPARK_W, "height": SPARK_H,
    }


def card_view(card: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one scorecard: headline figures, trend sparklines, failing rules."""
    f, trend = card["facts"], card["trend"]
    rows = []
    for key, label, kind, better_up in TRENDS:
        values = trend.get(key) or []
        last = values[-1] if values else None
        prev = next((v for v in reversed(values[:-1]) if v is not None), None)
        direction = None
        if last is not None and prev is not None and last != prev:
            direction = "better" if (last > prev) == better_up else "worse"
        rows.append({"key": key, "label": label, "value": shown(last, kind), "spark": sparkline(values),
                     "points": [{"period": p, "value": shown(v, kind)} for p, v in zip(trend["periods"], values, strict=False)],
                     "direction": direction})
    figures = [
        ("alerts", shown(f["alerts"], "int")), ("pages", shown(f["pages"], "int")),
        ("incidents", shown(f["incidents"], "int")),
        ("by severity", " · ".join(f"{s} {f[s]}" for s in ("sev1", "sev2", "sev3", "sev4"))),
        ("MTTD", shown(f["mttd_s"], "s")), ("MTTA", shown(f["mtta_s"], "s")), ("MTTR", shown(f["mttr_s"], "s")),
        ("changes", f"{f['changes']} ({f['failed_changes']} failed)"),
        ("change failure rate", shown(f["change_failure_rate"], "pct")),
        ("deployment frequency", shown(f["deployments_per_day"], "rate")),
        ("cost per 1K successful runs", shown(f["cost_per_1k_successful_usd"], "usd")),
        ("vs previous period", "—" if f.get("cost_per_1k_change") is None else f"{f['cost_per_1k_change'] * 100:+.1f} %"),
        ("open action items", shown(f["open_action_items"], "int")),
        ("oldest open item", shown(f["oldest_action_item_age_s"], "s")),
        ("policy-violating runs", "—" if f.get("policy_runs_judged") is None
         else f"{shown(f['policy_violation_rate'], 'pct')} of {f['policy_runs_judged']} judged"),
        ("guardrail trips", "—" if f.get("guardrail_trips") is None
         else f"{f['guardrail_trips']} ({shown(f['guardrail_trip_rate'], 'pct')} of checked runs)"),
        ("telemetry coverage", "—" if f.get("telemetry_runs") is None
         else f"{shown(f['telemetry_coverage_min'], 'pct')} ({f['telemetry_violations']} violations)"),
    ]
    return {**card, "trends": rows, "figures": figures, "failing": [r for r in card["rules"] if not r["passed"]]}


async def scorecards_page(request: Request) -> Response:
    """Scorecards of every journey (or service, or team) over the chosen period."""
    doc = await scorecard_document(request)
    q = request.query_params
    shown_period = parse_period(doc["period"]["label"], 0)
    context = {
        "nav": "scorecards", "doc": doc, "cards": [card_view(c) for c in doc["scorecards"]],
        "period": (q.get("period") or "month").strip(), "scope": doc["scope"], "name": q.get("name") or None,
        "previous": shown_period.previous().label,
        "following": period_containing(shown_period.kind, shown_period.end).label,
        "period_choices": PERIOD_CHOICES, "scope_choices": SCOPE_CHOICES,
    }
    return _render(request, "scorecards.html", context)


def scorecard_ui_routes() -> list[BaseRoute]:
    """Routes of the Scorecards page."""
    return [Route("/scorecards", _page(scorecards_page), methods=["GET"], include_in_schema=False)]
