"""The demo's default traffic is healthy: two simulated hours (with the ML platform's metrics
and nightly job) open no alert and no incident,
while a fault scenario on the same server pages and opens an incident that names its layer."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import httpx
import pytest

from aisre.core.timefmt import rfc3339
from aisre.demo import runner
from aisre.demo.telemetry import SimClock
from tests.conftest import wait_for

DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))
DEMO_POLICY = str(resources.files("aisre.demo").joinpath("policy.yaml"))
HOUR_NS = 3600 * 10**9



@pytest.mark.slow
def test_default_traffic_opens_nothing_and_a_provider_outage_pages_naming_the_provider(
    server_factory: Any, tmp_path: Any
) -> None:
    # As `aisre demo` runs: its SLOs and its agent policy (the triage-policy SLO counts runs that keep it).
    server = server_factory(tmp_path / "health.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1",
                            "--setting", "evidence_interval_s=1", "--setting", f"policies={DEMO_POLICY}",
                            "--setting", "policy_interval_s=1")
    # Two hours of default traffic in 30 real seconds, ending an hour before now.
    speed, seconds = 240, 30
    start = time.time_ns() - 3 * HOUR_NS
    # With the ML platform under the bot (demo/platform.py): its metrics every simulated 4
    # minutes, twelve nights of its batch job, and the platform SLOs they feed.
    stats = runner.run(
        server.url + "/v1/traces", rate_per_s=20, duration_s=seconds, scenario="default", time_scale=0.05,
        seed=21, export_delay_ms=200, clock=SimClock(speed, start_ns=start), platform=True, metrics_interval_s=1,
    )
    assert stats.total > 400 and stats.crashed == 0
    end = start + 2 * HOUR_NS

    def counted() -> bool:
        doc = httpx.get(server.url + "/api/slos/ask-success").json()
        return doc.get("total") == stats.journeys["ask"]

    wait_for(counted, 30, "every ask run counted")

    def judged() -> bool:
        doc = httpx.get(server.url + "/api/slos/triage-policy").json()
        return doc.get("total") == stats.journeys["triage-agent"]

    wait_for(judged, 60, "every triage-agent run judged against the policy")
    time.sleep(3)  # a few evaluations over the complete data
    for doc in httpx.get(server.url + "/api/slos").json()["items"]:
        assert doc["status"] == "ok", (doc["name"], doc["status"], doc.get("alerts"))
        replay = httpx.get(server.url + f"/api/slos/{doc['name']}/replay",
                           params={"since": rfc3339(start), "until": rfc3339(end + 60 * 10**9)}).json()["items"]
        assert replay == [], (doc["name"], replay)
    assert httpx.get(server.url + "/api/alerts").json()["items"] == []
    assert httpx.get(server.url + "/api/incidents").json()["items"] == []

    # Then the provider fails most chat calls for the last hour (simulated 15 minutes).
    outage_start = time.time_ns() - HOUR_NS // 4
    runner.run(
        server.url + "/v1/traces", rate_per_s=20, duration_s=8, scenario="provider-outage", time_scale=0.05,
        seed=22, export_delay_ms=200, clock=SimClock(HOUR_NS / 4 / 8e9, start_ns=outage_start),
    )

    def incident() -> dict[str, Any] | None:
        items = httpx.get(server.url + "/api/incidents", params={"journey": "ask"}).json()["items"]
        if not items:
            return None
        detail = httpx.get(server.url + f"/api/incidents/{items[0]['id']}").json()
        return detail if (detail.get("evidence") or {}).get("points_at") else None

    found = wait_for(incident, 45, "an ask incident with evidence")
    assert found["severity"] == "sev1"
    assert found["evidence"]["points_at"] == "model provider"
    # Impact began with the outage's telemetry, not with the healthy hours before it.
    assert found["impact_start"] is not None and found["impact_start"] >= rfc3339(outage_start - 60 * 10**9)
