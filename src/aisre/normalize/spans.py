"""Flatten an OTLP export request into typed span rows (DESIGN §2-3).

This is the hot path of ingest: one pass over each span's attributes builds a plain
dict, the typed columns are looked up in it, and the dict is kept whole as JSON.
Spans that are unusable are rejected one by one with a reason; the rest go on.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.core.schema import LLM_OPERATIONS, SPAN_ARROW_SCHEMA, SPAN_COLUMN_NAMES
from aisre.normalize import conventions as cv

_ZERO_TRACE = b"\x00" * 16
_ZERO_SPAN = b"\x00" * 8
_EMPTY_LIST_JSON = "[]"
_MAX_REASONS = 5


@dataclass
class FlatBatch:
    """Typed span rows ready for the store, plus what was refused and why."""

    table: pa.Table
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return int(self.table.num_rows)

    def message(self) -> str:
        """One line for OTLP partial_success.error_message."""
        if not self.rejected:
            return ""
        shown = "; ".join(self.reasons[:_MAX_REASONS])
        more = self.rejected - min(len(self.reasons), _MAX_REASONS)
        suffix = f"; and {more} more" if more > 0 else ""
        return f"rejected {self.rejected} span(s): {shown}{suffix}"


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a plain Python value (bytes become base64 text)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes_dict(key_values: Iterable[Any]) -> dict[str, Any]:
    """Repeated KeyValue → dict, keeping every attribute."""
    out: dict[str, Any] = {}
    for kv in key_values:
        value = kv.value
        which = value.WhichOneof("value")
        # The common scalar cases inline: this loop runs ~20 times per span.
        if which == "string_value":
            out[kv.key] = value.string_value
        elif which == "int_value":
            out[kv.key] = value.int_value
        elif which == "double_value":
            out[kv.key] = value.double_value
        elif which == "bool_value":
            out[kv.key] = value.bool_value
        else:
            out[kv.key] = any_value(value)
    return out


def _first(attrs: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


class _BadSpan(Exception):
    pass


def _count(attrs: dict[str, Any], keys: Sequence[str], label: str) -> int | None:
    """A token count: absent → None; negative, fractional or non-numeric → the span is refused."""
    raw = _first(attrs, keys)
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise _BadSpan(f"{label} must be a non-negative integer, got {raw!r}")
    if isinstance(raw, int):
        value = raw
    elif (isinstance(raw, float) and raw.is_integer()) or (isinstance(raw, str) and raw.strip().isdigit()):
        value = int(raw)
    else:
        raise _BadSpan(f"{label} must be a non-negative integer, got {raw!r}")
    if value < 0:
        raise _BadSpan(f"{label} must be a non-negative integer, got {value}")
    return value


def _operation(attrs: dict[str, Any]) -> str:
    name = attrs.get(cv.OPERATION_NAME)
    if isinstance(name, str):
        mapped = cv.GENAI_OPERATIONS.get(name.lower())
        if mapped:
            return mapped
    kind = attrs.get(cv.OPENINFERENCE_KIND)
    if isinstance(kind, str):
        mapped = cv.OPENINFERENCE_OPERATIONS.get(kind.upper())
        if mapped:
            return mapped
    request_type = attrs.get(cv.LLM_REQUEST_TYPE)
    if isinstance(request_type, str):
        mapped = cv.LLM_REQUEST_TYPES.get(request_type.lower())
        if mapped:
            return mapped
    traceloop = attrs.get(cv.TRACELOOP_KIND)
    if isinstance(traceloop, str):
        mapped = cv.TRACELOOP_OPERATIONS.get(traceloop.lower())
        if mapped:
            return mapped
    db_system = _first(attrs, cv.DB_SYSTEM)
    if isinstance(db_system, str) and db_system.lower() in cv.VECTOR_STORES:
        return "retrieval"
    return "other"


def _invocation_model(attrs: dict[str, Any]) -> str | None:
    raw = attrs.get(cv.INVOCATION_PARAMETERS)
    if not isinstance(raw, str) or '"model"' not in raw:
        return None
    try:
        params = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    model = params.get("model") if isinstance(params, dict) else None
    return model if isinstance(model, str) else None


def _http_status(attrs: dict[str, Any], messages: Iterable[str]) -> int | None:
    raw = _first(attrs, cv.HTTP_STATUS)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    for message in messages:
        if message:
            match = cv.HTTP_STATUS_IN_MESSAGE.search(message)
            if match:
                return int(match.group(1))
    return None


def _events(span: Any) -> tuple[str, str | None, str | None]:
    """(events JSON, exception type, exception message)."""
    if not span.events:
        return _EMPTY_LIST_JSON, None, None
    out = []
    exc_type = exc_message = None
    for event in span.events:
        attrs = attributes_dict(event.attributes)
        if event.name == "exception":
            exc_type = exc_type or _text(attrs.get("exception.type"))
            exc_message = exc_message or _text(attrs.get("exception.message"))
        out.append({"name": event.name, "time_ns": event.time_unix_nano, "attributes": attrs})
    return orjson.dumps(out).decode(), exc_type, exc_message


def _links(span: Any) -> str:
    if not span.links:
        return _EMPTY_LIST_JSON
    return orjson.dumps(
        [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "attributes": attributes_dict(link.attributes),
            }
            for link in span.links
        ]
    ).decode()


def flatten(
    request: ExportTraceServiceRequest, tenant: str, received_ns: int | None = None
) -> FlatBatch:
    """Normalize every span of ``request``; bad spans are counted and explained, never raised."""
    received = received_ns if received_ns is not None else time.time_ns()
    columns: dict[str, list[Any]] = {name: [] for name in SPAN_COLUMN_NAMES}
    rows = [columns[name] for name in SPAN_COLUMN_NAMES]
    rejected = 0
    reasons: list[str] = []

    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        service = _text(resource.get(cv.SERVICE_NAME)) or "unknown_service"
        service_version = _text(_first(resource, cv.SERVICE_VERSION))
        environment = _text(_first(resource, cv.ENVIRONMENT))
        resource_json = orjson.dumps(resource).decode()
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            for span in scope_spans.spans:
                try:
                    row = _row(
                        span, tenant, service, scope, service_version, environment,
                        resource_json, received,
                    )
                except _BadSpan as exc:
                    rejected += 1
                    if len(reasons) < _MAX_REASONS:
                        reasons.append(_describe(span, str(exc)))
                    continue
                for column, value in zip(rows, row, strict=True):
                    column.append(value)

    _mark_sibling_retries(columns)
    table = pa.Table.from_pydict(columns, schema=SPAN_ARROW_SCHEMA)
    return FlatBatch(table=table, rejected=rejected, reasons=reasons)


def _describe(span: Any, reason: str) -> str:
    span_id = span.span_id.hex() if len(span.span_id) == 8 else "?"
    return f"span {span_id!s} ({span.name or 'unnamed'}): {reason}"


def _row(
    span: Any,
    tenant: str,
    service: str,
    scope: str,
    service_version: str | None,
    environment: str | None,
    resource_json: str,
    received: int,
) -> tuple[Any, ...]:
    trace_id = span.trace_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        raise _BadSpan(f"trace_id must be 16 non-zero bytes, got {len(trace_id)} byte(s)")
    span_id = span.span_id
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        raise _BadSpan(f"span_id must be 8 non-zero bytes, got {len(span_id)} byte(s)")
    parent = span.parent_span_id
    if parent and (len(parent) != 8 or parent == _ZERO_SPAN):
        raise _BadSpan(f"parent_span_id must be empty or 8 non-zero bytes, got {len(parent)} byte(s)")
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0:
        raise _BadSpan("start_time_unix_nano is missing")
    if end < start:
        raise _BadSpan("end_time_unix_nano is before start_time_unix_nano")

    attrs = attributes_dict(span.attributes)
    input_tokens = _count(attrs, cv.INPUT_TOKENS, "input token count")
    output_tokens = _count(attrs, cv.OUTPUT_TOKENS, "output token count")
    cached_tokens = _count(attrs, cv.CACHED_INPUT_TOKENS, "cached input token count")

    status_code = span.status.code
    status = cv.STATUS_CODES[status_code] if 0 <= status_code < 3 else "unset"
    status_message = span.status.message
    events_json, exc_type, exc_message = _events(span)
    http_status = _http_status(attrs, (status_message, exc_message or ""))
    error_type = _text(_first(attrs, cv.ERROR_TYPE)) or exc_type
    if error_type is None and status == "error" and http_status:
        error_type = str(http_status)

    operation = _operation(attrs)
    request_model = _text(_first(attrs, cv.REQUEST_MODEL)) or _invocation_model(attrs)
    response_model = _text(_first(attrs, cv.RESPONSE_MODEL))
    resend = _first(attrs, cv.RESEND_COUNT)
    retry_attempt = resend if isinstance(resend, int) and not isinstance(resend, bool) and resend > 0 else 0

    is_root = not parent
    outcome_attr = attrs.get(cv.OUTCOME[0])
    marks_failure = (
        is_root and (status == "error" or (http_status is not None and http_status >= 500))
    ) or (isinstance(outcome_attr, str) and outcome_attr.lower() == "failure")
    kind_code = span.kind
    kind = cv.SPAN_KINDS[kind_code] if 0 <= kind_code < 6 else "unspecified"

    return (
        tenant,
        trace_id.hex(),
        span_id.hex(),
        parent.hex(),
        span.name,
        kind,
        service,
        scope,
        start,
        end,
        end - start,
        status,
        status_message,
        _text(_first(attrs, cv.JOURNEY)),
        is_root,
        operation,
        _text(_first(attrs, cv.PROVIDER)),
        request_model,
        response_model or request_model,
        input_tokens,
        output_tokens,
        cached_tokens,
        0.0 if operation in LLM_OPERATIONS else None,
        None,
        _text(_first(attrs, cv.SERVICE_VERSION)) or service_version,
        _text(_first(attrs, cv.PROMPT_NAME)),
        _text(_first(attrs, cv.PROMPT_VERSION)),
        environment,
        http_status,
        retry_attempt,
        error_type,
        _text(_first(attrs, cv.TOOL_NAME)),
        _text(_first(attrs, cv.USER_ID)),
        _text(_first(attrs, cv.SESSION_ID)),
        marks_failure,
        orjson.dumps(attrs).decode(),
        resource_json,
        events_json,
        _links(span),
        received,
    )


def _mark_sibling_retries(columns: dict[str, list[Any]]) -> None:
    """An application-level retry is a model call repeated under the same parent after a
    failed sibling: number such calls 1, 2, … in ``retry_attempt``."""
    statuses = columns["status"]
    if "error" not in statuses:
        return
    operations = columns["operation"]
    failed: dict[tuple[str, str, str, str | None], list[int]] = {}
    for i, status in enumerate(statuses):
        if status == "error" and operations[i] in LLM_OPERATIONS:
            key = (columns["trace_id"][i], columns["parent_span_id"][i], operations[i], columns["request_model"][i])
            failed.setdefault(key, []).append(columns["end_ns"][i])
    if not failed:
        return
    for i, operation in enumerate(operations):
        if operation not in LLM_OPERATIONS:
            continue
        key = (columns["trace_id"][i], columns["parent_span_id"][i], operation, columns["request_model"][i])
        ends = failed.get(key)
        if ends:
            earlier = sum(1 for end in ends if end <= columns["start_ns"][i])
            if earlier > columns["retry_attempt"][i]:
                columns["retry_attempt"][i] = earlier
