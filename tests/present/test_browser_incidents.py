"""The incident pages in headless Chromium: from the nav to an incident opened by an
Alertmanager alert, its evidence naming the detected prompt rollout, acknowledging it and
adding a note through the page's forms, then its postmortem."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisre.core.timefmt import rfc3339
from tests.act.incident_data import MINUTE, S, runs_request
from tests.conftest import ServerProcess
from tests.integration.test_incidents_api import am_alert, am_payload
from tests.present.browser import SHOTS, sync_api
from tests.present.ui_helpers import post_request, wait_for_runs

pytestmark = pytest.mark.browser


@pytest.fixture
def incident_server(server_factory: Any, tmp_path: Path) -> tuple[ServerProcess, int]:
    server: ServerProcess = server_factory(tmp_path / "incidents.duckdb")
    now = time.time_ns()
    post_request(server, runs_request(60, now - 12 * MINUTE, step_ns=5 * S, prompt_version="v3")[0])
    post_request(server, runs_request(20, now - 3 * MINUTE, step_ns=5 * S, failed=True, prompt_version="v5")[0])
    wait_for_runs(server, {"ask": 80})
    alert = {**am_alert("AskErrors", "firing", "b1"), "startsAt": rfc3339(now - MINUTE)}
    opened = httpx.post(server.url + "/api/alertmanager", json=am_payload("firing", [alert]), timeout=30).json()
    return server, opened["incidents"][0]["id"]


def test_incident_pages(page: sync_api.Page, incident_server: tuple[ServerProcess, int]) -> None:
    server, incident_id = incident_server
    expect = sync_api.expect
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    page.goto(server.url + "/")
    page.get_by_role("navigation").get_by_role("link", name="Incidents").click()
    expect(page).to_have_url(re.compile(r"/incidents$"))
    row = page.locator(f'tr[data-incident="{incident_id}"]')
    expect(row).to_have_attribute("data-state", "open")
    expect(row.locator(".top-suspect")).to_have_text("prompt ask-answer v3 → v5 in ask")
    expect(page.locator("table.changes")).to_contain_text("prompt ask-answer v3 → v5 in ask")

    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(rf"/incidents/{incident_id}$"))
    expect(page.locator("#incident-state")).to_have_text("open")
    expect(page.locator("#points-at")).to_have_text("service code")
    top = page.locator("tr.suspect").first
    expect(top).to_contain_text("prompt ask-answer v3 → v5 in ask")
    expect(top.locator(".bad-share")).to_have_text("100.0%")
    # The rollout came with the first failing run, so it is a suspect; nothing changed after.
    expect(page.locator("table.changed-during tbody")).to_have_text("None.")
    expect(page.locator("#impact-found")).to_contain_text("Impact start: first of")
    expect(page.locator("a.exemplar")).to_have_count(3)
    expect(page.locator('tr[data-kind="opened"]')).to_contain_text("AskErrors")

    actions = page.locator("section.incident-actions form")
    actions.get_by_label("Who").fill("alice")
    actions.get_by_label("Note").fill("looking at the prompt rollout")
    actions.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#incident-state")).to_have_text("acknowledged")
    expect(page.locator(".flash")).to_have_text("now acknowledged")
    expect(page.locator("#tta")).not_to_have_text("—")
    expect(actions.get_by_role("button", name="Acknowledge")).to_have_count(0)

    note = page.locator("form.note-form")
    note.get_by_label("Who").fill("bob")
    note.get_by_label("Note").fill("rolling back to v3")
    note.get_by_role("button", name="Add note").click()
    expect(page.locator('tr[data-kind="note"]')).to_contain_text("rolling back to v3")
    expect(page.locator('tr[data-kind="state"]')).to_contain_text("open → acknowledged: looking at the prompt rollout")
    page.screenshot(path=str(SHOTS / "ui-incident.png"), full_page=True)

    page.locator("a.exemplar").first.click()
    expect(page).to_have_url(re.compile(r"/traces/[0-9a-f]{32}$"))
    page.go_back()
    page.locator("#postmortem-link").click()
    expect(page.locator("article.postmortem h1")).to_contain_text(f"Postmortem: incident #{incident_id}")
    expect(page.locator("article.postmortem h2", has_text="Exemplar traces")).to_be_visible()
    expect(page.locator("article.postmortem")).to_contain_text("Prompt vv5")  # the exemplar's captured prompt
    expect(page.locator("article.postmortem")).to_contain_text("lookup_order")
    page.screenshot(path=str(SHOTS / "ui-postmortem.png"), full_page=True)
    assert console_errors == []
