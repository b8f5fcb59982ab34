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
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from aisre.core.errors import RetryableError
from aisre.core.metrics import IngestMetrics
from aisre.core.pipeline import EncodedExport, IngestResult
from aisre.normalize.journeys import JourneyRule
from aisre.normalize.prices import PriceCatalog
from aisre.normalize.redaction import ContentPolicy
from aisre.normalize.spans import DEFAULT_LIMITS, ContentCounts, FlatBatch, Limits, flatten
from aisre.receive.otlp_decode import decode_export_checked
from aisre.store.protocol import Prepare, SpanSink

log = logging.getLogger(__name__)
_T = TypeVar("_T")

@dataclass
class Prepared:
    """A decoded, normalized and store-prepared export request."""

    tables: tuple[pa.Table, ...]
    rejected: int
    reasons: list[str]
    warnings: list[str]
    content: ContentCounts

    @property
    def accepted(self) -> int:
        return int(self.tables[0].num_rows)


def decode_and_prepare(
    export: EncodedExport,
    tenant: str,
    max_body_bytes: int,
    prepare: Prepare,
    rules: tuple[JourneyRule, ...] = (),
    catalog: PriceCatalog | None = None,
    content: ContentPolicy | None = None,
    limits: Limits = DEFAULT_LIMITS,
    received_ns: int | None = None,
) -> Prepared:
    """Decode one export request, normalize its spans (priced with ``catalog``, the shipped
    one when None; content redacted or dropped as the tenant's policy says) and prepare
    them for the store; ``received_ns`` (default: now) pins the receive time (tests)."""
    content_filter = content.filter_for(tenant) if content is not None else None
    decoded = decode_export_checked(export, max_body_bytes)
    batch = flatten(
        decoded.request, tenant, time.time_ns() if received_ns is None else received_ns, rules, catalog,
        content=content_filter, limits=limits,
    )
    assert batch.traces is not None and batch.resources is not None and batch.scores is not None
    tables = prepare(batch.table, batch.traces, batch.resources, batch.scores) if batch.accepted else (batch.table,)
    # Spans refused while decoding (e.g. an OTLP/JSON attribute that is no AnyValue) first.
    return Prepared(tables, decoded.rejected + batch.rejected, decoded.reasons + batch.reasons, batch.warnings,
                    batch.content)


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _work(
    export: EncodedExport,
    tenant: str,
    max_body_bytes: int,
    prepare: Prepare,
    rules: tuple[JourneyRule, ...],
    catalog: PriceCatalog | None,
    content: ContentPolicy | None,
    limits: Limits,
) -> tuple[list[bytes], int, list[str], list[str], ContentCounts]:
    # Runs in a decoder process: Arrow tables travel back as IPC bytes.
    prepared = decode_and_prepare(export, tenant, max_body_bytes, prepare, rules, catalog, content, limits)
    return [_to_ipc(t) for t in prepared.tables], prepared.rejected, prepared.reasons, prepared.warnings, prepared.content


def _warm(_: int) -> bool:
    return True


