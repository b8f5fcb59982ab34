"""Limits on attribute counts, value lengths, nesting depth and batch size: each answered
with its own message, never an exception."""

from __future__ import annotations

import os

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aisre.core.errors import PermanentError
from aisre.normalize.spans import Limits, flatten

LIMITS = Limits(max_attributes=10, max_value_chars=100, max_depth=3, max_spans=5)


def _span(name: str = "s", attributes: list[KeyValue] | None = None) -> Span:
    return Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=name, start_time_unix_nano=1,
                end_time_unix_nano=2, attributes=attributes or [])


def _request(*spans: Span, resource: list[KeyValue] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(resource or [])
    rs.scope_spans.add().spans.extend(spans)
    return request


def _nested(depth: int) -> AnyValue:
    value = AnyValue(string_value="leaf")
    for _ in range(depth):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


def _kvs(n: int) -> list[KeyValue]:
    return [KeyValue(key=f"a{i}", value=AnyValue(int_value=i)) for i in range(n)]


def test_too_many_attributes_rejects_that_span_only() -> None:
    batch = flatten(_request(_span("ok", _kvs(10)), _span("big", _kvs(11))), "t", limits=LIMITS)
    assert (batch.accepted, batch.rejected) == (1, 1)
    assert "has 11 attributes; the limit is 10 (max_span_attributes)" in batch.message()


def test_too_deep_rejects_that_span_only() -> None:
    deep = _span("deep", [KeyValue(key="x", value=_nested(4))])
    fine = _span("fine", [KeyValue(key="x", value=_nested(3))])
    batch = flatten(_request(deep, fine), "t", limits=LIMITS)
    assert (batch.accepted, batch.rejected) == (1, 1)
    assert "nested deeper than 3 levels (max_value_depth)" in batch.message()


def test_event_and_resource_limits() -> None:
    span = _span("events")
    span.events.add(name="e", time_unix_nano=1).attributes.extend(_kvs(11))
    batch = flatten(_request(span, _span("fine")), "t", limits=LIMITS)
    assert (batch.accepted, batch.rejected) == (1, 1)
    assert "event 'e' has 11 attributes" in batch.message()

    batch = flatten(_request(_span("a"), _span("b"), resource=_kvs(11)), "t", limits=LIMITS)
    assert (batch.accepted, batch.rejected) == (0, 2)
    assert "the resource has 11 attributes" in batch.message()


def test_long_values_are_truncated_with_a_warning() -> None:
    long = "x" * 250
    span = _span("n" * 150, [KeyValue(key="gen_ai.input.messages", value=AnyValue(string_value=long)),
                             KeyValue(key="short", value=AnyValue(string_value="kept"))])
    span.events.add(name="e", time_unix_nano=1).attributes.append(KeyValue(key="m", value=AnyValue(string_value=long)))
    batch = flatten(_request(span), "t", limits=LIMITS)
    assert (batch.accepted, batch.rejected) == (1, 0)
    row = batch.table.to_pylist()[0]
    attrs = orjson.loads(row["attributes"])
    assert attrs["gen_ai.input.messages"] == "x" * 100
    assert attrs["short"] == "kept"
    assert orjson.loads(row["events"])[0]["attributes"]["m"] == "x" * 100
    assert row["name"] == "n" * 100
    assert attrs["aisre.truncated"] == 3
    assert "3 value(s) longer than 100 characters were truncated (max_attribute_chars" in batch.message()
    assert batch.message().startswith("accepted with changes")


def test_too_many_spans_refuses_the_request() -> None:
    with pytest.raises(PermanentError, match=r"request holds 6 spans; the limit is 5 \(max_spans_per_request\)"):
        flatten(_request(*(_span() for _ in range(6))), "t", limits=LIMITS)
    assert flatten(_request(*(_span() for _ in range(5))), "t", limits=LIMITS).accepted == 5


def test_an_event_time_past_int64_rejects_its_span_not_the_request() -> None:
    """Found by bench/fuzz.py: an evaluation event's time became a score time too large
    for the int64 column, and the whole request failed with OverflowError."""
    bad = _span("judged")
    event = bad.events.add(name="gen_ai.evaluation.result", time_unix_nano=2**64 - 1)
    event.attributes.extend([
        KeyValue(key="gen_ai.evaluation.name", value=AnyValue(string_value="groundedness")),
        KeyValue(key="gen_ai.evaluation.score.value", value=AnyValue(double_value=0.5)),
    ])
    batch = flatten(_request(bad, _span("fine")), "t", limits=LIMITS)
    assert (batch.accepted, batch.rejected) == (1, 1)
    assert "time_unix_nano 18446744073709551615 is past the year 2262" in batch.message()
    assert batch.scores is not None and batch.scores.num_rows == 0
