"""The SLO pages as a person sees them in headless Chromium (Debian's, never a downloaded
one): journeys show SLO dots, the SLO list and page load, the burn-down chart is drawn and the
page alert pair fires after failing runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.present.browser import SHOTS, sync_api
from tests.present.test_ui_slo import DEMO_SLOS, HISTORY, post_history, runs_request, wait_for_slo
from tests.present.ui_helpers import post_request

pytestmark = pytest.mark.browser





@pytest.fixture
def slo_server(server_factory: Any, tmp_path: Path) -> ServerProcess:
    server: ServerProcess = server_factory(tmp_path / "slo.duckdb", "--slos", str(DEMO_SLOS))
    return server


def test_journeys_to_slo_burn_down(page: sync_api.Page, slo_server: ServerProcess) -> None:
    expect = sync_api.expect
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    post_history(slo_server)
    post_request(slo_server, runs_request(40))
    post_request(slo_server, runs_request(10, failures=10))
    post_request(slo_server, runs_request(3, journey="triage-agent"))
    wait_for_slo(slo_server, "ask-success", HISTORY + 50)
    wait_for_slo(slo_server, "triage-success", HISTORY + 3)

    page.goto(slo_server.url + "/")
    ask = page.locator("tr", has=page.get_by_role("link", name="ask", exact=True))
    dots = ask.locator("a.slo-dot")
    expect(dots).to_have_count(2)
    expect(dots.first).to_have_attribute("data-status", "page")  # worst first
    expect(dots.first).to_have_attribute("href", "/slos/ask-success")
    expect(dots.nth(1)).to_have_attribute("data-status", "ok")
    expect(page.locator('tr[data-journey="triage-agent"] a.slo-dot[href="/slos/triage-success"]')).to_have_attribute(
        "data-status", "ok"
    )

    page.get_by_role("navigation").get_by_role("link", name="SLOs").click()
    expect(page).to_have_url(re.compile(r"/slos$"))
    expect(page.locator("tr.slo-row")).to_have_count(9)  # the demo's four journey SLOs and five platform SLOs
    row = page.locator('tr[data-slo="ask-success"]')
    expect(row.locator(".slo-status")).to_have_text("page")
    expect(row.locator(".burn-1h")).to_have_text("40×")
    expect(page.locator('tr[data-slo="ask-cost"] .badge.diagnostic')).to_be_visible()

    row.get_by_role("link", name="ask-success").click()
    expect(page).to_have_url(re.compile(r"/slos/ask-success$"))
    expect(page.locator("h1")).to_contain_text("ask-success")
    chart = page.locator("svg#burn-down")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150, box
    line = chart.locator("path.burn-line").bounding_box()
    assert line is not None and line["width"] > 500, line
    quick = page.locator('tr[data-alert="page_quick"]')
    expect(quick).to_have_attribute("data-firing", "true")
    expect(quick.locator("td.state")).to_have_text("firing")
    expect(quick.locator(".badge.severity-page").first).to_have_text("page")
    expect(page.locator('tr[data-window="1h"] td.rate')).to_have_text("40×")
    page.screenshot(path=str(SHOTS / "ui-slo.png"), full_page=True)
    assert console_errors == []
