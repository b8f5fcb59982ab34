"""What a new user sees first, in headless Chromium at 1400×900 and 1024×768: no card on the
SLO, cost, incident and gate pages (nor the journeys, SLO list and runs pages) scrolls sideways, every chart has axis titles and tick
labels, change labels neither overlap nor leave their chart, the range picker changes what the
charts span, and signing in lands on the page asked for, with a way to sign out.

One server with every kind of data and one browser serve the whole module (fast)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.core.timefmt import rfc3339
from aisre.present.cli.main import build_cli
from tests.act.incident_data import MINUTE, PROMPT_TEXT, S
from tests.act.incident_data import runs_request as incident_runs
from tests.conftest import ServerProcess, free_port
from tests.evaluate.gate_factory import runs_request as gate_runs
from tests.integration.test_incidents_api import am_alert, am_payload
from tests.present.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, sync_api
from tests.present.test_ui_slo import DEMO_SLOS, post_history
from tests.present.ui_helpers import post_request, wait_for_runs

pytestmark = pytest.mark.browser
VIEWPORTS = ((1400, 900), (1024, 768))

# Cards that scroll sideways (content wider than the box, in an element that clips or
# scrolls), and the page itself wider than the window.
SIDEWAYS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('main .panel, main section, main .gate-metric, main .stats, main table, main')) {
    const clips = getComputedStyle(el).overflowX !== 'visible';
    if (clips && el.scrollWidth > el.clientWidth + 1) out.push(el.className + ' ' + el.scrollWidth + '>' + el.clientWidth);
  }
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) out.push('page ' + root.scrollWidth + '>' + root.clientWidth);
  return out;
}"""

# Per chart: its axis titles, how many tick labels it has, and any label that leaves the
# chart or overlaps another label of the same kind.
CHARTS = """() => Array.from(document.querySelectorAll('main svg')).map(svg => {
  const box = svg.getBoundingClientRect();
  const title = cls => { const t = svg.querySelector('.axis-title.' + cls); return t ? t.textContent.trim() : ''; };
  const labels = Array.from(svg.querySelectorAll('text')).filter(t => t.textContent.trim());
  const outside = labels.filter(t => { const r = t.getBoundingClientRect();
    return r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1; })
    .map(t => t.textContent.trim());
  const changes = Array.from(svg.querySelectorAll('text.change-label')).map(t => t.getBoundingClientRect());
  let overlaps = 0;
  for (let i = 0; i < changes.length; i++) for (let j = i + 1; j < changes.length; j++) {
    const a = changes[i], b = changes[j];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps++;
  }
  return {id: svg.id || svg.getAttribute('class'), x: title('x-title'), y: title('y-title'),
          ticks: svg.querySelectorAll('.x-label, .y-label, .gtick').length, outside, overlaps,
          changes: changes.length};
})"""


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    """One headless Chromium for the module."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found")
    SHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with SLOs, four days of history, a failing prompt rollout that opened an
    incident, close-together recorded changes, priced model calls and a recorded gate verdict."""
    db = tmp_path_factory.mktemp("fit") / "fit.duckdb"
    server = ServerProcess(db, free_port(), free_port(), ("--slos", str(DEMO_SLOS))).start()
    try:
        post_history(server)
        now = time.time_ns()
        post_request(server, incident_runs(60, now - 12 * MINUTE, step_ns=5 * S, prompt_version="v3")[0])
        post_request(server, incident_runs(20, now - 3 * MINUTE, step_ns=5 * S, failed=True, prompt_version="v5")[0])
        rng = np.random.default_rng(16)
        post_request(server, gate_runs(40, version="1.4", start_ns=now - 20 * MINUTE, rng=rng, journey="triage-agent"))
        post_request(server, gate_runs(40, version="1.5", start_ns=now - 19 * MINUTE, rng=rng, journey="triage-agent",
                                       input_tokens=lambda r: int(r.normal(1500, 60))))
        wait_for_runs(server, {"ask": 100, "triage-agent": 100}, timeout=30)
        # Four changes seconds apart: their labels must share the chart without overlapping.
        for i, kind in enumerate(("deploy", "config", "flag", "model")):
            change = {"kind": kind, "summary": f"change {i}", "journeys": ["ask"], "at": rfc3339(now - 8 * MINUTE + i * 5 * S)}
            httpx.post(server.url + "/api/changes", json=change, timeout=30).raise_for_status()
        budget = {"name": "ask-monthly", "journey": "ask", "period": "month", "amount_usd": 0.05, "thresholds": [0.8, 1.0]}
        httpx.put(server.url + "/api/cost/budgets", json=budget, timeout=60).raise_for_status()
        alert = {**am_alert("AskErrors", "firing", "fit"), "startsAt": rfc3339(now - MINUTE)}
        opened = httpx.post(server.url + "/api/alertmanager", json=am_payload("firing", [alert]), timeout=30).json()
        verdict = httpx.post(server.url + "/gate", data={
            "journey": "triage-agent", "baseline": "service.version=1.4", "candidate": "service.version=1.5",
        }, headers={"Origin": server.url}, follow_redirects=False, timeout=60)
        assert verdict.status_code == 303, verdict.text
        yield {"server": server, "incident": opened["incidents"][0]["id"], "verdict": verdict.headers["location"]}
    finally:
        server.stop()


