"""The traces consumer receivers are handed: decode and normalize (in worker processes),
then commit through the store's single writer.

Decoding and flattening are pure-Python CPU work bound by the GIL, so they run in a
pool of processes and come back as Arrow IPC; the server's own process only moves
bytes and waits for commits. With ``workers=0`` everything runs in-process (tests,
tiny deployments).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import threading
import time
from concurrent.futures import Future
from typing import Protocol

import pyarrow as pa

from aisre.core.errors import RetryableError
from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import EncodedExport, IngestResult
from aisre.normalize.spans import FlatBatch, flatten
from aisre.receive.otlp_decode import decode_export


class SpanSink(Protocol):
    def submit_spans(self, table: pa.Table) -> Future[int]: ...


def decode_and_flatten(export: EncodedExport, tenant: str, max_body_bytes: int) -> FlatBatch:
    """Decode one export request and normalize its spans."""
    request = decode_export(export, max_body_bytes)
    return flatten(request, tenant, time.time_ns())


def _work(export: EncodedExport, tenant: str, max_body_bytes: int) -> tuple[bytes, int, list[str]]:
    # Runs in a worker process: the Arrow table travels back as IPC bytes.
    batch = decode_and_flatten(export, tenant, max_body_bytes)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.table.schema) as writer:
        writer.write_table(batch.table)
    return sink.getvalue().to_pybytes(), batch.rejected, batch.reasons


def _warm(_: int) -> bool:
    return True


class SpanIngest:
    """TracesConsumer: answers only after the accepted spans are committed."""

    def __init__(
        self,
        sink: SpanSink,
        metrics: IngestMetrics | None = None,
        *,
        workers: int = 0,
        max_body_bytes: int = 16 * 1024 * 1024,
        max_pending: int | None = None,
        retry_after_s: float = 1.0,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._retry_after = retry_after_s
        self._workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = self._start_pool()
        # Requests waiting for a decoder hold their bodies in memory: bound them.
        self._max_pending = max_pending if max_pending is not None else max(4, 4 * workers)
        self._pending = 0
        self._lock = threading.Lock()

    async def consume(self, export: EncodedExport, tenant: str) -> IngestResult:
        """Decode and normalize ``export``, then wait for its durable commit."""
        with self._lock:
            if self._pending >= self._max_pending:
                if self._metrics is not None:
                    self._metrics.refused.labels("decoders_busy").inc()
                raise RetryableError(
                    f"all decoders are busy ({self._pending} requests waiting); retry later",
                    self._retry_after,
                )
            self._pending += 1
        try:
            batch = await self._decode(export, tenant)
        finally:
            with self._lock:
                self._pending -= 1
        if batch.accepted:
            # submit() raises RetryableError at once when the writer's queue is full.
            await asyncio.wrap_future(self._sink.submit_spans(batch.table))
        if self._metrics is not None:
            self._metrics.spans.labels("accepted").inc(batch.accepted)
            self._metrics.spans.labels("rejected").inc(batch.rejected)
        return IngestResult(accepted=batch.accepted, rejected=batch.rejected, message=batch.message())

    async def _decode(self, export: EncodedExport, tenant: str) -> FlatBatch:
        if self._pool is None:
            return decode_and_flatten(export, tenant, self._max_body)
        loop = asyncio.get_running_loop()
        try:
            ipc, rejected, reasons = await loop.run_in_executor(
                self._pool, _work, export, tenant, self._max_body
            )
        except concurrent.futures.BrokenExecutor:
            # A decoder died (e.g. killed by the OOM killer): replace the pool, let the sender retry.
            self._pool = self._start_pool()
            raise RetryableError("a decoder process died; retry", self._retry_after, overloaded=False) from None
        table = pa.ipc.open_stream(ipc).read_all()
        return FlatBatch(table=table, rejected=rejected, reasons=reasons)

    def _start_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn, not fork: the parent has DuckDB and writer threads running.
        pool = concurrent.futures.ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn")
        )
        list(pool.map(_warm, range(self._workers)))
        return pool

    def close(self) -> None:
        """Stop the decoder processes. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
