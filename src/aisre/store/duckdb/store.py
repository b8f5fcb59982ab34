"""The embedded store: one DuckDB file, one writer thread, a pool of read cursors."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa

from aisre.core.errors import NotFound
from aisre.core.model import RunQuery, TimeRange
from aisre.core.schema import LLM_OPERATIONS
from aisre.store.duckdb.writer import Writer, WriterStats

_LLM = ", ".join(f"'{op}'" for op in sorted(LLM_OPERATIONS))

# Per-trace aggregates of one group-committed batch, merged into `traces`. Counts add up;
# root-span fields are taken from whichever batch carries the root, so a root that
# arrives after its children completes the run without counting anything twice.
_UPSERT_TRACES = f"""
INSERT INTO traces
SELECT
    tenant,
    trace_id,
    max(journey) AS journey_attr,
    bool_or(is_root) AS has_root,
    min(span_id) FILTER (WHERE is_root),
    min(name) FILTER (WHERE is_root),
    min(service) FILTER (WHERE is_root),
    min(start_ns) FILTER (WHERE is_root),
    max(end_ns) FILTER (WHERE is_root),
    min(start_ns),
    max(end_ns),
    bool_or(marks_failure),
    arg_min(
        coalesce(nullif(status_message, ''), error_type, 'HTTP ' || http_status::VARCHAR, 'aisre.outcome=failure'),
        start_ns
    ) FILTER (WHERE marks_failure),
    count(*),
    count(*) FILTER (WHERE status = 'error'),
    count(*) FILTER (WHERE operation IN ({_LLM})),
    count(*) FILTER (WHERE operation IN ({_LLM}) AND status = 'error'),
    count(*) FILTER (WHERE operation = 'execute_tool'),
    count(*) FILTER (WHERE operation = 'retrieval'),
    count(*) FILTER (WHERE operation = 'agent'),
    count(*) FILTER (WHERE retry_attempt > 0),
    coalesce(sum(input_tokens), 0),
    coalesce(sum(output_tokens), 0),
    coalesce(sum(cached_input_tokens), 0),
    coalesce(sum(cost_usd), 0),
    coalesce(min(service_version) FILTER (WHERE is_root), min(service_version)),
    coalesce(min(prompt_name) FILTER (WHERE is_root), min(prompt_name)),
    coalesce(min(prompt_version) FILTER (WHERE is_root), min(prompt_version)),
    min(deployment_environment),
    list_distinct(list(response_model) FILTER (WHERE response_model IS NOT NULL)),
    min(user_id),
    min(session_id),
    min(received_ns),
    max(received_ns)
