"""The cost pages in headless Chromium, against a live server fed real OTLP: the numbers on
the cost page, the budget view and the explanation view are the API's numbers, the
decomposition bars add up to the delta, and a budget alert shows up in /api/alerts."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.core.timefmt import rfc3339
from tests.conftest import ServerProcess
from tests.otlp_factory import _kv
from tests.present.browser import SHOTS, sync_api
from tests.present.ui_helpers import post_request

pytestmark = pytest.mark.browser
S = 10**9
MIN = 60 * S


def _runs(journey: str, model: str, start_ns: int, n: int, step_ns: int, input_tokens: int, prompt: str) -> ExportTraceServiceRequest:
    """``n`` runs, ``step_ns`` apart: a root and one chat call with the given usage and prompt version."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([_kv("service.name", "support-bot"), _kv("service.version", "2.0")])
    spans = rs.scope_spans.add().spans
    for i in range(n):
        trace_id, root_id, t0 = os.urandom(16), os.urandom(8), start_ns + i * step_ns
        spans.append(Span(trace_id=trace_id, span_id=root_id, name="POST /ask", kind=Span.SPAN_KIND_SERVER,
                          start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000_000,
                          attributes=[_kv("aisre.journey", journey)]))
        spans.append(Span(trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id, name=f"chat {model}",
                          start_time_unix_nano=t0 + 1000, end_time_unix_nano=t0 + 800_000_000,
                          attributes=[_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
                                      _kv("gen_ai.request.model", model), _kv("gen_ai.usage.input_tokens", input_tokens),
                                      _kv("gen_ai.usage.output_tokens", 200), _kv("aisre.prompt.version", prompt)]))
    return request


def _usd(locator: Any) -> float:
    return float(locator.get_attribute("data-usd"))


