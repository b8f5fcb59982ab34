"""OTLP/HTTP against a live server: the real OTel SDK exporter, the captures, and bad input."""

from __future__ import annotations

import gzip

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from aisre.normalize.attribute_rules import hash_value
from aisre.normalize.redaction import load_salt
from tests.conftest import CAPTURES, ServerProcess, capture_files, capture_truth

PB = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def _post(server: ServerProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url + "/v1/traces", content=body, headers=headers, timeout=30)


def test_sdk_exporter_spans_read_back_equal(server: ServerProcess) -> None:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "service.version": "2.0.1", "deployment.environment.name": "staging"})
    )
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER, attributes={"aisre.journey": "ask", "user.id": "u1"}) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 321, "gen_ai.usage.output_tokens": 54,
            "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "hello there"}]}]',
        }) as chat:
            chat.set_status(Status(StatusCode.ERROR, "Error code: 429 - slow down"))
        root.set_attribute("http.response.status_code", 200)
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    doc = httpx.get(f"{server.url}/api/traces/{trace_id}").json()
    assert doc["journey"] == "ask"
    assert doc["outcome"] == "success"
    spans = {s["name"]: s for s in doc["spans"]}
    assert set(spans) == {"POST /ask", "chat gpt-4o-mini"}
    chat_row = spans["chat gpt-4o-mini"]
    assert chat_row["span_id"] == format(chat.get_span_context().span_id, "016x")
    assert chat_row["parent_span_id"] == format(root.get_span_context().span_id, "016x")
    assert (chat_row["operation"], chat_row["provider"]) == ("chat", "openai")
    assert (chat_row["request_model"], chat_row["response_model"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (chat_row["input_tokens"], chat_row["output_tokens"]) == (321, 54)
    assert (chat_row["status"], chat_row["http_status"]) == ("error", 429)
    assert chat_row["genai"]["input_messages"][0]["parts"][0]["content"] == "hello there"
    assert chat_row["service"] == "checkout"
    assert chat_row["service_version"] == "2.0.1"
    assert chat_row["resource"]["deployment.environment.name"] == "staging"
    assert chat_row["duration_ms"] == pytest.approx((chat.end_time - chat.start_time) / 1e6)
    # user.id is hashed by the default attribute rules, keyed by the store's DB.salt.
    user = hash_value(load_salt("", str(server.db)), "u1")
    assert spans["POST /ask"]["attributes"] == {
        "aisre.journey": "ask", "user.id": user, "http.response.status_code": 200, "aisre.hashed": 1}

    runs = httpx.get(f"{server.url}/api/journeys/runs", params={"journey": "ask"}).json()["items"]
    assert [r["trace_id"] for r in runs] == [trace_id]
    assert (runs[0]["llm_calls"], runs[0]["input_tokens"], runs[0]["output_tokens"]) == (1, 321, 54)
    assert runs[0]["service_version"] == "2.0.1"
    assert runs[0]["user_id"] == user


@pytest.mark.parametrize("capture", CAPTURES)
def test_captures_ingest_with_expected_totals(server_factory, tmp_path, capture: str) -> None:
    server = server_factory(tmp_path / f"{capture}.duckdb")
    truth = capture_truth(capture)
    # Reverse order: children before their roots, as real exporters often do.
    for path in reversed(capture_files(capture)):
        response = _post(server, path.read_bytes(), PB)
        assert response.status_code == 200
        assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    journeys = {j["journey"]: j for j in httpx.get(server.url + "/api/journeys").json()["items"]}
    assert {name: j["runs"] for name, j in journeys.items()} == truth["driver"]["journeys"]
    assert {name: j["failures"] for name, j in journeys.items() if j["failures"]} == truth["driver"]["failed_journeys"]
    assert sum(j["retries"] for j in journeys.values()) == truth["driver"]["app_level_retries"]
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}).json()["items"]
    assert len(runs) == sum(truth["driver"]["journeys"].values())
    by_model = truth["spans_by_model"]
    assert sum(r["input_tokens"] for r in runs) == sum(m["input_tokens"] for m in by_model.values())
    assert sum(r["output_tokens"] for r in runs) == sum(m["output_tokens"] for m in by_model.values())
    assert sum(r["tool_calls"] for r in runs) == truth["driver"]["tool_executions"]
    assert sum(r["retrieval_calls"] for r in runs) == truth["driver"]["retrievals"]
    failed = [r for r in runs if r["outcome"] == "failure"]
    assert len(failed) == 1 and failed[0]["failure_reason"] == "InternalServerError"