FROM batch
GROUP BY tenant, trace_id
ON CONFLICT (tenant, trace_id) DO UPDATE SET
    journey_attr = coalesce(traces.journey_attr, excluded.journey_attr),
    has_root = traces.has_root OR excluded.has_root,
    root_span_id = coalesce(traces.root_span_id, excluded.root_span_id),
    root_name = coalesce(traces.root_name, excluded.root_name),
    root_service = coalesce(traces.root_service, excluded.root_service),
    root_start_ns = coalesce(traces.root_start_ns, excluded.root_start_ns),
    root_end_ns = coalesce(traces.root_end_ns, excluded.root_end_ns),
    start_ns = least(traces.start_ns, excluded.start_ns),
    end_ns = greatest(traces.end_ns, excluded.end_ns),
    failed = traces.failed OR excluded.failed,
    failure_reason = coalesce(traces.failure_reason, excluded.failure_reason),
    span_count = traces.span_count + excluded.span_count,
    error_spans = traces.error_spans + excluded.error_spans,
    llm_calls = traces.llm_calls + excluded.llm_calls,
    llm_errors = traces.llm_errors + excluded.llm_errors,
    tool_calls = traces.tool_calls + excluded.tool_calls,
    retrieval_calls = traces.retrieval_calls + excluded.retrieval_calls,
    agent_steps = traces.agent_steps + excluded.agent_steps,
    retries = traces.retries + excluded.retries,
    input_tokens = traces.input_tokens + excluded.input_tokens,
    output_tokens = traces.output_tokens + excluded.output_tokens,
    cached_input_tokens = traces.cached_input_tokens + excluded.cached_input_tokens,
    cost_usd = traces.cost_usd + excluded.cost_usd,
    service_version = CASE WHEN excluded.has_root AND NOT traces.has_root
        THEN coalesce(excluded.service_version, traces.service_version)
        ELSE coalesce(traces.service_version, excluded.service_version) END,
    prompt_name = CASE WHEN excluded.has_root AND NOT traces.has_root
        THEN coalesce(excluded.prompt_name, traces.prompt_name)
        ELSE coalesce(traces.prompt_name, excluded.prompt_name) END,
    prompt_version = CASE WHEN excluded.has_root AND NOT traces.has_root
        THEN coalesce(excluded.prompt_version, traces.prompt_version)
        ELSE coalesce(traces.prompt_version, excluded.prompt_version) END,
    environment = coalesce(traces.environment, excluded.environment),
    models = list_distinct(list_concat(traces.models, excluded.models)),
    user_id = coalesce(traces.user_id, excluded.user_id),
    session_id = coalesce(traces.session_id, excluded.session_id),
    first_received_ns = least(traces.first_received_ns, excluded.first_received_ns),
    last_received_ns = greatest(traces.last_received_ns, excluded.last_received_ns)
