"""The Scorecards page in headless Chromium: the level, the facts, the SLO table and a trend
sparkline per headline fact for a server fed over OTLP and the changes and incidents APIs;
scope and period switches, the facts export link, no console errors, nothing scrolling sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_scorecards_api import start_fed
from tests.present.browser import SHOTS, sync_api

pytestmark = pytest.mark.browser


def test_scorecards_page(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    server, label = start_fed(server_factory, tmp_path)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_viewport_size({"width": 1400, "height": 900})

    page.goto(server.url + "/")
    page.get_by_role("link", name="Scorecards", exact=True).click()
    expect(page).to_have_url(server.url + "/scorecards")
    page.goto(server.url + f"/scorecards?period={label}")
    card = page.locator('section.scorecard[data-name="ask"]')
    expect(card).to_have_attribute("data-level", "silver")
    expect(card.locator(".badge.level")).to_have_text("silver")
    expect(card.locator('tr.slo-row[data-slo="ask-success"]')).to_contain_text("75.00 %")
    expect(card.locator('tr.slo-row[data-slo="ask-success"]')).to_contain_text("15 / 20")
    expect(card.locator('tr.trend-row[data-key="change_failure_rate"] .trend-value')).to_have_text("100.0 %")
    # A sparkline per headline fact, each with a dot per period that has a value.
    expect(card.locator("svg.sparkline")).to_have_count(7)
    incidents = card.locator('tr.trend-row[data-key="incidents"] svg.sparkline')
    expect(incidents.locator("circle")).to_have_count(6)
    expect(incidents.locator("title")).to_contain_text(f"{label}: 1")
    box = incidents.bounding_box()
    assert box is not None and box["width"] == 120 and box["height"] == 28
    expect(card.locator("table.scorecard-facts")).to_contain_text("change failure rate")

    overflow = page.evaluate("""() => [...document.querySelectorAll('main .panel, main table')]
        .filter(el => el.scrollWidth > el.clientWidth + 1)
        .map(el => `${el.className}: ${el.scrollWidth} > ${el.clientWidth}`)""")
    assert overflow == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.screenshot(path=str(SHOTS / "ui-scorecards.png"), full_page=True)

    page.get_by_role("link", name="teams", exact=True).click()
    expect(page.locator('section.scorecard[data-name="search-team"]')).to_be_visible()
    href = page.locator("#facts-export").get_attribute("href")
    assert href is not None
    export = httpx.get(server.url + href).json()
    assert [e["entityRef"] for e in export["entities"]] == ["group:default/search-team"]
    page.locator("#previous-period").click()
    expect(page.locator("h1")).not_to_contain_text(label)
    assert errors == []
