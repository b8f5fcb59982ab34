"""Normalization of the captured GenAI instrumentations (DESIGN §3) against their truth."""

from __future__ import annotations

import duckdb
import orjson
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aisre.normalize.spans import flatten
from aisre.receive.otlp_decode import parse_request
from tests.conftest import CAPTURES, capture_files, capture_truth


def _query(table: pa.Table, sql: str) -> list[tuple]:
    con = duckdb.connect()
    con.register("spans_t", table)
    return con.sql(sql).fetchall()


def _capture_table(name: str, kind: str = "raw") -> pa.Table:
    tables = []
    for path in capture_files(name, kind):
        request = parse_request(path.read_bytes(), "protobuf" if kind == "raw" else "json")
        batch = flatten(request, "t")
        assert batch.rejected == 0, batch.message()
        tables.append(batch.table)
    return pa.concat_tables(tables)


@pytest.mark.parametrize("capture", CAPTURES)
def test_tokens_per_model_match_what_the_spans_carry(capture: str) -> None:
    truth = capture_truth(capture)["spans_by_model"]
    spans_t = _capture_table(capture)
    rows = _query(spans_t,
        "SELECT request_model, count(*), sum(input_tokens), coalesce(sum(output_tokens), 0), "
        "count(*) FILTER (WHERE status = 'error') FROM spans_t WHERE request_model IS NOT NULL GROUP BY 1"
    )
    got = {r[0]: {"spans": r[1], "input_tokens": r[2], "output_tokens": r[3], "error_spans": r[4]} for r in rows}
    assert got == truth


@pytest.mark.parametrize("capture", CAPTURES)
def test_successful_calls_match_the_provider(capture: str) -> None:
    provider = capture_truth(capture)["provider_truth_by_model"]
    spans_t = _capture_table(capture)
    rows = _query(spans_t,
        "SELECT response_model, count(*), sum(input_tokens), coalesce(sum(output_tokens), 0) "
        "FROM spans_t WHERE status != 'error' AND response_model IS NOT NULL GROUP BY 1"
    )
    got = {r[0]: {"calls_ok": r[1], "input_tokens": r[2], "output_tokens": r[3]} for r in rows}
    assert got == provider


@pytest.mark.parametrize("capture", CAPTURES)
def test_operations_journeys_and_failures(capture: str) -> None:
    driver = capture_truth(capture)["driver"]
    spans_t = _capture_table(capture)
    ops = dict(_query(spans_t, "SELECT operation, count(*) FROM spans_t GROUP BY 1"))
    assert ops["execute_tool"] == driver["tool_executions"]
    assert ops["retrieval"] == driver["retrievals"]
    assert ops["embeddings"] == 20
    assert ops["chat"] == 55
    assert ops["agent"] == driver["journeys"]["triage-agent"]
    roots = dict(_query(spans_t, "SELECT journey, count(*) FROM spans_t WHERE is_root GROUP BY 1"))
    assert roots == driver["journeys"]
    failed = dict(_query(spans_t, "SELECT journey, count(*) FROM spans_t WHERE marks_failure GROUP BY 1"))
    assert failed == driver["failed_journeys"]
    statuses = dict(_query(spans_t, "SELECT http_status, count(*) FROM spans_t WHERE operation = 'chat' AND status = 'error' GROUP BY 1"))
    # Failed calls carry their HTTP status only in the status message; it is recovered.
    assert statuses == {429: 6, 500: 1}


@pytest.mark.parametrize("capture", CAPTURES)
def test_release_and_prompt_columns(capture: str) -> None:
    spans_t = _capture_table(capture)
    rows = _query(spans_t,
        "SELECT DISTINCT service, service_version, deployment_environment FROM spans_t"
    )
    assert rows == [("support-bot", "1.4.2", "prod")]
    prompts = _query(spans_t, "SELECT DISTINCT prompt_name, prompt_version FROM spans_t WHERE is_root AND journey = 'ask'")
    assert prompts == [("ask-answer", "v3")]


def test_json_rendering_equals_protobuf() -> None:
    for capture in CAPTURES:
        raw = _capture_table(capture, "raw").drop(["received_ns"])  # resource ids are content hashes
        rendered = _capture_table(capture, "json").drop(["received_ns"])
        assert raw.to_pylist() == rendered.to_pylist()


def test_cached_tokens_from_openllmetry() -> None:
    spans_t = _capture_table("openllmetry")
    cached = _query(spans_t, "SELECT count(cached_input_tokens), sum(cached_input_tokens) FROM spans_t")
    assert cached == [(20, 0)]


