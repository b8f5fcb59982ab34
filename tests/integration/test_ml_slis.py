"""ML-platform SLIs through a live server: a stale feature view (timestamp gauge over
OTLP metrics), a failing pipeline (OTel CI/CD spans) and a batch job that stops meeting its
deadline each give the known good/total, a page alert and an incident."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import wait_for
from tests.metrics_otlp import MIN, gauge, request
from tests.otlp_factory import pipeline_runs

PROTOBUF = {"Content-Type": "application/x-protobuf"}
SLOS = """
slos:
  - name: fresh
    service: feast
    objective: 99
    sli: {kind: freshness, metric: 'feature_view.last_update_timestamp{view="user"}', max_age: 5m}
  - name: runs
    service: airflow
    objective: 99
    sli: {kind: pipeline, pipeline: nightly}
  - name: on-time
    service: airflow
    objective: 99
    sli: {kind: deadline, pipeline: batch, at: 0m, every: 2m}
"""


def test_freshness_pipeline_and_deadline_slos_page_and_open_incidents(server_factory: Any, tmp_path: Path) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text(SLOS)
    server = server_factory(tmp_path / "ml.duckdb", "--setting", f"slos={slos}", "--setting", "evaluation_interval_s=1")
    base = time.time_ns() // MIN * MIN - 30 * MIN
    # One pipeline run a minute; from minute 10 on they fail.
    runs = [(base + i * MIN + 2 * 10**9, base + i * MIN + 22 * 10**9, "success" if i < 10 else "failure", False)
            for i in range(30)]
    # The batch job ran once, at minute 1, and never again: every later deadline is missed.
    first = (base + MIN, base + 2 * MIN - 10**9, "success", False)
    for req in (pipeline_runs(runs), pipeline_runs([first], pipeline="batch")):
        r = httpx.post(server.url + "/v1/traces", content=req.SerializeToString(), headers=PROTOBUF)
        assert r.status_code == 200, r.text
    # The view updates every minute until minute 9, then stops: with a 5 minute bound,
    # minutes 14..29 are stale.
    points = [(base + i * MIN + 10**9, (base + min(i, 9) * MIN) / 1e9, {"view": "user"}) for i in range(30)]
    r = httpx.post(server.url + "/v1/metrics", content=request([gauge("feature_view.last_update_timestamp", points)],
                                                                service="feast").SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 200, r.text

    def slo(name: str, good: int, total: int) -> Any:
        doc = httpx.get(f"{server.url}/api/slos/{name}", timeout=30).json()
        return doc if (doc.get("good"), doc.get("total")) == (good, total) else None

    wait_for(lambda: slo("feast-fresh", 14, 30), 60, "14 of 30 fresh minutes")
    wait_for(lambda: slo("airflow-runs", 10, 30), 60, "10 of 30 successful runs")

    def deadlines() -> Any:
        # Deadlines every 2 minutes from the first run's start to now; only the first after it was met.
        now = time.time_ns()
        due = list(range(-(-(base + MIN) // (2 * MIN)) * 2 * MIN, now + 1, 2 * MIN))
        good = sum(1 for d in due if d - 2 * MIN < first[1] <= d)
        return slo("airflow-on-time", good, len(due)) if good == 1 else None

    wait_for(deadlines, 60, "the deadlines counted")

    def paged(name: str) -> Any:
        items = httpx.get(server.url + "/api/alerts", params={"slo": name}).json()["items"]
        return next((a for a in items if a["severity"] == "page" and a.get("incident")), None)

    for name in ("feast-fresh", "airflow-runs", "airflow-on-time"):
        alert = wait_for(lambda name=name: paged(name), 60, f"a page for {name} with an incident")
        incident = httpx.get(f"{server.url}/api/incidents/{alert['incident']}").json()
        assert incident["state"] in ("open", "acknowledged"), incident
