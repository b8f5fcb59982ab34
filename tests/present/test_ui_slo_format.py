"""SLO presentation helpers: budget, burn and time formats, status order, chart geometry."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from aisre.present.ui import format as fmt


def test_slo_numbers() -> None:
    assert [fmt.budget(v) for v in (None, 1.0, 0.875, 0.0, -0.25, -49.0, float("-inf"))] == [
        "—", "100%", "87.5%", "0%", "−25%", "−4,900%", "−∞",
    ]
    assert [fmt.burn(v) for v in (None, 0.0, 0.9333, 1.0, 13.44, 50.0, 1234.5)] == [
        "—", "0×", "0.93×", "1×", "13.4×", "50×", "1,234×",
    ]
    assert [fmt.span_seconds(v) for v in (None, 45, 720, 18_720, 273_600, 86_400)] == [
        "—", "45s", "12m", "5h 12m", "3d 4h", "1d",
    ]
    assert (fmt.sli_ratio(None), fmt.sli_ratio(1.0), fmt.sli_ratio(0.75)) == ("—", "100%", "75.00%")
    assert fmt.sli_ratio(0.99996) == "99.99%"  # never rounded up to look met
    assert (fmt.objective(99.5), fmt.objective(99.0)) == ("99.5%", "99%")
    assert fmt.sli_threshold({"kind": "outcome", "latency_ms": 4000}) == "success ≤ 4.00 s"
    assert fmt.sli_threshold({"kind": "outcome"}) == "success"
    assert fmt.sli_threshold({"kind": "cost", "max_usd": 0.002}) == "≤ $0.002"
    assert fmt.sli_threshold({"kind": "latency", "latency_ms": 300}) == "≤ 300 ms"
    assert fmt.sli_threshold({"kind": "score", "score": "relevance", "min": 0.8}) == "relevance ≥ 0.8"

def test_platform_sli_thresholds() -> None:
    assert fmt.sli_threshold({"kind": "threshold", "metric": 'hw.gpu.utilization{pool="a100"}', "max": 0.9}) == "hw.gpu.utilization ≤ 0.9"
    assert fmt.sli_threshold({"kind": "histogram", "metric": "gen_ai.server.request.duration", "le": 4.0}) == (
        "gen_ai.server.request.duration ≤ 4")
    assert fmt.sli_threshold({"kind": "freshness", "metric": "fv.ts", "max_age": timedelta(minutes=30)}) == "fv.ts age ≤ 30m"
    assert fmt.sli_threshold({"kind": "freshness", "metric": None, "dataset": "customer_orders",
                              "max_age": timedelta(minutes=30)}) == "customer_orders age ≤ 30m"
    assert fmt.sli_threshold({"kind": "pipeline", "pipeline": "nightly"}) == "nightly succeeds"
    assert fmt.sli_threshold({"kind": "deadline", "pipeline": "nightly", "at": timedelta(hours=6),
                              "every": timedelta(days=1)}) == "nightly done by 06:00 UTC daily"
    assert fmt.sli_threshold({"kind": "deadline", "pipeline": "p", "at": timedelta(hours=2), "every": timedelta(hours=12)}) == (
        "p done by 2h into every 12h")
    assert fmt.sli_threshold({"kind": "score", "subject": "model:churn-v3", "score": "drift.share_of_drifted_columns",
                              "max": 0.3}) == "model:churn-v3 drift.share_of_drifted_columns ≤ 0.3"



def test_slo_view_and_order() -> None:
    spec = {"kind": "outcome", "latency_ms": 4000}
    docs: list[dict[str, Any]] = [
        {"name": "b", "status": "ok", "sli": 0.999, "error_budget": {"remaining_ratio": 0.8}},
        {"name": "a", "status": "no_data", "sli": None, "error_budget": {"remaining_ratio": 1.0}},
        {"name": "c", "status": "page", "sli": 0.9, "error_budget": {"remaining_ratio": -3.0}},
        {"name": "d", "status": "unsupported", "sli": spec, "reason": "why"},
        {"name": "e", "status": "exhausted", "sli": 0.98, "error_budget": {"remaining_ratio": 0.0}},
    ]
    views = [fmt.slo_view(doc, spec) for doc in docs]
    assert [v["name"] for v in fmt.worst_first(views)] == ["c", "e", "a", "d", "b"]
    c = views[2]
    assert (c["sli_ratio"], c["sli_kind"], c["budget_width"], c["budget_level"]) == (
        0.9, "outcome", 0.0, "bad",
    )
    assert views[0]["budget_width"] == 80.0 and views[0]["budget_level"] == "good"
    d = views[3]  # unsupported: the document's sli is still the spec
    assert d["sli_ratio"] is None and d["sli_kind"] == "outcome" and d["budget_width"] == 0.0


def test_burn_down_chart_geometry() -> None:
    assert fmt.burn_down_chart([]) is None
    points = [
        {"time": f"2026-11-{d:02d}T00:00:00Z", "remaining_ratio": r}
        for d, r in zip(range(1, 29), [1.0] * 20 + [0.8, 0.5, 0.2, 0.0, -0.3, -0.6, -2.0, -5.0], strict=True)
    ]
    chart = fmt.burn_down_chart(points)
    assert chart is not None and chart["points"] == 28
    coords = [tuple(map(float, p)) for p in re.findall(r"[ML]([\d.]+),([\d.]+)", chart["path"])]
    assert len(coords) == 28
    assert coords[0][0] == chart["left"] and coords[-1][0] == chart["right"]
    assert coords[0][1] == chart["top"]  # 100% at the top
    assert coords[23][1] == chart["zero_y"] < chart["bottom"]  # 0 line drawn inside the plot
    assert coords[-1][1] == coords[-2][1] == chart["bottom"]  # clipped at the floor
    assert chart["clipped"] and chart["y_ticks"][-1]["label"] == "−100%"
    assert [t["label"] for t in chart["y_ticks"]] == ["100%", "50%", "0%", "−50%", "−100%"]
    assert [t["zero"] for t in chart["y_ticks"]].count(True) == 1
    # Four weeks across: the x axis is labelled with UTC dates, not times.
    # Ticks on whole days from the first midnight (round steps, core.display.time_ticks).
    assert [t["label"] for t in chart["x_ticks"]] == ["Nov 01", "Nov 08", "Nov 15", "Nov 22"]

    healthy = fmt.burn_down_chart([{**p, "remaining_ratio": 1.0} for p in points])
    assert healthy is not None and not healthy["clipped"]
    assert healthy["zero_y"] == healthy["bottom"]  # nothing below zero: 0 is the x axis
    assert [t["label"] for t in healthy["y_ticks"]] == ["100%", "75%", "50%", "25%", "0%"]

    # 2.5 % of the budget spent: the axis fits the drop (1 % ticks), not 0–100 %.
    young = fmt.burn_down_chart([{**p, "remaining_ratio": 1.0 - 0.025 * i / 27} for i, p in enumerate(points)])
    assert young is not None and not young["clipped"]
    assert [t["label"] for t in young["y_ticks"]] == ["100%", "99%", "98%", "97%"]
    line = [float(v) for v in re.findall(r"[ML][\d.]+,([\d.]+)", young["path"])]
    assert line[0] == young["top"] and young["bottom"] - line[-1] > 0.1 * (young["bottom"] - young["top"])


def test_slo_notice_badge_escapes_its_text() -> None:
    """The list's notice badge: the count, and the notices' text escaped in its title."""
    from aisre.present.ui.pages import _env

    doc = {"name": "x", "status": "unsupported", "reason": "<script>alert('r')</script>", "objective": 99.0,
           "window": "28d", "sli": {"kind": "outcome"}, "warnings": ['runbook "<b>x</b>" & more']}
    view = fmt.slo_view(doc, None)
    assert view["notices"] == ["Not evaluated: <script>alert('r')</script>", 'Warning: runbook "<b>x</b>" & more']
    assert fmt.slo_notices({"status": "ok"}) == [] and fmt.slo_notices({"status": "unsupported"}) == [
        "Not evaluated (status unsupported)"]
    page = _env().from_string('{% from "_macros.html" import slo_table %}{{ slo_table(items) }}').render(items=[view])
    (title,) = re.findall(r'class="badge slo-notice-badge unsupported" href="/slos/x#slo-notices" title="([^"]*)"', page)
    assert title == ("Not evaluated: &lt;script&gt;alert(&#39;r&#39;)&lt;/script&gt;&#10;"
                     "Warning: runbook &#34;&lt;b&gt;x&lt;/b&gt;&#34; &amp; more")
    assert "<script>" not in page and "<b>x" not in page