def test_every_attribute_is_kept_whole() -> None:
    path = capture_files("openllmetry")[0]
    request = parse_request(path.read_bytes(), "protobuf")
    batch = flatten(request, "t")
    first = request.resource_spans[0].scope_spans[0].spans[0]
    row = batch.table.slice(0, 1).to_pylist()[0]
    attrs = orjson.loads(row["attributes"])
    assert set(attrs) == {kv.key for kv in first.attributes}
    resources = {r["resource_id"]: orjson.loads(r["resource"]) for r in batch.resources.to_pylist()}
    resource = resources[row["resource_id"]]
    assert {kv.key for kv in request.resource_spans[0].resource.attributes} == set(resource)
    assert resource["service.instance.id"]


def _span(**attrs: object) -> Span:
    span = Span(
        trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="x",
        start_time_unix_nano=1_000, end_time_unix_nano=2_000,
    )
    for key, value in attrs.items():
        kv = KeyValue(key=key)
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = str(value)
        span.attributes.append(kv)
    return span


def _request(*spans: Span) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.spans.extend(spans)
    return request


def test_openinference_and_legacy_conventions() -> None:
    oi = _span(**{
        "openinference.span.kind": "LLM", "llm.model_name": "claude-3-5-sonnet", "llm.system": "anthropic",
        "llm.token_count.prompt": 120, "llm.token_count.completion": 30,
        "llm.token_count.prompt_details.cache_read": 100,
        "llm.invocation_parameters": '{"model": "claude-3-5-sonnet-latest", "temperature": 0}',
    })
    legacy = _span(**{
        "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 5,
    })
    legacy.span_id = bytes(range(2, 10))
    retriever = _span(**{"openinference.span.kind": "RETRIEVER"})
    retriever.span_id = bytes(range(3, 11))
    unknown = _span(**{"some.vendor.kind": "weird", "nested": 1.5})
    unknown.span_id = bytes(range(4, 12))
    rows = flatten(_request(oi, legacy, retriever, unknown), "t").table.to_pylist()
    assert rows[0]["operation"] == "chat"
    assert rows[0]["provider"] == "anthropic"
    assert rows[0]["request_model"] == "claude-3-5-sonnet-latest"
    assert rows[0]["response_model"] == "claude-3-5-sonnet"
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["cached_input_tokens"]) == (120, 30, 100)
    assert (rows[1]["operation"], rows[1]["input_tokens"], rows[1]["output_tokens"]) == ("chat", 10, 5)
    assert rows[2]["operation"] == "retrieval"
    assert rows[3]["operation"] == "other"


@pytest.mark.parametrize(
    ("value", "reason"),
    [(-5, "non-negative"), ("lots", "non-negative"), (2.5, "non-negative"), (True, "non-negative")],
)
def test_bad_token_counts_reject_only_that_span(value: object, reason: str) -> None:
    good = _span(**{"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 7})
    bad = _span(**{"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": value})
    bad.span_id = bytes(range(9, 17))
    batch = flatten(_request(good, bad), "t")
    assert batch.accepted == 1
    assert batch.rejected == 1
    assert reason in batch.message()
    assert batch.table.column("input_tokens").to_pylist() == [7]


def test_invalid_ids_and_times_are_rejected_with_reasons() -> None:
    spans = [
        Span(trace_id=b"\x01" * 8, span_id=b"\x02" * 8, name="short-trace", start_time_unix_nano=1, end_time_unix_nano=2),
        Span(trace_id=b"\x00" * 16, span_id=b"\x02" * 8, name="zero-trace", start_time_unix_nano=1, end_time_unix_nano=2),
        Span(trace_id=b"\x01" * 16, span_id=b"", name="no-span-id", start_time_unix_nano=1, end_time_unix_nano=2),
        Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="backwards", start_time_unix_nano=5, end_time_unix_nano=2),
        Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, name="fine", start_time_unix_nano=1, end_time_unix_nano=2,
             status=Status(code=Status.STATUS_CODE_ERROR, message="boom")),
    ]
    batch = flatten(_request(*spans), "t")
    assert batch.accepted == 1
    assert batch.rejected == 4
    message = batch.message()
    assert "trace_id must be 16 non-zero bytes, got 8" in message
    assert "span_id must be 8 non-zero bytes" in message
    assert "end_time_unix_nano is before start_time_unix_nano" in message
    row = batch.table.to_pylist()[0]
    assert (row["name"], row["status"], row["is_root"], row["marks_failure"]) == ("fine", "error", True, True)


def test_nested_values_are_kept() -> None:
    span = _span()
    kv = KeyValue(key="list")
    kv.value.array_value.values.extend([AnyValue(string_value="a"), AnyValue(int_value=2)])
    span.attributes.append(kv)
    kv = KeyValue(key="map")
    kv.value.kvlist_value.values.append(KeyValue(key="k", value=AnyValue(bytes_value=b"\x00\x01")))
    span.attributes.append(kv)
    row = flatten(_request(span), "t").table.to_pylist()[0]
    assert orjson.loads(row["attributes"]) == {"list": ["a", 2], "map": {"k": "AAE="}}
