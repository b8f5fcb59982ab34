"""The release-gate pages: verdict history per journey, and one verdict's evidence with the
baseline and candidate distributions side by side (server-rendered SVG).

Judging from the page records the verdict (history and audit log), so it is a form POST that
needs an ingest or admin key; a GET only ever reads, whatever its parameters."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from aisre.core import display
from aisre.core.timefmt import rfc3339
from aisre.derive.populations import parse_selector
from aisre.evaluate.gate.judge import GateRequest
from aisre.present.api.gate import decide, server_config
from aisre.present.ui.pages import _ctx, _error, _page, _render, own_form

CHART_W, CHART_H = 420, 180
PAD_L, PAD_R, PAD_T, PAD_B = 46, 10, 6, 36


def histogram_bars(dist: dict[str, Any] | None, unit: str = "") -> dict[str, Any] | None:
    """Bars of the two histograms on one scale: baseline above the axis, candidate below it,
    with share-of-runs ticks on the y axis and bin-edge labels (round numbers) on the x axis."""
    if not dist:
        return None
    base, cand = dist["baseline"], dist["candidate"]
    # Shares, not counts: the two sides rarely have the same number of runs.
    nb, nc = max(sum(base), 1), max(sum(cand), 1)
    shares_b = [n / nb for n in base]
    shares_c = [n / nc for n in cand]
    step = display.nice_step(max(max(shares_b), max(shares_c), 1e-9), 2)
    top = display.nice_ticks(0.0, max(max(shares_b), max(shares_c), 1e-9), 2)[-1]
    plot_w, plot_h = CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B
    half = PAD_T + plot_h / 2
    width = plot_w / len(base)
    edges = dist["edges"]
    lo, hi = edges[0], edges[-1]

    def x(value: float) -> float:
        return round(PAD_L + plot_w * (value - lo) / ((hi - lo) or 1.0), 2)

    bars = []
    for i, (sb, sc) in enumerate(zip(shares_b, shares_c, strict=True)):
        hb, hc = sb / top * (plot_h / 2), sc / top * (plot_h / 2)
        bars.append({
            "x": round(PAD_L + i * width + 0.5, 2), "w": round(max(width - 1, 0.5), 2),
            "yb": round(half - hb, 2), "hb": round(hb, 2), "hc": round(hc, 2),
            "lo": edges[i], "hi": edges[i + 1], "nb": base[i], "nc": cand[i],
            "range": f"{_num(edges[i])}–{_num(edges[i + 1])}",
        })
    x_step = display.nice_step(hi - lo, 4)
    x_ticks = []
    for v in display.nice_ticks(lo, hi, 4):
        if lo - 1e-12 <= v <= hi + 1e-12:
            cx = x(v)
            # Labels at the plot's edges stay inside the chart.
            anchor = "start" if cx - PAD_L < 14 else "end" if CHART_W - PAD_R - cx < 14 else "middle"
            x_ticks.append({"x": cx, "label": display.number_tick(v, x_step), "anchor": anchor})
    shares = display.nice_ticks(0.0, top, 2)
    y_ticks = [{"y": round(half - v / top * plot_h / 2, 2), "label": display.number_tick(v * 100, step * 100) + "%"}
               for v in shares]
    # The candidate's half mirrors the baseline's scale below the axis.
    y_ticks += [{"y": round(half + v / top * plot_h / 2, 2), "label": display.number_tick(v * 100, step * 100) + "%"}
                for v in shares if v > 0]
    return {"bars": bars, "w": CHART_W, "h": CHART_H, "half": half, "left": PAD_L, "right": CHART_W - PAD_R,
            "top": PAD_T, "bottom": CHART_H - PAD_B, "lo": lo, "hi": hi, "x_ticks": x_ticks, "y_ticks": y_ticks,
            "unit": unit}


def _num(value: float) -> str:
    return f"{value:.3g}"


async def gate_page(request: Request) -> Response:
    """History of verdicts (of one journey, or all), and the form that judges a candidate now
    (prefilled from journey, baseline and candidate in the query; submitting it is a POST)."""
    ctx = _ctx(request)
    q = request.query_params
    tenant = ctx.tenant_for(request)
    journey = q.get("journey") or None
    rows: list[dict[str, Any]] = [{**row, "decided_at": rfc3339(row["decided_ns"])}
            for row in await run_in_threadpool(ctx.store.list_gate_verdicts, tenant, journey, 200)]
    journeys = sorted({r["journey"] for r in rows})
    context = {
        "nav": "gate", "verdicts": rows, "journey": journey, "journeys": journeys,
        "baseline": q.get("baseline") or "", "candidate": q.get("candidate") or "",
        "may_record": ctx.principal(request).may("ingest"),
    }
    return _render(request, "gate.html", context)


async def gate_judge(request: Request) -> Response:
    """The form's POST: judge now, record the verdict (and audit it), show its evidence."""
    form = await own_form(request)
    if isinstance(form, Response):
        return form
    ctx = _ctx(request)
    gate_request = GateRequest(
        ctx.tenant_for(request), form.get("journey", "").strip(),
        parse_selector(form.get("baseline", ""), "baseline"), parse_selector(form.get("candidate", ""), "candidate"),
        fix=form.get("fix") in ("1", "true", "on"),
    )
    if not gate_request.journey:
        return _error(request, 400, "Not judged", "journey is required", nav="gate")
    doc = await decide(request, gate_request, server_config(ctx), record=True)
    return RedirectResponse(f"/gate/verdicts/{doc['id']}", status_code=303)


async def verdict_page(request: Request) -> Response:
    """One verdict: the decision, the reasons, the policy step and every metric's evidence."""
    ctx = _ctx(request)
    raw = request.path_params["id"]
    if not raw.isdigit():
        from aisre.core.errors import PermanentError

        raise PermanentError(f"verdict id must be a number; got {raw!r}")
    doc = await run_in_threadpool(ctx.store.get_gate_verdict, ctx.tenant_for(request), int(raw))
    for m in doc["metrics"]:
        m["chart"] = histogram_bars(m.get("distribution"), str(m.get("unit") or ""))
    return _render(request, "gate_verdict.html", {"nav": "gate", "v": doc})


def gate_ui_routes() -> list[BaseRoute]:
    """Routes of the gate pages."""
    return [
        Route("/gate", _page(gate_page), methods=["GET"], include_in_schema=False),
        Route("/gate", _page(gate_judge), methods=["POST"], include_in_schema=False),
        Route("/gate/verdicts/{id}", _page(verdict_page), methods=["GET"], include_in_schema=False),
    ]
