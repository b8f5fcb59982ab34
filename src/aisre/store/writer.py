"""One writer thread per database, fed by a bounded queue (datasette's shape).

Requests hand in Arrow batches and wait on a future; the writer drains whatever has
queued up and commits it as one transaction (group commit), then answers every
waiting request. A 2xx therefore always means committed. The queue is bounded in
spans: when it is full, :meth:`submit` refuses at once with a RetryableError rather
than letting memory grow.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from aisre.core.errors import RetryableError

log = logging.getLogger(__name__)

CommitFn = Callable[[list[Any]], Any]


@dataclass
class WriterStats:
    commits: int = 0
    spans_committed: int = 0
    refused_full: int = 0
    failed_commits: int = 0
    last_commit_seconds: float = 0.0
    # Where the writer thread's time goes: commits, and upkeep between them (rollups, expiry).
    commit_seconds_total: float = 0.0
    upkeep_seconds_total: float = 0.0


class _Stop:
    pass


_STOP = _Stop()


@dataclass
class _Call:
    """Run ``fn`` on the writer thread (it owns the write connection)."""

    fn: Callable[[], Any]
    future: Future[Any]


class Writer:
    """Serializes writes; ``commit`` runs on the writer thread with a list of batches."""

    def __init__(
        self,
        commit: CommitFn,
        max_queued_spans: int,
        max_commit_spans: int,
        max_wait_ms: int,
        retry_after_s: float = 1.0,
        name: str = "aisre-writer",
        tick: Callable[[], Any] | None = None,
        tick_interval_s: float = 1.0,
    ) -> None:
        self._tick = tick
        self._tick_interval = tick_interval_s
        self._last_tick = time.monotonic()
        self._commit = commit
        self._max_queued = max_queued_spans
        self._max_commit = max_commit_spans
        self._max_wait = max_wait_ms / 1000.0
        self._retry_after = retry_after_s
        self._queue: queue.SimpleQueue[tuple[Any, int, Future[int]] | _Call | _Stop] = queue.SimpleQueue()
        self._queued_spans = 0
        self._lock = threading.Lock()
        self._closed = False
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def queued_spans(self) -> int:
        return self._queued_spans

    @property
    def max_queued_spans(self) -> int:
        return self._max_queued

    def submit(self, batch: Any, rows: int) -> Future[int]:
        """Queue a batch of ``rows`` spans; the future resolves once committed, with the rows
        stored (fewer than ``rows`` when some were duplicates)."""
        with self._lock:
            if self._closed:
                raise RetryableError("the store is shutting down", self._retry_after, overloaded=False)
            # An empty queue always takes one batch, so an oversized batch is not refused forever.
            if self._queued_spans and self._queued_spans + rows > self._max_queued:
                self.stats.refused_full += 1
                raise RetryableError(
                    f"ingest queue is full ({self._queued_spans} spans waiting to be written); retry later",
                    self._retry_after,
                    overloaded=True,
                )
            self._queued_spans += rows
        future: Future[int] = Future()
        self._queue.put((batch, rows, future))
        return future

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the writer thread, between commits."""
        future: Future[Any] = Future()
        self._queue.put(_Call(fn, future))
        return future

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking batches, commit everything already accepted, then stop. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self._tick_interval if self._tick else None)
            except queue.Empty:
                self._maybe_tick(force=True)
                continue
            if isinstance(first, _Stop):
                break
            if isinstance(first, _Call):
                self._run_call(first)
                # Calls (metric commits, alert writes) can arrive more often than the tick
                # interval: the queue is then never idle, and upkeep must still run.
                self._maybe_tick()
                continue
            group = [first]
            rows = first[1]
            deadline = time.monotonic() + self._max_wait
            pending_calls: list[_Call] = []
            while rows < self._max_commit:
                timeout = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stopping = True
                    break
                if isinstance(item, _Call):
                    pending_calls.append(item)
                    continue
                group.append(item)
                rows += item[1]
            self._write(group, rows)
            for call in pending_calls:
                self._run_call(call)
            self._maybe_tick()

    def _run_call(self, call: _Call) -> None:
        try:
            call.future.set_result(call.fn())
        except Exception as exc:
            call.future.set_exception(exc)

    def _maybe_tick(self, force: bool = False) -> None:
        if self._tick is None:
            return
        now = time.monotonic()
        if not force and now - self._last_tick < self._tick_interval:
            return
        self._last_tick = now
        started = time.perf_counter()
        try:
            self._tick()
        except Exception:  # housekeeping must never stop the writer
            log.exception("writer housekeeping failed")
        finally:
            self.stats.upkeep_seconds_total += time.perf_counter() - started

    def _write(self, group: list[tuple[Any, int, Future[int]]], rows: int) -> None:
        started = time.perf_counter()
        try:
            stored = self._commit([batch for batch, _, _ in group])
        except Exception as exc:  # answer every waiter; the thread must live on
            self.stats.failed_commits += 1
            log.exception("commit of %d spans failed", rows)
            error = RetryableError(f"the store could not commit: {exc}", self._retry_after, overloaded=False)
            for _, _, future in group:
                future.set_exception(error)
        else:
            # A commit may store fewer rows than were sent (duplicates): it says how many per batch.
            counts = stored if isinstance(stored, list) and len(stored) == len(group) else [n for _, n, _ in group]
            self.stats.commits += 1
            self.stats.spans_committed += sum(counts)
            for (_, _, future), count in zip(group, counts, strict=True):
                future.set_result(count)
        finally:
            self.stats.last_commit_seconds = time.perf_counter() - started
            self.stats.commit_seconds_total += self.stats.last_commit_seconds
            with self._lock:
                self._queued_spans -= rows
