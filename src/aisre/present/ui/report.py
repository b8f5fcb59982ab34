"""The reliability review rendered for people: a printable HTML page with server-drawn SVG charts
(budget burn per SLO, runs and failures per day, cost per day), and Markdown with text charts."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from aisre.act.report import review
from aisre.act.scorecards import parse_period
from aisre.core.errors import PermanentError
from aisre.core.timefmt import span_text
from aisre.evaluate.capacity import capacity_review, resources_for
from aisre.evaluate.cost import CostEngine
from aisre.present.api import models
from aisre.present.api.openapi import operation
from aisre.present.api.routes import ORJSONResponse, _ctx
from aisre.present.api.scorecards import server_rules
from aisre.present.ui.pages import _env, _page

W, H, PAD = 640, 160, 28
COLORS = ("#5b3fd1", "#1b7f3b", "#c62828", "#a15c00", "#2457c5", "#6b7385")
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
        "frame-ancestors 'none'")


def bar_chart(labels: list[str], values: list[float], title: str, unit: str = "", overlay: list[float] | None = None) -> dict[str, Any]:
    """Bars per day (and an overlaid darker bar, e.g. failures within runs), with axis labels."""
    top = max([*values, *(overlay or []), 0.0]) or 1.0
    n = max(1, len(values))
    step = (W - 2 * PAD) / n
    bars = []
    for i, v in enumerate(values):
        h = (H - 2 * PAD) * v / top
        bar: dict[str, Any] = {"x": round(PAD + i * step + 1, 1), "y": round(H - PAD - h, 1), "w": round(max(step - 2, 1), 1), "h": round(h, 1),
               "title": f"{labels[i]}: {v:,.4g}{unit}"}
        if overlay is not None:
            oh = (H - 2 * PAD) * overlay[i] / top
            bar["oy"], bar["oh"] = round(H - PAD - oh, 1), round(oh, 1)
            bar["title"] += f" ({overlay[i]:,.4g} failed)"
        bars.append(bar)
    ticks = [{"x": round(PAD + i * step + step / 2, 1), "label": labels[i][5:]} for i in range(0, n, max(1, n // 6))]
    return {"kind": "bar", "title": title, "w": W, "h": H, "pad": PAD, "bars": bars, "ticks": ticks,
            "top": f"{top:,.4g}{unit}", "empty": not any(values)}


def line_chart(labels: list[str], series: list[tuple[str, list[float | None]]], title: str, limit: float | None = 1.0) -> dict[str, Any]:
    """Lines per series over the days (gaps where no value), and a dashed limit (100 % of budget)."""
    values = [v for _, vs in series for v in vs if v is not None]
    top = max([*values, limit or 0.0, 0.0]) or 1.0
    n = max(1, len(labels))
    step = (W - 2 * PAD) / max(1, n - 1)
    lines = []
    for k, (name, vs) in enumerate(series):
        pts = [f"{PAD + i * step:.1f},{H - PAD - (H - 2 * PAD) * v / top:.1f}" for i, v in enumerate(vs) if v is not None]
        last = next((v for v in reversed(vs) if v is not None), None)
        lines.append({"name": name, "points": " ".join(pts), "color": COLORS[k % len(COLORS)],
                      "last": "—" if last is None else f"{last * 100:.0f} %"})
    ticks = [{"x": round(PAD + i * step, 1), "label": labels[i][5:]} for i in range(0, n, max(1, n // 6))]
    limit_y = round(H - PAD - (H - 2 * PAD) * limit / top, 1) if limit is not None else None
    return {"kind": "line", "title": title, "w": W, "h": H, "pad": PAD, "lines": lines, "ticks": ticks,
            "limit_y": limit_y, "top": f"{top * 100:.0f} %", "empty": not values}


def charts(doc: dict[str, Any]) -> dict[str, Any]:
    """The review's charts."""
    days, daily = doc["days"], doc["daily"]
    burn = [(s["slo"], s["budget_spent_by_day"]) for s in doc["slos"] if s["total"] and not s["diagnostic"]]
    return {
        "burn": line_chart(days, burn, "Error budget spent (share of the period's budget, by day)"),
        "runs": bar_chart(days, [float(x) for x in daily["runs"]], "Runs per day (failed in red)",
                          overlay=[float(x) for x in daily["failed_runs"]]),
        "cost": bar_chart(days, daily["cost_usd"], "Model cost per day", unit=" USD"),
        # Each resource's daily peak against its own warning level (1 = at the warning).
        "capacity": line_chart(days, [(c["resource"], [None if p is None else p / c["threshold"] for p in c["daily_peak"]])
                                      for c in doc.get("capacity") or [] if c["threshold"]],
                               "Daily peak of each resource (share of its warning level)"),
    }