def _exit_with_parent(parent: int) -> None:
    """Decoder initializer: leave when the server process is gone. A server killed with
    SIGKILL runs no shutdown, and its decoders would otherwise linger for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="aisre-parent-watch", daemon=True).start()


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
        journey_rules: tuple[JourneyRule, ...] = (),
        catalog_for: Callable[[str], PriceCatalog | None] | None = None,
        content: ContentPolicy | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._sink = sink
        # A tenant's prices (catalog file, overrides); None: the shipped catalog.
        self._catalog_for = catalog_for or (lambda tenant: None)
        self._rules = journey_rules
        self._content = content
        self._limits = limits
        self._metrics = metrics
        self._max_body = max_body_bytes
        self._retry_after = retry_after_s
        self._workers = workers
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        # Set while a replacement pool is being built off the event loop: requests are
        # refused with 503 + Retry-After meanwhile instead of waiting for it.
        self._rebuilder: threading.Thread | None = None
        self._closed = False
        self.pool_restarts = 0
        if workers > 0:
            self._pool = self._start_pool()
        # Requests waiting for a decoder hold their bodies in memory: bound them.
        self._max_pending = max_pending if max_pending is not None else max(4, 4 * workers)
        self._pending = 0
        # Spans an export request brings, on average (moving), to tell what decoding will queue.
        self._spans_per_request = 0.0

    async def consume(self, export: EncodedExport, tenant: str) -> IngestResult:
        """Decode and normalize ``export``, then wait for its durable commit."""
        with self._lock:
            if self._rebuilder is not None:
                raise self._restarting()
            if self._pending >= self._max_pending:
                raise RetryableError(
                    f"all decoders are busy ({self._pending} requests waiting); retry later",
                    self._retry_after, reason="decoders_busy",
                )
            # Refuse before decoding what the writer could not queue anyway: decoding is
            # most of ingest's CPU, and work thrown away after it starves the writer of the
            # same cores, so an overloaded server would commit less the harder it is pushed.
            queued = self._sink.queued_spans
            expected = queued + (self._pending + 1) * self._spans_per_request
            if queued and expected > self._sink.queue_capacity:
                raise RetryableError(
                    f"ingest queue is full ({queued} spans waiting to be written, "
                    f"{self._pending} requests being decoded); retry later",
                    self._retry_after, reason="queue_full",
                )
            self._pending += 1
        try:
            prepared = await self._decode(export, tenant)
        finally:
            with self._lock:
                self._pending -= 1
        with self._lock:
            seen = self._spans_per_request
            self._spans_per_request = prepared.accepted if not seen else seen + 0.1 * (prepared.accepted - seen)
        stored = 0
        if prepared.accepted:
            # submit_prepared() raises RetryableError at once when the writer's queue is full.
            stored = await asyncio.wrap_future(self._sink.submit_prepared(prepared.tables))
        if self._metrics is not None:
            # A span delivered again is acknowledged (the sender must not retry it) but
            # counted once: as accepted when first stored, as duplicate after.
            self._metrics.spans.labels("accepted").inc(stored)
            if prepared.accepted > stored:
                self._metrics.spans.labels("duplicate").inc(prepared.accepted - stored)
            self._metrics.spans.labels("rejected").inc(prepared.rejected)
            if prepared.accepted:
                counts = prepared.content
                self._metrics.count_content(tenant, counts.redacted, counts.dropped, counts.truncated)
        message = FlatBatch(prepared.tables[0], prepared.rejected, prepared.reasons, warnings=prepared.warnings).message()
        return IngestResult(accepted=prepared.accepted, rejected=prepared.rejected, message=message)

    async def _decode(self, export: EncodedExport, tenant: str) -> Prepared:
        catalog = self._catalog_for(tenant)
        pool = self._pool
        if self._workers <= 0:
            return decode_and_prepare(
                export, tenant, self._max_body, self._sink.prepare, self._rules, catalog, self._content, self._limits
            )
        payloads, rejected, reasons, warnings, content = await self._in_pool(
            pool, _work, export, tenant, self._max_body, self._sink.prepare, self._rules, catalog,
            self._content, self._limits,
        )
        tables = tuple(pa.ipc.open_stream(ipc).read_all() for ipc in payloads)
        return Prepared(tables, rejected, reasons, warnings, content)

    async def run_in_decoder(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a module-level ``fn(*args)`` in a decoder process (metric decoding shares the
        span decoders), or on a thread when there are none (``workers=0``)."""
        if self._workers <= 0:
            return await asyncio.to_thread(fn, *args)
        with self._lock:
            if self._rebuilder is not None:
                raise self._restarting()
        return await self._in_pool(self._pool, fn, *args)

    async def _in_pool(self, pool: concurrent.futures.ProcessPoolExecutor | None, fn: Callable[..., _T], *args: Any) -> _T:
        if pool is None:  # closed, or between a broken pool and its replacement
            raise self._restarting()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except concurrent.futures.BrokenExecutor:
            # A decoder died (e.g. killed by the OOM killer): this request's decode is lost
            # and nothing of it was committed, so the sender retries it.
            self._replace(pool)
            raise self._restarting("a decoder process died; retry") from None
        except RuntimeError:
            # The broken pool was shut down between taking it and submitting to it.
            if pool is self._pool:
                raise
            raise self._restarting() from None

    def _restarting(self, message: str = "decoder processes are restarting; retry") -> RetryableError:
        return RetryableError(message, self._retry_after, overloaded=False, reason="decoders_restarting")

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """Start one replacement of ``broken`` on a worker thread; every other request that
        saw the same pool break finds the replacement already under way."""
        with self._lock:
            if self._closed or self._pool is not broken or self._rebuilder is not None:
                return
            self._pool = None
            self._rebuilder = threading.Thread(
                target=self._rebuild, args=(broken,), name="aisre-decoder-rebuild", daemon=True
            )
            self._rebuilder.start()

    def _rebuild(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        # The broken pool has terminated its remaining processes; shutting it down joins
        # them, so old and new decoders are never alive together.
        broken.shutdown(wait=True, cancel_futures=True)
        delay = 0.1
        pool: concurrent.futures.ProcessPoolExecutor | None = None
        while not self._closed:
            try:
                pool = self._start_pool()
                break
            except (concurrent.futures.BrokenExecutor, OSError) as exc:
                # A decoder died while starting (memory still short?): back off and try again.
                log.warning("decoder pool failed to start (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        with self._lock:
            if self._closed:
                replacement, pool = pool, None
            else:
                replacement = None
                self._pool = pool
                self.pool_restarts += 1
            self._rebuilder = None
        if replacement is not None:
            replacement.shutdown(wait=True, cancel_futures=True)
        elif pool is not None:
            log.warning("a decoder process died; replaced the decoder pool (%d workers)", self._workers)

    def _start_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn, not fork: the parent has DuckDB and writer threads running.
        pool = concurrent.futures.ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent, initargs=(os.getpid(),),
        )
        try:
            list(pool.map(_warm, range(self._workers)))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return pool

    def close(self) -> None:
        """Stop the decoder processes. Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            rebuilder = self._rebuilder
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if rebuilder is not None:  # it shuts down whatever it was building
            rebuilder.join()

    def decoder_pids(self) -> list[int]:
        """Process ids of the current decoder pool (empty in-process or while it is replaced)."""
        pool = self._pool
        # The executor keeps its processes by pid; it has no public accessor.
        processes = getattr(pool, "_processes", None) if pool is not None else None
        return sorted(processes or {})
