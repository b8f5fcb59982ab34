"""The metrics consumer receivers are handed: decode OTLP metrics off the event loop (in
the span decoders' processes when there are some), then fold the points, as one Arrow
table, into the store's minute series through its single writer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aisre.core.errors import RetryableError
from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import EncodedExport, IngestResult
from aisre.normalize.metrics import MetricBatch, flatten_metrics
from aisre.receive.otlp_decode import decode_metrics_export
from aisre.store.protocol import MetricSink

_T = TypeVar("_T")


class Decoders(Protocol):
    """Somewhere to run CPU-bound decoding off the event loop (``SpanIngest``'s process pool)."""

    def run_in_decoder(self, fn: Callable[..., _T], *args: Any) -> Awaitable[_T]: ...


def decode_metrics(export: EncodedExport, max_body_bytes: int, max_points: int = 1_000_000) -> MetricBatch:
    """Decode one ExportMetricsServiceRequest into a table of series points (unusable ones counted)."""
    return flatten_metrics(decode_metrics_export(export, max_body_bytes), max_points)


class MetricIngest:
    """MetricsConsumer: answers only after the accepted points are committed."""

    def __init__(
        self,
        sink: MetricSink,
        metrics: IngestMetrics | None = None,
        *,
        max_body_bytes: int = 16 * 1024 * 1024,
        # Requests decoding at once before the next is asked to retry: one Collector's
        # exporter sends 10 at a time by default (sending_queue.num_consumers), with room
        # for a second sender.
        max_pending: int = 16,
        retry_after_s: float = 1.0,
        max_points: int = 1_000_000,
        decoders: Decoders | None = None,
    ) -> None:
        self._sink = sink
        self._decoders = decoders
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._max_pending = max_pending
        self._retry_after = retry_after_s
        self._max_points = max_points
        self._pending = 0
        self._lock = threading.Lock()
        self.points_accepted = 0
        self.points_rejected = 0

    async def consume(self, export: EncodedExport, tenant: str) -> IngestResult:
        """Decode ``export`` and wait for its points' durable commit."""
        with self._lock:
            if self._pending >= self._max_pending:
                raise RetryableError(
                    f"all metric decoders are busy ({self._pending} requests waiting); retry later",
                    self._retry_after, reason="decoders_busy",
                )
            self._pending += 1
        try:
            # Decoding is CPU work: a decoder process (or a thread) keeps the event loop
            # answering meanwhile; the points come back as an Arrow table.
            if self._decoders is not None:
                batch = await self._decoders.run_in_decoder(decode_metrics, export, self._max_body, self._max_points)
            else:
                batch = await asyncio.to_thread(decode_metrics, export, self._max_body, self._max_points)
        finally:
            with self._lock:
                self._pending -= 1
        accepted = over = 0
        if batch.table.num_rows:
            columnar: Any = getattr(self._sink, "submit_metric_table", None)
            future = (columnar(tenant, batch.table) if columnar is not None
                      else self._sink.submit_metrics(tenant, batch.points))
            committed = await asyncio.wrap_future(future)
            accepted, over = committed.accepted, committed.over_limit
            if over:
                batch.refuse(over, "the tenant's metric series limit (max_metric_series) is reached, or a series "
                             "changed kind; points of known series are kept")
        with self._lock:
            self.points_accepted += accepted
            self.points_rejected += batch.rejected
        if self._metrics is not None:
            self._metrics.metric_points.labels("accepted").inc(accepted)
            if batch.rejected:
                self._metrics.metric_points.labels("rejected").inc(batch.rejected)
        return IngestResult(accepted=accepted, rejected=batch.rejected, message=batch.message())

    def close(self) -> None:
        """Nothing to stop: the decoders belong to the span ingest (or the default thread pool)."""