def _secs(value: float | None) -> str:
    return "—" if value is None else span_text(value) if value >= 60 else f"{value:.0f} s"


def capacity_level(value: float | None, unit: str) -> str:
    """A saturation level in its unit (ratios as %)."""
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "%":
        return f"{value:.1f} %"
    # Large counts (tokens a minute, MiB) in full: ",.4g" would print 8e+04.
    return (f"{value:,.0f} {unit}" if abs(value) >= 1e4 else f"{value:,.4g} {unit}").strip()


def capacity_growth(c: dict[str, Any]) -> str:
    """Growth per day in the resource's unit (percentage points for ratios)."""
    g = c["growth_per_day"]
    if c["unit"] == "ratio":
        return f"{g * 100:+.2f} pts"
    return (f"{g:+,.0f} {c['unit']}" if abs(g) >= 1e4 else f"{g:+,.3g} {c['unit']}").strip()


def capacity_threshold(c: dict[str, Any]) -> str:
    """What a resource is measured against: its warning level (whose), or a headroom's floor."""
    if c.get("direction") == "falling":
        return f"falls to {capacity_level(c['threshold'], c['unit'])}"
    source = c.get("level_source")
    if source == "rate limit" and c.get("limit"):
        return f"{capacity_level(c['threshold'], c['unit'])} ({c['warn_at'] * 100:.0f} % of the limit)"
    return capacity_level(c["threshold"], c["unit"]) + (" (tenant's level)" if source == "tenant" else "")


def render_html(doc: dict[str, Any]) -> str:
    """The standalone, printable review page (no script; inline styles and SVG)."""
    return _env().get_template("report.html").render(doc=doc, charts=charts(doc), secs=_secs,
                                                     level=capacity_level, growth=capacity_growth,
                                                     against=capacity_threshold)


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _bar(value: float, top: float, width: int = 20) -> str:
    n = round(width * value / top) if top else 0
    return "█" * n + "·" * (width - n)


def _detection(g: dict[str, Any]) -> str:
    """How a drill was detected: policy violations for agent drills, else the first page."""
    if g.get("detect") == "policy":
        first = g["time_to_first_violation_s"]
        return f"{g['policy_violations']} violations" + ("" if first is None else f", first after {_secs(first)}")
    late = " (**late**)" if g["detected_within_page_window"] is False else ""
    return f"page after {_secs(g['time_to_first_page_s'])}{late}" if g["time_to_first_page_s"] is not None else "**no page**"


