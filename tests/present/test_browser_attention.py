"""The "needs attention" strip in headless Chromium: on every page, calm while nothing is
wrong; an incident opening shows up on every open page through its live refresh (the page is
not reloaded), as a link that leads to the incident."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.integration.test_incidents_api import am_alert, am_payload
from tests.present.browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, sync_api
from tests.present.ui_helpers import post_capture, wait_for_runs

pytestmark = pytest.mark.browser

REFRESH_S = 5  # pages.REFRESH_SECONDS: the strip must change within one refresh
# One refresh, plus generous slack for a loaded machine (polling, no timing assert).
DEADLINE_MS = (REFRESH_S + 25) * 1000


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium, for several tabs open at once (the `page` fixture gives one)."""
    if not CHROMIUM.exists():
        if os.environ.get("AISRE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} not found (AISRE_REQUIRE_BROWSER=1)")
        pytest.skip(f"{CHROMIUM} not found")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_attention_strip_on_every_page(browser: Any, server: ServerProcess) -> None:
    expect = sync_api.expect
    post_capture(server, "otel-genai")
    wait_for_runs(server, {"ask": 20, "triage-agent": 5})
    trace_id = httpx.get(server.url + "/api/journeys/runs", params={"limit": 1}).json()["items"][0]["trace_id"]
    paths = ["/", "/runs", "/journeys/ask", f"/traces/{trace_id}", "/slos", "/cost", "/gate", "/incidents"]

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    tabs = []
    for path in paths:
        tab = context.new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(server.url + path)
        strip = tab.locator("#attention")
        expect(strip).to_be_visible()
        expect(strip).to_have_class(re.compile(r"\bcalm\b"))
        expect(strip).to_contain_text("Nothing needs attention")
        tab.evaluate("window.__notReloaded = true")  # gone if the page were navigated again
        tabs.append((path, tab))

    alert = am_alert("AskErrors", "firing", "f1", severity="critical")
    opened = httpx.post(server.url + "/api/alertmanager", json=am_payload("firing", [alert]), timeout=30).json()
    incident = opened["incidents"][0]
    severity = httpx.get(f"{server.url}/api/incidents/{incident['id']}", timeout=10).json()["severity"]

    for path, tab in tabs:
        link = tab.locator(f'#attention a[href="/incidents/{incident["id"]}"]')
        expect(link, f"strip on {path}").to_be_visible(timeout=DEADLINE_MS)
        expect(link).to_contain_text(f"{severity} #{incident['id']}")
        expect(tab.locator("#attention")).to_have_class(re.compile(r"\bhot\b"))
        assert tab.evaluate("window.__notReloaded === true"), f"{path} was reloaded, not refreshed live"

    SHOTS.mkdir(exist_ok=True)
    tabs[0][1].screenshot(path=str(SHOTS / "ui-attention.png"))

    # The link leads to the incident, whose own page carries the strip too.
    path, tab = tabs[0]
    tab.locator(f'#attention a[href="/incidents/{incident["id"]}"]').click()
    expect(tab).to_have_url(re.compile(rf"/incidents/{incident['id']}$"))
    expect(tab.locator(f'#attention a[href="/incidents/{incident["id"]}"]')).to_be_visible()

    # Resolved, it leaves the strip: the pages go calm again.
    httpx.post(f"{server.url}/api/incidents/{incident['id']}/resolve", json={"by": "test"}, timeout=10).raise_for_status()
    for path, tab in tabs[1:]:
        expect(tab.locator("#attention"), f"strip on {path}").to_have_class(re.compile(r"\bcalm\b"), timeout=DEADLINE_MS)
    assert errors == []
    context.close()
