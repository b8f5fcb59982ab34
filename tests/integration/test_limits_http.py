"""Ingest limits over real HTTP: each answered with its own message, the server keeps serving."""

from __future__ import annotations

import os

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.conftest import aisre_up_refused

PB = {"Content-Type": "application/x-protobuf"}


def _span(attributes: int = 1, value: str = "v") -> Span:
    return Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="s", start_time_unix_nano=1,
                end_time_unix_nano=2,
                attributes=[KeyValue(key=f"a{i}", value=AnyValue(string_value=value)) for i in range(attributes)])


def _post(url: str, *spans: Span) -> httpx.Response:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return httpx.post(url + "/v1/traces", content=request.SerializeToString(), headers=PB, timeout=30)


@pytest.mark.slow
def test_limits_answer_with_partial_success_or_400(server_factory, tmp_path) -> None:
    server = server_factory(
        tmp_path / "limits.duckdb",
        "--setting", "max_span_attributes=5", "--setting", "max_attribute_chars=50",
        "--setting", "max_spans_per_request=3",
    )
    response = _post(server.url, _span(5), _span(6), _span(1, "x" * 80))
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    message = answer.partial_success.error_message
    assert "has 6 attributes; the limit is 5 (max_span_attributes)" in message
    assert "1 value(s) longer than 50 characters were truncated" in message

    response = _post(server.url, *(_span() for _ in range(4)))
    assert response.status_code == 400
    assert b"request holds 4 spans; the limit is 3 (max_spans_per_request)" in response.content
    assert httpx.get(server.url + "/api/stats").json()["spans"] == 2
    metrics = httpx.get(server.url + "/metrics").text
    assert 'aisre_ingest_content_values_total{action="truncated",tenant="default"} 1.0' in metrics
    # DuckDB's memory: the default limit (1GB, shown by DuckDB as 953.6 MiB) and what it holds.
    assert "aisre_store_memory_limit_bytes 9.99" in metrics
    assert 'aisre_store_memory_bytes{kind="index"}' in metrics


def test_bad_content_settings_stop_the_server_at_start(tmp_path) -> None:
    out = aisre_up_refused(tmp_path, "--setting", "content_capture=scrub")
    assert "content mode must be keep, redact or drop" in out
    policy = tmp_path / "content.yaml"
    policy.write_text("tenants: [acme]\n")
    out = aisre_up_refused(tmp_path, "--setting", f"content_capture_file={policy}")
    assert "must be a mapping with 'tenants: {name: mode}'" in out
