"""The reliability review renders in headless Chromium with its charts (budget burn, runs and
failures per day, cost per day) for a server fed over OTLP, and prints to PDF; the CLI writes the
Markdown and HTML of the same review."""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.core.timefmt import rfc3339
from aisre.present.cli.main import build_cli
from tests.integration.test_scorecards_api import start_fed
from tests.present.browser import SHOTS, sync_api

pytestmark = pytest.mark.browser


def test_review_report_renders_with_charts(page: sync_api.Page, server_factory: Any, tmp_path: Path) -> None:
    expect = sync_api.expect
    server, label = start_fed(server_factory, tmp_path)
    # A drill recorded on the server, 20 to 10 minutes ago: no page came, so it failed.
    now = time.time_ns()
    drill = httpx.post(server.url + "/api/gameday/start", json={"journey": "ask", "scenario": "provider-outage",
                                                                 "at": rfc3339(now - 20 * 60 * 10**9)}).json()
    httpx.post(server.url + "/api/gameday/stop", json={"id": drill["id"], "at": rfc3339(now - 10 * 60 * 10**9)}).raise_for_status()
    days = calendar.monthrange(int(label[:4]), int(label[5:]))[1]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_viewport_size({"width": 1100, "height": 900})
    page.goto(server.url + f"/scorecards?period={label}")
    page.locator("#review-report").click()
    expect(page).to_have_url(server.url + f"/report?period={label}")
    expect(page.locator("h1")).to_have_text(f"Reliability review · month {label}")
    expect(page.locator("#incident-count")).to_have_text("1")
    expect(page.locator("#top-incidents tbody tr")).to_have_count(1)
    expect(page.locator("#top-incidents")).to_contain_text("answers rejected")
    # Runs per day: a bar per day of the month; one day holds the 20 runs, 5 of them failed.
    runs = page.locator("#chart-runs svg")
    expect(runs).to_be_visible()
    expect(runs.locator("g.bar")).to_have_count(days)
    expect(runs.locator("rect.overlay")).to_have_count(1)
    tall = runs.locator("g.bar rect:not(.overlay)").evaluate_all("rs => rs.map(r => r.getBBox().height).filter(h => h > 0)")
    assert len(tall) == 1 and tall[0] > 50
    failed = runs.locator("rect.overlay").evaluate("r => r.getBBox().height")
    assert failed == pytest.approx(tall[0] / 4, rel=0.02)  # 5 of 20
    burn = page.locator("#chart-burn svg polyline.series")
    expect(burn).to_have_count(1)
    expect(page.locator("#chart-burn .legend")).to_contain_text("ask-success 250 %")  # 5 bad of a budget of 2
    expect(page.locator("#chart-cost svg g.bar")).to_have_count(days)
    expect(page.locator("#changes")).to_contain_text("failed")
    expect(page.locator("#changes")).not_to_contain_text("gameday")
    expect(page.locator("#game-day-count")).to_have_text("1 (0)")
    expect(page.locator("#game-days tbody tr")).to_have_count(1)
    row = page.locator("#game-days tbody tr")
    expect(row).to_contain_text(f"#{drill['id']} provider-outage")
    expect(row).to_contain_text("expected model provider")
    expect(row.locator("td").last).to_have_text("failed")
    # The table fits the page: no sideways scrolling at this width.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
    pdf = page.pdf(format="A4")
    assert pdf[:5] == b"%PDF-" and len(pdf) > 10_000
    assert errors == []

    cli = build_cli(run_server)
    out = CliRunner().invoke(cli, ["report", "--url", server.url, "--period", label])
    assert out.exit_code == 0 and f"# Reliability review: month {label}" in out.output
    assert "| ask-success | ask | 90.0 % | 75.0 % | 250.0 % | **no** |" in out.output
    target = tmp_path / "review.html"
    out = CliRunner().invoke(cli, ["report", "--url", server.url, "--period", label, "--format", "html", "-o", str(target)])
    assert out.exit_code == 0 and target.read_text().count("<svg") == 3
    out = CliRunner().invoke(cli, ["report", "--url", server.url, "--period", label])
    assert "## Game days" in out.output and f"| #{drill['id']} provider-outage | ask |" in out.output
