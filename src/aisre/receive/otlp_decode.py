"""Turn an OTLP/HTTP body into an ExportTraceServiceRequest (protobuf or JSON, gzip or not)."""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
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


def decode_export(export: EncodedExport, max_bytes: int) -> ExportTraceServiceRequest:
    """Decompress and parse an export request as it arrived."""
    return parse_request(decompress(export.body, export.content_encoding, max_bytes), export.encoding)


def parse_request(data: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """Decode an export request; malformed bodies raise PermanentError naming what is wrong."""
    request = ExportTraceServiceRequest()
    if encoding == "protobuf":
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise PermanentError(f"malformed protobuf ExportTraceServiceRequest: {exc}") from None
        return request
    if not data.strip():
        return request
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PermanentError(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PermanentError("malformed OTLP/JSON: the top level must be an object with resourceSpans")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise PermanentError(f"malformed OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    except RecursionError:
        # The parser recurses per nesting level; a document this deep is not OTLP.
        raise PermanentError("malformed OTLP/JSON ExportTraceServiceRequest: nested too deeply") from None
    return request


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


def encode_response(rejected: int, message: str, encoding: Encoding) -> bytes:
    """ExportTraceServiceResponse in the request's encoding; partial_success only when needed."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if encoding == "protobuf":
        return response.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(response))
