"""OTLP/gRPC ``TraceService/Export`` with the same semantics as OTLP/HTTP.

grpcio's asyncio server runs on its own thread and event loop, so the HTTP side's
loop (uvicorn) and gRPC never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from aisre.core.errors import AisreError, RetryableError
from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import TracesConsumer
from aisre.receive.status import status_message

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, consumer: TracesConsumer, tenant: str, metrics: IngestMetrics | None) -> None:
        self._consumer = consumer
        self._tenant = tenant
        self._metrics = metrics

    async def Export(  # noqa: N802 - the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        started = time.perf_counter()
        try:
            result = await self._consumer.consume(request, self._tenant)
        except AisreError as error:
            status = status_message(error)
            if self._metrics is not None:
                self._metrics.requests.labels("grpc", "protobuf", grpc.StatusCode(_CODES[status.code]).name).inc()
                if isinstance(error, RetryableError):
                    self._metrics.refused.labels("queue_full" if error.overloaded else "unavailable").inc()
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


class GrpcReceiver:
    """Owns the gRPC server thread; ``start`` returns once it listens, ``stop`` is idempotent."""

    def __init__(
        self,
        consumer: TracesConsumer,
        *,
        host: str,
        port: int,
        tenant: str,
        max_message_bytes: int,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._service = _TraceService(consumer, tenant, metrics)
        self._address = f"{host}:{port}"
        self._max = max_message_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
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
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self._service, server)
        bound = server.add_insecure_port(self._address)
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {self._address}")
        self.port = bound
        await server.start()
        self._server = server
        self._ready.set()
        await server.wait_for_termination()

    def stop(self, grace: float = 5.0) -> None:
        """Finish in-flight exports (up to ``grace`` seconds) and stop."""
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return
        self._server = None
        future = asyncio.run_coroutine_threadsafe(server.stop(grace), loop)
        try:
            future.result(grace + 5)
        except Exception:  # already stopping
            log.debug("grpc stop", exc_info=True)
        if self._thread is not None:
            self._thread.join(grace + 5)