@pytest.mark.parametrize("viewport", VIEWPORTS, ids=lambda v: f"{v[0]}x{v[1]}")
def test_cards_fit_and_every_chart_has_axis_labels(
    browser: sync_api.Browser, loaded: dict[str, Any], viewport: tuple[int, int]
) -> None:
    server: ServerProcess = loaded["server"]
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    paths = {
        "slo": "/slos/ask-success", "cost": "/cost", "incident": f"/incidents/{loaded['incident']}",
        "gate": "/gate", "verdict": loaded["verdict"], "postmortem": f"/incidents/{loaded['incident']}/postmortem",
        "budget": "/cost/budgets/ask-monthly", "explain": "/cost/explain?journey=ask&baseline=13m..6m&current=6m..0m",
        "journeys": "/", "slos": "/slos", "runs": "/runs", "incidents": "/incidents", "capacity": "/capacity",
    }
    charts_seen: dict[str, int] = {}
    try:
        for name, path in paths.items():
            response = page.goto(server.url + path)
            assert response is not None and response.status == 200, path
            page.screenshot(path=str(SHOTS / f"fit-{name}-{viewport[0]}.png"), full_page=True)
            assert page.evaluate(SIDEWAYS) == [], f"{path} at {viewport}: a card scrolls sideways"
            charts = page.evaluate(CHARTS)
            charts_seen[name] = len(charts)
            for chart in charts:
                assert chart["x"] and chart["y"], f"{path}: chart {chart['id']} lacks an axis title"
                assert chart["ticks"] >= 4, f"{path}: chart {chart['id']} has {chart['ticks']} tick labels"
                assert chart["outside"] == [], f"{path}: labels cut at the edge of {chart['id']}"
                assert chart["overlaps"] == 0, f"{path}: change labels overlap on {chart['id']}"
            if name == "postmortem":
                # Bounded: two traces in full, a prompt repeated by later calls printed once,
                # long blocks scroll in their own box; and sections for people to fill in.
                article = page.locator("article.postmortem")
                assert article.locator("h3", has_text="Trace").count() == 2
                assert article.inner_text().count(PROMPT_TEXT.format(version="v5")) == 1
                assert article.locator("em", has_text="same as in").count() >= 1
                heights = article.locator("pre").evaluate_all("ps => ps.map(p => p.getBoundingClientRect().height)")
                assert heights and max(heights) <= 241
                for section in ("Root cause", "Lessons learned"):
                    sync_api.expect(article.get_by_role("heading", name=section)).to_be_visible()
            if name == "slo":
                # Every change of the journey is marked (the four seconds apart, the detected
                # prompt rollout and deploys); labels that would collide move to another lane.
                changes = httpx.get(server.url + "/api/changes", params={"journey": "ask"}, timeout=30).json()["items"]
                assert len(changes) >= 5
                assert page.locator("#burn-down line.change-marker").count() == len(changes)
                assert {c["id"]: c for c in charts}["burn-down"]["changes"] >= 3
    finally:
        page.close()
    # Burn-down and error rate on the SLO page; cost per 1K runs; a histogram per gate metric.
    assert charts_seen["slo"] == 2 and charts_seen["cost"] == 1 and charts_seen["verdict"] >= 4
    assert charts_seen["budget"] == 1 and charts_seen["explain"] == 1
    assert errors == []


