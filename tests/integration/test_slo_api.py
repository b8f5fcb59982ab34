"""SLOs through a live server: loaded at start, served by the API and CLI, on /metrics."""

from __future__ import annotations

import json
import re
import time
from importlib import resources

import httpx
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.api.metrics import ROUND_DURATION_BOUNDS_S
from aisre.present.cli.main import build_cli
from tests.conftest import ServerProcess, aisre_up_refused
from tests.otlp_factory import journey_request

PB = {"Content-Type": "application/x-protobuf"}
DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))
# The demo's journey SLOs and the platform SLOs under them (demo/platform.py).
DEMO_SLO_IDS = {"ask-success", "ask-cost", "triage-success", "triage-policy", "gpu-pool-gpu-utilisation",
                "inference-latency", "feature-store-features-fresh", "batch-nightly-succeeds", "batch-nightly-on-time"}


def _send(server: ServerProcess, traces: int) -> None:
    request, _ = journey_request(traces, start_ns=time.time_ns() - 120 * 10**9)
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).raise_for_status()


def _wait_for_rollups(server: ServerProcess, slo: str, total: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        doc = httpx.get(f"{server.url}/api/slos/{slo}").json()
        if doc.get("total") == total or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_slos_loaded_at_start_served_and_exported_as_metrics(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "slo.duckdb", "--slos", DEMO_SLOS)
    _send(server, 30)
    doc = _wait_for_rollups(server, "ask-success", 30)
    assert (doc["good"], doc["total"], doc["status"]) == (30, 30, "ok")
    assert doc["error_budget"]["remaining_ratio"] == 1.0
    # The burn-down spans the SLO's data (runs from 2 minutes ago): a point per minute since.
    times = [p["time"] for p in doc["burn_down"]]
    assert 2 <= len(times) <= 4 and times == sorted(times)
    assert times[0] > doc["data"]["first_event"]
    assert {a["name"] for a in doc["alerts"]} == {"page_quick", "page_slow", "ticket_quick", "ticket_slow"}
    items = {s["name"]: s for s in httpx.get(server.url + "/api/slos").json()["items"]}
    assert set(items) == DEMO_SLO_IDS
    assert items["triage-success"]["status"] == "no_data"

    metrics = httpx.get(server.url + "/metrics").text
    assert 'aisre_slo_events_total{journey="ask",slo="ask-success"} 30.0' in metrics
    assert 'aisre_slo_bad_events_total{journey="ask",slo="ask-success"} 0.0' in metrics
    assert 'aisre_journey_runs_total{journey="ask",outcome="success"} 30.0' in metrics
    assert 'aisre_journey_run_duration_seconds_bucket{journey="ask",le="+Inf"} 30.0' in metrics
    # A short list of round bounds (not 62 like le="0.007450999999999999"), counts cumulative.
    rows = re.findall(r'aisre_journey_run_duration_seconds_bucket\{journey="ask",le="([^"]+)"\} ([0-9.]+)', metrics)
    assert [le for le, _ in rows] == [*(f"{b:g}" for b in ROUND_DURATION_BOUNDS_S), "+Inf"]
    counts = [float(n) for _, n in rows]
    assert counts == sorted(counts) and counts[-1] == 30.0

    runner = CliRunner()
    cli = build_cli(run_server)
    result = runner.invoke(cli, ["slo", "list", "--url", server.url], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "ask-success" in result.output and "ok" in result.output
    result = runner.invoke(cli, ["slo", "list", "--url", server.url, "--format", "json"])
    assert {s["name"]: s["status"] for s in json.loads(result.output)["items"]}["ask-success"] == "ok"
    result = runner.invoke(cli, ["slo", "status", "ask-success", "--url", server.url, "--format", "json"])
    assert json.loads(result.output)["total"] == 30
    result = runner.invoke(cli, ["slo", "status", "nope", "--url", server.url])
    assert result.exit_code == 1 and "no SLO named 'nope'" in result.output


def test_apply_replaces_slos_and_refuses_bad_specs_whole(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "apply.duckdb", "--slos", DEMO_SLOS)
    _send(server, 10)
    bad = "slos:\n  - name: broken\n    journey: ask\n    objective: 101\n    sli: {kind: outcome}\n"
    r = httpx.put(server.url + "/api/slos", content=bad, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["line"] == 4 and "objective" in r.json()["errors"][0]["field"]
    assert {s["name"] for s in httpx.get(server.url + "/api/slos").json()["items"]} == DEMO_SLO_IDS

    spec = tmp_path / "one.yaml"
    spec.write_text("slos:\n  - name: ask-fast\n    journey: ask\n    objective: 99\n    sli: {kind: latency, latency_ms: 500}\n")
    result = CliRunner().invoke(build_cli(run_server), ["slo", "apply", str(spec), "--url", server.url])
    assert result.exit_code == 0, result.output
    assert "applied 1 SLOs" in result.output
    doc = _wait_for_rollups(server, "ask-fast", 10)
    assert (doc["good"], doc["total"]) == (10, 10)  # backfilled from runs sent before it existed
    assert [s["name"] for s in httpx.get(server.url + "/api/slos").json()["items"]] == ["ask-fast"]


def test_bad_slo_file_stops_the_server_at_start(tmp_path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("slos:\n  - name: x\n    journey: ask\n    objective: 0\n    sli: {kind: outcome}\n")
    assert "bad.yaml:4" in aisre_up_refused(tmp_path, "--slos", str(spec))


def test_failing_runs_fire_a_page_alert_visible_in_the_api(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "alert.duckdb", "--slos", DEMO_SLOS, "--setting", "evaluation_interval_s=1")
    # Healthy runs four days back observe the alert windows whole (docs/alerting.md).
    history, _ = journey_request(40, start_ns=time.time_ns() - 4 * 86400 * 10**9)
    httpx.post(server.url + "/v1/traces", content=history.SerializeToString(), headers=PB).raise_for_status()
    request, _ = journey_request(40, start_ns=time.time_ns() - 90 * 10**9)
    for span in request.resource_spans[0].scope_spans[0].spans:
        if not span.parent_span_id:
            span.status.code = 2
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).raise_for_status()
    deadline = time.monotonic() + 30
    firing: list = []
    while time.monotonic() < deadline and not firing:
        firing = httpx.get(server.url + "/api/alerts", params={"state": "firing", "slo": "ask-success"}).json()["items"]
        time.sleep(0.5)
    assert {a["severity"] for a in firing} >= {"page"}
    doc = httpx.get(server.url + "/api/slos/ask-success").json()
    assert doc["status"] == "page"
    assert any(e["state"] == "firing" and e["severity"] == "page" for e in doc["alert_episodes"])
    replay = httpx.get(server.url + "/api/slos/ask-success/replay", params={"since": "1h"}).json()["items"]
    assert replay and replay[0]["severity"] == "page" and replay[0]["end"] is None
    assert httpx.get(server.url + "/api/alerts", params={"state": "bogus"}).status_code == 400


def test_slo_document_keeps_definition_and_measurement_apart(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "doc.duckdb", "--slos", DEMO_SLOS)
    _send(server, 5)
    doc = _wait_for_rollups(server, "ask-success", 5)
    assert doc["indicator"] == {"kind": "outcome", "latency_ms": 4000}
    assert doc["sli"] == 1.0