def test_cost_pages(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    server: ServerProcess = server_factory(tmp_path / "cost-ui.duckdb", "--setting", "budget_evaluation_interval_s=1",
                                           "--setting", "evaluation_interval_s=1")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    now_min = time.time_ns() // MIN * MIN
    baseline = (now_min - 50 * MIN, now_min - 30 * MIN)
    current = (now_min - 20 * MIN, now_min)
    # Same traffic; the current window's prompt v2 doubles the input tokens per call.
    post_request(server, _runs("ask", "gpt-4o-mini", baseline[0], 40, 30 * S, 1000, "v1"))
    post_request(server, _runs("ask", "gpt-4o-mini", current[0], 40, 30 * S, 2000, "v2"))
    post_request(server, _runs("search", "in-house-llm-7b", current[0], 3, MIN, 500, "s1"))
    deploy_at = current[0] - 2 * MIN
    r = httpx.post(server.url + "/api/changes", json={"kind": "deploy", "summary": "support-bot 2.0", "at": rfc3339(deploy_at),
                                                      "journeys": ["ask"]})
    assert r.status_code in (200, 201), r.text
    assert httpx.put(server.url + "/api/cost/rate-limits", json={"model": "gpt-4o-mini", "requests_per_min": 2}).status_code == 200
    deadline = time.monotonic() + 20
    while True:
        api = httpx.get(server.url + "/api/cost/breakdown", params={"by": "journey"}).json()
        if api["total"]["runs"] == 83 and api["total"]["billed_calls"] == 83:
            break
        assert time.monotonic() < deadline, api["total"]
        time.sleep(0.2)

    # -- the cost page: totals, breakdowns, unpriced models, chart, headroom ----------------
    page.goto(server.url + "/cost")
    expect(page.get_by_role("link", name="Cost", exact=True)).to_have_attribute("aria-current", "page")
    total = api["total"]
    assert _usd(page.locator("#total-cost")) == pytest.approx(total["cost_usd"])
    expect(page.locator("#total-runs")).to_have_text("83")
    expect(page.locator("#total-tokens")).to_have_text(f"{total['input_tokens'] + total['output_tokens']:,}")
    assert _usd(page.locator("#per-1k")) == pytest.approx(total["cost_per_1k_runs_usd"])
    by_model = httpx.get(server.url + "/api/cost/breakdown", params={"by": "model"}).json()["groups"]
    for g in by_model:
        row = page.locator(f'table[data-by="model"] tr[data-key="{g["model"]}"]')
        assert _usd(row) == pytest.approx(g["cost_usd"])
        expect(row.locator(".in-tokens")).to_have_text(f"{g['input_tokens']:,}")
    by_prompt = httpx.get(server.url + "/api/cost/breakdown", params={"by": "prompt_version"}).json()["groups"]
    assert {g["prompt_version"] for g in by_prompt} == {"v1", "v2", "s1"}
    for g in by_prompt:
        assert _usd(page.locator(f'table[data-by="prompt_version"] tr[data-key="{g["prompt_version"]}"]')) == pytest.approx(g["cost_usd"])
    expect(page.locator('.unpriced-model[data-model="in-house-llm-7b"]')).to_contain_text("3 calls")
    dots = page.locator("#per-1k-chart circle.cost-dot")
    assert dots.count() >= 1
    # The chart's buckets are sized from the data's span (several points even on young data);
    # the API's journey groups in the same buckets, summed: cost per 1K runs of every journey.
    bucket_s = int(page.locator("#per-1k-chart").get_attribute("data-bucket-s") or 0)
    assert bucket_s in (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
    hourly = httpx.get(server.url + "/api/cost/breakdown", params={"by": "journey", "bucket": f"{bucket_s}s"}).json()["groups"]
    per_hour: dict[str, list[float]] = {}
    for g in hourly:
        sums = per_hour.setdefault(g["bucket"], [0.0, 0])
        sums[0] += g["cost_usd"]
        sums[1] += g["runs"] or 0
    shown = dict(dots.evaluate_all("cs => cs.map(c => [c.getAttribute('data-at'), parseFloat(c.getAttribute('data-usd'))])"))
    assert shown == pytest.approx({at: 1000 * c / n for at, (c, n) in per_hour.items() if n})
    expect(page.locator("#per-1k-chart line.change-marker.kind-deploy")).to_have_count(1)
    warn = page.locator('tr.headroom-row[data-model="gpt-4o-mini"]')
    expect(warn).to_have_class("headroom-row warn-row")
    expect(warn).to_contain_text("of the gpt-4o-mini limit")
    page.screenshot(path=str(SHOTS / "ui-cost.png"), full_page=True)

    # -- a budget the forecast takes past 80 %: gauge, forecast chart, alert -----------------
    budget = {"name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": 1000.0, "thresholds": [0.8, 1.0]}
    probe = httpx.put(server.url + "/api/cost/budgets", json=budget, timeout=60).json()
    budget["amount_usd"] = probe["forecast_usd"] / 0.9
    assert httpx.put(server.url + "/api/cost/budgets", json=budget, timeout=60).status_code == 200
    page.goto(server.url + "/cost")
    row = page.locator('tr.budget-row[data-budget="ask-monthly"]')
    row.get_by_role("link", name="ask-monthly").click()
    page.wait_for_url("**/cost/budgets/ask-monthly")
    # The forecast moves with the clock (the run rate is spend over time so far): the API is
    # asked as of the moment the page was forecast at, so both answer the same question.
    as_of = page.locator("#budget-stats").get_attribute("data-as-of")
    doc = httpx.get(server.url + "/api/cost/budgets/ask-monthly", params={"now": as_of}, timeout=60).json()
    assert doc["as_of"] == as_of and doc["forecast_model"] == "run rate"
    expect(page.locator("#forecast-basis")).to_have_attribute("data-buckets", str(doc["forecast_basis"]["buckets"]))
    assert _usd(page.locator("#budget-amount")) == pytest.approx(doc["amount_usd"])
    assert _usd(page.locator("#budget-spent")) == pytest.approx(doc["spent_usd"])
    assert _usd(page.locator("#budget-forecast")) == pytest.approx(doc["forecast_usd"])
    expect(page.locator("#budget-alert")).to_contain_text("80%")
    chart = page.locator("#forecast-chart")
    expect(chart.locator("path.spent-line")).to_have_count(1)
    expect(chart.locator("path.forecast-band")).to_have_count(1 if doc["forecast_series"] else 0)
    expect(chart.locator("line.threshold-line")).to_have_count(2)
    gauge = page.locator("#budget-gauge")
    # Forecast and spend stand on the gauge as the API's shares do (the forecast may add
    # next to nothing to the spend when the remaining hours are forecast near zero).
    # The bar runs to 120 % here (shares and thresholds are all at most 100 %); positions are
    # rounded to 0.01 % of its width.
    assert float(gauge.get_attribute("data-forecast")) >= float(gauge.get_attribute("data-spent"))
    assert float(gauge.get_attribute("data-forecast")) == pytest.approx(100 * doc["forecast_share"] / 1.2, abs=0.006)
    assert float(gauge.get_attribute("data-spent")) == pytest.approx(100 * doc["spent_share"] / 1.2, abs=0.006)
    # The budget evaluator (every second here) has written the 80 % episode: in /api/alerts and on the page.
    deadline = time.monotonic() + 20
    while True:
        items = [a for a in httpx.get(server.url + "/api/alerts").json()["items"] if a["kind"] == "budget"]
        if items:
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert [(a["slo"], a["severity"], a["state"]) for a in items] == [("budget:ask-monthly@80%", "ticket", "firing")]
    page.reload()
    expect(page.locator('tr.budget-alert-row[data-state="firing"]')).to_contain_text("budget:ask-monthly@80%")
    page.screenshot(path=str(SHOTS / "ui-cost-budget.png"), full_page=True)

    # -- the explanation view, from its form -------------------------------------------------
    page.goto(server.url + "/cost")
    page.get_by_role("link", name="Explain a change").click()
    expect(page.get_by_role("heading", name="Pick a journey and two windows")).to_be_visible()
    windows = {"baseline": f"{rfc3339(baseline[0])}..{rfc3339(baseline[1])}",
               "current": f"{rfc3339(current[0])}..{rfc3339(current[1])}"}
    page.select_option("select[name=journey]", "ask")
    page.fill("input[name=baseline]", windows["baseline"])
    page.fill("input[name=current]", windows["current"])
    page.click("form.explain-form button[type=submit]")
    page.wait_for_url("**/cost/explain?*")
    explained = httpx.get(server.url + "/api/cost/explain", params={"journey": "ask", **windows}).json()
    assert _usd(page.locator("#delta")) == pytest.approx(explained["delta_usd"])
    assert _usd(page.locator("#baseline-cost")) == pytest.approx(explained["baseline"]["cost_usd"])
    assert _usd(page.locator("#current-cost")) == pytest.approx(explained["current"]["cost_usd"])
    steps = page.locator("#explain-waterfall g.wf-step")
    keys = steps.evaluate_all("gs => gs.map(g => [g.getAttribute('data-key'), parseFloat(g.getAttribute('data-usd'))])")
    assert keys[0][0] == "baseline" and keys[-1][0] == "current"
    assert sum(v for _, v in keys[1:-1]) == pytest.approx(explained["delta_usd"], rel=1e-9, abs=1e-12)
    assert keys[0][1] + explained["delta_usd"] == pytest.approx(keys[-1][1])
    causes = page.locator("tr.cause-row")
    shown_causes = causes.evaluate_all("rs => rs.map(r => [r.getAttribute('data-cause'), parseFloat(r.getAttribute('data-share'))])")
    assert [c for c, _ in shown_causes] == [c["cause"] for c in explained["causes"]]
    assert [s for _, s in shown_causes] == pytest.approx([c["share"] for c in explained["causes"]])
    assert shown_causes[0][0] == "prompt_regression"
    first = causes.first
    expect(first.locator(".evidence")).to_contain_text("v2")
    exemplar = first.locator("a.exemplar").first
    trace_id = explained["causes"][0]["exemplar_trace_ids"][0]
    expect(exemplar).to_have_attribute("href", f"/traces/{trace_id}")
    page.screenshot(path=str(SHOTS / "ui-cost-explain.png"), full_page=True)
    exemplar.click()
    page.wait_for_url(f"**/traces/{trace_id}")

    # A baseline with no runs: the counts and the minimum, no waterfall, no cause.
    empty = f"{rfc3339(baseline[0] - 3 * 60 * MIN)}..{rfc3339(baseline[0] - 2 * 60 * MIN)}"
    page.goto(server.url + f"/cost/explain?journey=ask&baseline={empty}&current={windows['current']}")
    refused = httpx.get(server.url + "/api/cost/explain", params={"journey": "ask", "baseline": empty,
                                                                   "current": windows["current"]}).json()
    assert refused["status"] == "insufficient_data" and refused["causes"] == []
    panel = page.locator("#explain-insufficient")
    expect(panel).to_contain_text("Not enough data to explain a change")
    for window in ("baseline", "current"):
        row = panel.locator(f'tr.window-row[data-window="{window}"]')
        expect(row.locator(".runs")).to_have_text(str(refused[window]["runs"]))
        assert _usd(row) == pytest.approx(refused[window]["cost_usd"])
    expect(panel.locator('tr.window-row[data-window="minimum"] .runs')).to_have_text(str(refused["minimums"]["runs"]))
    expect(panel.locator(".shortfalls li").first).to_contain_text("baseline window: 0 runs")
    expect(page.locator("#explain-waterfall")).to_have_count(0)
    expect(page.locator("tr.cause-row")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "ui-cost-explain-insufficient.png"), full_page=True)

    # Bad windows are named on the page, not swallowed.
    page.goto(server.url + "/cost/explain?journey=ask&baseline=yesterday&current=" + windows["current"])
    expect(page.locator("#explain-error")).to_contain_text("baseline")
    assert errors == [] or all("400" in e for e in errors)
