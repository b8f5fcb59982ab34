"""OTLP/gRPC ``TraceService/Export`` with the same semantics as OTLP/HTTP.

grpcio's asyncio server runs on its own thread and event loop, so the HTTP side's
loop (uvicorn) and gRPC never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from aisre.core.auth import Forbidden, Unauthenticated
from aisre.core.errors import AisreError, RetryableError
from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import EncodedExport, TracesConsumer
from aisre.receive.status import status_message

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}


# Looks the caller's tenant up from request metadata (lower-case names); raises
# Unauthenticated/Forbidden for a missing, unknown or ingest-less key.
MetadataTenant = Callable[[Callable[[str], str | None]], str]


class _TraceService:
    def __init__(self, consumer: TracesConsumer, tenant_for: MetadataTenant, metrics: IngestMetrics | None) -> None:
        self._consumer = consumer
        self._tenant_for = tenant_for
        self._metrics = metrics

    def handler(self) -> grpc.GenericRpcHandler:
        """TraceService/Export taking raw bytes, so a corrupt message is our
        INVALID_ARGUMENT with a reason instead of grpc's UNKNOWN."""
        return grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self.export,
                    response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
                )
            },
        )

    async def export(self, body: bytes, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        """Decode, hand to the consumer, answer with partial success or a status."""
        started = time.perf_counter()
        metadata = {str(k).lower(): str(v) for k, v in (context.invocation_metadata() or ())}
        try:
            tenant = self._tenant_for(metadata.get)
        except (Unauthenticated, Forbidden) as error:
            code = grpc.StatusCode.UNAUTHENTICATED if isinstance(error, Unauthenticated) else grpc.StatusCode.PERMISSION_DENIED
            if self._metrics is not None:
                self._metrics.requests.labels("grpc", "protobuf", code.name).inc()
            await context.abort(code, error.message)
            raise
        try:
            result = await self._consumer.consume(EncodedExport(body, "protobuf"), tenant)
        except AisreError as error:
            status = status_message(error)
            if self._metrics is not None:
                self._metrics.requests.labels("grpc", "protobuf", grpc.StatusCode(_CODES[status.code]).name).inc()
                if isinstance(error, RetryableError):
                    self._metrics.refused.labels(error.reason).inc()
            # RetryInfo travels in grpc-status-details-bin, where OTel exporters look for it.
            await context.abort(
                _CODES[status.code],
                error.message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
            raise  # abort raises; this line only satisfies type checkers
        response = trace_service_pb2.ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.rejected_spans = result.rejected
            response.partial_success.error_message = result.message
        if self._metrics is not None:
            self._metrics.requests.labels("grpc", "protobuf", "OK").inc()
            self._metrics.latency.labels("grpc").observe(time.perf_counter() - started)
        return response


class _MetricsService(_TraceService):
    """MetricsService/Export: the same tenancy and error answers as traces."""

    def handler(self) -> grpc.GenericRpcHandler:
        """MetricsService/Export taking raw bytes (a corrupt message is INVALID_ARGUMENT)."""
        return grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.metrics.v1.MetricsService",
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self.export_metrics,
                    response_serializer=metrics_service_pb2.ExportMetricsServiceResponse.SerializeToString,
                )
            },
        )

    async def export_metrics(self, body: bytes, context: Any) -> metrics_service_pb2.ExportMetricsServiceResponse:
        """Decode, hand to the consumer, answer with partial success or a status."""
        traced = await self.export(body, context)
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if traced.HasField("partial_success"):
            response.partial_success.rejected_data_points = traced.partial_success.rejected_spans
            response.partial_success.error_message = traced.partial_success.error_message
        return response


class GrpcReceiver:
    """Owns the gRPC server thread; ``start`` returns once it listens, ``stop`` is idempotent."""

    def __init__(
        self,
        consumer: TracesConsumer,
        *,
        host: str,
        port: int,
        tenant_for: MetadataTenant,
        max_message_bytes: int,
        metrics: IngestMetrics | None = None,
        metrics_consumer: TracesConsumer | None = None,
    ) -> None:
        self._service = _TraceService(consumer, tenant_for, metrics)
        self._metrics_service = (
            _MetricsService(metrics_consumer, tenant_for, metrics) if metrics_consumer is not None else None
        )
        self._address = f"{host}:{port}"
        self._max = max_message_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._grace = 5.0
        self.port = port

    def start(self) -> None:
        """Start serving on a background thread; raise if the port cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="aisre-grpc", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surface bind errors to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max),
                ("grpc.so_reuseport", 0),
            ]
        )
        handlers = [self._service.handler()]
        if self._metrics_service is not None:
            handlers.append(self._metrics_service.handler())
        server.add_generic_rpc_handlers(tuple(handlers))
        bound = server.add_insecure_port(self._address)
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {self._address}")
        self.port = bound
        await server.start()
        self._server = server
        self._stopping = asyncio.Event()
        self._ready.set()
        # Stop from inside the serving task: grpc.aio's stop() driven from another
        # thread through run_coroutine_threadsafe does not finish.
        await self._stopping.wait()
        await server.stop(self._grace)

    def stop(self, grace: float = 5.0) -> None:
        """Finish in-flight exports (up to ``grace`` seconds) and stop."""
        loop, server, stopping = self._loop, self._server, self._stopping
        if loop is None or server is None or stopping is None or loop.is_closed():
            return
        self._server = None
        self._grace = grace
        try:
            loop.call_soon_threadsafe(stopping.set)
        except RuntimeError:  # loop already closed
            return
        if self._thread is not None:
            self._thread.join(grace + 5)
