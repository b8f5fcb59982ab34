"""ML-platform SLIs through a live server: a stale feature view (timestamp gauge over
OTLP metrics), a failing pipeline (OTel CI/CD spans) and a batch job that stops meeting its
deadline each give the known good/total, a page alert and an incident. The same server takes
POST /api/events: a dataset that stops updating (freshness from spans) and pipeline runs that
start failing page and open incidents too; events posted twice count once, bad items are
refused one by one with a reason, and a malformed body is a 400."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from aisre.core.timefmt import rfc3339
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
  - name: orders-fresh
    service: feast
    objective: 99
    sli: {kind: freshness, dataset: orders, max_age: 5m}
  - name: etl-runs
    service: airflow
    objective: 99
    sli: {kind: pipeline, pipeline: etl}
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

    _post_events(server.url, base)

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

    def orders_fresh() -> Any:
        # Minutes 0..13 fresh (the last update, at minute 9, is at most 5 minutes old at their
        # end), every later minute that has ended stale.
        doc = httpx.get(f"{server.url}/api/slos/feast-orders-fresh", timeout=30).json()
        ended = (time.time_ns() - base) // MIN
        return doc if doc.get("good") == 14 and 30 <= (doc.get("total") or 0) <= ended else None

    wait_for(orders_fresh, 60, "14 fresh minutes of the orders dataset, then stale ones")
    wait_for(lambda: slo("airflow-etl-runs", 10, 30), 60, "10 of 30 successful etl runs, each counted once")

    def paged(name: str) -> Any:
        items = httpx.get(server.url + "/api/alerts", params={"slo": name}).json()["items"]
        return next((a for a in items if a["severity"] == "page" and a.get("incident")), None)

    for name in ("feast-fresh", "airflow-runs", "airflow-on-time", "feast-orders-fresh", "airflow-etl-runs"):
        alert = wait_for(lambda name=name: paged(name), 60, f"a page for {name} with an incident")
        incident = httpx.get(f"{server.url}/api/incidents/{alert['incident']}").json()
        assert incident["state"] in ("open", "acknowledged"), incident


def _post_events(url: str, base: int) -> None:
    """Dataset updates each minute until minute 9; etl runs each minute, timing out from minute
    10 (the scheduler's run ids given); everything posted twice, with bad items among them."""
    updates = [{"kind": "dataset_update", "dataset": "orders", "time": base + i * MIN + 10**9} for i in range(10)]
    runs = [{"kind": "pipeline_run", "pipeline": "etl", "id": f"etl-{i}", "result": "success" if i < 10 else "timeout",
             "start": rfc3339(base + i * MIN + 2 * 10**9), "end": rfc3339(base + i * MIN + 20 * 10**9)}
            for i in range(30)]
    bad = [{"kind": "pipeline_run", "pipeline": "etl", "result": "ok", "start": base, "end": base},
           {"kind": "dataset_update", "dataset": "orders"},
           {"kind": "dataset_update", "dataset": "orders", "time": base // 10**9},
           {"kind": "pipeline_run", "pipeline": "etl", "result": "success", "start": base + MIN, "end": base},
           {"kind": "deploy"}]
    for _ in range(2):
        r = httpx.post(url + "/api/events", json={"events": [*updates, *bad, *runs]}, timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["accepted"] == 40
        assert [x["index"] for x in answer["rejected"]] == [10, 11, 12, 13, 14]
        reasons = [x["reason"] for x in answer["rejected"]]
        assert reasons[0].startswith("result must be one of success, failure, error, timeout, cancellation, skip")
        assert reasons[1].startswith("time is required")
        assert "looks like seconds" in reasons[2]
        assert reasons[3] == "end must not be before start"
        assert reasons[4].startswith("kind must be one of pipeline_run, dataset_update")
        assert len({(s["trace_id"], s["span_id"]) for s in answer["spans"]}) == 40
    trace = httpx.get(f"{url}/api/traces/{answer['spans'][-1]['trace_id']}", timeout=30).json()
    root = trace["spans"][0]
    assert root["attributes"]["cicd.pipeline.name"] == "etl" and root["attributes"]["cicd.pipeline.result"] == "timeout"
    for body in (b"not json", b'{"events": 3}', b"[]"):
        r = httpx.post(url + "/api/events", content=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 400 and "error" in r.json(), r.text
