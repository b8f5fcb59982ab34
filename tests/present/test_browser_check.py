"""The Check page in headless Chromium: coverage per service and findings for data posted over
OTLP, a period selector, links to exemplar traces, no console errors, nothing scrolling sideways."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import DATA, ServerProcess, wait_for
from tests.present.browser import SHOTS, sync_api

pytestmark = pytest.mark.browser
CAPTURES = DATA / "captures"


def _post(server: ServerProcess, name: str) -> None:
    for path in sorted((CAPTURES / name / "raw").glob("*.pb")):
        httpx.post(server.url + "/v1/traces", content=path.read_bytes(),
                   headers={"Content-Type": "application/x-protobuf"}).raise_for_status()


def test_check_page(page: sync_api.Page, server: ServerProcess) -> None:
    expect = sync_api.expect
    _post(server, "check/no-models")  # Logfire, 21 spans: models dropped on the 3 streamed calls
    _post(server, "ai-sdk")  # Vercel AI SDK, 61 spans: provider names with suffixes, renamed attributes
    wait_for(lambda: httpx.get(server.url + "/api/check", params={"since": "all"}).json()["spans"] == 82, 20, "82 spans")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_viewport_size({"width": 1400, "height": 900})

    page.goto(server.url + "/")
    page.get_by_role("link", name="Check", exact=True).click()
    expect(page).to_have_url(server.url + "/check")
    expect(page.get_by_role("heading", name="No spans in the last 1h")).to_be_visible()  # the captures are older

    page.get_by_role("link", name="all", exact=True).click()
    expect(page).to_have_url(server.url + "/check?since=all")
    expect(page.locator("#spans-checked")).to_have_text("82")
    expect(page.locator("#total-violation")).to_have_text("3")
    rows = page.locator("tr.coverage-row")
    expect(rows).to_have_count(2)
    # Worst coverage first: Logfire's service, with the missing models, before the AI SDK's.
    expect(rows.nth(0)).to_have_attribute("data-service", "support-bot-logfire")
    expect(rows.nth(0).locator(".coverage-value")).to_have_text("81.9 %")
    expect(rows.nth(1).locator(".coverage-value")).to_have_text("84.3 %")
    logfire = page.locator('section.check-service[data-service="support-bot-logfire"]')
    model = logfire.locator('tr.finding[data-id="model.missing"]')
    expect(model).to_have_count(1)
    expect(model).to_have_attribute("data-journey", "summarise")
    expect(model).to_have_attribute("data-count", "3")
    expect(model.locator(".check-level")).to_have_text("violation")
    expect(model.locator(".message")).to_contain_text("cannot be priced")
    prompts = logfire.locator('tr.finding[data-id="prompt.version.missing"]')
    assert {prompts.nth(i).get_attribute("data-journey"): prompts.nth(i).get_attribute("data-count")
            for i in range(prompts.count())} == {"ask": "5", "summarise": "3", "index": "1"}
    node = page.locator('section.check-service[data-service="support-bot-node"]')
    expect(node.locator('tr.finding[data-id="provider.noncanonical"]').first).to_contain_text("openai.chat")

    # Nothing scrolls sideways inside a card, nor the page, at 1400×900.
    overflow = page.evaluate("""() => [...document.querySelectorAll('main .panel, main table, main .stats')]
        .filter(el => el.scrollWidth > el.clientWidth + 1)
        .map(el => `${el.className}: ${el.scrollWidth} > ${el.clientWidth}`)""")
    assert overflow == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.screenshot(path=str(SHOTS / "ui-check.png"), full_page=True)

    # One journey, then the exemplar trace of a finding.
    model.get_by_role("link", name="summarise").click()
    expect(page).to_have_url(server.url + "/check?since=all&journey=summarise")
    expect(page.locator("h1")).to_contain_text("summarise")
    expect(page.locator("#runs-checked")).to_have_text("6")  # 3 summarise runs in each service
    journeys = page.locator("tr.finding").evaluate_all("rows => rows.map(r => r.dataset.journey)")
    assert journeys and set(journeys) == {"summarise"}
    page.locator('tr.finding[data-id="model.missing"] a.exemplar').click()
    expect(page).to_have_url(server.url + "/traces/" + page.url.rsplit("/", 1)[-1])
    expect(page.locator("h1")).to_contain_text("summarise")
    assert errors == []