def render_markdown(doc: dict[str, Any]) -> str:
    """The review as Markdown; charts as text bars (one per day) that read in any viewer."""
    s, p = doc["summary"], doc["period"]
    pct = lambda v: "—" if v is None else f"{v * 100:.1f} %"  # noqa: E731
    out = [f"# Reliability review: {p['kind']} {p['label']}", "",
           f"{p['start'][:10]} to {p['end'][:10]} · generated {doc['generated'][:16]}Z", "",
           "## Summary", "",
           "| runs | success | cost | cost / 1K good runs | incidents | pages | near misses | MTTD | MTTA | MTTR | changes (failed) | SLOs met | open items (overdue) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
           f"| {s['runs']:,} | {pct(s['success_rate'])} | ${s['cost_usd']:,.2f} | "
           f"{_usd(s['cost_per_1k_successful_usd'])} | "
           f"{s['incidents']} | {s['pages']} | {s['near_misses']} | {_secs(s['mttd_s'])} | {_secs(s['mtta_s'])} | {_secs(s['mttr_s'])} | "
           f"{s['changes']} ({s['failed_changes']}) | {s['slos_met']}/{s['slos_measured']} | {s['open_action_items']} ({s['overdue_action_items']}) |",
           "", "## Top incidents", ""]
    if doc["top_incidents"]:
        out += ["| # | severity | journey | title | opened | detect | restore | state |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {i['id']} | {i['severity']} | {i['journey'] or '—'} | {i['title']} | {i['opened'][:16]} | "
                f"{_secs(i['time_to_detect_s'])} | {_secs(i['time_to_restore_s'])} | {i['state']} |" for i in doc["top_incidents"]]
    else:
        out.append("No incidents in the period.")
    out += ["", "## Near misses (alerts that fired but opened no incident)", ""]
    if doc["near_misses"]:
        out += ["| started | severity | SLO | journey | peak burn |", "|---|---|---|---|---|"]
        out += [f"| {a['started'][:16]} | {a['severity']} | {a['slo']} | {a['journey'] or '—'} | {a['peak_burn']:.1f}× |" for a in doc["near_misses"]]
    else:
        out.append("None.")
    out += ["", "## SLO compliance and budget burn", "", "| SLO | journey | objective | attainment | budget spent | met |", "|---|---|---|---|---|---|"]
    out += [f"| {x['slo']} | {x['journey'] or '—'} | {x['objective']} % | {pct(x['attainment'])} | {pct(x['budget_spent'])} | "
            f"{'—' if x['met'] is None else ('yes' if x['met'] else '**no**')} |" for x in doc["slos"]]
    daily = doc["daily"]
    top_runs, top_cost = max(daily["runs"], default=0), max(daily["cost_usd"], default=0.0)
    out += ["", "## Cost and capacity per day", "", "```"]
    out += [f"{day[5:]}  runs {_bar(r, top_runs)} {r:>7,}  cost {_bar(c, top_cost)} ${c:,.2f}"
            for day, r, c in zip(doc["days"], daily["runs"], daily["cost_usd"], strict=False)]
    out += ["```", "", "## Saturation capacity", ""]
    if doc.get("capacity"):
        out += ["| resource | metric | level now | growth / day | warning level | reaches it | 80 % band |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {c['resource']} | `{c['metric']}` | {capacity_level(c['current'], c['unit'])} | "
                f"{capacity_growth(c) if c['enough_data'] else 'not enough data (' + str(c['minutes']) + ' minutes)'} | "
                f"{capacity_threshold(c)} | "
                f"{(c['crossing'] or 'not within 7 days')[:16] if c['enough_data'] else '—'} | "
                f"{((c['earliest'] or 'now')[:16] + ' – ' + (c['latest'] or 'beyond 7 days')[:16]) if c['enough_data'] and c['crossing'] else '—'} |"
                for c in doc["capacity"]]
    else:
        out.append("No saturation metrics or rate-limited models in the period.")
    out += ["", "## Changes and their outcomes", ""]
    if doc["changes"]:
        out += ["| when | kind | summary | journeys | outcome |", "|---|---|---|---|---|"]
        out += [f"| {c['at'][:16]} | {c['kind']} | {c['summary']} | {', '.join(c['journeys']) or '—'} | "
                f"{'**failed** (incident or failed gate within a day)' if c['failed'] else 'ok'} |" for c in doc["changes"]]
    else:
        out.append("No changes recorded.")
    out += ["", "## Open remediation", ""]
    if doc["remediation"]:
        out += ["| item | incident | owner | due | age |", "|---|---|---|---|---|"]
        out += [f"| {a['title']} | #{a['incident']} {a['incident_title'] or ''} | {a['owner'] or '—'} | "
                f"{(a['due'] or '—')[:10]}{' **overdue**' if a['overdue'] else ''} | {span_text(a['age_s'])} |" for a in doc["remediation"]]
    else:
        out.append("No open action items.")
    out += ["", "## Game days", ""]
    if doc["game_days"]:
        out += ["| drill | journey | started | detection | incident | triage named | mitigated | fired elsewhere | result |",
                "|---|---|---|---|---|---|---|---|---|"]
        out += [f"| #{g['drill_id']} {g['scenario'] or 'own fault'} | {g['journey']} | {g['start'][:16]} | {_detection(g)} | "
                f"{('#' + str(g['incident_id']) + ' after ' + _secs(g['time_to_incident_s'])) if g['incident_opened'] else 'none'} | "
                f"{g['named_layer'] or '—'}{' (expected ' + g['expected_layer'] + ')' if g['expected_layer'] else ''} | "
                f"{_secs(g['time_to_mitigate_s'])} | {len(g['should_not_have_fired'])} | "
                f"{'running' if g.get('running') else ('passed' if g['passed'] else '**failed**')} |" for g in doc["game_days"]]
    else:
        out.append("No game days in the period.")
    out += ["", "## Scorecards", "",
            "| journey | level | change failure rate | cost / 1K good runs | policy-violating runs | telemetry coverage |",
            "|---|---|---|---|---|---|"]
    out += [f"| {c['name']} | {c['level'] or 'none'} | {pct(c['facts']['change_failure_rate'])} | "
            f"{_usd(c['facts']['cost_per_1k_successful_usd'])} | {pct(c['facts'].get('policy_violation_rate'))} | "
            f"{pct(c['facts'].get('telemetry_coverage_min'))} |"
            for c in doc["scorecards"]]
    return "\n".join(out) + "\n"


