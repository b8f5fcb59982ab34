"""Exactly-once spans and retention through a live server: OTLP/HTTP and gRPC
redeliveries counted once; old spans expired in bounded steps while ingest goes on."""

from __future__ import annotations

import json
import re
import time
from importlib import resources

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from typer.testing import CliRunner

from aisre.app import run_server
from aisre.present.cli.main import build_cli
from tests.conftest import ServerProcess, aisre_up_refused
from tests.otlp_factory import journey_request

PB = {"Content-Type": "application/x-protobuf"}
DEMO_SLOS = str(resources.files("aisre.demo").joinpath("slos.yaml"))
S = 10**9
DAY = 86_400 * S


def _post(server: ServerProcess, request: ExportTraceServiceRequest) -> httpx.Response:
    return httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB, timeout=60)


def _split(request: ExportTraceServiceRequest) -> tuple[ExportTraceServiceRequest, ExportTraceServiceRequest]:
    """The request as two: children only, then roots only (as exporters often send them)."""
    children, roots = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    children.CopyFrom(request)
    roots.CopyFrom(request)
    for req, keep_roots in ((children, False), (roots, True)):
        spans = req.resource_spans[0].scope_spans[0].spans
        kept = [s for s in spans if (not s.parent_span_id) == keep_roots]
        del spans[:]
        spans.extend(kept)
    return children, roots


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _wait(check, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_batches_delivered_again_over_http_and_grpc_count_once(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "once.duckdb", "--slos", DEMO_SLOS)
    start = time.time_ns() - 120 * S
    whole, whole_ids = journey_request(6, start_ns=start)
    split, split_ids = journey_request(4, start_ns=start + S)
    children, roots = _split(split)

    assert _post(server, whole).status_code == 200
    assert _post(server, whole).status_code == 200  # the exporter's retry of a committed request
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        answer = trace_service_pb2_grpc.TraceServiceStub(channel).Export(whole, timeout=30)
    assert answer.partial_success.rejected_spans == 0
    for part in (children, roots, children):  # a trace split over two requests, one re-sent
        assert _post(server, part).status_code == 200

    slo = _wait(lambda: (d := httpx.get(f"{server.url}/api/slos/ask-success").json()).get("total") == 10 and d,
                "the SLO counts")
    assert (slo["good"], slo["total"]) == (10, 10)
    stats = httpx.get(server.url + "/api/stats").json()
    assert (stats["spans"], stats["traces"], stats["duplicate_spans"]) == (30, 10, 18 + 18 + 8)
    runs = httpx.get(server.url + "/api/journeys/runs", params={"journey": "ask", "limit": 100}).json()["items"]
    assert sorted(r["trace_id"] for r in runs) == sorted(whole_ids + split_ids)
    assert {(r["span_count"], r["llm_calls"], r["input_tokens"], r["output_tokens"], r["outcome"]) for r in runs} == {
        (3, 2, 112, 20, "success")
    }
    metrics = httpx.get(server.url + "/metrics").text
    assert _metric(metrics, 'aisre_slo_events_total{journey="ask",slo="ask-success"}') == 10
    assert _metric(metrics, 'aisre_journey_runs_total{journey="ask",outcome="success"}') == 10
    assert _metric(metrics, 'aisre_ingest_spans_total{result="accepted"}') == 30
    assert _metric(metrics, 'aisre_ingest_spans_total{result="duplicate"}') == 44
    assert _metric(metrics, "aisre_store_duplicate_spans_total") == 44


def test_old_spans_expire_in_steps_while_ingest_goes_on(server_factory, tmp_path) -> None:
    # Retention off at first, so the old runs are all stored and counted before it starts.
    server = server_factory(
        tmp_path / "ret.duckdb", "--slos", DEMO_SLOS,
        "-s", "retention_days=0", "-s", "retention_interval_s=1", "-s", "retention_step_traces=40",
    )
    old_start = time.time_ns() - 3 * DAY
    for k in range(10):  # 400 runs three days old
        request, _ = journey_request(40, start_ns=old_start + k * 40 * 10**6)
        assert _post(server, request).status_code == 200
    _wait(lambda: httpx.get(f"{server.url}/api/slos/ask-success").json().get("total") == 400, "the old runs' SLO counts")
    assert httpx.get(server.url + "/api/stats").json()["expired_spans"] == 0
    doc = httpx.put(server.url + "/api/retention", json={"retention_days": 1}).json()  # now they are past it
    assert (doc["retention_days"], doc["source"], doc["rollup_retention_days"], doc["dedup_window_s"]) == (1, "api", 400, 3600)
    fresh_ids: list[str] = []
    answers: list[int] = []

    def expired_all() -> dict | None:
        # Ingest goes on while expiry runs: every request must still be acknowledged.
        request, ids = journey_request(5, start_ns=time.time_ns() - 60 * S)
        answers.append(_post(server, request).status_code)
        fresh_ids.extend(ids)
        stats = httpx.get(server.url + "/api/stats").json()
        return stats if stats["expired_traces"] >= 400 else None

    stats = _wait(expired_all, "expiry of the old runs", timeout=120)
    assert set(answers) == {200}
    assert (stats["expired_traces"], stats["expired_spans"]) == (400, 1200)
    assert stats["expiry_steps"] >= 10  # at most 40 traces per transaction
    # No decision record is past rollup_retention_days: none expired, and it says so.
    assert (stats["expired_decisions"], stats["expired_violations"]) == (0, 0)
    _wait(lambda: httpx.get(server.url + "/api/stats").json()["spans"] == 3 * len(fresh_ids), "fresh spans committed")
    # The old runs' SLO minutes were counted before their spans went, and stay counted.
    total = 400 + len(fresh_ids)
    slo = _wait(lambda: (d := httpx.get(f"{server.url}/api/slos/ask-success").json()).get("total") == total and d,
                "the SLO counts")
    assert slo["good"] == total
    metrics = httpx.get(server.url + "/metrics").text
    assert _metric(metrics, "aisre_store_expired_spans_total") == 1200
    assert _metric(metrics, "aisre_store_expired_policy_decisions_total") == 0
    assert _metric(metrics, "aisre_store_oldest_span_timestamp_seconds") > (time.time_ns() - DAY) / 1e9
    assert _metric(metrics, 'aisre_journey_runs_total{journey="ask",outcome="success"}') == total

    cli = build_cli(run_server)
    runner = CliRunner()
    result = runner.invoke(cli, ["store", "stats", "--url", server.url], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "expired_spans" in result.output and "1,200" in result.output
    assert "expired_decisions" in result.output
    assert "kept 1 days (api)" in result.output
    result = runner.invoke(cli, ["store", "retention", "30", "--url", server.url, "--format", "json"])
    assert result.exit_code == 0 and json.loads(result.output)["retention_days"] == 30
    assert httpx.get(server.url + "/api/retention").json()["retention_days"] == 30
    bad = httpx.put(server.url + "/api/retention", json={"retention_days": -3})
    assert bad.status_code == 400 and "days must be a number from 0 to 36,500" in bad.json()["error"]
    result = runner.invoke(cli, ["store", "retention", "--clear", "--url", server.url])
    assert result.exit_code == 0 and "kept for ever (default)" in result.output
    audit = httpx.get(server.url + "/api/audit", params={"action": "retention"}).json()["items"]
    assert [a["action"] for a in audit] == ["retention.set"] * 3


def test_a_bad_retention_setting_stops_the_server_at_start(tmp_path) -> None:
    bad = tmp_path / "retention.yaml"
    bad.write_text("tenants:\n  acme: soon\n")
    out = aisre_up_refused(tmp_path, "-s", f"retention_file={bad}")
    assert "tenant 'acme': days must be a number from 0 to 36,500" in out
    out = aisre_up_refused(tmp_path, "-s", "retention_days=99999")
    assert "setting retention_days: days must be a number from 0 to 36,500" in out
