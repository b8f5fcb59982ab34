"""The traces consumer receivers are handed: normalize, then commit through the store."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Protocol

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import IngestResult
from aisre.normalize.spans import flatten


class SpanSink(Protocol):
    def submit_spans(self, table: pa.Table) -> Future[int]: ...


class SpanIngest:
    """TracesConsumer: answers only after the accepted spans are committed."""

    def __init__(self, sink: SpanSink, metrics: IngestMetrics | None = None) -> None:
        self._sink = sink
        self._metrics = metrics

    async def consume(self, request: ExportTraceServiceRequest, tenant: str) -> IngestResult:
        """Normalize ``request`` and wait for its durable commit."""
        batch = flatten(request, tenant)
        if batch.accepted:
            # submit() raises RetryableError at once when the queue is full.
            await asyncio.wrap_future(self._sink.submit_spans(batch.table))
        if self._metrics is not None:
            self._metrics.spans.labels("accepted").inc(batch.accepted)
            self._metrics.spans.labels("rejected").inc(batch.rejected)
        return IngestResult(accepted=batch.accepted, rejected=batch.rejected, message=batch.message())