async def _document(request: Request) -> dict[str, Any]:
    from starlette.concurrency import run_in_threadpool

    ctx = _ctx(request)
    now = time.time_ns()
    period = parse_period(request.query_params.get("period") or "month", now)
    tenant = ctx.tenant_for(request)
    # The tenant's warning levels, and the rate-limited models' throughput and headroom when
    # cost is observed, as on the capacity page.
    found = ctx.extra.get("cost")
    cost = found.db if isinstance(found, CostEngine) else None
    resources = await run_in_threadpool(resources_for, ctx.store, tenant)
    saturation = await run_in_threadpool(capacity_review, ctx.store, tenant, period.start_ns, period.end_ns, now,
                                         resources, cost)
    return await run_in_threadpool(review, ctx.store, tenant, ctx.slos.specs(tenant), server_rules(ctx), period, now,
                                   saturation)


@operation("scorecards", models.Review, media_type=("application/json", "text/html", "text/markdown"))
async def report_get(request: Request) -> Response:
    """
    summary: The reliability review of a week or month as HTML (printable, with charts), Markdown or JSON
    description: >
      Top incidents and near misses (alert episodes that fired but opened no incident), SLO
      compliance and budget burn per SLO by day, runs, failures and cost per day, changes and their
      outcomes, open remediation items and each journey's scorecard level (docs/scorecards.md).
    parameters:
      - {name: period, in: query, schema: {type: string, default: month}, description: "week, month, quarter or a label: 2026-11, 2026-W47"}
      - {name: format, in: query, schema: {type: string, enum: [html, markdown, json], default: html}}
    responses:
      200: {description: The review.}
      400: {description: Bad parameter.}
    """
    fmt = (request.query_params.get("format") or "html").strip()
    if fmt not in ("html", "markdown", "json"):
        raise PermanentError(f"format must be html, markdown or json; got {fmt!r}")
    doc = await _document(request)
    if fmt == "json":
        return ORJSONResponse(doc)
    if fmt == "markdown":
        return PlainTextResponse(render_markdown(doc), media_type="text/markdown")
    return HTMLResponse(render_html(doc), headers={"Content-Security-Policy": _CSP})


async def report_page(request: Request) -> Response:
    """The review as a page of the UI (the same standalone HTML)."""
    return HTMLResponse(render_html(await _document(request)), headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})


def report_routes() -> list[BaseRoute]:
    """The API route and the UI page of the review."""
    return [Route("/api/report", report_get, methods=["GET"]),
            Route("/report", _page(report_page), methods=["GET"], include_in_schema=False)]
