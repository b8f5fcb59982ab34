"""A demo fault scenario burns the ask journey's budget and fires a page alert."""

from __future__ import annotations

import time
from importlib import resources

import httpx
import pytest

from aisre.demo import runner
from aisre.demo.telemetry import SimClock

DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))


@pytest.mark.slow
def test_provider_outage_pages(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "outage.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1")
    # 16 simulated minutes of the outage in 8 real seconds, ending about now: a young journey
    # pages once the hour's failures spend 2 % of the 28-day budget (13.44x over 1 h).
    speed, seconds = 120, 8
    clock = SimClock(speed, start_ns=time.time_ns() - int(speed * seconds * 1e9))
    stats = runner.run(
        server.url + "/v1/traces", rate_per_s=25, duration_s=seconds, scenario="provider-outage",
        time_scale=0.05, seed=7, export_delay_ms=200, clock=clock,
    )
    assert stats.failures["ask"] > 0.3 * stats.journeys["ask"]
    deadline = time.monotonic() + 30
    doc: dict = {}
    while time.monotonic() < deadline:
        doc = httpx.get(server.url + "/api/slos/ask-success").json()
        if doc.get("status") == "page":
            break
        time.sleep(0.5)
    assert doc["status"] == "page", doc
    assert doc["burn_rates"]["1h"] > 13.44
    assert not doc["data"]["complete"] and doc["data"]["observed_s"] <= 20 * 60
    # About 16 minutes at a third of runs failing spend a few percent of 28 days' budget.
    assert 0.9 < doc["error_budget"]["remaining_ratio"] < 1
    deadline = time.monotonic() + 15
    firing: list = []
    while time.monotonic() < deadline and not firing:
        firing = httpx.get(server.url + "/api/alerts", params={"state": "firing", "slo": "ask-success"}).json()["items"]
        time.sleep(0.5)
    assert any(a["severity"] == "page" for a in firing)
