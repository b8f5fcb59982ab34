"""The "needs attention" strip's content against a real server with the demo's SLOs: an error
budget in danger, then the page alert and the incident it opens, one entry per problem."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

from aisre.present.ui import format as fmt
from tests.present.test_ui_slo import (
    DEMO_SLOS,
    HISTORY,
    _get,
    post_history,
    runs_request,
    wait_for_slo,
)
from tests.present.ui_helpers import post_request


def _strip(page: str) -> str:
    match = re.search(r'<div id="attention"[^>]*>(.*?)</div>', page, re.S)
    assert match, "no attention strip"
    return match.group(0)


def _links(strip: str) -> list[tuple[str, str]]:
    return [(href, " ".join(text.split())) for href, text in re.findall(r'<a class="att[^"]*" href="([^"]+)"[^>]*>(.*?)</a>', strip, re.S)]


def _burn(server: Any) -> dict[str, Any]:
    post_history(server)
    post_request(server, runs_request(40))
    post_request(server, runs_request(10, failures=10))  # 10 failures in 50 runs: 40× burn, a page
    return wait_for_slo(server, "ask-success", HISTORY + 50)


def test_calm_then_budget_in_danger(server_factory: Any, tmp_path: Path) -> None:
    # Alert evaluation off: no alert or incident, so the budget is the only signal.
    server = server_factory(tmp_path / "a.duckdb", "--slos", str(DEMO_SLOS), "--setting", "evaluation_interval_s=0")
    strip = _strip(_get(server, "/"))
    assert 'class="attention calm"' in strip and "Nothing needs attention" in strip
    doc = _burn(server)
    remaining = doc["error_budget"]["remaining_ratio"]
    assert remaining <= 0.1
    left = "exhausted" if remaining <= 0 or doc["status"] == "exhausted" else f"{fmt.budget(remaining)} left"
    for path in ("/", "/slos", "/incidents", "/cost", "/gate", "/runs"):
        strip = _strip(_get(server, path))
        assert 'class="attention hot"' in strip, path
        assert _links(strip) == [("/slos/ask-success", f"budget ask-success: {left}")], (path, strip)
    # The fragment pages without a live refresh poll is the same strip.
    fragment = httpx.get(server.url + "/ui/attention", timeout=10)
    assert fragment.status_code == 200 and _links(_strip(fragment.text)) == [("/slos/ask-success", f"budget ask-success: {left}")]


def test_the_page_and_its_incident_are_one_entry(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory(tmp_path / "b.duckdb", "--slos", str(DEMO_SLOS), "--setting", "evaluation_interval_s=1")
    _burn(server)
    deadline = time.monotonic() + 60
    incidents: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not incidents:
        incidents = httpx.get(server.url + "/api/incidents", params={"state": "active"}, timeout=10).json()["items"]
        time.sleep(0.5)
    assert len(incidents) == 1, incidents
    incident = incidents[0]
    assert incident["slo"] == "ask-success"
    links = _links(_strip(_get(server, "/journeys/ask")))
    # The incident names the SLO: its page alert and its budget are not listed again.
    assert links == [(f"/incidents/{incident['id']}", f"{incident['severity']} #{incident['id']} {incident['title']}")]

    # Resolved while the page still fires: the page alert is what needs attention now.
    httpx.post(f"{server.url}/api/incidents/{incident['id']}/resolve", json={"by": "test"}, timeout=10).raise_for_status()
    alerts = httpx.get(server.url + "/api/alerts", params={"state": "firing"}, timeout=10).json()["items"]
    assert any(a["slo"] == "ask-success" and a["severity"] == "page" for a in alerts), alerts
    links = _links(_strip(_get(server, "/")))
    assert links == [("/slos/ask-success", "page: ask-success")], links
