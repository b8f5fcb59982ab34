"""Platform events sent through ``POST /api/events`` (pipeline runs, dataset updates), checked
one by one and turned into spans, so they take the span ingest path (same durability, limits
and tenancy) and the pipeline, deadline and freshness SLIs count them like spans sent over OTLP.

A pipeline run becomes a root span carrying the OTel CI/CD attributes ``cicd.pipeline.name``,
``cicd.pipeline.result`` (and ``cicd.pipeline.run.id``); a dataset update a root span carrying
``aisre.dataset`` (core/slo.py DATASET_ATTRIBUTE), ending at the update's time. Trace and span
ids are a hash of (tenant, kind, name, id or times): the same event posted twice is the same
span, which the store keeps once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aisre.core.errors import PermanentError
from aisre.core.slo import DATASET_ATTRIBUTE
from aisre.core.timefmt import parse_time

EVENT_KINDS = ("pipeline_run", "dataset_update")
PIPELINE_RESULTS = ("success", "failure", "error", "timeout", "cancellation", "skip")
# Results that make the run span's status ERROR (as a scheduler's own OTel spans would be).
_FAILED = ("failure", "error", "timeout")
MAX_EVENTS = 1000
DEFAULT_SERVICE = "aisre-events"
_FIELDS = {
    "pipeline_run": ("kind", "pipeline", "result", "start", "end", "id", "service"),
    "dataset_update": ("kind", "dataset", "time", "id", "service"),
}
# Unix times below this are surely not nanoseconds (it is 2001-09-09 in ns, 1e15 s from now).
_MIN_NS = 10**18


@dataclass(frozen=True)
class EventSpan:
    """One accepted event as the span it becomes."""

    index: int
    span_id: str  # hex
    service: str
    span: Span


@dataclass(frozen=True)
class ParsedEvents:
    """The accepted events' spans, and the refused ones as {index, reason}."""

    spans: list[EventSpan]
    refused: list[dict[str, Any]]

    def request(self) -> ExportTraceServiceRequest:
        """An OTLP export request holding every accepted event's span, one resource per service."""
        request = ExportTraceServiceRequest()
        by_service: dict[str, Any] = {}
        seen: set[str] = set()
        for event in self.spans:
            # The same event twice in one request is one span (the store drops copies across
            # requests, not within one).
            if event.span_id in seen:
                continue
            seen.add(event.span_id)
            scope = by_service.get(event.service)
            if scope is None:
                rs = request.resource_spans.add()
                rs.resource.attributes.append(_kv("service.name", event.service))
                scope = by_service[event.service] = rs.scope_spans.add()
                scope.scope.name = "aisre.events"
            scope.spans.append(event.span)
        return request


def _kv(key: str, value: str) -> KeyValue:
    kv = KeyValue(key=key)
    kv.value.string_value = value
    return kv


def _name(item: dict[str, Any], key: str, required: bool = True, limit: int = 256) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise PermanentError(f"{key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise PermanentError(f"{key} must be a non-empty string")
    if len(value) > limit:
        raise PermanentError(f"{key} must be at most {limit} characters; got {len(value)}")
    return value.strip()


def _time(item: dict[str, Any], key: str, now_ns: int) -> int:
    value = item.get(key)
    if value is None:
        raise PermanentError(f"{key} is required (RFC 3339, e.g. 2026-12-05T06:00:00Z, or unix nanoseconds)")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PermanentError(f"{key} must be an RFC 3339 time or unix nanoseconds (an integer); got {value!r}")
    if isinstance(value, int):
        if value < _MIN_NS:
            raise PermanentError(f"{key} must be unix nanoseconds; {value} looks like seconds or milliseconds")
        if value >= 2**63:
            raise PermanentError(f"{key} is out of range; got {value}")
        return value
    return parse_time(value, now_ns, key)


def _ids(tenant: str, kind: str, name: str, key: str) -> tuple[bytes, bytes]:
    """Trace and span id from what identifies the event: the same event, the same ids."""
    digest = hashlib.sha256("\x00".join((tenant, kind, name, key)).encode()).digest()
    trace_id, span_id = digest[:16], digest[16:24]
    # All-zero ids are invalid in OTLP; a hash is never that in practice, but be exact.
    return trace_id if any(trace_id) else b"\x01" * 16, span_id if any(span_id) else b"\x01" * 8


def _event(item: Any, index: int, tenant: str, now_ns: int) -> EventSpan:
    if not isinstance(item, dict):
        raise PermanentError("an event must be a JSON object")
    kind = item.get("kind")
    if kind not in EVENT_KINDS:
        raise PermanentError(f"kind must be one of {', '.join(EVENT_KINDS)}; got {kind!r}")
    unknown = sorted(set(item) - set(_FIELDS[kind]))
    if unknown:
        raise PermanentError(f"unknown field(s) for {kind}: {', '.join(unknown)}; known: {', '.join(_FIELDS[kind])}")
    run_id = _name(item, "id", required=False)
    service = _name(item, "service", required=False) or DEFAULT_SERVICE
    if kind == "pipeline_run":
        pipeline = _name(item, "pipeline")
        assert pipeline is not None
        result = item.get("result")
        if result not in PIPELINE_RESULTS:
            raise PermanentError(f"result must be one of {', '.join(PIPELINE_RESULTS)}; got {result!r}")
        start, end = _time(item, "start", now_ns), _time(item, "end", now_ns)
        if end < start:
            raise PermanentError("end must not be before start")
        trace_id, span_id = _ids(tenant, kind, pipeline, run_id or f"{start}-{end}")
        attributes = [_kv("cicd.pipeline.name", pipeline), _kv("cicd.pipeline.action.name", "RUN"),
                      _kv("cicd.pipeline.result", result)]
        if run_id is not None:
            attributes.append(_kv("cicd.pipeline.run.id", run_id))
        span = Span(trace_id=trace_id, span_id=span_id, name=f"RUN {pipeline}", kind=Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=start, end_time_unix_nano=end, attributes=attributes)
        if result in _FAILED:
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = f"pipeline run {result}"
        return EventSpan(index, span_id.hex(), service, span)
    dataset = _name(item, "dataset")
    assert dataset is not None
    at = _time(item, "time", now_ns)
    trace_id, span_id = _ids(tenant, kind, dataset, run_id or str(at))
    attributes = [_kv(DATASET_ATTRIBUTE, dataset)]
    if run_id is not None:
        attributes.append(_kv("aisre.dataset.update.id", run_id))
    span = Span(trace_id=trace_id, span_id=span_id, name=f"update {dataset}", kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=at, end_time_unix_nano=at, attributes=attributes)
    return EventSpan(index, span_id.hex(), service, span)


def parse_events(document: Any, tenant: str, now_ns: int) -> ParsedEvents:
    """Check each event of ``{"events": [...]}`` on its own; a malformed body raises."""
    items = document.get("events") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise PermanentError('expected {"events": [...]}')
    if len(items) > MAX_EVENTS:
        raise PermanentError(f"at most {MAX_EVENTS} events per request; got {len(items)}")
    spans: list[EventSpan] = []
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            spans.append(_event(item, index, tenant, now_ns))
        except PermanentError as exc:
            refused.append({"index": index, "reason": exc.message})
    return ParsedEvents(spans, refused)
