"""An Evidently report (tests/fixtures/evidently, in Evidently's documented JSON shape) gives
the right platform scores; platform score items are accepted or refused one by one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aisre.core.errors import PermanentError
from aisre.core.schema import MINUTE_NS
from aisre.normalize.evidently import evidently_scores
from aisre.normalize.scores import parse_score_batch

REPORT = Path(__file__).parents[1] / "fixtures" / "evidently" / "churn_drift_report.json"
NOW = 1_800_000_000 * 10**9
STAMP = int(datetime(2026, 11, 23, 9, 30, tzinfo=UTC).timestamp()) * 10**9 + 123_456_000


def test_the_fixture_report_gives_its_headline_numbers_as_scores() -> None:
    items, skipped, when = evidently_scores(json.loads(REPORT.read_text()), "model:churn-v3", NOW)
    assert when == STAMP  # the report's own (zone-less, so UTC) timestamp, not now
    assert {i["name"]: i["value"] for i in items} == {
        "drift.share_of_drifted_columns": 0.5,
        "drift.number_of_drifted_columns": 2.0,
        "drift.dataset_drift": 1.0,
        "drift.column.tenure.score": 0.0012, "drift.column.tenure.detected": 1.0,
        "drift.column.monthly_charges.score": 0.31, "drift.column.monthly_charges.detected": 1.0,
        "drift.column.contract.score": 0.42, "drift.column.contract.detected": 0.0,
        "drift.column.payment_method.score": 0.88, "drift.column.payment_method.detected": 0.0,
        "drift.column.prediction.score": 0.17, "drift.column.prediction.detected": 1.0,
        "quality.share_of_missing_values": 0.0035,
        "quality.number_of_missing_values": 14.0,
        "quality.share_of_rows_with_missing_values": 0.014,
    }
    assert len(items) == 16  # DatasetDriftMetric and DataDriftTable share three names: posted once
    assert all(i["subject"] == "model:churn-v3" and i["time"] == "2026-11-23T09:30:00.123456Z" for i in items)
    assert skipped == [{"index": 4, "metric": "ColumnSummaryMetric", "reason": skipped[0]["reason"]}]
    assert "DataDriftTable" in skipped[0]["reason"]
    batch = parse_score_batch(items, "t", NOW)
    assert batch.platform.num_rows == 16 and batch.refused == [] and batch.traces.num_rows == 0
    assert set(batch.platform.column("time_ns").to_pylist()) == {STAMP}
    assert set(batch.platform.column("minute_ns").to_pylist()) == {STAMP // MINUTE_NS * MINUTE_NS}


def test_a_report_without_timestamp_is_scored_now_and_odd_items_are_skipped() -> None:
    report = {"metrics": [
        {"metric": "DatasetDriftMetric", "result": {"share_of_drifted_columns": 0.25, "dataset_drift": False}},
        {"metric": "DatasetMissingValuesMetric", "result": {"reference": {}}},
        "not a metric",
        {"metric": "ColumnDriftMetric", "result": {"column_name": "x", "drift_score": float("nan"), "drift_detected": False}},
    ]}
    items, skipped, when = evidently_scores(report, "dataset:orders", NOW)
    assert when == NOW
    assert {i["name"]: i["value"] for i in items if i["name"] != "drift.column.x.score"} == {
        "drift.share_of_drifted_columns": 0.25, "drift.dataset_drift": 0.0, "drift.column.x.detected": 0.0}
    assert [(s["index"], s["metric"]) for s in skipped] == [(1, "DatasetMissingValuesMetric"), (2, None)]
    batch = parse_score_batch(items, "t", NOW)
    # A NaN drift score is refused alone, with its reason.
    nan = next(n for n, i in enumerate(items) if i["name"] == "drift.column.x.score")
    assert batch.refused == [{"index": nan, "reason": "value must be a finite number (not NaN or infinity)"}]
    assert batch.platform.num_rows == 3


@pytest.mark.parametrize("body", [[], {"metrics": {}}, {"metrics": [], "timestamp": "yesterday"},
                                  {"metrics": [], "timestamp": "9999-12-31T23:59:59Z"}])
def test_what_is_not_a_report_is_refused(body: object) -> None:
    with pytest.raises(PermanentError):
        evidently_scores(body, "model:m", NOW)


def test_each_platform_score_item_is_accepted_or_refused_on_its_own() -> None:
    trace = "ab" * 16
    items = [
        {"subject": "model:churn-v3", "name": "drift.share_of_drifted_columns", "value": 0.1,
         "time": "2026-11-23T09:00:00Z", "source": "heuristic", "comment": "nightly"},
        {"subject": "model:churn-v3", "trace_id": trace, "name": "x", "value": 1},
        {"name": "x", "value": 1, "time": "2026-11-23T09:00:00Z"},
        {"subject": "churn", "name": "x", "value": 1},
        {"subject": "model:m", "name": "x", "label": "high"},
        {"subject": "model:m", "name": "x"},
        {"subject": "model:m", "name": "x", "value": 1, "span_id": "cd" * 8},
        {"subject": "model:m", "name": "x", "value": 1, "time": 5},
        {"subject": "model:m", "name": "x", "value": 1, "time": "1969-12-31T00:00:00Z"},
        {"subject": "dataset:orders", "name": "quality.share_of_missing_values", "value": 0},
        {"trace_id": trace, "name": "groundedness", "value": 0.9},
    ]
    batch = parse_score_batch({"scores": items}, "t", NOW)
    reasons = {r["index"]: r["reason"] for r in batch.refused}
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 7, 8}
    assert "not both" in reasons[1]
    assert "give trace_id" in reasons[2] and "or subject" in reasons[2]
    assert "<kind>:<name>" in reasons[3]
    assert "numeric value" in reasons[4] and "numeric value" in reasons[5]
    assert "span_id goes with trace_id" in reasons[6]
    assert "RFC 3339" in reasons[7] and "1970" in reasons[8]
    assert batch.platform_indexes == [0, 9] and batch.trace_indexes == [10]
    rows = batch.platform.to_pylist()
    assert rows[0]["time_ns"] == int(datetime(2026, 11, 23, 9, tzinfo=UTC).timestamp()) * 10**9
    assert (rows[0]["subject"], rows[0]["source"], rows[0]["comment"]) == ("model:churn-v3", "heuristic", "nightly")
    assert rows[1]["time_ns"] == NOW and rows[1]["minute_ns"] == NOW // MINUTE_NS * MINUTE_NS
