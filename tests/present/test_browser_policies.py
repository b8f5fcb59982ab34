"""The Policies page in headless Chromium: the rules in force with violating runs per rule per
day, the version history of applied sets, newest violations and the decision log; denies also
in the audit log; no console errors, nothing scrolling sideways at 1400×900."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, wait_for
from tests.policy_traces import agent_run, tool
from tests.present.browser import SHOTS, sync_api

pytestmark = pytest.mark.browser

V1 = """
policies:
  - name: triage
    scope: {journeys: [triage]}
    rules:
      - {name: no-shell, kind: tool_deny, tools: [shell]}
      - {name: no-loops, kind: loop, max_repeats: 5}
"""
# Version 2 adds a rule and a session budget.
V2 = V1 + """\
      - name: mail-domain
        kind: argument
        tools: [send_email]
        require: 'args.to.endsWith("@example.com")'
      - {name: session-calls, kind: budget, per: session, tool_calls: 100}
"""


def _post(server: ServerProcess, request) -> None:
    r = httpx.post(server.url + "/v1/traces", content=request.SerializeToString(),
                   headers={"Content-Type": "application/x-protobuf"}, timeout=30)
    assert r.status_code == 200, r.text


def test_policies_page(page: sync_api.Page, server_factory, tmp_path: Path) -> None:
    expect = sync_api.expect
    server = server_factory(tmp_path / "p.duckdb", "--setting", "policy_interval_s=1")
    first = httpx.put(server.url + "/api/policies", content=V1, timeout=30).json()["bundle"]
    second = httpx.put(server.url + "/api/policies", content=V2, timeout=30).json()["bundle"]
    assert first != second
    now = time.time_ns()
    runs = [
        agent_run([tool("read_file", path="/etc/x")] * 20, start_ns=now - 300 * 10**9, step_ns=10**8),
        agent_run([tool("search", q="a"), tool("shell", cmd="ls")], start_ns=now - 200 * 10**9),
        agent_run([tool("shell", cmd="id")], start_ns=now - 100 * 10**9),
        agent_run([tool("search", q="b")], start_ns=now - 50 * 10**9),
    ]
    for run in runs:
        _post(server, run.request())
    wait_for(lambda: len(httpx.get(server.url + "/api/policy/violations", timeout=30).json()["items"]) == 3 or None,
             60, "3 violations judged")
    denied = httpx.post(server.url + "/api/policy/decide", timeout=30, json={
        "journey": "triage", "action": {"type": "tool", "name": "send_email", "args": {"to": "eve@evil.test"}}}).json()
    assert denied["result"] == "deny"
    # The deny is in the audit trail with its decision id, the input redacted.
    audit = wait_for(lambda: httpx.get(server.url + "/api/audit", params={"action": "policy.decide"},
                                       timeout=30).json()["items"] or None, 30, "the deny audited")
    assert [(a["action"], a["target"]) for a in audit] == [("policy.decide.deny", f"decision:{denied['id']}")]
    assert audit[0]["after"]["input"]["action"]["args"]["to"] == "[REDACTED:EMAIL]"

    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(server.url + "/")
    page.get_by_role("link", name="Policies", exact=True).click()
    expect(page).to_have_url(server.url + "/policies")
    expect(page.locator("h1")).to_have_text("Agent policies")
    expect(page.locator(".page-head")).to_contain_text(second)

    # Rules of the set in force, with violating runs per rule; today's bar is the tallest.
    rules = page.locator("tr.policy-rule")
    expect(rules).to_have_count(4)
    assert rules.evaluate_all("rows => rows.map(r => [r.dataset.rule, r.dataset.total])") == [
        ["no-shell", "2"], ["no-loops", "1"], ["mail-domain", "0"], ["session-calls", "0"]]
    shell = page.locator('tr.policy-rule[data-rule="no-shell"]')
    expect(shell.locator("td").nth(3)).to_have_text("deny")
    bars = shell.locator(".spark-bar")
    expect(bars).to_have_count(7)
    assert bars.last.get_attribute("title").endswith(": 2")
    assert bars.last.evaluate("b => b.style.height") == "100%"
    assert bars.first.evaluate("b => b.style.height") == "0%"

    # Version history: both sets, newest first, each naming its policy version.
    history = page.locator("section.policy-history tbody tr")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text(second)
    expect(history.nth(1)).to_contain_text(first)

    # Newest violations link to the span; the decision log shows the deny.
    recent = page.locator("section.policy-violations-recent tbody tr")
    expect(recent).to_have_count(3)
    expect(recent.nth(0)).to_contain_text("triage/no-shell")
    expect(page.locator("tr.decision.result-deny")).to_have_count(1)
    expect(page.locator("tr.decision.result-deny")).to_contain_text("mail-domain")

    # Nothing scrolls sideways inside a card, nor the page, at 1400×900.
    overflow = page.evaluate("""() => [...document.querySelectorAll('main .panel, main table, main .stats')]
        .filter(el => el.scrollWidth > el.clientWidth + 1)
        .map(el => `${el.className}: ${el.scrollWidth} > ${el.clientWidth}`)""")
    assert overflow == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.screenshot(path=str(SHOTS / "ui-policies.png"), full_page=True)

    # A violation's link opens the trace at its span.
    recent.nth(0).get_by_role("link").click()
    expect(page).to_have_url(f"{server.url}/traces/{runs[2].trace_id}#span-{runs[2].step_span_ids[0]}")
    assert errors == []