@pytest.mark.parametrize("capture", CAPTURES)
def test_json_renderings_with_gzip(server_factory, tmp_path, capture: str) -> None:
    server = server_factory(tmp_path / f"{capture}-json.duckdb")
    total = 0
    for path in capture_files(capture, "json"):
        body = path.read_bytes()
        response = _post(server, gzip.compress(body), {**JSON, "Content-Encoding": "gzip"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {}
        total += body.count(b'"spanId"')
    assert httpx.get(server.url + "/api/stats").json()["spans"] == total == 144
    truth = capture_truth(capture)
    journeys = {j["journey"]: j["runs"] for j in httpx.get(server.url + "/api/journeys").json()["items"]}
    assert journeys == truth["driver"]["journeys"]
    runs = httpx.get(server.url + "/api/journeys/runs", params={"limit": 100}).json()["items"]
    assert sum(r["input_tokens"] for r in runs) == sum(m["input_tokens"] for m in truth["spans_by_model"].values())


def _status(response: httpx.Response) -> status_pb2.Status:
    return status_pb2.Status.FromString(response.content)


def test_bad_input_each_gets_its_answer_and_server_keeps_serving(server_factory, tmp_path) -> None:
    server = server_factory(tmp_path / "bad.duckdb", "--max-body-bytes", "100000")
    good = capture_files("otel-genai")[2].read_bytes()

    r = _post(server, b"\x0a\xff\xff\xff\xff\x0f", PB)
    assert r.status_code == 400 and "malformed protobuf" in _status(r).message
    r = _post(server, b'{"resourceSpans": [', JSON)
    assert r.status_code == 400 and r.json()["message"].startswith("malformed JSON")
    r = _post(server, b'["not", "an", "object"]', JSON)
    assert r.status_code == 400 and "top level must be an object" in r.json()["message"]
    r = _post(server, good, {"Content-Type": "text/plain"})
    assert r.status_code == 415 and "unsupported content type 'text/plain'" in r.json()["message"]
    r = _post(server, b"x" * 200_000, PB)
    assert r.status_code == 413 and "limit is 100000" in _status(r).message
    r = _post(server, gzip.compress(b"\x00" * 1_000_000), {**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed request body" in _status(r).message
    r = _post(server, b"not gzip", {**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "not valid gzip" in _status(r).message
    r = _post(server, b"", PB)
    assert r.status_code == 400 and "empty" in _status(r).message

    # Valid spans next to invalid ones are kept: partial success.
    request = ExportTraceServiceRequest.FromString(good)
    valid = sum(len(s.spans) for rs in request.resource_spans for s in rs.scope_spans)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans.append(Span(trace_id=b"\x01" * 4, span_id=b"\x02" * 8, name="bad-trace-id", start_time_unix_nano=1, end_time_unix_nano=2))
    spans.append(Span(trace_id=b"\x00" * 16, span_id=b"\x02" * 8, name="zero-trace-id", start_time_unix_nano=1, end_time_unix_nano=2))
    r = _post(server, request.SerializeToString(), PB)
    assert r.status_code == 200
    partial = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert partial.rejected_spans == 2
    assert "trace_id must be 16 non-zero bytes" in partial.error_message

    # The same through JSON: a non-hex id is that span's problem, not the request's.
    doc = capture_files("otel-genai", "json")[2].read_text()
    broken = doc.replace(doc[doc.index('"traceId": "') + 12 : doc.index('"traceId": "') + 44], "zz" * 16, 1)
    r = _post(server, broken.encode(), JSON)
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"

    assert httpx.get(server.url + "/healthz").status_code == 200
    stats = httpx.get(server.url + "/api/stats").json()
    # The JSON capture holds the same spans as the protobuf one: delivered again, they are
    # acknowledged and stored once (exactly-once ingest, docs/storage.md).
    assert (stats["spans"], stats["duplicate_spans"]) == (valid, valid - 1)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'aisre_ingest_spans_total{result="rejected"} 3.0' in metrics
    assert f'aisre_ingest_spans_total{{result="duplicate"}} {valid - 1}.0' in metrics
    assert 'aisre_ingest_requests_total{code="413",encoding="protobuf",transport="http"} 2.0' in metrics


def test_api_errors(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/api/traces/" + "ab" * 16)
    assert r.status_code == 404 and "no trace with id" in r.json()["error"]
    r = httpx.get(server.url + "/api/traces/nothex")
    assert r.status_code == 400
    r = httpx.get(server.url + "/api/journeys/runs", params={"since": "yesterday"})
    assert r.status_code == 400 and "RFC 3339" in r.json()["error"]
    r = httpx.get(server.url + "/api/journeys/runs", params={"outcome": "meh"})
    assert r.status_code == 400
    r = httpx.get(server.url + "/api/journeys/runs", params={"cursor": "!!!"})
    assert r.status_code == 400
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/api/journeys/runs", "/api/traces/{trace_id}", "/healthz"} <= set(spec["paths"])
