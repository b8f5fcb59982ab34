"""The gate pages in headless Chromium: judge from the form, see the distributions side by side,
find the verdict in the journey's history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ServerProcess
from tests.evaluate.gate_factory import runs_request
from tests.present.browser import SHOTS, sync_api
from tests.present.ui_helpers import post_request

pytestmark = pytest.mark.browser
S = 10**9


def _wait(server: ServerProcess, version: str, n: int) -> None:
    params = {"journey": "ask", "baseline": f"service.version={version}", "candidate": "x=1", "record": "false"}
    deadline = time.monotonic() + 20
    while httpx.get(server.url + "/api/gate", params=params).json()["baseline"]["runs"] < n:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_gate_pages(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    server: ServerProcess = server_factory(tmp_path / "gate-ui.duckdb")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    rng = np.random.default_rng(9)
    start = time.time_ns() - 900 * S
    post_request(server, runs_request(120, version="1.4", start_ns=start, rng=rng))
    post_request(server, runs_request(50, version="1.5", start_ns=start + 3 * S, rng=rng,
                                      input_tokens=lambda r: int(r.normal(1500, 60)),
                                      groundedness=lambda r: float(r.uniform(0.4, 0.7))))
    _wait(server, "1.5", 50)

    page.goto(server.url + "/gate")
    expect(page.get_by_role("heading", name="No verdicts yet")).to_be_visible()
    page.fill("input[name=journey]", "ask")
    page.fill("input[name=baseline]", "service.version=1.4")
    page.fill("input[name=candidate]", "service.version=1.5")
    page.click("button[type=submit]")

    page.wait_for_url("**/gate/verdicts/*")
    expect(page.locator(".verdict-big")).to_have_text("fail")
    groundedness = page.locator('.gate-metric[data-metric="groundedness"]')
    expect(groundedness.locator(".classification")).to_contain_text("Low")
    expect(page.locator('.gate-metric[data-metric="cost"] .classification')).to_contain_text("High")
    expect(page.locator('.gate-metric[data-metric="latency"] .classification')).to_contain_text("Pass")
    # Both distributions are drawn: baseline bars above the axis, candidate bars below it.
    chart = groundedness.locator("svg.distribution")
    expect(chart).to_be_visible()
    heights_b = [float(h) for h in chart.locator("rect.bar-baseline").evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    heights_c = [float(h) for h in chart.locator("rect.bar-candidate").evaluate_all("rs => rs.map(r => r.getAttribute('height'))")]
    assert len(heights_b) == len(heights_c) == 20
    # The candidate's mass sits lower on the scale than the baseline's (it is less grounded).
    centre = lambda hs: sum(i * h for i, h in enumerate(hs)) / sum(hs)  # noqa: E731
    assert centre(heights_c) < centre(heights_b)
    expect(groundedness.locator(".side-candidate td").first).to_have_text("50")
    expect(groundedness.locator(".metric-how")).to_contain_text("higher is better (score name)")
    # The failure rate is judged per run as a proportion: both rates and their counts are shown.
    outcome = page.locator('.gate-metric[data-metric="outcome"]')
    expect(outcome.locator(".metric-how")).to_contain_text("Fisher's exact test")
    expect(outcome.locator(".rates")).to_contain_text("0.00% (0/120) → 0.00% (0/50)")
    expect(page.locator(".policy-summary")).to_contain_text("tier-0-budget (defaults)")
    page.screenshot(path=str(SHOTS / "ui-gate-verdict.png"), full_page=True)

    page.get_by_role("link", name="Release gate").click()
    expect(page.locator("tr.verdict-row")).to_have_count(1)
    expect(page.locator("tr.verdict-row .verdict")).to_have_text("fail")
    page.get_by_role("link", name="ask", exact=True).click()
    expect(page).to_have_url(server.url + "/gate?journey=ask")
    expect(page.locator("tr.verdict-row")).to_have_count(1)
    assert errors == []
