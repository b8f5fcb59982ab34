"""The UI as a person sees it: real headless Chromium (Debian's, never a downloaded one)
driven through Playwright against a real server holding the OpenLLMetry capture."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ServerProcess
from tests.otlp_factory import journey_request
from tests.present.browser import SHOTS, sync_api
from tests.present.ui_helpers import post_capture, post_request, wait_for_runs

pytestmark = pytest.mark.browser



def test_journeys_to_failing_trace(page: sync_api.Page, server: ServerProcess) -> None:
    expect = sync_api.expect
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    post_capture(server, "openllmetry")
    wait_for_runs(server, {"ask": 20, "triage-agent": 5})

    page.goto(server.url + "/")
    expect(page).to_have_title(re.compile("Journeys"))
    ask = page.locator("tr", has=page.get_by_role("link", name="ask", exact=True))
    expect(ask.locator("td.runs")).to_have_text("20")
    expect(ask.locator("td.failure-rate")).to_contain_text("5.0%")
    triage = page.locator("tr", has=page.get_by_role("link", name="triage-agent", exact=True))
    expect(triage.locator("td.runs")).to_have_text("5")
    expect(triage.locator("td.failure-rate")).to_contain_text("0%")

    # Live refresh: a journey that starts sending now appears without a reload.
    request, _ = journey_request(3, journey="arrives-live")
    post_request(server, request)
    live = page.locator("tr", has=page.get_by_role("link", name="arrives-live", exact=True))
    expect(live.locator("td.runs")).to_have_text("3", timeout=15_000)
    page.screenshot(path=str(SHOTS / "ui-journeys.png"), full_page=True)

    # Journey → its one failing run → the trace waterfall.
    page.get_by_role("link", name="ask", exact=True).click()
    expect(page.locator("h1")).to_contain_text("ask")
    expect(page.locator("tr.run")).to_have_count(20)
    failed = page.locator('tr.run[data-outcome="failure"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("InternalServerError")
    page.screenshot(path=str(SHOTS / "ui-journey-ask.png"), full_page=True)
    failed.locator("a.trace-link").click()
    expect(page).to_have_url(re.compile(r"/traces/[0-9a-f]{32}$"))

    spans = page.locator("details.span")
    expect(spans).to_have_count(4)
    expect(spans.locator("> summary .span-name")).to_have_text(
        ["POST /ask", "openai.embeddings", "vector_search docs", "openai.chat"]
    )
    chat = page.locator("details.span", has=page.locator(".span-name", has_text="openai.chat"))
    expect(chat.locator("> summary")).to_contain_text("Error code: 500")
    expect(chat).to_have_class(re.compile(r"\berror\b"))
    prompt = chat.locator(".msg.role-user pre.part", has_text="Where is my order number 0?")
    expect(prompt).to_be_hidden()  # collapsed until clicked
    chat.locator("> summary").click()
    expect(prompt).to_be_visible()
    expect(chat.locator(".msg.role-system")).to_contain_text("Answer from the documents")
    expect(chat.locator("table.kv").first).to_contain_text("gen_ai.request.model")
    page.screenshot(path=str(SHOTS / "ui-trace-failure.png"), full_page=True)

    # A successful run that retried a 429, then called the tool.
    page.go_back()
    page.locator("tr.run", has=page.locator("td.retries .warn")).first.locator(
        "a.trace-link"
    ).click()
    expect(page.locator("details.span .span-name")).to_contain_text(
        ["POST /ask", "vector_search docs", "openai.chat", "execute_tool lookup_order"]
    )
    expect(page.locator(".badge.retry")).to_have_text("↻ retry 1")
    tool = page.locator("details.span", has=page.locator(".span-name", has_text="execute_tool"))
    tool.locator("> summary").click()
    expect(tool.get_by_text('"query": "order status 42"').first).to_be_visible()
    page.screenshot(path=str(SHOTS / "ui-trace-retry.png"), full_page=True)
    assert console_errors == []
