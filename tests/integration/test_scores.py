"""Scores: REST batch with per-item refusals, span attributes and events, feeding score SLOs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.conftest import ServerProcess
from tests.otlp_factory import journey_request

PB = {"Content-Type": "application/x-protobuf"}
SLOS = """
slos:
  - name: ask-grounded
    journey: ask
    objective: 95
    sli: {kind: score, score: groundedness, min: 0.7}
  - name: churn-drift
    service: ml
    objective: 95
    sli: {kind: score, subject: 'model:churn-v3', score: drift.share_of_drifted_columns, max: 0.3}
"""
REPORT = Path(__file__).parents[1] / "fixtures" / "evidently" / "churn_drift_report.json"


def _wait(server: ServerProcess, total: int, slo: str = "ask-grounded") -> dict:
    deadline = time.monotonic() + 20
    while True:
        doc = httpx.get(server.url + f"/api/slos/{slo}").json()
        if doc.get("total") == total or time.monotonic() > deadline:
            return doc
        time.sleep(0.2)


def test_rest_scores_feed_a_score_slo_and_bad_items_are_refused_alone(server_factory, tmp_path) -> None:
    spec = tmp_path / "slos.yaml"
    spec.write_text(SLOS)
    server: ServerProcess = server_factory(tmp_path / "sc.duckdb", "--slos", str(spec))
    request, ids = journey_request(4, start_ns=time.time_ns() - 60 * 10**9)
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).raise_for_status()
    body = {"scores": [
        {"trace_id": ids[0], "name": "groundedness", "value": 0.9, "source": "model"},
        {"trace_id": ids[1], "name": "groundedness", "value": 0.2, "source": "model", "comment": "invents a refund policy"},
        {"trace_id": ids[2], "name": "groundedness", "value": float("nan")},
        {"trace_id": ids[2], "name": "groundedness", "value": "high"},
        {"trace_id": "ab" * 16, "name": "groundedness", "value": 0.5},
        {"trace_id": ids[3], "name": "thumbs", "label": "up", "source": "human"},
        {"trace_id": ids[3], "name": "groundedness", "value": 1, "source": "oracle"},
    ]}
    # json.dumps writes NaN as Python clients do; that one item must be refused, not the batch.
    r = httpx.post(server.url + "/api/scores", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["accepted"] == 3
    reasons = {x["index"]: x["reason"] for x in result["rejected"]}
    assert set(reasons) == {2, 3, 4, 6}
    assert "finite" in reasons[2] and "must be a number" in reasons[3]
    assert "unknown trace" in reasons[4] and "source must be one of" in reasons[6]
    doc = _wait(server, 2)
    assert (doc["good"], doc["total"]) == (1, 2)
    assert httpx.post(server.url + "/api/scores", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    # Scores of a subject (no trace) in the same route: each accepted or refused on its own.
    now = datetime.now(UTC).replace(microsecond=0)
    platform = {"scores": [
        {"subject": "model:churn-v3", "name": "drift.share_of_drifted_columns", "value": 0.1, "time": now.isoformat()},
        {"subject": "model:churn-v3", "name": "drift.share_of_drifted_columns", "value": 0.1, "time": now.isoformat()},
        {"subject": "model:churn-v3", "trace_id": ids[0], "name": "drift.share_of_drifted_columns", "value": 0.1},
        {"name": "drift.share_of_drifted_columns", "value": 0.1},
    ]}
    r = httpx.post(server.url + "/api/scores", json=platform)
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    assert [x["index"] for x in r.json()["rejected"]] == [2, 3]
    assert "not both" in r.json()["rejected"][0]["reason"]
    # An Evidently report (half the columns drifted: bad), posted twice: one event.
    for _ in range(2):
        r = httpx.post(server.url + "/api/scores/evidently", params={"subject": "model:churn-v3"},
                       content=REPORT.read_bytes(), headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
    imported = r.json()
    assert (imported["accepted"], imported["rejected"], imported["time"]) == (16, [], "2026-11-23T09:30:00.123456Z")
    assert [s["metric"] for s in imported["skipped"]] == ["ColumnSummaryMetric"]
    doc = _wait(server, 2, "ml-churn-drift")  # the two posts of one score count once, as does the report
    assert (doc["good"], doc["total"], doc["journey"]) == (1, 2, None)
    listed = httpx.get(server.url + "/api/scores/platform", params={"subject": "model:churn-v3",
                                                                     "name": "drift.share_of_drifted_columns"}).json()
    assert [(i["time"], i["value"]) for i in listed["items"]] == [
        ("2026-11-23T09:30:00.123456Z", 0.5), (now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), 0.1)]
    assert httpx.post(server.url + "/api/scores/evidently", params={"subject": "churn"}, json={"metrics": []}).status_code == 400


def test_span_attribute_and_event_scores(server_factory, tmp_path) -> None:
    spec = tmp_path / "slos.yaml"
    spec.write_text(SLOS)
    server: ServerProcess = server_factory(tmp_path / "sp.duckdb", "--slos", str(spec))
    request, _ = journey_request(2, start_ns=time.time_ns() - 60 * 10**9)
    spans = request.resource_spans[0].scope_spans[0].spans
    chats = [s for s in spans if s.name == "chat"]
    chats[0].attributes.append(KeyValue(key="aisre.score.groundedness", value={"double_value": 0.95}))
    event = Span.Event(name="gen_ai.evaluation.result", time_unix_nano=chats[1].end_time_unix_nano)
    event.attributes.extend([
        KeyValue(key="gen_ai.evaluation.name", value={"string_value": "groundedness"}),
        KeyValue(key="gen_ai.evaluation.score.value", value={"double_value": 0.3}),
        KeyValue(key="gen_ai.evaluation.explanation", value={"string_value": "unsupported claim"}),
    ])
    chats[1].events.append(event)
    httpx.post(server.url + "/v1/traces", content=request.SerializeToString(), headers=PB).raise_for_status()
    doc = _wait(server, 2)
    assert (doc["good"], doc["total"]) == (1, 2)
