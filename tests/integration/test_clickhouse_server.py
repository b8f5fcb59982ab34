"""`aisre up` on ClickHouse (chdb in the server process) with its control plane on PostgreSQL:
spans sent over OTLP/HTTP land as runs, an SLO status, a cost breakdown, a gate verdict and a
recorded change, the paths a DuckDB server serves (tests/integration/test_gate_api.py runs
the same gate data on DuckDB and expects the same verdict)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import wait_for
from tests.evaluate.gate_factory import runs_request
from tests.integration.test_gate_api import SLOS
from tests.policy_traces import agent_run, tool

pytest.importorskip("chdb")
S = 10**9
PB = {"Content-Type": "application/x-protobuf"}


def test_a_chdb_server_with_postgresql_control_serves_the_journey_paths(
    server_factory: Any, postgres_url: str, tmp_path: Path
) -> None:
    slos = tmp_path / "slos.yaml"
    slos.write_text(SLOS)
    server = server_factory(tmp_path / "unused.duckdb", "--store", f"chdb://{tmp_path}/spans", "--control", postgres_url,
                            "--slos", str(slos), "--setting", "policy_interval_s=1")
    rng = np.random.default_rng(3)
    start = time.time_ns() - 1200 * S
    for request in (runs_request(200, version="1.4", start_ns=start, rng=rng),
                    runs_request(60, version="1.5", start_ns=start + 5 * S, rng=rng,
                                 input_tokens=lambda r: int(r.normal(1400, 60)),
                                 groundedness=lambda r: float(r.uniform(0.45, 0.75)))):
        httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).raise_for_status()
    assert httpx.get(server.url + "/api/stats").json()["backend"] == "clickhouse"

    def runs() -> int | None:
        items = httpx.get(server.url + "/api/journeys").json()["items"]
        total = sum(j["runs"] for j in items if j["journey"] == "ask")
        return total if total == 260 else None

    wait_for(runs, 60, "260 runs of ask")

    # SLO status: every run counted (the rollups on ClickHouse, the SLO spec from --slos).
    def counted() -> dict[str, Any] | None:
        slo = httpx.get(server.url + "/api/slos/ask-success").json()
        return slo if slo.get("total") == 260 else None

    slo = wait_for(counted, 60, "the SLO to count 260 runs")
    assert (slo["good"], slo["status"], slo["data"]["events"]) == (260, "ok", 260)

    # Cost: a breakdown by version.
    breakdown = httpx.get(server.url + "/api/cost/breakdown", params={"by": "service_version", "since": "1h"}).json()
    by_version = {row["service_version"]: row for row in breakdown["groups"]}
    assert set(by_version) == {"1.4", "1.5"} and by_version["1.5"]["cost_usd"] > 0

    # The gate: the same verdict as on DuckDB (groundedness and cost fail the 1.5 canary).
    doc = httpx.get(server.url + "/api/gate", params={
        "journey": "ask", "baseline": "service.version=1.4", "candidate": "service.version=1.5"}).json()
    assert doc["verdict"] == "fail", doc
    assert {"groundedness", "cost"} <= set(doc["failed_metrics"]) and "latency" not in doc["failed_metrics"]

    # The control plane answers from PostgreSQL: a change recorded and listed.
    made = httpx.post(server.url + "/api/changes", json={"kind": "deploy", "summary": "1.5 out", "version": "1.5"})
    assert made.status_code == 201, made.text
    assert [c["version"] for c in httpx.get(server.url + "/api/changes").json()["items"]] == ["1.5"]

    # Agent policy on the split deployment: the set, the decision records and the violations
    # in PostgreSQL, the runs judged from ClickHouse.
    from tests.evaluate.test_policy_service import POLICY

    assert httpx.put(server.url + "/api/policies", content=POLICY, timeout=30).status_code == 200
    ask = {"journey": "triage", "trace_id": "cd" * 16, "action": {"type": "tool", "name": "shell", "args": {}}}
    answer = httpx.post(server.url + "/api/policy/decide", json=ask, timeout=30).json()
    assert answer["result"] == "deny" and answer["reasons"][0]["rule"] == "no-shell"
    records = wait_for(lambda: httpx.get(server.url + "/api/policy/decisions", params={"result": "deny"},
                                         timeout=30).json()["items"] or None, 30, "the decision recorded")
    assert [r["id"] for r in records] == [answer["id"]]
    run = agent_run([tool("search", q="a"), tool("shell", cmd="ls")], start_ns=time.time_ns() - 60 * S)
    httpx.post(server.url + "/v1/traces", content=run.request().SerializeToString(), headers=PB).raise_for_status()
    found = wait_for(lambda: httpx.get(server.url + "/api/policy/violations", params={"trace_id": run.trace_id},
                                       timeout=30).json()["items"] or None, 60, "the run judged")
    assert [(v["rule"], v["span_id"]) for v in found] == [("no-shell", run.step_span_ids[1])]
