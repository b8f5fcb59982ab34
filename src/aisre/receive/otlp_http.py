"""OTLP/HTTP: ``POST /v1/traces`` answering as the OTLP specification says.

200 with ExportTraceServiceResponse (partial_success when some spans were unusable),
400 for malformed bodies, 413 over the size limit, 415 for unsupported types,
429/503 with Retry-After when the store cannot take the data now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from aisre.core.errors import (
    AisreError,
    PayloadTooLarge,
    PermanentError,
    RetryableError,
    UnsupportedMediaType,
)
from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import EncodedExport, Encoding, TracesConsumer
from aisre.receive.otlp_decode import encode_metrics_response, encode_response, media_type
from aisre.receive.status import encode_status

log = logging.getLogger(__name__)

CONTENT_TYPES = {"protobuf": "application/x-protobuf", "json": "application/json"}

TenantResolver = Callable[[Request], str]


def traces_endpoint(
    consumer: TracesConsumer,
    *,
    max_body_bytes: int,
    tenant_for: TenantResolver,
    metrics: IngestMetrics | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """Build the Starlette endpoint for ``POST /v1/traces``."""

    async def export_traces(request: Request) -> Response:
        """
        summary: OTLP/HTTP trace export (ExportTraceServiceRequest as protobuf or JSON, optionally gzip/deflate)
        requestBody:
          required: true
          content:
            application/x-protobuf: {schema: {type: string, format: binary}}
            application/json: {schema: {type: object, properties: {resourceSpans: {type: array, items: {type: object}}}}}
        responses:
          200: {description: "ExportTraceServiceResponse; partial_success names rejected spans and warnings"}
          400: {description: "Malformed body (google.rpc.Status)"}
          413: {description: Body over max_body_bytes.}
          415: {description: Unsupported content type or encoding.}
          429: {description: "Writer queue full: retry after Retry-After seconds"}
          503: {description: "Store unavailable: retry after Retry-After seconds"}
        """
        return await _export(request, consumer, "ExportTraceServiceRequest", encode_response,
                             max_body_bytes, tenant_for, metrics)

    return export_traces


def metrics_endpoint(
    consumer: TracesConsumer,
    *,
    max_body_bytes: int,
    tenant_for: TenantResolver,
    metrics: IngestMetrics | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """Build the Starlette endpoint for ``POST /v1/metrics`` (same answers as traces)."""

    async def export_metrics(request: Request) -> Response:
        """
        summary: OTLP/HTTP metrics export (ExportMetricsServiceRequest as protobuf or JSON, optionally gzip/deflate)
        requestBody:
          required: true
          content:
            application/x-protobuf: {schema: {type: string, format: binary}}
            application/json: {schema: {type: object, properties: {resourceMetrics: {type: array, items: {type: object}}}}}
        responses:
          200: {description: "ExportMetricsServiceResponse; partial_success counts rejected data points (e.g. past the series limit)"}
          400: {description: "Malformed body (google.rpc.Status)"}
          413: {description: Body over max_body_bytes.}
          415: {description: Unsupported content type or encoding.}
          429: {description: "Writer queue full: retry after Retry-After seconds"}
          503: {description: "Store unavailable: retry after Retry-After seconds"}
        """
        return await _export(request, consumer, "ExportMetricsServiceRequest", encode_metrics_response,
                             max_body_bytes, tenant_for, metrics)

    return export_metrics


async def _export(
    request: Request,
    consumer: TracesConsumer,
    message: str,
    encode: Callable[[int, str, Encoding], bytes],
    max_body_bytes: int,
    tenant_for: TenantResolver,
    metrics: IngestMetrics | None,
) -> Response:
    """One OTLP/HTTP export: read and check the body, hand it to ``consumer``, answer with
    ``encode``'s response (or the refusal OTLP exporters understand)."""
    started = time.perf_counter()
    encoding: Encoding = "json"
    try:
        encoding = media_type(request.headers.get("content-type"))
        body = await _read_body(request, max_body_bytes)
        if not body:
            raise PermanentError(f"request body is empty; expected an {message}")
        export = EncodedExport(body, encoding, request.headers.get("content-encoding"))
        result = await consumer.consume(export, tenant_for(request))
    except AisreError as error:
        return _refuse(error, encoding, metrics)
    if metrics is not None:
        metrics.requests.labels("http", encoding, "200").inc()
        metrics.latency.labels("http").observe(time.perf_counter() - started)
    return Response(encode(result.rejected, result.message, encoding), status_code=200, media_type=CONTENT_TYPES[encoding])


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse(error: AisreError, encoding: Encoding, metrics: IngestMetrics | None) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, RetryableError):
        status = 429 if error.overloaded else 503
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
        if metrics is not None:
            metrics.refused.labels(error.reason).inc()
    elif isinstance(error, UnsupportedMediaType):
        status = 415
    elif isinstance(error, PayloadTooLarge):
        status = 413
    else:
        status = 400
    if metrics is not None:
        metrics.requests.labels("http", encoding, str(status)).inc()
    if status >= 500:
        log.warning("refused export: %s", error.message)
    return Response(
        encode_status(error, encoding), status_code=status, headers=headers, media_type=CONTENT_TYPES[encoding]
    )
