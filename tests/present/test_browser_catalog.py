"""The Catalog page in headless Chromium: the dependency graph (server-rendered SVG) and each
service's dependencies with call counts, for real captures posted over OTLP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_catalog_api import start_fed
from tests.present.browser import SHOTS, sync_api

pytestmark = pytest.mark.browser


def test_catalog_page(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    server = start_fed(server_factory, tmp_path)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(server.url + "/")
    page.get_by_role("link", name="Catalog", exact=True).click()
    expect(page).to_have_url(server.url + "/catalog")
    expect(page.locator("#service-count")).to_have_text("2")  # declared; the captures are older than 7 days
    page.get_by_role("link", name="all", exact=True).click()
    expect(page.locator("#service-count")).to_have_text("2")
    expect(page.locator("#journey-count")).to_have_text("4")  # ask, index, summarise, triage-agent
    graph = page.locator("#dependency-graph")
    expect(graph).to_be_visible()
    # Journeys, services and the union of their dependencies (3 models, pgvector, lookup_order).
    expect(graph.locator("g.node-journey")).to_have_count(4)
    expect(graph.locator("g.node-service")).to_have_count(2)
    expect(graph.locator("g.node-model")).to_have_count(3)
    expect(graph.locator('g.node-vector_store[data-label="pgvector"]')).to_contain_text("20 calls")
    expect(graph.locator('g.node-tool[data-label="lookup_order"]')).to_contain_text("27 calls")
    expect(graph.locator("path.edge-error")).to_have_count(2)  # gpt-4o-mini failed in both services
    box = graph.bounding_box()
    assert box is not None and box["width"] > 700 and box["height"] > 100
    bot = page.locator('section.catalog-service[data-service="support-bot"]')
    expect(bot.locator('tr.dep-row[data-name="gpt-4o-mini"]')).to_have_attribute("data-calls", "36")
    expect(bot).to_contain_text("owner search-team")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.screenshot(path=str(SHOTS / "ui-catalog.png"), full_page=True)
    assert errors == []
