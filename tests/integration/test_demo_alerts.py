"""A demo fault scenario burns the ask journey's budget and fires a page alert."""

from __future__ import annotations

import time
from importlib import resources

import httpx
import pytest

from aisre.demo import runner

DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))


@pytest.mark.slow
def test_provider_outage_pages(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "outage.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1")
    stats = runner.run(
        server.url + "/v1/traces", rate_per_s=25, duration_s=6, scenario="provider-outage",
        time_scale=0.05, seed=7, export_delay_ms=200,
    )
    assert sum(stats.failures.values()) > 0
    deadline = time.monotonic() + 30
    doc: dict = {}
    while time.monotonic() < deadline:
        doc = httpx.get(server.url + "/api/slos/ask-success").json()
        if doc.get("status") == "page":
            break
        time.sleep(0.5)
    assert doc["status"] == "page", doc
    assert doc["error_budget"]["remaining_ratio"] < 0  # a 28-day budget gone in seconds
    deadline = time.monotonic() + 15
    firing: list = []
    while time.monotonic() < deadline and not firing:
        firing = httpx.get(server.url + "/api/alerts", params={"state": "firing", "slo": "ask-success"}).json()["items"]
        time.sleep(0.5)
    assert any(a["severity"] == "page" for a in firing)