def _span_s(page: sync_api.Page, selector: str) -> float:
    svg = page.locator(selector)
    return float(svg.get_attribute("data-t1") or 0) - float(svg.get_attribute("data-t0") or 0)


def test_range_picker_changes_what_the_charts_span(browser: sync_api.Browser, loaded: dict[str, Any]) -> None:
    server: ServerProcess = loaded["server"]
    expect = sync_api.expect
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(server.url + "/slos/ask-success")
        # The default is the SLO's window, from its first event: the history four days back.
        expect(page.locator('.range a[aria-current="true"]')).to_have_text("28d")
        assert 4 * 86400 - 3600 < _span_s(page, "#burn-down") < 4 * 86400 + 3600
        assert _span_s(page, "#sli-chart") > 4 * 86400 - 3600
        page.locator('.range a[data-range="1h"]').click()
        page.wait_for_url("**/slos/ask-success?range=1h")
        expect(page.locator('.range a[aria-current="true"]')).to_have_text("1h")
        assert 50 * 60 <= _span_s(page, "#burn-down") <= 3600 + 120
        assert _span_s(page, "#sli-chart") == _span_s(page, "#burn-down")
        # Minute buckets over the hour: the failing minutes show as bars above the allowed rate.
        assert page.locator("#sli-chart rect.sli-bar.hot").count() >= 2
        page.locator('.range a[data-range="6h"]').click()
        page.wait_for_url("**/slos/ask-success?range=6h")
        # Six hours (plus at most a 5-minute bucket at each end: both charts share the axis).
        assert 5 * 3600 <= _span_s(page, "#burn-down") <= 6 * 3600 + 600
        assert _span_s(page, "#burn-down") == _span_s(page, "#sli-chart")

        page.goto(server.url + "/cost")
        whole = _span_s(page, "#per-1k-chart")
        assert whole > 3 * 86400  # "all": from the history four days back
        page.locator('.range a', has_text="1h").click()
        page.wait_for_url("**/cost?since=1h")
        recent = _span_s(page, "#per-1k-chart")
        assert recent <= 3600 + 300
        # Young data is a line of several buckets, not a single dot.
        assert page.locator("#per-1k-chart circle.cost-dot").count() >= 5
        assert int(page.locator("#per-1k-chart").get_attribute("data-bucket-s") or 0) <= 300
    finally:
        page.close()


def test_login_lands_on_the_page_asked_for_and_signs_out(browser: sync_api.Browser, tmp_path: Path) -> None:
    expect = sync_api.expect
    plain = ServerProcess(tmp_path / "open.duckdb", free_port(), free_port()).start()
    db = tmp_path / "keys.duckdb"
    result = CliRunner().invoke(build_cli(run_server), ["keys", "create", "--db", str(db), "--tenant", "shop",
                                                        "--role", "read", "--format", "json"])
    assert result.exit_code == 0, result.output
    key = json.loads(result.output)["key"]
    server = ServerProcess(db, free_port(), free_port()).start()
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        # Without keys the form says so, instead of claiming the server has some.
        page.goto(plain.url + "/login")
        expect(page.locator("#login-why")).to_contain_text("does not require a key")
        expect(page.locator("#sign-out")).to_have_count(0)

        page.goto(server.url + "/slos?x=1")
        expect(page).to_have_url(server.url + "/login?next=" + quote("/slos?x=1", safe=""))
        expect(page.locator("#login-why")).to_contain_text("requires an API key")
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        expect(page).to_have_url(server.url + "/slos?x=1")
        expect(page.locator("header .meta")).to_contain_text("tenant shop")

        page.locator("#sign-out").click()
        expect(page).to_have_url(server.url + "/login")
        assert not [c for c in page.context.cookies() if c["name"] == "aisre_key"]
        page.goto(server.url + "/cost")
        expect(page).to_have_url(server.url + "/login?next=%2Fcost")

        # Only a path on this server is followed: another site's address lands on /.
        page.goto(server.url + "/login?next=" + quote("//evil.example/x", safe=""))
        page.fill("input[name=key]", key)
        page.click("button[type=submit]")
        expect(page).to_have_url(server.url + "/")
    finally:
        page.close()
        server.stop()
        plain.stop()
