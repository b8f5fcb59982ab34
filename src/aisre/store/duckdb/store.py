"""The embedded store: one DuckDB file, one writer thread, a pool of read cursors."""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from importlib import resources
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from aisre.core.errors import NotFound, PermanentError, RetryableError
from aisre.core.model import RunQuery, SliRule, TimeRange
from aisre.core.rows import (
    AlertEpisode,
    JourneyRun,
    JourneySummary,
    MetricMinuteRow,
    MetricSeriesRow,
    MetricSeriesStats,
    PlatformScoreRow,
    TraceRun,
)
from aisre.core.schema import (
    RESOURCE_ARROW_SCHEMA,
    SCORE_ARROW_SCHEMA,
    SPAN_ARROW_SCHEMA,
    SPAN_COLUMN_NAMES,
)
from aisre.core.series import MetricPoint
from aisre.normalize.metrics import KNOWN_METRICS, points_table
from aisre.normalize.runs import trace_partials_of
from aisre.store.changes import MinuteJournal
from aisre.store.duckdb import metric_copy
from aisre.store.duckdb.catalog import CatalogQueries
from aisre.store.duckdb.check import CheckQueries
from aisre.store.duckdb.control import ControlTables
from aisre.store.duckdb.cost import DuckDBCost
from aisre.store.duckdb.gate import GateQueries
from aisre.store.duckdb.incidents import IncidentTables
from aisre.store.duckdb.jobs import deadlines, next_deadline, passed_minutes
from aisre.store.duckdb.metrics import METRIC_SLI_KINDS, MetricTables, folded_minutes
from aisre.store.duckdb.platform_scores import (
    is_platform_rule,
    last_of_each_key,
    put_platform_scores,
    read_platform_scores,
)
from aisre.store.duckdb.policy import PolicyTables, expire_policy_step
from aisre.store.duckdb.retention import ExpiryStats, duplicate_keys, expire_rollups, expire_step
from aisre.store.duckdb.rollups import MINUTE_NS, minute_of, ranges, rebuild, rebuild_slo_minutes
from aisre.store.duckdb.traces import INSERT_TRACES, MERGE_TRACES
from aisre.store.metric_fold import MetricCommit
from aisre.store.protocol import ExportedMinutes, ExportedTraces
from aisre.store.retention import DAY_NS, check_days
from aisre.store.writer import Writer, WriterStats

log = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")  # table and column names a copy may name


def prepare_batch(
    spans: pa.Table, traces: pa.Table, resources: pa.Table, scores: pa.Table | None = None
) -> tuple[pa.Table, ...]:
    """What the writer commits for a batch: spans, per-trace partials, resources, scores."""
    return spans, traces, resources, scores if scores is not None else SCORE_ARROW_SCHEMA.empty_table()


class RecentKeys:
    """Trace keys the writer inserted lately with when each was first received, in two
    generations so memory stays bounded."""

    def __init__(self, per_generation: int = 250_000) -> None:
        self._limit = per_generation
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._current or key in self._previous

    def first_received(self, key: str) -> int | None:
        """When the trace was first received, if it is remembered."""
        found = self._current.get(key)
        return found if found is not None else self._previous.get(key)

    def add_all(self, keys: list[str], received: list[int] | None = None) -> None:
        for key, at in zip(keys, received or [0] * len(keys), strict=True):
            known = self.first_received(key)
            self._current[key] = at if known is None else min(known, at)
        if len(self._current) > self._limit:
            self._previous, self._current = self._current, {}


