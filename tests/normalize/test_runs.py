"""Per-trace partials computed while flattening: one row per trace, the journey-run rules."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.core.schema import TRACE_PART_SCHEMA
from aisre.normalize.runs import trace_partials_of
from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request
from tests.conftest import capture_files, capture_truth


def _capture_parts(name: str) -> dict[str, dict]:
    request = ExportTraceServiceRequest()
    for path in capture_files(name):
        request.MergeFrom(parse_request(path.read_bytes(), "protobuf"))
    batch = flatten(request, "t")
    assert batch.traces is not None and batch.traces.schema == TRACE_PART_SCHEMA
    assert trace_partials_of(batch.table).to_pylist() == batch.traces.to_pylist()
    return {row["trace_id"]: row for row in batch.traces.to_pylist()}


def test_one_partial_per_trace_with_run_rules() -> None:
    parts = _capture_parts("otel-genai")
    driver = capture_truth("otel-genai")["driver"]
    assert len(parts) == sum(driver["journeys"].values())
    assert all(p["has_root"] for p in parts.values())
    failed = [p for p in parts.values() if p["failed"]]
    assert len(failed) == 1
    assert (failed[0]["journey_attr"], failed[0]["failure_reason"]) == ("ask", "InternalServerError")
    assert sum(p["retries"] for p in parts.values()) == driver["app_level_retries"]
    assert sum(p["tool_calls"] for p in parts.values()) == driver["tool_executions"]
    assert sum(p["retrieval_calls"] for p in parts.values()) == driver["retrievals"]
    by_model = capture_truth("otel-genai")["spans_by_model"]
    assert sum(p["input_tokens"] for p in parts.values()) == sum(m["input_tokens"] for m in by_model.values())
    assert sum(p["llm_calls"] for p in parts.values()) == sum(m["spans"] for m in by_model.values())
    asks = [p for p in parts.values() if p["journey_attr"] == "ask"]
    assert {p["prompt_version"] for p in asks} == {"v3"}
    assert all(p["root_name"] == "POST /ask" and p["root_start_ns"] == p["start_ns"] for p in asks)
    log = failed[0]["llm_call_log"]
    assert len(log) == failed[0]["llm_calls"] and any(call["f"] for call in log)
    assert "gpt-4o-mini" in failed[0]["models"]