"""

# A retry repeats a model call under the same parent after a failed sibling. When the
# sibling came in another batch, only the stored spans can tell, so traces with failed
# model calls get their retry count recomputed from their spans (failures are rare, and
# the time bounds let DuckDB's zone maps skip the rest of the table).
_RECOUNT_RETRIES = f"""
WITH touched AS (
    SELECT t.tenant, t.trace_id, t.start_ns, t.end_ns
    FROM traces t
    SEMI JOIN (SELECT DISTINCT tenant, trace_id FROM batch WHERE operation IN ({_LLM})) b
        ON t.tenant = b.tenant AND t.trace_id = b.trace_id
    WHERE t.llm_errors > 0
),
calls AS (
    SELECT s.tenant, s.trace_id, s.retry_attempt,
        count(*) FILTER (WHERE s.status = 'error') OVER (
            PARTITION BY s.tenant, s.trace_id, s.parent_span_id, s.operation, s.request_model
            ORDER BY s.start_ns ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS failed_before
    FROM spans s
    SEMI JOIN touched ON s.tenant = touched.tenant AND s.trace_id = touched.trace_id
    WHERE s.operation IN ({_LLM})
      AND s.start_ns BETWEEN (SELECT min(start_ns) FROM touched) AND (SELECT max(end_ns) FROM touched)
),
counted AS (
    SELECT tenant, trace_id, count(*) FILTER (WHERE failed_before > 0 OR retry_attempt > 0) AS retries
    FROM calls GROUP BY tenant, trace_id
)
UPDATE traces SET retries = counted.retries
FROM counted
WHERE traces.tenant = counted.tenant AND traces.trace_id = counted.trace_id
"""

_RUN_COLUMNS = """
    trace_id, journey, outcome, failure_reason, run_start_ns, duration_ns, has_root,
    root_name, root_service, span_count, error_spans, llm_calls, llm_errors, tool_calls,
    retrieval_calls, agent_steps, retries, input_tokens, output_tokens, cached_input_tokens,
    cost_usd, service_version, prompt_name, prompt_version, environment, models, user_id,
    session_id
"""


class DuckDBStore:
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
        memory_limit: str | None = None,
    ) -> None:
        self.path = path
        config: dict[str, Any] = {}
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._conn = duckdb.connect(path, config=config)
        self._migrate()
        self._readers: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue()
        for _ in range(max(1, read_pool_size)):
            self._readers.put(self._conn.cursor())
        self._writer = Writer(
            self._commit,
            max_queued_spans=max_queued_spans,
            max_commit_spans=max_commit_spans,
            max_wait_ms=max_wait_ms,
            retry_after_s=retry_after_s,
        )
        self._closed = False
        self._close_lock = threading.Lock()

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
            self._conn.execute("CHECKPOINT")
        self._conn.close()

    # -- writes --------------------------------------------------------------------

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats

    @property
    def queued_spans(self) -> int:
        return self._writer.queued_spans

    def submit_spans(self, table: pa.Table) -> Future[int]:
        """Queue normalized spans; the future resolves once they are committed."""
        return self._writer.submit(table)

    def _commit(self, tables: list[pa.Table]) -> None:
        batch = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        conn = self._conn
        conn.register("batch", batch)
        try:
            conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute("INSERT INTO spans SELECT * FROM batch")
                conn.execute(_UPSERT_TRACES)
                conn.execute(_RECOUNT_RETRIES)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.unregister("batch")

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

    def get_trace(self, tenant: str, trace_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The run row and every span of one trace; NotFound if the id is unknown."""
        runs = self._rows(
            f"SELECT {_RUN_COLUMNS}, start_ns, end_ns FROM journey_runs WHERE tenant = ? AND trace_id = ?",
            [tenant, trace_id],
        )
        if not runs:
            raise NotFound(f"no trace with id {trace_id!r}")
        run = runs[0]
        spans = self._rows(
            "SELECT * EXCLUDE (tenant) FROM spans WHERE tenant = ? AND trace_id = ? "
            "AND start_ns BETWEEN ? AND ? ORDER BY start_ns, span_id",
            [tenant, trace_id, run["start_ns"], run["end_ns"]],
        )
        return run, spans

    def list_runs(self, q: RunQuery) -> list[dict[str, Any]]:
        """Runs matching ``q``, newest first; at most ``q.limit`` rows."""
        where: list[str] = ["tenant = ?"]
        params: list[Any] = [q.tenant]
        if q.journey:
            where.append("journey = ?")
            params.append(q.journey)
        if q.outcome:
            where.append("outcome = ?")
            params.append(q.outcome)
        if q.since_ns is not None:
            where.append("run_start_ns >= ?")
            params.append(q.since_ns)
        if q.until_ns is not None:
            where.append("run_start_ns < ?")
            params.append(q.until_ns)
        if q.service_version:
            where.append("service_version = ?")
            params.append(q.service_version)
        if q.model:
            where.append("list_contains(models, ?)")
            params.append(q.model)
        if q.after is not None:
            where.append("(run_start_ns < ? OR (run_start_ns = ? AND trace_id < ?))")
            params.extend([q.after[0], q.after[0], q.after[1]])
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM journey_runs WHERE {' AND '.join(where)} "
            "ORDER BY run_start_ns DESC, trace_id DESC LIMIT ?"
        )
        return self._rows(sql, [*params, q.limit])

    def journey_summaries(self, r: TimeRange) -> list[dict[str, Any]]:
        """Per journey: runs, failures, duration percentiles, tokens and cost per run, last seen."""
        where: list[str] = ["tenant = ?", "has_root"]
        params: list[Any] = [r.tenant]
        if r.since_ns is not None:
            where.append("run_start_ns >= ?")
            params.append(r.since_ns)
        if r.until_ns is not None:
            where.append("run_start_ns < ?")
            params.append(r.until_ns)
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
        return self._rows(sql, params)

    def incomplete_traces(self, tenant: str) -> int:
        return int(
            self._rows("SELECT count(*) AS n FROM traces WHERE tenant = ? AND NOT has_root", [tenant])[0]["n"]
        )

    def stats(self) -> dict[str, Any]:
        """Store-wide counts and writer figures (benchmarks and /api/stats read these)."""
        counts = self._rows(
            "SELECT (SELECT count(*) FROM spans) AS spans, (SELECT count(*) FROM traces) AS traces"
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
        }