# What the server runs with unless db_memory_limit says otherwise (core/settings.py).
DEFAULT_MEMORY_LIMIT = "1GB"
# The traces (tenant, trace_id) primary key, DuckDB 2.0: 30 bytes a trace measured under
# bench/soak.py, 51 on 4M md5 hex ids, 60 on 10M binary ids; size for the upper end.
INDEX_BYTES_PER_TRACE = 60
INDEX_WARN_SHARE = 0.6  # of db_memory_limit: warn while there is room to act
MEMORY_CHECK_INTERVAL_S = 60.0
# Most metric points committed in one transaction when requests queue up for the writer.
METRIC_COMMIT_POINTS = 100_000
# A metric request waiting for the writer: tenant, decoded points, and its answer.
_MetricRequest = tuple[str, pa.Table, Future[MetricCommit]]
_UNITS = {"bytes": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
          "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}


def _parse_bytes(text: str) -> int:
    """DuckDB's rendering of a size ("953.6 MiB") as bytes."""
    number, _, unit = text.strip().partition(" ")
    return int(float(number) * _UNITS.get(unit.strip(), 1))


def _index_advice(memory: dict[str, int]) -> str:
    mib = 1024 * 1024
    return (
        f"its indexes hold {memory['index_bytes'] / mib:,.0f} MiB of db_memory_limit "
        f"({memory['limit_bytes'] / mib:,.0f} MiB) and must fit whole (up to about "
        f"{INDEX_BYTES_PER_TRACE} bytes per stored trace): raise db_memory_limit"
    )


def check_memory_limit(value: str) -> None:
    """Refuse a ``db_memory_limit`` DuckDB cannot parse, naming the setting (not a DuckDB traceback)."""
    with duckdb.connect(":memory:") as probe:
        try:
            probe.execute(f"SET memory_limit = '{value.replace(chr(39), chr(39) * 2)}'")
        except duckdb.Error:
            raise PermanentError(
                f"setting 'db_memory_limit' must be a memory size such as 1GB or 512MB, got {value!r}"
            ) from None


_INSERT_RESOURCES = """
INSERT INTO resources
SELECT DISTINCT ON (tenant, resource_id) tenant, resource_id, resource FROM new_resources
ON CONFLICT DO NOTHING
"""

_RUN_COLUMNS = """
    trace_id, journey, outcome, failure_reason, run_start_ns, duration_ns, has_root,
    root_name, root_service, span_count, error_spans, llm_calls, llm_errors, tool_calls,
    retrieval_calls, agent_steps, retries, input_tokens, output_tokens, cached_input_tokens,
    cost_usd, service_version, prompt_name, prompt_version, environment, models, user_id,
    session_id
"""


def _trace_keys(table: pa.Table) -> list[str]:
    """One "tenant\0trace_id" key per row of ``table``."""
    return [
        f"{t}\x00{i}"
        for t, i in zip(table.column("tenant").to_pylist(), table.column("trace_id").to_pylist(), strict=True)
    ]


def _touch(touched: dict[str, set[int]], rows: Iterable[tuple[str, bool, int | None]]) -> None:
    """Add the start minute of every rooted run in ``rows`` to ``touched``."""
    for tenant, has_root, root_start_ns in rows:
        if has_root and root_start_ns is not None:
            touched.setdefault(tenant, set()).add(minute_of(root_start_ns))


class _Where:
    """A conjunction of SQL conditions with their parameters; a condition whose value is
    None is left out, so optional filters read as one line each."""

    def __init__(self, clause: str, *params: Any) -> None:
        self.clauses: list[str] = [clause]
        self.params: list[Any] = list(params)

    def add(self, clause: str, *params: Any) -> None:
        if params and all(p is None or p == "" for p in params):
            return
        self.clauses.append(clause)
        self.params.extend(params)


class DuckDBStore(ControlTables, GateQueries, CheckQueries, CatalogQueries, PolicyTables):
    """Store backed by one DuckDB file. Writes go through :class:`Writer`; reads use cursors."""

    backend = "duckdb"

    def __init__(
        self,
        path: str,
        *,
        max_queued_spans: int = 200_000,
        max_commit_spans: int = 100_000,
        max_wait_ms: int = 5,
        retry_after_s: float = 1.0,
        read_pool_size: int = 4,
        memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
        checkpoint_mb: int | None = None,
        rollup_interval_ms: int = 1000,
        retention_days: float = 14,
        retention_overrides: dict[str, float] | None = None,
        rollup_retention_days: float = 400,
        retention_interval_s: float = 0,
        retention_step_traces: int = 5000,
        dedup_window_s: float = 3600,
        max_metric_series: int = 10_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = path
        # Raw spans expire per tenant; rollups much later; expiry is off at 0 days.
        self._retention_days = float(retention_days)
        self._retention_file = dict(retention_overrides or {})
        self._rollup_retention_days = float(rollup_retention_days)
        self._retention_interval_s = float(retention_interval_s)
        self._step_traces = max(1, int(retention_step_traces))
        self._dedup_window_ns = int(dedup_window_s * 10**9)
        self._clock = clock
        self.expiry = ExpiryStats()
        self._expiry_due = 0.0  # monotonic time of the next expiry pass
        self._expiry_queue: list[str] = []  # tenants with expired traces left in this pass
        self._policy_expiry_left = False  # policy records past rollup retention left in this pass
        self._oldest_span_ns: int | None = None
        self.duplicate_spans = 0
        self._received: list[int] = []
        config: dict[str, Any] = {}
        if memory_limit:
            config["memory_limit"] = memory_limit
        if checkpoint_mb:
            # Checkpoints recompress the tables; at the 16 MiB default they dominate
            # commit time under steady ingest.
            config["checkpoint_threshold"] = f"{checkpoint_mb}MB"
        self._conn = duckdb.connect(path, config=config)
        self._migrate()
        self._retention_table = {
            str(t): float(d) for t, d in self._conn.execute("SELECT tenant, days FROM retention").fetchall()
        }
        self._expired_before = {
            str(t): int(n) for t, n in self._conn.execute("SELECT tenant, expired_before_ns FROM expiry_marks").fetchall()
        }
        self._readers: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue()
        for _ in range(max(1, read_pool_size)):
            self._readers.put(self._conn.cursor())
        self._recent = RecentKeys()
        # Minutes whose rollups are stale: filled by commits, emptied by refresh_rollups.
        self._touched: dict[str, set[int]] = {}
        self._dirty: dict[str, set[int]] = {}
        self._dirty_lock = threading.Lock()
        self._rollups_on = rollup_interval_ms > 0
        self._deadline_checked_ns: int | None = None  # deadlines due up to here are queued
        self._sli_rules: dict[str, list[SliRule]] = {}
        self._slo_changes = MinuteJournal()
        self._memory_checked = 0.0
        self._writer = Writer(
            self._commit,
            max_queued_spans=max_queued_spans,
            max_commit_spans=max_commit_spans,
            max_wait_ms=max_wait_ms,
            retry_after_s=retry_after_s,
            tick=self._housekeeping,
            tick_interval_s=(rollup_interval_ms if rollup_interval_ms > 0 else 1000) / 1000,
        )
        self._retry_after_s = retry_after_s
        self._metric_tables = MetricTables(self._conn, max(0, int(max_metric_series)))
        # Metric requests waiting for the writer; one writer call commits all of them.
        self._metric_lock = threading.Lock()
        self._metric_pending: list[_MetricRequest] = []
        self._metric_draining = False
        self._closed = False
        self._close_lock = threading.Lock()
        self.incidents = IncidentTables(self)
        self.cost = DuckDBCost(self)

    # -- lifecycle -----------------------------------------------------------------

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        folder = resources.files("aisre.store.duckdb").joinpath("migrations")
        scripts = sorted(
            (entry.name, entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".sql")
        )
        for name, sql in scripts:
            version = int(name.split("_", 1)[0])
            if version in done:
                continue
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        with self._reader() as cur:
            row = cur.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        """Commit everything accepted, checkpoint and close. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._writer.close()
        with contextlib.suppress(duckdb.Error):
            self.refresh_rollups()
        with contextlib.suppress(duckdb.Error):
            self._conn.execute("CHECKPOINT")
        self._conn.close()

    # -- writes --------------------------------------------------------------------

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats

    @property
    def queued_spans(self) -> int:
        return self._writer.queued_spans

    @property
    def queue_capacity(self) -> int:
        return self._writer.max_queued_spans

    # A module-level function, so decoder processes can run it (see ingest/pipeline.py).
    prepare = staticmethod(prepare_batch)

    def submit_prepared(self, prepared: tuple[pa.Table, ...]) -> Future[int]:
        """Queue a prepared batch (spans, trace partials); resolves once committed."""
        return self._writer.submit(prepared, prepared[0].num_rows)

    def submit_spans(self, spans: pa.Table, resources: pa.Table, scores: pa.Table | None = None) -> Future[int]:
        """Queue normalized spans and their resources; resolves once committed."""
        return self.submit_prepared(prepare_batch(spans, trace_partials_of(spans), resources, scores))

    def submit_metrics(self, tenant: str, points: list[MetricPoint]) -> Future[MetricCommit]:
        """Fold OTLP metric points into the tenant's minute series; resolves once committed,
        saying how many points the series limit refused."""
        return self.submit_metric_table(tenant, points_table(points))

    def submit_metric_table(self, tenant: str, points: pa.Table) -> Future[MetricCommit]:
        """Fold decoded metric points (an Arrow table, normalize.metrics.METRIC_POINTS_SCHEMA)
        into the tenant's minute series; resolves once committed."""
        if self._writer.queued_spans >= self._writer.max_queued_spans:
            raise RetryableError(
                f"ingest queue is full ({self._writer.queued_spans} spans waiting to be written); retry later",
                self._retry_after_s, overloaded=True, reason="queue_full",
            )
        future: Future[MetricCommit] = Future()
        with self._metric_lock:
            self._metric_pending.append((tenant, points, future))
            drain = not self._metric_draining
            self._metric_draining = True
        if drain:
            self._writer.call(self._commit_metrics)
        return future

    def _commit_metrics(self) -> None:
        # Every request queued meanwhile goes in one transaction per tenant (up to
        # METRIC_COMMIT_POINTS points), each answered with what it alone would have had.
        with self._metric_lock:
            pending, self._metric_pending = self._metric_pending, []
            self._metric_draining = False
        chunks: dict[str, list[list[_MetricRequest]]] = {}
        for item in pending:
            tenant_chunks = chunks.setdefault(item[0], [[]])
            last = tenant_chunks[-1]
            if last and sum(t.num_rows for _, t, _ in last) + item[1].num_rows > METRIC_COMMIT_POINTS:
                tenant_chunks.append(last := [])
            last.append(item)
        for tenant_chunks in chunks.values():
            for chunk in tenant_chunks:
                self._commit_metric_group(chunk)

    def _commit_metric_group(self, group: list[_MetricRequest]) -> None:
        tenant = group[0][0]
        try:
            results = self._metric_tables.commit_many(tenant, [table for _, table, _ in group])
        except Exception as exc:
            if len(group) > 1:  # one request's fault must not fail the others: each on its own
                for item in group:
                    self._commit_metric_group([item])
                return
            group[0][2].set_exception(exc)
            return
        minutes = set().union(*(r.minutes for r in results))
        if minutes and any(r.kind in METRIC_SLI_KINDS for r in self._sli_rules.get(tenant, [])):
            self._mark_dirty({tenant: minutes})
        for (_, _, future), result in zip(group, results, strict=True):
            future.set_result(result)

    def put_slo_minutes(self, tenant: str, slo: str, start_ns: int, end_ns: int, rows: list[tuple[int, int, int]]) -> None:
        """Replace an externally counted SLO's (minute_ns, good, total) rows in [start_ns, end_ns)
        (SLIs read from Prometheus; the rollups never recount them)."""
        self._writer.call(lambda: self._put_slo_minutes(tenant, slo, start_ns, end_ns, rows)).result(600)

    def _put_slo_minutes(self, tenant: str, slo: str, start_ns: int, end_ns: int, rows: list[tuple[int, int, int]]) -> None:
        conn = self._conn
        kept = [r for r in rows if start_ns <= r[0] < end_ns and r[2] > 0]
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute("DELETE FROM slo_minutes WHERE tenant = ? AND slo = ? AND minute_ns >= ? AND minute_ns < ?",
                         [tenant, slo, start_ns, end_ns])
            if kept:
                conn.register("put_minutes", pa.table({
                    "tenant": pa.array([tenant] * len(kept), pa.string()), "slo": pa.array([slo] * len(kept), pa.string()),
                    "minute_ns": pa.array([r[0] for r in kept], pa.int64()),
                    "good": pa.array([r[1] for r in kept], pa.int64()), "total": pa.array([r[2] for r in kept], pa.int64()),
                }))
                try:
                    conn.execute("INSERT INTO slo_minutes SELECT * FROM put_minutes")
                finally:
                    conn.unregister("put_minutes")
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        small = end_ns - start_ns <= 10_000 * MINUTE_NS
        self._slo_changes.record(tenant, set(range(minute_of(start_ns), end_ns, MINUTE_NS)) if small else None)

    def compact_metrics(self) -> int:
        """Fold every metric minute's appended rows into one now (tests, benchmarks)."""
        return int(self._writer.call(lambda: self._metric_tables.compact(2**62, everything=True)).result(600))

    def metric_series(self, tenant: str, metric: str | None = None) -> list[dict[str, Any]]:
        """The tenant's series (name, labels, kind, unit, first seen, and what a recognised
        metric such as gen_ai.client.token.usage measures), by name."""
        w = _Where("tenant = ?", tenant)
        w.add("metric = ?", metric)
        rows = self._rows(
            f"SELECT series_id, metric, labels, kind, unit, first_ns, last_ns FROM metric_series "
            f"WHERE {' AND '.join(w.clauses)} ORDER BY metric, labels",
            w.params,
        )
        for row in rows:
            row["meaning"] = KNOWN_METRICS.get(row["metric"], (None, None))[0]
        return rows

    def metric_series_stats(self, tenant: str, series_ids: list[int]) -> list[MetricSeriesStats]:
        """First and last kept minute and points of each of ``series_ids`` that has minutes, by id."""
        if not series_ids:
            return []
        rows = self._rows(
            "SELECT series_id, min(minute_ns) AS first_minute_ns, max(minute_ns) AS last_minute_ns, "
            "sum(points) AS points FROM metric_minutes WHERE tenant = ? AND series_id IN (SELECT unnest(?::BIGINT[])) "
            "GROUP BY series_id ORDER BY series_id",
            [tenant, [int(i) for i in series_ids]],
        )
        return [MetricSeriesStats(series_id=int(r["series_id"]), first_minute_ns=int(r["first_minute_ns"]),
                                  last_minute_ns=int(r["last_minute_ns"]), points=int(r["points"])) for r in rows]

    def metric_minutes(self, tenant: str, series_ids: list[int], start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Minute rows of the given series in [start_ns, end_ns), by series and minute."""
        with self._reader() as cur:
            folded = folded_minutes(cur, tenant, series_ids, start_ns, end_ns)
        return [
            {"series_id": sid, "minute_ns": minute, "value": a.value, "points": a.points, "min": a.min, "max": a.max,
             "last": a.last, "sum": a.sum, "bounds": list(a.bounds) if a.bounds is not None else None,
             "buckets": a.buckets}
            for sid, minute, a in folded
        ]

    def _commit(self, batches: list[tuple[pa.Table, ...]]) -> list[int]:
        spans = [b[0] for b in batches]
        parts = [b[1] for b in batches]
        resources = pa.concat_tables([b[2] for b in batches])
        scores = pa.concat_tables([b[3] for b in batches])
        try:
            return self._transaction(spans, parts, resources, scores, trust_recent=True)
        except duckdb.ConstraintException:
            # A trace older than the recent-id memory got a late span: merge everything.
            return self._transaction(spans, parts, resources, scores, trust_recent=False)

    def _housekeeping(self) -> None:
        """Writer-thread upkeep between commits: rollups, one expiry step, and a memory
        check a minute."""
        if self._rollups_on:
            self.refresh_rollups()
        # Minutes of metric series close two minutes after their time: fold their rows.
        self._metric_tables.compact(self._clock() - 2 * MINUTE_NS)
        if self._retention_interval_s > 0 and (self._expiry_queue or time.monotonic() >= self._expiry_due):
            self._expire_one_step()
        now = time.monotonic()
        if now - self._memory_checked >= MEMORY_CHECK_INTERVAL_S:
            self._memory_checked = now
            memory = self.memory()
            if memory["limit_bytes"] and memory["index_bytes"] > INDEX_WARN_SHARE * memory["limit_bytes"]:
                log.warning("%s before ingest fails", _index_advice(memory))

    def _out_of_memory_message(self, exc: Exception) -> str:
        # The usual cause on a growing store: the traces primary-key index must stay in
        # memory whole, so it outgrows the limit. Say so, with the figures to size by.
        try:
            memory = self.memory()
        except duckdb.Error:
            return str(exc)
        return f"DuckDB ran out of memory: {_index_advice(memory)}. ({exc})"

    def memory(self) -> dict[str, int]:
        """DuckDB's memory limit, what its buffer manager holds, and the share indexes take."""
        with self._reader() as cur:
            rows = cur.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall()
            limit = cur.execute("SELECT current_setting('memory_limit')").fetchone()
        used = {str(tag): int(n) for tag, n in rows}
        return {
            "limit_bytes": _parse_bytes(limit[0]) if limit else 0,
            "used_bytes": sum(used.values()),
            "index_bytes": used.get("ART_INDEX", 0),
            **{f"{tag.lower()}_bytes": n for tag, n in used.items() if n},
        }

    def _transaction(
        self, spans: list[pa.Table], parts: list[pa.Table], resources: pa.Table, scores: pa.Table, trust_recent: bool
    ) -> list[int]:
        """Commit the group; returns how many spans of each request were stored (not duplicates)."""
        conn = self._conn
        sent = sum(t.num_rows for t in spans)
        spans, parts, scores = self._drop_duplicates(spans, parts, scores, trust_recent)
        batch = spans[0] if len(spans) == 1 else pa.concat_tables(spans)
        conn.register("batch", batch)
        self._touched = {}
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.execute("INSERT INTO spans SELECT * FROM batch")
            self._register_and_run("new_resources", resources, _INSERT_RESOURCES)
            if scores.num_rows:
                self._register_and_run("new_scores", scores, "INSERT INTO scores SELECT * FROM new_scores")
            new_keys = self._merge_traces(parts, trust_recent)
            conn.execute("COMMIT")
        except duckdb.OutOfMemoryException as exc:
            conn.execute("ROLLBACK")
            raise duckdb.OutOfMemoryException(self._out_of_memory_message(exc)) from exc
        except Exception:
            conn.execute("ROLLBACK")
            raise
        finally:
            for view in ("batch", "parts", "new_resources", "new_scores"):
                with contextlib.suppress(duckdb.Error):
                    conn.unregister(view)
        self._recent.add_all(new_keys, self._received)
        self._mark_dirty(self._touched)
        # Counted once committed: a transaction redone after a conflict drops them again.
        self.duplicate_spans += sent - batch.num_rows
        return [t.num_rows for t in spans]

    def _drop_duplicates(
        self, spans: list[pa.Table], parts: list[pa.Table], scores: pa.Table, trust_recent: bool
    ) -> tuple[list[pa.Table], list[pa.Table], pa.Table]:
        """Leave out spans already stored, or sent twice within this group (exactly once).

        Only traces seen before can hold a duplicate: those the writer remembers (or, when
        ``trust_recent`` is off, every trace of the group found in `traces`), and traces in
        more than one request of the group. Their spans are checked against the spans
        received since the trace was first received, but no further back than
        dedup_window_s. Requests that lost spans get their trace partials recomputed.
        """
        counts: dict[str, int] = {}
        per_part = [_trace_keys(part) for part in parts]
        for keys in per_part:
            for key in set(keys):
                counts[key] = counts.get(key, 0) + 1
        repeated = {key for key, n in counts.items() if n > 1}
        known: dict[str, int] = {}
        if trust_recent:
            for key in counts:
                first = self._recent.first_received(key)
                if first is not None:
                    known[key] = first
        elif counts:
            known = self._stored_first_received(list(counts))
        if not repeated and not known:
            return spans, parts, scores
        suspect_traces = {key.split("\x00", 1)[1] for key in (*repeated, *known)}
        seen: set[tuple[str, str, str]] = set()
        if known:
            batch = spans[0] if len(spans) == 1 else pa.concat_tables(spans)
            rows = batch.select(["tenant", "trace_id", "span_id"]).filter(
                pc.is_in(batch.column("trace_id"), value_set=pa.array(sorted(suspect_traces)))
            )
            now = int(pc.min(batch.column("received_ns")).as_py() or self._clock())
            since = max(min(known.values()), now - self._dedup_window_ns)
            seen = duplicate_keys(self._conn, rows, since)
        dropped: set[tuple[str, str, str]] = set()
        new_spans: list[pa.Table] = []
        new_parts: list[pa.Table] = []
        for table, part in zip(spans, parts, strict=True):
            mask = pc.is_in(table.column("trace_id"), value_set=pa.array(sorted(suspect_traces)))
            if not pc.any(mask).as_py():
                new_spans.append(table)
                new_parts.append(part)
                continue
            keep = []
            for tenant, trace, span, suspect in zip(
                table.column("tenant").to_pylist(), table.column("trace_id").to_pylist(),
                table.column("span_id").to_pylist(), mask.to_pylist(), strict=True,
            ):
                span_key = (tenant, trace, span)
                duplicate = bool(suspect) and span_key in seen
                if suspect:
                    seen.add(span_key)  # a second copy later in this group is a duplicate too
                if duplicate:
                    dropped.add(span_key)
                keep.append(not duplicate)
            if all(keep):
                new_spans.append(table)
                new_parts.append(part)
                continue
            kept = table.filter(pa.array(keep, type=pa.bool_()))
            new_spans.append(kept)
            new_parts.append(trace_partials_of(kept))
        if dropped and scores.num_rows:
            # Scores read from a duplicate span's events were stored with its first copy.
            keep_scores = [
                (t, i, s) not in dropped
                for t, i, s in zip(
                    scores.column("tenant").to_pylist(), scores.column("trace_id").to_pylist(),
                    scores.column("span_id").to_pylist(), strict=True,
                )
            ]
            scores = scores.filter(pa.array(keep_scores, type=pa.bool_()))
        return new_spans, new_parts, scores

    def _stored_first_received(self, keys: list[str]) -> dict[str, int]:
        """first_received_ns of the traces among ``keys`` that are stored (a full join: the
        rare path after a trace the writer forgot got a late span)."""
        tenants, traces = zip(*(key.split("\x00", 1) for key in keys), strict=True)
        self._conn.register("probe", pa.table({"tenant": list(tenants), "trace_id": list(traces)}))
        try:
            rows = self._conn.execute(
                "SELECT t.tenant, t.trace_id, t.first_received_ns FROM traces t "
                "SEMI JOIN probe p ON t.tenant = p.tenant AND t.trace_id = p.trace_id"
            ).fetchall()
        finally:
            self._conn.unregister("probe")
        return {f"{t}\x00{i}": int(r) for t, i, r in rows}

    def _mark_dirty(self, touched: dict[str, set[int]]) -> None:
        """Queue committed minutes for the next rollup rebuild."""
        if not self._rollups_on:
            return
        with self._dirty_lock:
            for tenant, minutes in touched.items():
                self._dirty.setdefault(tenant, set()).update(minutes)

    def _merge_traces(self, parts: list[pa.Table], trust_recent: bool) -> list[str]:
        """Insert partials of traces not seen before, merge the rest; returns the new keys.

        A plain insert costs a fraction of DuckDB's ON CONFLICT path, and almost every
        trace in a batch is new, so traces the writer remembers go to the merge and the
        others are inserted; a wrong guess raises ConstraintException and the caller
        redoes the transaction with merges only.
        """
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        keys = _trace_keys(table)
        self._received = table.column("first_received_ns").to_pylist()
        if len(set(keys)) != len(keys):
            # The same trace in two requests of one group commit: one request at a time. A
            # trace's first appearance, if the writer does not remember it, is a plain insert:
            # were it stored after all, the insert conflicts and the caller redoes the group
            # with every trace looked up, so a forgotten trace's duplicates are still found.
            taken: set[str] = set()
            for part in parts:
                part_keys = _trace_keys(part)
                fresh = [trust_recent and k not in self._recent and k not in taken for k in part_keys]
                taken.update(part_keys)
                if any(fresh):
                    mask = pa.array(fresh, type=pa.bool_())
                    self._register_and_run("parts", part.filter(mask), INSERT_TRACES)
                    self._touch_table(part.filter(mask))
                    part = part.filter(pc.invert(mask))
                if part.num_rows:
                    self._merge(part)
            return keys
        if not trust_recent:
            self._merge(table)
            return keys
        known = [key in self._recent for key in keys]
        if any(known):
            mask = pa.array(known)
            self._merge(table.filter(mask))
            table = table.filter(pc.invert(mask))
        if table.num_rows:
            self._register_and_run("parts", table, INSERT_TRACES)
            self._touch_table(table)
        return keys

    def _register_and_run(self, name: str, table: pa.Table, sql: str) -> None:
        # On failure the view stays registered: an aborted transaction refuses even
        # unregister, so _transaction drops views after its ROLLBACK.
        self._conn.register(name, table)
        self._conn.execute(sql)
        self._conn.unregister(name)

    def _merge(self, parts: pa.Table) -> None:
        self._conn.register("parts", parts)
        # RETURNING gives the merged rows as they now stand: the minute a late span changed.
        _touch(self._touched, self._conn.execute(MERGE_TRACES).fetchall())
        self._conn.unregister("parts")

    def _touch_table(self, parts: pa.Table) -> None:
        _touch(
            self._touched,
            zip(
                parts.column("tenant").to_pylist(),
                parts.column("has_root").to_pylist(),
                parts.column("root_start_ns").to_pylist(),
                strict=True,
            )
        )

    # -- retention -------------------------------------------------------------------

    def retention_days(self, tenant: str) -> tuple[float, str]:
        """(days raw spans of ``tenant`` are kept, where that comes from: api, file or default)."""
        if tenant in self._retention_table:
            return self._retention_table[tenant], "api"
        if tenant in self._retention_file:
            return self._retention_file[tenant], "file"
        return self._retention_days, "default"

    def _expires(self, tenant: str) -> bool:
        return self.retention_days(tenant)[0] > 0

    def expired_before(self, tenant: str) -> int | None:
        """Before this instant retention has deleted some of ``tenant``'s runs (None: never)."""
        return self._expired_before.get(tenant)

    def _first_rebuildable_minute(self, tenant: str) -> int:
        """The first minute whose runs expiry has left whole (see _rebuild)."""
        mark = self._expired_before.get(tenant)
        return -(2**62) if mark is None else minute_of(mark - 1) + MINUTE_NS

    def _raw_cutoff(self, tenant: str, now_ns: int) -> int:
        """Raw data that ended before this instant has expired (-inf when retention is off)."""
        days = self.retention_days(tenant)[0]
        return now_ns - int(days * DAY_NS) if days > 0 else -(2**62)

    def set_retention(self, tenant: str, days: float | None) -> dict[str, Any]:
        """Set ``tenant``'s retention in days (None: back to the file or default); returns it."""
        value = check_days(days) if days is not None else None
        self._writer.call(lambda: self._set_retention(tenant, value)).result(60)
        return self.retention(tenant)

    def _set_retention(self, tenant: str, days: float | None) -> None:
        if days is None:
            self._conn.execute("DELETE FROM retention WHERE tenant = ?", [tenant])
            self._retention_table.pop(tenant, None)
        else:
            self._conn.execute(
                "INSERT OR REPLACE INTO retention VALUES (?, ?, ?)", [tenant, days, self._clock()]
            )
            self._retention_table[tenant] = days
        self._expiry_due = 0.0  # apply a shorter retention on the next tick

    def retention(self, tenant: str) -> dict[str, Any]:
        """The tenant's retention: raw days and their source, rollup days, dedup window."""
        days, source = self.retention_days(tenant)
        return {
            "tenant": tenant, "retention_days": days, "source": source,
            "rollup_retention_days": self._rollup_retention_days,
            "dedup_window_s": self._dedup_window_ns / 1e9,
        }

    def expire(self, now_ns: int | None = None, max_steps: int = 1_000_000) -> ExpiryStats:
        """Run expiry to completion as of ``now_ns`` (default: the clock), one bounded
        transaction per step through the writer; returns the running totals."""
        for _ in range(max_steps):
            if not self._writer.call(lambda: self._expire_one_step(now_ns)).result(600):
                break
        return self.expiry

    def _expire_one_step(self, now_ns: int | None = None) -> bool:
        """One expiry transaction (writer thread); False once nothing is left to expire."""
        now = now_ns if now_ns is not None else self._clock()
        if not self._expiry_queue:
            # A new pass: rollups past their retention go in one statement, then each
            # tenant's raw data step by step.
            self._expiry_due = time.monotonic() + max(self._retention_interval_s, 1.0)
            if self._rollup_retention_days > 0:
                self.expiry.rollup_minutes += expire_rollups(self._conn, now - int(self._rollup_retention_days * DAY_NS))
                self._policy_expiry_left = True
            tenants = [str(r[0]) for r in self._conn.execute("SELECT DISTINCT tenant FROM resources").fetchall()]
            self._expiry_queue = sorted(t for t in tenants if self._expires(t))
        if self._policy_expiry_left:
            # Decision records and violations go with the rollups, one bounded step a tick.
            deleted = expire_policy_step(self._conn, now - int(self._rollup_retention_days * DAY_NS), self._step_traces)
            self.expiry.count_policy(deleted)
            self._policy_expiry_left = max(deleted.values()) >= self._step_traces
            if self._policy_expiry_left:
                return True
        while self._expiry_queue:
            tenant = self._expiry_queue[0]
            cutoff = self._raw_cutoff(tenant, now)
            mark = max(cutoff, self._expired_before.get(tenant, cutoff))
            traces, spans = expire_step(self._conn, tenant, cutoff, self._step_traces, mark)
            if traces:
                self._expired_before[tenant] = mark
                self.expiry.traces += traces
                self.expiry.spans += spans
                self.expiry.steps += 1
                self.expiry.last_step_traces = traces
                self._oldest_span_ns = None  # read again when next asked
                if traces < self._step_traces:
                    self._expiry_queue.pop(0)
                return True
            self._expiry_queue.pop(0)
        row = self._conn.execute("SELECT min(start_ns) FROM spans").fetchall()[0]
        self._oldest_span_ns = int(row[0]) if row and row[0] is not None else None
        return False

    def rollup_cutoff(self, now_ns: int | None = None, periodic: bool = False) -> int | None:
        """Minute rollups, decision records and violations older than this expire as of
        ``now_ns`` (None: kept, or with ``periodic`` while expiry is off)."""
        if self._rollup_retention_days <= 0 or (periodic and not self._retention_interval_s > 0):
            return None
        return int(self._clock() if now_ns is None else now_ns) - int(self._rollup_retention_days * DAY_NS)

    def oldest_span_ns(self) -> int | None:
        """Start of the oldest stored span (kept between expiry steps, read when they change it)."""
        if self._oldest_span_ns is None:
            with self._reader() as cur:
                row = cur.execute("SELECT min(start_ns) FROM spans").fetchall()[0]
            self._oldest_span_ns = int(row[0]) if row and row[0] is not None else None
        return self._oldest_span_ns

    def refresh_rollups(self) -> int:
        """Rebuild the minutes commits have touched since the last refresh (writer thread)."""
        if not self._rollups_on:
            return 0
        self._passed_deadlines(self._clock())
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, {}
        if not dirty:
            return 0
        try:
            return self._rebuild(dirty)
        except Exception:
            with self._dirty_lock:  # try again next time
                for tenant, minutes in dirty.items():
                    self._dirty.setdefault(tenant, set()).update(minutes)
            raise

    def _rebuild(self, dirty: dict[str, set[int]]) -> int:
        # Minutes before the expiry mark may have lost runs to retention: a rebuild would
        # recount them from what is left, so they keep the counts they had.
        dirty = {
            tenant: kept
            for tenant, minutes in dirty.items()
            if (kept := {m for m in minutes if m >= self._expired_before.get(tenant, -(2**62))})
        }
        if not dirty:
            return 0
        now = self._clock()
        dirty = {tenant: minutes | self._deadline_minutes(tenant, minutes, now) for tenant, minutes in dirty.items()}
        rebuilt = rebuild(self._conn, dirty, self._sli_rules, now)
        for tenant, minutes in dirty.items():
            self._slo_changes.record(tenant, minutes)
        self._recount_freshness(dirty, now)
        return rebuilt

    def _recount_freshness(self, dirty: dict[str, set[int]], now_ns: int) -> None:
        """Recount dataset-freshness SLIs from the first dirty minute to now: an update (even a
        late one) decides every later minute until the next update."""
        for tenant, minutes in dirty.items():
            rules = [r for r in self._sli_rules.get(tenant, []) if r.kind == "dataset_freshness"]
            end = minute_of(now_ns)
            # An update at a minute's first instant already counts for the minute before.
            start = min(minutes) - MINUTE_NS if minutes else end
            if not rules or start >= end:
                continue
            conn = self._conn
            conn.execute("BEGIN TRANSACTION")
            try:
                rebuild_slo_minutes(conn, tenant, rules, start, end, now_ns)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            small = end - start <= 10_000 * MINUTE_NS
            self._slo_changes.record(tenant, set(range(start, end, MINUTE_NS)) if small else None)

    def _deadline_minutes(self, tenant: str, minutes: set[int], now_ns: int) -> set[int]:
        """Deadline minutes a rebuild of ``minutes`` must recount: every due deadline from the
        first of them on (a run ending then counts for the next one, and late-arriving runs
        can start the schedule earlier), at most the last 1000."""
        out: set[int] = set()
        if not minutes:
            return out
        for rule in self._sli_rules.get(tenant, []):
            if rule.kind == "deadline" and rule.period_ns:
                first = next_deadline(rule, min(minutes))
                if first is not None:
                    start = max(first, now_ns - 1000 * rule.period_ns)
                    out.update(minute_of(d) for d in deadlines(rule, start, now_ns + 1))
        return out

    def _passed_deadlines(self, now_ns: int) -> None:
        """Queue deadlines that fell due since the last pass, so a run that never came is
        counted bad without any new data."""
        last = self._deadline_checked_ns if self._deadline_checked_ns is not None else now_ns
        self._deadline_checked_ns = now_ns
        due: dict[str, set[int]] = {}
        for tenant, rules in self._sli_rules.items():
            for rule in rules:
                if rule.kind == "deadline":
                    for d in deadlines(rule, last + 1, now_ns + 1):
                        due.setdefault(tenant, set()).add(minute_of(d))
            # Freshness minutes count once they end, new data or not (a stale dataset goes bad).
            if any(rule.kind == "dataset_freshness" for rule in rules):
                due.setdefault(tenant, set()).update(passed_minutes(last, now_ns))
        if due:
            self._mark_dirty(due)

    def rebuild_rollups(self, tenant: str, start_ns: int, end_ns: int) -> int:
        """Recount the minutes of [start_ns, end_ns) from the runs (repairs, benchmarks)."""
        minutes = set(range(minute_of(start_ns), end_ns, MINUTE_NS))
        return self._writer.call(lambda: self._rebuild({tenant: minutes})).result(600)

    def set_sli_rules(self, tenant: str, rules: list[SliRule]) -> None:
        """Count these SLOs from now on; new or changed ones are backfilled from all runs."""
        self._writer.call(lambda: self._apply_sli_rules(tenant, list(rules))).result(600)

    def _apply_sli_rules(self, tenant: str, rules: list[SliRule]) -> None:
        old = {r.slo: r for r in self._sli_rules.get(tenant, [])}
        changed = [r for r in rules if old.get(r.slo) != r]
        keep = {r.slo for r in rules}
        conn = self._conn
        conn.execute("BEGIN TRANSACTION")
        try:
            gone = [name for name in old if name not in keep]
            # Only minutes whose runs are still stored can be recounted (see _rebuild).
            start = self._first_rebuildable_minute(tenant)
            if gone:
                conn.execute("DELETE FROM slo_minutes WHERE tenant = ? AND list_contains(?, slo)", [tenant, gone])
            rebuild_slo_minutes(conn, tenant, [r for r in changed if not is_platform_rule(r)], start, 2**62, self._clock())
            # Platform scores are kept as long as the rollups: counted from the first of them.
            rebuild_slo_minutes(conn, tenant, [r for r in changed if is_platform_rule(r)], -(2**62), 2**62, self._clock())
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        self._sli_rules[tenant] = rules
        if changed or gone:
            self._slo_changes.record(tenant, None)

    def slo_changes(self, tenant: str, since: int) -> tuple[int, set[int] | None]:
        """(generation, minutes whose SLO counts changed after generation ``since``), or
        None for the minutes when everything must be re-read. Take the generation before
        reading counts: a change committed in between is then reported again, never lost."""
        return self._slo_changes.since(tenant, since)

    def slo_minutes_at(self, tenant: str, minutes: list[int]) -> list[tuple[str, int, int, int]]:
        """(slo, minute_ns, good, total) rows of the given minutes, for every SLO."""
        if not minutes:
            return []
        with self._reader() as cur:
            return cur.execute(
                "SELECT slo, minute_ns, good, total FROM slo_minutes "
                "WHERE tenant = ? AND minute_ns IN (SELECT unnest(?::BIGINT[]))",
                [tenant, minutes],
            ).fetchall()

    def metric_totals(self, tenant: str) -> dict[str, Any]:
        """Cumulative counters for /metrics, summed from the rollups (not from spans)."""
        slos = self._rows(
            "SELECT slo, sum(total) AS total, sum(total - good) AS bad, min(minute_ns) FILTER (WHERE total > 0) AS first_ns "
            "FROM slo_minutes WHERE tenant = ? GROUP BY slo",
            [tenant],
        )
        runs = self._rows(
            "SELECT journey, sum(runs) AS runs, sum(failures) AS failures, sum(duration_sum_ns) AS duration_ns, "
            "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, "
            "sum(retries) AS retries FROM run_minutes WHERE tenant = ? GROUP BY journey",
            [tenant],
        )
        buckets = self._rows(
            "SELECT journey, i, sum(n) AS n FROM (SELECT journey, generate_subscripts(duration_buckets, 1) AS i, "
            "unnest(duration_buckets) AS n FROM run_minutes WHERE tenant = ?) GROUP BY journey, i ORDER BY journey, i",
            [tenant],
        )
        hist: dict[str, list[int]] = {}
        for row in buckets:
            hist.setdefault(row["journey"], []).append(int(row["n"]))
        return {"slos": slos, "runs": runs, "duration_buckets": hist}

    def active_alerts(self, tenant: str) -> list[AlertEpisode]:
        """Alerts still pending or firing."""
        return cast(list[AlertEpisode], self._rows(
            "SELECT * FROM alerts WHERE tenant = ? AND state != 'resolved' ORDER BY id", [tenant]
        ))

    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[AlertEpisode]:
        """Alert episodes, newest first."""
        w = _Where("tenant = ?", tenant)
        w.add("state = ?", state)
        w.add("slo = ?", slo)
        return cast(list[AlertEpisode], self._rows(
            f"SELECT * FROM alerts WHERE {' AND '.join(w.clauses)} ORDER BY pending_since_ns DESC, id DESC LIMIT ?",
            [*w.params, limit],
        ))

    def save_alerts(self, rows: list[dict[str, Any]]) -> None:
        """Insert new alert episodes (no id) and update known ones, through the writer."""
        if rows:
            self._writer.call(lambda: self._save_alerts(rows)).result(60)

    def _save_alerts(self, rows: list[dict[str, Any]]) -> None:
        conn = self._conn
        conn.execute("BEGIN TRANSACTION")
        try:
            for row in rows:
                if row.get("id") is None:
                    found = conn.execute(
                        "INSERT INTO alerts (tenant, slo, journey, severity, state, pending_since_ns, started_ns, "
                        "ended_ns, peak_burn, updated_ns, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        [row["tenant"], row["slo"], row["journey"], row["severity"], row["state"],
                         row["pending_since_ns"], row["started_ns"], row["ended_ns"], row["peak_burn"],
                         row["updated_ns"], row["summary"]],
                    ).fetchone()
                    # The evaluator keeps this dict as the open episode: its next change must
                    # update this row, not insert a second one.
                    row["id"] = int(found[0]) if found else None
                else:
                    conn.execute(
                        "UPDATE alerts SET state = ?, started_ns = ?, ended_ns = ?, peak_burn = ?, updated_ns = ?, "
                        "summary = ? WHERE id = ?",
                        [row["state"], row["started_ns"], row["ended_ns"], row["peak_burn"], row["updated_ns"],
                         row["summary"], row["id"]],
                    )
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise

    def add_scores(self, scores: pa.Table) -> list[int]:
        """Store scores whose trace is known; returns the row indexes refused as unknown traces.

        The runs they score get their minutes rebuilt, so score SLOs see late evaluations.
        """
        return list(self._writer.call(lambda: self._add_scores(scores)).result(60))

    def _add_scores(self, scores: pa.Table) -> list[int]:
        conn = self._conn
        conn.register("score_batch", scores)
        try:
            known = conn.execute(
                "SELECT DISTINCT t.tenant, t.trace_id, t.has_root, t.root_start_ns FROM traces t "
                "SEMI JOIN score_batch b ON t.tenant = b.tenant AND t.trace_id = b.trace_id"
            ).fetchall()
        finally:
            conn.unregister("score_batch")
        found = {(tenant, trace) for tenant, trace, _, _ in known}
        tenants, traces = scores.column("tenant").to_pylist(), scores.column("trace_id").to_pylist()
        keep = [(t, i) in found for t, i in zip(tenants, traces, strict=True)]
        refused = [n for n, ok in enumerate(keep) if not ok]
        accepted = scores.filter(pa.array(keep, type=pa.bool_()))
        if accepted.num_rows:
            self._register_and_run("new_scores", accepted, "INSERT INTO scores SELECT * FROM new_scores")
            touched: dict[str, set[int]] = {}
            _touch(touched, ((tenant, has_root, start) for tenant, _, has_root, start in known))
            self._mark_dirty(touched)
        return refused

    def add_platform_scores(self, scores: pa.Table) -> int:
        """Store scores of subjects (rows of PLATFORM_SCORE_ARROW_SCHEMA), one per (tenant,
        subject, name, time): a score sent again replaces the stored one. Score SLIs over
        their subjects are recounted for the minutes touched. Returns the rows kept."""
        return int(self._writer.call(lambda: self._add_platform_scores(scores)).result(60))

    def _add_platform_scores(self, scores: pa.Table) -> int:
        if not scores.num_rows:
            return 0
        touched = put_platform_scores(self._conn, scores)
        rules = {tenant: [r for r in self._sli_rules.get(tenant, []) if is_platform_rule(r)] for tenant in touched}
        if self._rollups_on and any(rules.values()):
            # Recounted now, whatever raw-span expiry has done to these minutes: platform
            # scores are kept as long as the rollups (see _rebuild for the runs' minutes).
            self._conn.execute("BEGIN TRANSACTION")
            try:
                for tenant, minutes in touched.items():
                    for start, end in ranges(minutes):
                        rebuild_slo_minutes(self._conn, tenant, rules[tenant], start, end, self._clock())
                self._conn.execute("COMMIT")
            except Exception:
                self._conn.execute("ROLLBACK")
                raise
            for tenant, minutes in touched.items():
                self._slo_changes.record(tenant, minutes)
        return int(last_of_each_key(scores).num_rows)

    def platform_scores(
        self, tenant: str, subject: str | None = None, name: str | None = None,
        since_ns: int | None = None, until_ns: int | None = None, limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Stored scores of subjects, oldest first, filtered by subject, name and [since, until)."""
        with self._reader() as cur:
            return read_platform_scores(cur, tenant, subject, name, since_ns, until_ns, limit)

    def slo_first_minutes(self, tenant: str) -> dict[str, int]:
        """Per SLO, the start of the first minute in which it counted events."""
        rows = self._rows(
            "SELECT slo, min(minute_ns) AS first_ns FROM slo_minutes WHERE tenant = ? AND total > 0 GROUP BY slo",
            [tenant],
        )
        return {r["slo"]: int(r["first_ns"]) for r in rows}

    def slo_minute_arrays(
        self, tenant: str, start_ns: int, end_ns: int, slo: str | None = None
    ) -> dict[str, tuple[Any, Any, Any]]:
        """(minute_ns, good, total) arrays per SLO (or just ``slo``) for [start_ns, end_ns)."""
        where = "FROM slo_minutes WHERE tenant = ? AND minute_ns >= ? AND minute_ns < ?"
        params: list[Any] = [tenant, start_ns, end_ns]
        if slo is not None:
            where += " AND slo = ?"
            params.append(slo)
        with self._reader() as cur:
            counts = cur.execute(f"SELECT slo, count(*) {where} GROUP BY slo ORDER BY slo", params).fetchall()
            arrays = cur.execute(f"SELECT minute_ns, good, total {where} ORDER BY slo, minute_ns", params).fetchnumpy()
        # Split by the per-SLO row counts rather than reading an SLO name per row.
        out: dict[str, tuple[Any, Any, Any]] = {}
        begin = 0
        for slo, n in counts:
            stop = begin + int(n)
            out[slo] = (arrays["minute_ns"][begin:stop], arrays["good"][begin:stop], arrays["total"][begin:stop])
            begin = stop
        return out

    def flush_rollups(self) -> None:
        """Wait until every committed run is in the rollups (tests and shutdown)."""
        self._writer.call(self.refresh_rollups).result(60)

    # -- reads ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = self._readers.get()
        try:
            yield cursor
        finally:
            self._readers.put(cursor)

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self._reader() as cur:
            result = cur.execute(sql, params or [])
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def count_spans(self, tenant: str | None = None) -> int:
        sql = "SELECT count(*) AS n FROM spans" + (" WHERE tenant = ?" if tenant else "")
        return int(self._rows(sql, [tenant] if tenant else [])[0]["n"])

    def get_trace(self, tenant: str, trace_id: str) -> tuple[TraceRun, list[dict[str, Any]]]:
        """The run row and every span of one trace; NotFound if the id is unknown."""
        runs = self._rows(
            f"SELECT {_RUN_COLUMNS}, start_ns, end_ns FROM journey_runs WHERE tenant = ? AND trace_id = ?",
            [tenant, trace_id],
        )
        if not runs:
            raise NotFound(f"no trace with id {trace_id!r} (never received, or expired past the tenant's retention)")
        run = runs[0]
        spans = self._rows(
            "SELECT s.* EXCLUDE (tenant, resource_id), r.resource FROM spans s "
            "LEFT JOIN resources r ON r.tenant = s.tenant AND r.resource_id = s.resource_id "
            "WHERE s.tenant = ? AND s.trace_id = ? AND s.start_ns BETWEEN ? AND ? "
            "ORDER BY s.start_ns, s.span_id",
            [tenant, trace_id, run["start_ns"], run["end_ns"]],
        )
        return cast(TraceRun, run), spans

    def export_control(self, table: str, key: tuple[str, ...], after: list[Any] | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of control-plane ``table`` after ``after`` in ``key`` order, as
        stored (JSON columns as their text): what ``aisre store copy --control`` moves."""
        for name in (table, *key):
            if not _IDENTIFIER.match(name):
                raise PermanentError(f"not a table or column name: {name!r}")
        where, params = "", []
        if after is not None:
            # (k1, k2, …) > (a1, a2, …), spelled out: k1 > a1 OR (k1 = a1 AND k2 > a2) …
            ors = []
            for i in range(len(key)):
                ors.append("(" + " AND ".join([*(f"{k} = ?" for k in key[:i]), f"{key[i]} > ?"]) + ")")
                params += [*after[:i], after[i]]
            where = "WHERE " + " OR ".join(ors)
        return self._rows(f"SELECT * FROM {table} {where} ORDER BY {', '.join(key)} LIMIT ?", [*params, int(limit)])

    def control_count(self, table: str) -> int:
        """Rows in control-plane ``table`` (0 when the file has no such table)."""
        if not _IDENTIFIER.match(table):
            raise PermanentError(f"not a table name: {table!r}")
        found = self._rows("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", [table])
        if not found[0]["n"]:
            return 0
        return int(self._rows(f"SELECT count(*) AS n FROM {table}")[0]["n"])

    def span_tenants(self) -> list[str]:
        """Every tenant with stored traces."""
        return [str(r["tenant"]) for r in self._rows("SELECT DISTINCT tenant FROM traces ORDER BY tenant")]

    def export_traces(self, tenant: str, after_trace_id: str, limit: int) -> ExportedTraces:
        """Up to ``limit`` whole traces after ``after_trace_id`` (trace-id order): their spans,
        the resources they name and their scores, as Arrow tables."""
        found = self._rows(
            "SELECT count(*) AS n, max(trace_id) AS last, (SELECT count(*) FROM traces WHERE tenant = ? AND trace_id > ?) AS after "
            "FROM (SELECT trace_id FROM traces WHERE tenant = ? AND trace_id > ? ORDER BY trace_id LIMIT ?)",
            [tenant, after_trace_id, tenant, after_trace_id, int(limit)],
        )[0]
        if not found["n"]:
            return ExportedTraces(SPAN_ARROW_SCHEMA.empty_table(), RESOURCE_ARROW_SCHEMA.empty_table(),
                                  SCORE_ARROW_SCHEMA.empty_table(), 0, None)
        span_range = [tenant, after_trace_id, found["last"]]
        in_range = "tenant = ? AND trace_id > ? AND trace_id <= ?"
        # A cursor of its own: Arrow results come from relations, which refuse a pooled
        # cursor still holding part of an earlier result.
        with contextlib.closing(self._conn.cursor()) as cur:

            def arrow(sql: str, params: list[Any], schema: pa.Schema) -> pa.Table:
                table = cur.sql(sql, params=params).to_arrow_table()
                return schema.empty_table() if table is None else table.cast(schema)

            spans = arrow(f"SELECT {', '.join(SPAN_COLUMN_NAMES)} FROM spans WHERE {in_range} "
                          "ORDER BY trace_id, start_ns, span_id", span_range, SPAN_ARROW_SCHEMA)
            resources = arrow(f"SELECT {', '.join(RESOURCE_ARROW_SCHEMA.names)} FROM resources WHERE tenant = ? AND "
                              f"resource_id IN (SELECT DISTINCT resource_id FROM spans WHERE {in_range})",
                              [tenant, *span_range], RESOURCE_ARROW_SCHEMA)
            scores = arrow(f"SELECT {', '.join(SCORE_ARROW_SCHEMA.names)} FROM scores WHERE {in_range}",
                           span_range, SCORE_ARROW_SCHEMA)
        return ExportedTraces(spans, resources, scores, int(found["n"]), str(found["last"]), int(found["after"]) - int(found["n"]))

    # -- metric rollups and platform scores, read back and written as stored (aisre store copy)

    def metric_tenants(self) -> list[str]:
        """Every tenant with metric series or platform scores."""
        return [str(r["tenant"]) for r in self._rows(
            "SELECT tenant FROM metric_series UNION SELECT tenant FROM platform_scores ORDER BY tenant")]

    def export_metric_series(self, tenant: str, after: int | None, limit: int) -> list[MetricSeriesRow]:
        """Up to ``limit`` series with their kept point, by series id after ``after``."""
        with self._reader() as cur:
            return metric_copy.export_series(cur, tenant, after, limit)

    def export_metric_minutes(self, tenant: str, after: list[int] | None, limit: int) -> ExportedMinutes:
        """Up to ``limit`` folded minute rows by (minute_ns, series_id) after ``after``: minutes
        are appended in time order, so a window of minutes is read without scanning the rest."""
        with self._reader() as cur:
            return metric_copy.export_minutes(cur, tenant, after, limit)

    def export_platform_scores(self, tenant: str, after: list[Any] | None, limit: int) -> list[PlatformScoreRow]:
        """Up to ``limit`` platform scores by (subject, name, time_ns) after ``after``."""
        with self._reader() as cur:
            return metric_copy.export_platform_scores(cur, tenant, after, limit)

    def import_metric_series(self, tenant: str, rows: list[MetricSeriesRow]) -> int:
        """Store series the tenant does not have yet, kept point included; returns how many were new."""
        def run() -> int:
            try:
                return metric_copy.import_series(self._conn, tenant, rows)
            finally:
                self._metric_tables.forget(tenant)  # the series as kept in memory are stale now
        return int(self._writer.call(run).result(600))

    def import_metric_minutes(self, tenant: str, rows: list[MetricMinuteRow]) -> int:
        """Store (series, minute) rows the tenant does not have yet; returns how many were new."""
        def run() -> int:
            minutes = metric_copy.import_minutes(self._conn, tenant, rows)
            if minutes and any(r.kind in METRIC_SLI_KINDS for r in self._sli_rules.get(tenant, [])):
                self._mark_dirty({tenant: set(minutes)})
            return len(minutes)
        return int(self._writer.call(run).result(600))

    def metric_copy_totals(self, tenant: str) -> dict[str, float]:
        """Series, per metric the minutes' value and point sums, platform scores and their sum."""
        with self._reader() as cur:
            return metric_copy.copy_totals(cur, tenant)

    def trace_ids_with_prefix(self, tenant: str, prefix: str, limit: int = 5) -> list[str]:
        """Trace ids of stored runs that start with ``prefix`` (lowercase hex), at most ``limit``."""
        rows = self._rows(
            "SELECT trace_id FROM journey_runs WHERE tenant = ? AND starts_with(trace_id, ?) ORDER BY trace_id LIMIT ?",
            [tenant, prefix, int(limit)],
        )
        return [str(r["trace_id"]) for r in rows]

    def list_runs(self, q: RunQuery) -> list[JourneyRun]:
        """Runs matching ``q``, newest first; at most ``q.limit`` rows."""
        w = _Where("tenant = ?", q.tenant)
        w.add("journey = ?", q.journey)
        w.add("outcome = ?", q.outcome)
        w.add("run_start_ns >= ?", q.since_ns)
        w.add("run_start_ns < ?", q.until_ns)
        w.add("service_version = ?", q.service_version)
        w.add("list_contains(models, ?)", q.model)
        if q.after is not None:
            w.add("(run_start_ns < ? OR (run_start_ns = ? AND trace_id < ?))", q.after[0], q.after[0], q.after[1])
        where, params = w.clauses, w.params
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM journey_runs WHERE {' AND '.join(where)} "
            "ORDER BY run_start_ns DESC, trace_id DESC LIMIT ?"
        )
        return cast(list[JourneyRun], self._rows(sql, [*params, q.limit]))

    def journey_summaries(self, r: TimeRange) -> list[JourneySummary]:
        """Per journey: runs, failures, duration percentiles, tokens and cost per run, last seen."""
        w = _Where("tenant = ?", r.tenant)
        w.add("has_root")
        w.add("run_start_ns >= ?", r.since_ns)
        w.add("run_start_ns < ?", r.until_ns)
        where, params = w.clauses, w.params
        sql = f"""
            SELECT journey,
                count(*) AS runs,
                count(*) FILTER (WHERE outcome = 'failure') AS failures,
                quantile_cont(duration_ns, 0.5) / 1e6 AS p50_ms,
                quantile_cont(duration_ns, 0.95) / 1e6 AS p95_ms,
                avg(input_tokens + output_tokens) AS tokens_per_run,
                avg(llm_calls) AS llm_calls_per_run,
                sum(retries) AS retries,
                sum(cost_usd) AS cost_usd,
                max(run_start_ns) AS last_seen_ns
            FROM journey_runs WHERE {" AND ".join(where)}
            GROUP BY journey ORDER BY runs DESC, journey
        """
        return cast(list[JourneySummary], self._rows(sql, params))

    def incomplete_traces(self, tenant: str) -> int:
        return int(
            self._rows("SELECT count(*) AS n FROM traces WHERE tenant = ? AND NOT has_root", [tenant])[0]["n"]
        )

    def stats(self, tenant: str | None = None) -> dict[str, Any]:
        """Store-wide counts and writer figures (benchmarks and /api/stats read these)."""
        # One tenant's counts, or every tenant's (the process: benchmarks).
        where = " WHERE tenant = ?" if tenant else ""
        params = [tenant, tenant] if tenant else []
        counts = self._rows(
            f"SELECT (SELECT count(*) FROM spans{where}) AS spans, (SELECT count(*) FROM traces{where}) AS traces",
            params,
        )[0]
        writer = self._writer.stats
        return {
            "backend": self.backend,
            "spans": int(counts["spans"]),
            "traces": int(counts["traces"]),
            "queued_spans": self._writer.queued_spans,
            "commits": writer.commits,
            "spans_committed": writer.spans_committed,
            "refused_full": writer.refused_full,
            "failed_commits": writer.failed_commits,
            "last_commit_seconds": writer.last_commit_seconds,
            "commit_seconds_total": writer.commit_seconds_total,
            "upkeep_seconds_total": writer.upkeep_seconds_total,
            "duplicate_spans": self.duplicate_spans,
            "expired_spans": self.expiry.spans,
            "expired_traces": self.expiry.traces,
            "expiry_steps": self.expiry.steps,
            "expired_decisions": self.expiry.decisions,
            "expired_violations": self.expiry.violations,
            "oldest_span_ns": self.oldest_span_ns(),
            **({"retention": self.retention(tenant)} if tenant else {}),
        }
