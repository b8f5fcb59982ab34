"""Property tests (a short version of bench/fuzz.py): whatever arrives, the OTLP decoders and
the SLO spec loaders answer with a result or a PermanentError, never anything else."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
from pathlib import Path

import orjson
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aisre.core.errors import PermanentError
from aisre.core.pipeline import EncodedExport
from aisre.evaluate.specs import check_files
from aisre.normalize.redaction import ContentPolicy
from aisre.normalize.spans import Limits, flatten
from aisre.receive.otlp_decode import decode_export, parse_request

FAST = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
# Structured requests cost more each (protobuf building, many spans): fewer of them.
STRUCTURED = settings(FAST, max_examples=50)
CONTENT = ContentPolicy("redact").filter_for("t")
LIMITS = Limits(max_attributes=32, max_value_chars=2000, max_depth=4, max_spans=50)

# Keys aisre reads, so generated values land on the typed-column and redaction paths.
KEYS = st.sampled_from([
    "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model", "gen_ai.provider.name",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "llm.token_count.prompt",
    "gen_ai.usage.cache_read.input_tokens", "http.response.status_code", "http.request.resend_count",
    "openinference.span.kind", "llm.invocation_parameters", "aisre.journey", "aisre.outcome",
    "aisre.score.quality", "gen_ai.input.messages", "retrieval.documents.0.document.content",
    "error.type", "db.system.name", "user.id", "service.version", "llm.request.type",
]) | st.text(max_size=12)
TEXT = st.text(max_size=60) | st.sampled_from(["chat", "LLM", "failure", "429", "12", "-3", "1e9", "²",
                                                 "a@b.io +1 415 555 2671 4111111111111111", '{"model": 1}'])


def _scalar() -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        TEXT.map(lambda v: AnyValue(string_value=v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: AnyValue(int_value=v)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda v: AnyValue(double_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        st.binary(max_size=16).map(lambda v: AnyValue(bytes_value=v)),
        st.just(AnyValue()),
    )


ANY_VALUE = st.recursive(
    _scalar(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(KEYS, inner), max_size=3).map(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs]))
        ),
    ),
    max_leaves=12,
)
ATTRIBUTES = st.lists(st.builds(KeyValue, key=KEYS, value=ANY_VALUE), max_size=8)
ID = st.one_of(st.binary(min_size=0, max_size=17), st.just(b"\x00" * 8))


@st.composite
def spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(st.binary(min_size=16, max_size=16) | ID), span_id=draw(st.binary(min_size=8, max_size=8) | ID),
        parent_span_id=draw(st.just(b"") | ID), name=draw(TEXT),
        kind=draw(st.integers(0, 10)),
        start_time_unix_nano=draw(st.integers(0, 2**64 - 1)), end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        attributes=draw(ATTRIBUTES),
        status=Status(code=draw(st.integers(0, 5)), message=draw(TEXT)),
    )
    for name in draw(st.lists(st.sampled_from(["exception", "gen_ai.user.message", "gen_ai.evaluation.result", "x"]), max_size=2)):
        span.events.add(name=name, time_unix_nano=draw(st.integers(0, 2**64 - 1))).attributes.extend(draw(ATTRIBUTES))
    if draw(st.booleans()):
        span.links.add(trace_id=draw(ID), span_id=draw(ID)).attributes.extend(draw(ATTRIBUTES))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(draw(ATTRIBUTES))
        rs.scope_spans.add().spans.extend(draw(st.lists(spans(), max_size=4)))
    return request


def _flatten_or_refuse(data: bytes, encoding: str) -> None:
    try:
        request = parse_request(data, encoding)  # type: ignore[arg-type]
        total = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        batch = flatten(request, "t", 1, content=CONTENT, limits=LIMITS)
    except PermanentError:
        return
    assert batch.accepted + batch.rejected == total  # every span accounted for


@STRUCTURED
@given(requests())
def test_structured_requests_are_accepted_or_rejected_span_by_span(request: ExportTraceServiceRequest) -> None:
    _flatten_or_refuse(request.SerializeToString(), "protobuf")


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_protobuf_bytes(data: bytes) -> None:
    _flatten_or_refuse(data, "protobuf")


def _hex_ids(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                    else _hex_ids(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hex_ids(v) for v in obj]
    return obj


@STRUCTURED
@given(requests())
def test_structured_requests_as_otlp_json(request: ExportTraceServiceRequest) -> None:
    from google.protobuf import json_format

    document = _hex_ids(json_format.MessageToDict(request))
    _flatten_or_refuse(orjson.dumps(document), "json")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "attributes", "key",
                         "value", "stringValue", "intValue", "kvlistValue", "arrayValue", "values",
                         "startTimeUnixNano", "endTimeUnixNano", "events", "status", "code"]) | st.text(max_size=8),
        inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(JSON)
def test_arbitrary_json_documents(document: object) -> None:
    # The standard library's encoder: it writes integers past 64 bits, which orjson refuses.
    _flatten_or_refuse(json.dumps(document).encode(), "json")


@FAST
@given(st.binary(max_size=200), st.sampled_from(["gzip", "deflate", "identity", "br", None]))
def test_arbitrary_bodies_and_encodings(data: bytes, encoding: str | None) -> None:
    for body in (data, gzip.compress(data)):
        with contextlib.suppress(PermanentError):
            decode_export(EncodedExport(body, "protobuf", encoding), 4096)


SPEC_KEYS = st.sampled_from([
    "slos", "name", "journey", "objective", "window", "sli", "kind", "latency_ms", "max_usd", "score", "min",
    "tier", "owner", "diagnostic", "alerting", "page", "ticket", "version", "service", "objectives",
    "apiVersion", "metadata", "spec", "target", "timeWindow", "duration", "isRolling", "budgetingMethod",
    "indicator", "ratioMetric", "good", "total", "sli_events", "error_query", "total_query", "calendar",
]) | st.text(max_size=6)
SPEC_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.sampled_from(
        ["prometheus/v1", "aisre/v1", "openslo/v1", "sloth.slok.dev/v1", "SLO", "SLI", "28d", "30d", "1w", "outcome",
         "latency", "cost", "Occurrences", "Timeslices", "99.9", "ask"]) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SPEC_KEYS, inner, max_size=5),
    max_leaves=25,
)


@FAST
@given(st.dictionaries(SPEC_KEYS, SPEC_VALUES, max_size=5) | st.lists(st.dictionaries(SPEC_KEYS, SPEC_VALUES, max_size=4), max_size=3))
def test_spec_loaders_report_errors_never_raise(tmp_path_factory, document: object) -> None:
    path = Path(tmp_path_factory.mktemp("spec")) / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    check_files([path])


@FAST
@given(st.text(max_size=300))
def test_spec_loaders_on_arbitrary_text(tmp_path_factory, text: str) -> None:
    path = Path(tmp_path_factory.mktemp("spec")) / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_files([path])
