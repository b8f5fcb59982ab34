"""Turn an OTLP/HTTP body into an ExportTraceServiceRequest (protobuf or JSON, gzip or not)."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from aisre.core.errors import PayloadTooLarge, PermanentError, UnsupportedMediaType
from aisre.core.pipeline import EncodedExport, Encoding

PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPES = frozenset({"application/json"})


def media_type(content_type: str | None) -> Encoding:
    """Map a Content-Type header to the OTLP encoding, or refuse it (415)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base in PROTOBUF_TYPES:
        return "protobuf"
    if base in JSON_TYPES:
        return "json"
    shown = base or "none"
    raise UnsupportedMediaType(
        f"unsupported content type {shown!r}: OTLP/HTTP accepts application/x-protobuf or application/json"
    )


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, never inflating past ``max_bytes`` (a gzip bomb gets 413, not OOM)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is {len(body)} bytes; the limit is {max_bytes}")
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedMediaType(
            f"unsupported content encoding {encoding!r}: use gzip, deflate or none"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise PermanentError(f"body is not valid {encoding} data: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body is over the {max_bytes}-byte limit")
    if not inflater.eof:
        raise PermanentError(f"body is truncated {encoding} data")
    return out


# Reasons kept per request for partial_success (the count is always exact).
_MAX_REASONS = 5


@dataclass
class Decoded:
    """An export request and the spans refused while decoding it (OTLP/JSON attribute values
    that are not AnyValue objects): left out of ``request``, counted and explained here."""

    request: ExportTraceServiceRequest
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def decode_export(export: EncodedExport, max_bytes: int) -> ExportTraceServiceRequest:
    """Decompress and parse an export request as it arrived (spans refused in decoding left out)."""
    return decode_export_checked(export, max_bytes).request


def decode_export_checked(export: EncodedExport, max_bytes: int) -> Decoded:
    """Decompress and parse an export request, with the spans refused while decoding it."""
    return parse_request_checked(decompress(export.body, export.content_encoding, max_bytes), export.encoding)


def parse_request(data: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """Decode an export request; malformed bodies raise PermanentError naming what is wrong.
    Spans refused while decoding are left out: parse_request_checked says which."""
    return parse_request_checked(data, encoding).request


def parse_request_checked(data: bytes, encoding: Encoding) -> Decoded:
    """Decode an export request; malformed bodies raise PermanentError naming what is wrong,
    and OTLP/JSON spans with attribute values that are not AnyValue objects are refused alone."""
    request = ExportTraceServiceRequest()
    decoded = Decoded(request)

    def prepare(document: dict[str, Any]) -> None:
        _check_attribute_values(document, decoded)
        _hex_ids_to_base64(document)

    _parse_otlp(data, encoding, request, "resourceSpans", prepare)
    return decoded


def _parse_otlp(data: bytes, encoding: Encoding, request: Message, top: str,
                prepare: Callable[[dict[str, Any]], None]) -> None:
    """Parse protobuf or OTLP/JSON into ``request``; ``prepare`` mends the JSON document first
    (hex ids, refused values). Malformed bodies raise PermanentError naming what is wrong."""
    name = type(request).__name__
    if encoding == "protobuf":
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise PermanentError(f"malformed protobuf {name}: {exc}") from None
        return
    if not data.strip():
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PermanentError(f"malformed OTLP/JSON: the top level must be an object with {top}")
    prepare(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise PermanentError(f"malformed OTLP/JSON {name}: {exc}") from None
    except RecursionError:
        # The parser recurses per nesting level; a document this deep is not OTLP.
        raise PermanentError(f"malformed OTLP/JSON {name}: nested too deeply") from None


# OTLP/JSON is the protobuf JSON mapping, where a message (AnyValue) is a JSON object. The
# protobuf parser would read a bare string as an object of ignored fields (an empty value,
# stored as null) and refuse a bare number as a malformed request; both are refused here
# per span instead, with the attribute named, as a span with a bad id is.
_SCALARS: dict[str, tuple[type, ...]] = {
    "stringValue": (str,), "string_value": (str,),
    "boolValue": (bool,), "bool_value": (bool,),
    "intValue": (int, str), "int_value": (int, str),
    "doubleValue": (int, float, str), "double_value": (int, float, str),
    "bytesValue": (str,), "bytes_value": (str,),
}
_JSON_TYPE = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
# Deeper values are left to the parser and to max_value_depth, which refuses them per span.
_CHECK_DEPTH = 64


def _shown(value: Any) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _any_value_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not the JSON form of an AnyValue, or None when it is (null is the
    empty value, unknown fields are ignored for forward compatibility)."""
    if value is None or depth > _CHECK_DEPTH:
        return None
    if not isinstance(value, dict):
        return f'must be an AnyValue object such as {{"stringValue": "..."}}; got {_shown(value)}'
    for name, allowed in _SCALARS.items():
        if name in value and value[name] is not None:
            item = value[name]
            if not isinstance(item, allowed) or (bool not in allowed and isinstance(item, bool)):
                expected = " or ".join(dict.fromkeys(_JSON_TYPE[t] for t in allowed))
                return f"{name} must be {expected}; got {_shown(item)}"
    for name, entry in (("arrayValue", False), ("array_value", False), ("kvlistValue", True), ("kvlist_value", True)):
        inner = value.get(name)
        if inner is None:
            continue
        if not isinstance(inner, dict):
            return f"{name} must be an object with values; got {_shown(inner)}"
        items = inner.get("values")
        if items is None:
            continue
        if not isinstance(items, list):
            return f"{name}.values must be a list; got {_shown(items)}"
        for i, item in enumerate(items):
            if entry:
                if not isinstance(item, dict):
                    return f"{name}.values[{i}] must be an object with key and value; got {_shown(item)}"
                problem = _any_value_problem(item.get("value"), depth + 1)
                where = f"{name}.values[{i}] ({item.get('key')!r})"
            else:
                problem = _any_value_problem(item, depth + 1)
                where = f"{name}.values[{i}]"
            if problem is not None:
                return f"{where}: {problem}"
    return None


def _attributes_problem(holder: Any, what: str) -> str | None:
    """The first attribute of ``holder`` whose value is not an AnyValue, said with its key."""
    if not isinstance(holder, dict):
        return None
    attributes = holder.get("attributes")
    if not isinstance(attributes, list):
        return None  # absent, or malformed as a whole: the parser refuses the request
    for attribute in attributes:
        if not isinstance(attribute, dict):
            continue
        problem = _any_value_problem(attribute.get("value"))
        if problem is not None:
            return f"{what} attribute {attribute.get('key')!r}: value {problem}"
    return None


def _span_problem(span: dict[str, Any]) -> str | None:
    problem = _attributes_problem(span, "span")
    for kind, key in (("event", "events"), ("link", "links")):
        for item in _list(span.get(key)):
            problem = problem or _attributes_problem(item, kind)
    return problem


def _describe_json(span: dict[str, Any], reason: str) -> str:
    span_id = span.get("spanId", span.get("span_id"))
    shown = span_id if isinstance(span_id, str) and len(span_id) == 16 else "?"
    name = span.get("name") if isinstance(span.get("name"), str) and span.get("name") else "unnamed"
    return f"span {shown} ({name}): {reason}"


def _check_attribute_values(document: dict[str, Any], decoded: Decoded) -> None:
    # A bad resource or scope attribute refuses every span under it, with that reason.
    for resource_spans in _list(document.get("resourceSpans", document.get("resource_spans"))):
        above = _attributes_problem(resource_spans.get("resource"), "resource")
        for scope_spans in _list(resource_spans.get("scopeSpans", resource_spans.get("scope_spans"))):
            scope_problem = above or _attributes_problem(scope_spans.get("scope"), "scope")
            spans = scope_spans.get("spans")
            if not isinstance(spans, list):
                continue
            kept = []
            for span in spans:
                problem = (scope_problem or _span_problem(span)) if isinstance(span, dict) else None
                if problem is None:
                    kept.append(span)
                    continue
                decoded.rejected += 1
                if len(decoded.reasons) < _MAX_REASONS:
                    decoded.reasons.append(_describe_json(span, problem))
            if len(kept) != len(spans):
                scope_spans["spans"] = kept


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    # OTLP/JSON writes ids as hex, unlike proto3 JSON's base64 for bytes. An id that is
    # not hex becomes empty, so the span is rejected by validation with its own message
    # instead of failing the whole request.
    for resource_spans in _list(document.get("resourceSpans", document.get("resource_spans"))):
        for scope_spans in _list(resource_spans.get("scopeSpans", resource_spans.get("scope_spans"))):
            for span in _list(scope_spans.get("spans")):
                _fix_ids(span)
                for link in _list(span.get("links")):
                    _fix_ids(link)


def _list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _fix_ids(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = binascii.unhexlify(value)
        except (binascii.Error, ValueError):
            raw = b""
        obj[key] = base64.b64encode(raw).decode("ascii")


def _encode(response: Any, rejected_field: str, rejected: int, message: str, encoding: Encoding) -> bytes:
    """An Export*ServiceResponse in the request's encoding; partial_success only when needed."""
    if rejected or message:
        setattr(response.partial_success, rejected_field, rejected)
        response.partial_success.error_message = message
    if encoding == "protobuf":
        return bytes(response.SerializeToString())
    return orjson.dumps(json_format.MessageToDict(response))


def encode_response(rejected: int, message: str, encoding: Encoding) -> bytes:
    """ExportTraceServiceResponse: rejected spans."""
    return _encode(ExportTraceServiceResponse(), "rejected_spans", rejected, message, encoding)


def decode_metrics_export(export: EncodedExport, max_bytes: int) -> ExportMetricsServiceRequest:
    """Decompress and parse an ExportMetricsServiceRequest (protobuf or OTLP/JSON)."""
    data = decompress(export.body, export.content_encoding, max_bytes)
    request = ExportMetricsServiceRequest()
    # Exemplars are not kept, and their ids are hex in OTLP/JSON (base64 to the parser).
    _parse_otlp(data, export.encoding, request, "resourceMetrics", _drop_exemplars)
    return request


def encode_metrics_response(rejected: int, message: str, encoding: Encoding) -> bytes:
    """ExportMetricsServiceResponse: rejected data points."""
    return _encode(ExportMetricsServiceResponse(), "rejected_data_points", rejected, message, encoding)


def _drop_exemplars(value: Any, depth: int = 0) -> None:
    if depth > 12:
        return
    if isinstance(value, dict):
        value.pop("exemplars", None)
        for item in value.values():
            if isinstance(item, (dict, list)):
                _drop_exemplars(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _drop_exemplars(item, depth + 1)
