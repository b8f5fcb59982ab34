"""The scale-out store on ClickHouse (chdb in-process, or a server): spans, journey runs
assembled by the engine, minute rollups and SLO counts.

Nothing a second ingest node would need is kept in this process: a trace's runs are the
merge of its partial rows (store/clickhouse/semantics.py), a span delivered again is found
in `spans` itself, and the rollups are recounted from the merged runs. What this first
slice does not implement yet raises NotImplementedError (see NOT_YET).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from importlib import resources
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aisre.core.errors import NotFound, PermanentError, RetryableError
from aisre.core.model import RunQuery, SliRule, TimeRange
from aisre.core.population import Population, PopulationQuery
from aisre.core.rows import (
    JourneyRun,
    JourneySummary,
    MetricMinuteRow,
    MetricSeriesRow,
    MetricSeriesStats,
    PlatformScoreRow,
    TraceRun,
)
from aisre.core.schema import MINUTE_NS, SPAN_COLUMN_NAMES
from aisre.core.series import MetricPoint
from aisre.core.slo import JOB_SLI_KINDS
from aisre.normalize.metrics import KNOWN_METRICS
from aisre.normalize.runs import trace_partials_of
from aisre.store.changes import MinuteJournal
from aisre.store.clickhouse import metric_copy, reprice
from aisre.store.clickhouse.client import Client
from aisre.store.clickhouse.cost import ClickHouseCostReads, recount_sql
from aisre.store.clickhouse.jobs import job_slo_counts
from aisre.store.clickhouse.metrics import (
    METRIC_SLI_KINDS,
    ClickHouseMetricTables,
    metric_slo_counts,
)
from aisre.store.clickhouse.platform_scores import (
    platform_counts,
    put_platform_scores,
    read_platform_scores,
)
from aisre.store.clickhouse.policy import ClickHousePolicyReads
from aisre.store.clickhouse.reads import SpanReads
from aisre.store.clickhouse.semantics import (
    LISTING_COLUMNS,
    good_predicate,
    good_sql,
    journey_runs_sql,
    journey_sql,
    measure_names,
    merged_runs_sql,
    run_minutes_select,
)
from aisre.store.duckdb.jobs import deadlines, next_deadline, passed_minutes
from aisre.store.duckdb.platform_scores import is_platform_rule, last_of_each_key
from aisre.store.duckdb.retention import ROLLUP_TABLES, ExpiryStats
from aisre.store.duckdb.store import prepare_batch
from aisre.store.metric_fold import MetricCommit
from aisre.store.protocol import ExportedMinutes
from aisre.store.retention import check_days
from aisre.store.writer import Writer, WriterStats

log = logging.getLogger(__name__)

_RUN_COLUMNS = (
    "trace_id, journey, outcome, failure_reason, run_start_ns, duration_ns, has_root, root_name, root_service, "
    "span_count, error_spans, llm_calls, llm_errors, tool_calls, retrieval_calls, agent_steps, retries, input_tokens, "
    "output_tokens, cached_input_tokens, cost_usd, service_version, prompt_name, prompt_version, environment, models, "
    "user_id, session_id"
)
_TRACE_SPAN_COLUMNS = [c for c in SPAN_COLUMN_NAMES if c not in ("tenant", "resource_id")]
# Spans of a run start after its root; a run longer than this is counted only this far.
_STEP_SLACK_NS = 3600 * 10**9
_TENANT_KEY = "tenant = {tenant:String}"
# Every insert of a batch carries a token: the same batch inserted again (a retry after a
# lost acknowledgement) is dropped by the engine, in the views fed from it too.
_INSERT_SETTINGS = {"insert_deduplicate": 1, "deduplicate_blocks_in_dependent_materialized_views": 1}
_DAY_NS = 86_400 * 10**9
# Raw data past its stamped retention as of {now:Int64}, per table: its time column. The
# engine's TTL (0001, 0002, 0007) uses the same expression against the server's clock.
_RAW_TABLES = (("spans", "end_ns"), ("run_parts", "end_ns"), ("run_roots", "minute_ns"), ("scores", "time_ns"))


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ranges(minutes: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for minute in sorted(minutes):
        if out and out[-1][1] == minute:
            out[-1] = (out[-1][0], minute + MINUTE_NS)
        else:
            out.append((minute, minute + MINUTE_NS))
    return out


def _token(kind: str, keys: list[tuple[str, str, str]]) -> str:
    digest = hashlib.sha256("\n".join("\x00".join(k) for k in sorted(keys)).encode()).hexdigest()
    return f"{kind}:{digest}"


def _span_keys(spans: pa.Table) -> list[tuple[str, str, str]]:
    return list(zip(*(spans.column(c).to_pylist() for c in ("tenant", "trace_id", "span_id")), strict=True))


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


class _NotYet:
    """Parts of the store protocol this backend does not implement yet."""


def _not_yet(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{name} is not yet on ClickHouse (issue 17)")

    method.__name__ = name
    method.__doc__ = f"{name}: not yet on ClickHouse (issue 17)."
    return method


# Store methods not on ClickHouse: the control plane (alerts, keys, audit, retention
# settings, gate verdicts, policy sets, decisions and violations), which PostgreSQL is to
# hold (issue 17). runs_to_judge reads runs against the judged marks (policy_runs, control
# plane): the split store composes it (store/split.py) from this store's
# policy_candidate_runs and the control store's marks, as it does save_policy_run.
NOT_YET = (
    "active_alerts", "save_alerts", "list_alerts", "add_key", "revoke_key",
    "active_keys", "auth_latched", "list_keys", "audit", "list_audit",
    "save_gate_verdict", "list_gate_verdicts", "get_gate_verdict",
    "put_policy_set", "policy_sets", "policy_tenants", "add_decisions", "list_decisions",
    "runs_to_judge", "save_policy_run", "list_violations", "policy_run", "violation_counts", "policy_totals",
    "save_policy_marks", "policy_marks", "expire_policy_records", "capacity_levels", "put_capacity_levels",
)
_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")
INCIDENTS_NOT_YET = (
    "list_changes", "create_incident", "update_incident", "get_incident",
    "open_incident_for", "list_incidents", "events", "alerts", "incidents_of_alert", "incidents_for_alert_keys",
    "add_action_item", "update_action_item", "action_items", "add_change", "detect_changes",
    "add_notification_attempt", "notification_attempts",
)
COST_NOT_YET = (
    "list_overrides", "put_override", "delete_override", "budget_tenants", "list_budgets",
    "put_budget", "delete_budget", "list_rate_limits", "put_rate_limit",
)


class ClickHouseIncidents(_NotYet):
    """What incidents read from the data plane; the incident tables themselves are not yet here."""

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store

    def run_appearances(self, tenant: str, since_received_ns: int) -> list[tuple[Any, ...]]:
        """What change detection reads (store/clickhouse/appearances.py)."""
        from aisre.store.clickhouse.appearances import run_appearances

        return run_appearances(self._store.client, tenant, since_received_ns)

    def run_minutes(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Per-minute runs and failures of one journey over [start, end), from the rollups."""
        self._store.flush_rollups()
        return _rows(self._store.client.query(
            "SELECT minute_ns, runs, failures, cost_usd, failed_cost_usd FROM run_minutes FINAL "
            "WHERE tenant = {tenant:String} AND journey = {journey:String} AND minute_ns >= {start:Int64} "
            "AND minute_ns < {end:Int64} AND runs > 0 ORDER BY minute_ns",
            {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns},
        ))


    def _runs_of(self, select: str, where: str, params: dict[str, Any], tail: str = "") -> list[dict[str, Any]]:
        return _rows(self._store.client.query(
            f"SELECT {select} FROM ({journey_runs_sql(_TENANT_KEY)}) WHERE journey = {{journey:String}} "
            f"AND run_start_ns >= {{start:Int64}} AND run_start_ns < {{end:Int64}}{where} {tail}", params))

    def first_failure(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> int | None:
        """Start of the first failed run of a journey in [start, end), if any."""
        rows = self._runs_of("min(run_start_ns) AS t, count() AS n", " AND outcome = 'failure'",
                             {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns})
        return int(rows[0]["t"]) if rows and rows[0]["n"] else None

    def sample_runs(
        self, tenant: str, journey: str, start_ns: int, end_ns: int, outcome: str, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` runs of one outcome, newest first, with what triage compares."""
        return self._runs_of(
            "trace_id, run_start_ns, duration_ns, failure_reason, service_version, prompt_name, prompt_version, "
            "models, user_id, tool_calls, retrieval_calls, llm_errors, cost_usd", " AND outcome = {outcome:String}",
            {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns, "outcome": outcome, "limit": limit},
            "ORDER BY run_start_ns DESC LIMIT {limit:UInt64}")

    def count_runs(self, tenant: str, journey: str, start_ns: int, end_ns: int, outcome: str) -> int:
        rows = self._runs_of("count() AS n", " AND outcome = {outcome:String}",
                             {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns, "outcome": outcome})
        return int(rows[0]["n"])

    def span_profile(self, tenant: str, trace_ids: list[str], start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Per trace and operation: spans, errored spans, summed duration, worst HTTP status, error types."""
        if not trace_ids:
            return []
        return _rows(self._store.client.query(
            "SELECT trace_id, operation, is_root, count() AS spans, countIf(status = 'error') AS errors, "
            "sum(duration_ns) AS duration_ns, max(http_status) AS http_status, "
            "groupUniqArrayIf(error_type, error_type IS NOT NULL) AS error_types, "
            "countIf(retry_attempt > 0) AS retries, "
            # Retrieval that found nothing: the data layer, whatever the span's status says.
            "countIf(operation = 'retrieval' AND (toInt64OrNull(trim(BOTH '\"' FROM "
            "JSONExtractRaw(ifNull(attributes, '{}'), 'db.response.returned_rows'))) = 0 OR "
            "JSONExtractRaw(ifNull(attributes, '{}'), 'aisre.retrieval.documents') IN ('[]', '\"[]\"'))) AS empty_results "
            "FROM spans WHERE tenant = {tenant:String} AND trace_id IN {ids:Array(String)} "
            "AND start_ns >= {start:Int64} AND start_ns < {end:Int64} GROUP BY trace_id, operation, is_root",
            {"tenant": tenant, "ids": list(trace_ids), "start": start_ns, "end": end_ns}))

    def impact(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> dict[str, Any]:
        """Failed runs, distinct users among them and their cost over [start, end)."""
        return self._runs_of(
            "count() AS runs, countIf(outcome = 'failure') AS failed_runs, "
            "uniqExactIf(user_id, outcome = 'failure' AND user_id IS NOT NULL) AS users, "
            "uniqExactIf(user_id, user_id IS NOT NULL) AS all_users, "
            "sumIf(cost_usd, outcome = 'failure') AS failed_cost_usd, sum(cost_usd) AS cost_usd", "",
            {"tenant": tenant, "journey": journey, "start": start_ns, "end": end_ns})[0]


class ClickHouseCost(ClickHouseCostReads, _NotYet):
    """Cost reads from the rollups, and repricing stored calls (store/clickhouse/reprice.py);
    prices, budgets and rate limits are control plane (PostgreSQL, through the split store)."""

    def priced_models(self, tenant: str, since_ns: int, until_ns: int) -> list[tuple[str, str]]:
        """(provider, model) of every model call in the range: what a reprice must price."""
        return reprice.priced_models(self._store, tenant, since_ns, until_ns)

    def reprice(self, tenant: str, since_ns: int, until_ns: int, prices: pa.Table) -> dict[str, Any]:
        """Recompute the range's model calls' cost and price version from ``prices``, then their
        runs' costs and the rollups of their minutes (a null version means unpriced)."""
        return reprice.reprice(self._store, tenant, since_ns, until_ns, prices)


for _name in INCIDENTS_NOT_YET:
    setattr(ClickHouseIncidents, _name, _not_yet(f"incidents.{_name}"))
for _name in COST_NOT_YET:
    setattr(ClickHouseCost, _name, _not_yet(f"cost.{_name}"))


class ClickHouseStore(SpanReads, ClickHousePolicyReads, _NotYet):
    """Spans, runs, scores, metric series, rollups and SLO counts in ClickHouse. Writes go
    through one writer thread per process (group commit into large inserts); reads query
    the engine."""

    backend = "clickhouse"

    def __init__(
        self,
        client: Client,
        *,
        max_queued_spans: int = 200_000,
        max_commit_spans: int = 100_000,
        max_wait_ms: int = 5,
        retry_after_s: float = 1.0,
        rollup_interval_ms: int = 1000,
        retention_days: float = 14,
        retention_overrides: dict[str, float] | None = None,
        retention_interval_s: float = 0,
        rollup_retention_days: float = 400,
        max_metric_series: int = 10_000,
        dedup_window_s: float = 3600,
        clock: Callable[[], int] = time.time_ns,
        **_unused: Any,
    ) -> None:
        self.client = client
        self._clock = clock
        self._retry_after_s = retry_after_s
        self._rollup_retention_days = float(rollup_retention_days)
        # Redelivered spans are found in ``spans`` for as long as they are stored; this is the
        # window retention() promises (the setting's, as on DuckDB).
        self._dedup_window_s = float(dedup_window_s)
        # What expire() removed since the store opened; the TTL's own drops are not counted.
        self.expiry = ExpiryStats()
        self._retention_days = float(retention_days)
        self._retention_file = dict(retention_overrides or {})
        self._retention_api: dict[str, float] = {}  # set through the API (the split store applies them)
        # Expiry is the engine's TTL on the retention stamped on each span; as with DuckDB,
        # retention_interval_s = 0 turns it off (spans are then stamped 0: kept).
        self._expiry_on = retention_interval_s > 0
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.duplicate_spans = 0
        self._dirty: dict[str, set[int]] = {}
        self._dirty_lock = threading.Lock()
        self._rollups_on = rollup_interval_ms > 0
        self._sli_rules: dict[str, list[SliRule]] = {}
        self._slo_changes = MinuteJournal()
        self._resources_seen: set[tuple[str, int]] = set()
        self._deadline_checked_ns: int | None = None  # deadlines due up to here are marked
        self._migrate()
        self._apply_rollup_ttl()
        self._metrics = ClickHouseMetricTables(client, max(0, int(max_metric_series)))
        self._writer = Writer(
            self._commit, max_queued_spans=max_queued_spans, max_commit_spans=max_commit_spans,
            max_wait_ms=max_wait_ms, retry_after_s=retry_after_s, name="aisre-clickhouse-writer",
            tick=self.refresh_rollups if self._rollups_on else None,
            tick_interval_s=(rollup_interval_ms if rollup_interval_ms > 0 else 1000) / 1000,
        )
        self._closed = False
        self._close_lock = threading.Lock()
        self.incidents = ClickHouseIncidents(self)
        self.cost = ClickHouseCost(self)

    # -- lifecycle -----------------------------------------------------------------

    def _migrate(self) -> None:
        self.client.command(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_ns Int64) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        done = set(self.client.query("SELECT version FROM schema_migrations").column("version").to_pylist())
        folder = resources.files("aisre.store.clickhouse").joinpath("migrations")
        scripts = sorted((e.name, e.read_text()) for e in folder.iterdir() if e.name.endswith(".sql"))
        for name, sql in scripts:
            version = int(name.split("_", 1)[0])
            if version in done:
                continue
            # Statements are idempotent (IF NOT EXISTS): a migration cut short is run again whole.
            for statement in sql.split(";\n"):
                if statement.strip() and any(
                    line.strip() and not line.strip().startswith("--") for line in statement.splitlines()
                ):
                    self.client.command(statement)
            self.client.command(
                "INSERT INTO schema_migrations VALUES ({v:UInt32}, {n:String}, {t:Int64})",
                {"v": version, "n": name, "t": time.time_ns()},
            )

    def _apply_rollup_ttl(self) -> None:
        """Give the minute rollups the TTL of rollup_retention_days (0: none), when the
        tables do not have it yet: a table-wide TTL, so only a change of the setting costs a
        pass over the stored rows."""
        # As with raw spans, retention_interval_s = 0 turns expiry off (the contract suite's
        # captures are older than 400 days; DuckDB too expires nothing then).
        on = self._rollup_retention_days > 0 and self._expiry_on
        days = int(np.ceil(self._rollup_retention_days)) if on else 0
        found = self.client.query(
            "SELECT name, create_table_query AS ddl FROM system.tables WHERE database = currentDatabase() "
            "AND name IN {names:Array(String)}", {"names": list(ROLLUP_TABLES)})
        for name, ddl in zip(found.column("name").to_pylist(), found.column("ddl").to_pylist(), strict=True):
            has = " TTL " in ddl
            if days and f"toIntervalDay({days})" not in ddl:
                self.client.command(
                    f"ALTER TABLE {name} MODIFY TTL toDateTime(intDiv(minute_ns, 1000000000)) + toIntervalDay({days})")
            elif not days and has:
                self.client.command(f"ALTER TABLE {name} REMOVE TTL")

    def schema_version(self) -> int:
        rows = self.client.query("SELECT max(version) AS v FROM schema_migrations").column("v").to_pylist()
        return int(rows[0] or 0) if rows else 0

    def close(self) -> None:
        """Commit everything accepted, roll it up and close. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._writer.close()
        try:
            self.refresh_rollups()
        finally:
            self.client.close()

    def _next_seq(self, n: int = 1) -> int:
        """A commit-order number: the clock, strictly increasing in this process (nodes agree
        on order as far as their clocks do)."""
        with self._seq_lock:
            first = max(time.time_ns(), self._seq + 1)
            self._seq = first + n - 1
            return first

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

    # The same prepare contract as every backend: spans, per-trace partials, resources, scores.
    prepare = staticmethod(prepare_batch)

    def submit_prepared(self, prepared: tuple[pa.Table, ...]) -> Future[int]:
        """Queue a prepared batch; resolves once committed, with the spans stored."""
        return self._writer.submit(prepared, prepared[0].num_rows)

    def submit_spans(self, spans: pa.Table, resources: pa.Table, scores: pa.Table | None = None) -> Future[int]:
        """Queue normalized spans and their resources; resolves once committed."""
        return self.submit_prepared(prepare_batch(spans, trace_partials_of(spans), resources, scores))

    def _retention_of(self, tenant: str) -> int:
        """The retention stamped on ``tenant``'s spans: whole days, 0 to keep them."""
        days = self._retention_setting(tenant)[0]
        return int(np.ceil(days)) if days > 0 and self._expiry_on else 0

    def _stored_keys(self, spans: pa.Table) -> set[tuple[str, str, str]]:
        """Which spans of ``spans`` are stored already: a redelivered span has the same
        start, so only the batch's time range of its tenants is searched."""
        if spans.num_rows == 0:
            return set()
        found = self.client.query(
            "SELECT tenant, trace_id, span_id FROM spans WHERE tenant IN {tenants:Array(String)} "
            "AND start_ns >= {lo:Int64} AND start_ns <= {hi:Int64} AND trace_id IN {traces:Array(String)}",
            {"tenants": pc.unique(spans.column("tenant")).to_pylist(),
             "lo": pc.min(spans.column("start_ns")).as_py(), "hi": pc.max(spans.column("start_ns")).as_py(),
             "traces": pc.unique(spans.column("trace_id")).to_pylist()},
        )
        return set(zip(*(found.column(c).to_pylist() for c in ("tenant", "trace_id", "span_id")), strict=True))

    def _commit(self, batches: list[tuple[pa.Table, ...]]) -> list[int]:
        """Store a group of batches once each: spans already stored, or sent twice in the
        group, are left out (and their trace partials recomputed)."""
        spans = [b[0] for b in batches]
        sent = sum(t.num_rows for t in spans)
        seen = self._stored_keys(pa.concat_tables(spans))
        kept_spans: list[pa.Table] = []
        kept_parts: list[pa.Table] = []
        kept_scores: list[pa.Table] = []
        for span_table, part, _, scores in batches:
            keys = list(zip(*(span_table.column(c).to_pylist() for c in ("tenant", "trace_id", "span_id")), strict=True))
            keep = []
            for key in keys:
                keep.append(key not in seen)
                seen.add(key)
            if all(keep):
                kept_spans.append(span_table)
                kept_parts.append(part)
                kept_scores.append(scores)
                continue
            mask = pa.array(keep, type=pa.bool_())
            kept = span_table.filter(mask)
            kept_spans.append(kept)
            kept_parts.append(trace_partials_of(kept))
            if scores.num_rows:
                ids = set(zip(*(kept.column(c).to_pylist() for c in ("tenant", "trace_id", "span_id")), strict=True))
                score_keys = zip(*(scores.column(c).to_pylist() for c in ("tenant", "trace_id", "span_id")), strict=True)
                scores = scores.filter(pa.array([k in ids for k in score_keys], type=pa.bool_()))
            kept_scores.append(scores)
        stored = sum(t.num_rows for t in kept_spans)
        if stored:
            self._insert(kept_spans, kept_parts, pa.concat_tables([b[2] for b in batches]), kept_scores)
        self.duplicate_spans += sent - stored
        return [t.num_rows for t in kept_spans]

    def _insert(self, spans: list[pa.Table], parts: list[pa.Table], resources: pa.Table, scores: list[pa.Table]) -> None:
        """Insert one group: each request's run partials (and scores) first, the group's
        spans last. A commit cut short before its spans is retried: the request's spans are
        not stored yet, so its partials are recomputed alike and carry the same token (one
        per request, so the retry may be grouped with other requests, on another node), and
        the engine drops the partials it already has, in the views fed from them too."""
        table = self._insert_parts(spans, parts)
        for request, request_scores in zip(spans, scores, strict=True):
            if request_scores.num_rows:
                self.client.insert_arrow("scores", self._stamped(request_scores), {
                    **_INSERT_SETTINGS, "insert_deduplication_token": _token("scores", _span_keys(request))})
        resources = self._new_resources(resources)
        if resources.num_rows:
            self.client.insert_arrow("resources", resources)
        batch = pa.concat_tables(spans)
        retention = pa.array([self._retention_of(t) for t in batch.column("tenant").to_pylist()], type=pa.uint32())
        self.client.insert_arrow("spans", batch.append_column("retention_days", retention),
                                 {**_INSERT_SETTINGS, "insert_deduplication_token": _token("spans", _span_keys(batch))})
        self._mark_dirty(self._root_minutes(table))

    def _stamped(self, table: pa.Table) -> pa.Table:
        """``table`` with the retention of each row's tenant (see _retention_of)."""
        days = pa.array([self._retention_of(t) for t in table.column("tenant").to_pylist()], type=pa.uint32())
        return table.append_column("retention_days", days)

    def _new_resources(self, resources: pa.Table) -> pa.Table:
        """The resources this process has not inserted lately. Only a saving: `resources`
        replaces a repeated row anyway, but every insert costs a part."""
        keys = list(zip(resources.column("tenant").to_pylist(), resources.column("resource_id").to_pylist(), strict=True))
        fresh = [k not in self._resources_seen for k in keys]
        if len(self._resources_seen) > 100_000:
            self._resources_seen.clear()
        self._resources_seen.update(keys)
        return resources if all(fresh) else resources.filter(pa.array(fresh, type=pa.bool_()))

    def _insert_parts(self, spans: list[pa.Table], parts: list[pa.Table]) -> pa.Table:
        """Insert each request's trace partials, in commit order (``seq``), with a token of
        its own span keys; returns them all."""
        first = self._next_seq(len(parts))
        tables = []
        for i, (request, part) in enumerate(zip(spans, parts, strict=True)):
            if request.num_rows == 0:
                continue
            retention = pa.array([self._retention_of(t) for t in part.column("tenant").to_pylist()], type=pa.uint32())
            table = part.append_column("seq", pa.array([first + i] * part.num_rows, type=pa.int64())).append_column(
                "retention_days", retention)
            self.client.insert_arrow("run_parts_in", table, {
                **_INSERT_SETTINGS, "insert_deduplication_token": _token("parts", _span_keys(request))})
            tables.append(table)
        return pa.concat_tables(tables)

    def _root_minutes(self, parts: pa.Table) -> dict[str, set[int]]:
        """The minutes the merged runs of ``parts``' traces start in (rooted runs only): the
        minutes this commit changed, a late child's included. A partial carrying its root
        says its minute; the others are looked up in the merged runs."""
        touched: dict[str, set[int]] = {}
        rooted = parts.column("has_root")
        for tenant, start in zip(*(parts.filter(rooted).column(c).to_pylist() for c in ("tenant", "root_start_ns")), strict=True):
            if start is not None:
                touched.setdefault(tenant, set()).add(start // MINUTE_NS * MINUTE_NS)
        rest = parts.filter(pc.invert(rooted))
        if rest.num_rows == 0:
            return touched
        found = self.client.query(
            "SELECT tenant, intDiv(argMinMerge(root_start_ns), {m:Int64}) * {m:Int64} AS minute_ns FROM run_parts "
            "WHERE tenant IN {tenants:Array(String)} AND trace_id IN {traces:Array(String)} "
            "GROUP BY tenant, trace_id HAVING max(has_root)",
            {"m": MINUTE_NS, "tenants": pc.unique(rest.column("tenant")).to_pylist(),
             "traces": pc.unique(rest.column("trace_id")).to_pylist()},
        )
        for tenant, minute in zip(found.column("tenant").to_pylist(), found.column("minute_ns").to_pylist(), strict=True):
            if minute is not None:
                touched.setdefault(tenant, set()).add(int(minute))
        return touched

    def _mark_dirty(self, touched: dict[str, set[int]]) -> None:
        if not self._rollups_on:
            return
        with self._dirty_lock:
            for tenant, minutes in touched.items():
                self._dirty.setdefault(tenant, set()).update(minutes)

    # -- scores --------------------------------------------------------------------

    def add_scores(self, scores: pa.Table) -> list[int]:
        """Store scores whose trace is known; returns the row indexes refused as unknown traces.
        The runs they score get their minutes recounted, so score SLOs see late evaluations."""
        return list(self._writer.call(lambda: self._add_scores(scores)).result(60))

    def _add_scores(self, scores: pa.Table) -> list[int]:
        if scores.num_rows == 0:
            return []
        found = self.client.query(
            "SELECT tenant, trace_id, max(has_root) AS rooted, argMinMerge(root_start_ns) AS root_start FROM run_parts "
            "WHERE tenant IN {tenants:Array(String)} AND trace_id IN {traces:Array(String)} GROUP BY tenant, trace_id",
            {"tenants": pc.unique(scores.column("tenant")).to_pylist(),
             "traces": pc.unique(scores.column("trace_id")).to_pylist()},
        ).to_pylist()
        known = {(r["tenant"], r["trace_id"]) for r in found}
        keys = zip(scores.column("tenant").to_pylist(), scores.column("trace_id").to_pylist(), strict=True)
        keep = [k in known for k in keys]
        refused = [n for n, ok in enumerate(keep) if not ok]
        accepted = scores.filter(pa.array(keep, type=pa.bool_()))
        if accepted.num_rows:
            # Stored as often as sent, as on DuckDB: the same evaluation posted twice is two rows.
            self.client.insert_arrow("scores", self._stamped(accepted), {"insert_deduplicate": 0})
            touched: dict[str, set[int]] = {}
            for r in found:
                if r["rooted"] and r["root_start"] is not None:
                    touched.setdefault(r["tenant"], set()).add(int(r["root_start"]) // MINUTE_NS * MINUTE_NS)
            self._mark_dirty(touched)
        return refused

    def add_platform_scores(self, scores: pa.Table) -> int:
        """Store scores of subjects (rows of PLATFORM_SCORE_ARROW_SCHEMA), one per (tenant,
        subject, name, time): a score sent again is a newer version of the stored one. Score
        SLIs over their subjects are recounted for the minutes touched. Returns the rows kept."""
        return int(self._writer.call(lambda: self._add_platform_scores(scores)).result(60))

    def _add_platform_scores(self, scores: pa.Table) -> int:
        if not scores.num_rows:
            return 0
        touched = put_platform_scores(self.client, scores, self._next_seq())
        if self._rollups_on:
            # Recounted now, whatever raw-span expiry has done to these minutes (platform
            # scores are kept as long as the rollups).
            for tenant, minutes in touched.items():
                rules = [r for r in self._sli_rules.get(tenant, []) if is_platform_rule(r)]
                if rules:
                    for start, end in _ranges(minutes):
                        self._rebuild_slo_minutes(tenant, rules, start, end)
                    self._slo_changes.record(tenant, minutes)
        return int(last_of_each_key(scores).num_rows)

    def platform_scores(
        self, tenant: str, subject: str | None = None, name: str | None = None,
        since_ns: int | None = None, until_ns: int | None = None, limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Stored scores of subjects, oldest first, filtered by subject, name and [since, until)."""
        return read_platform_scores(self.client, tenant, subject, name, since_ns, until_ns, limit)

    # -- metrics -------------------------------------------------------------------

    def submit_metrics(self, tenant: str, points: list[MetricPoint]) -> Future[MetricCommit]:
        """Fold OTLP metric points into the tenant's minute series; resolves once committed,
        saying how many points the series limit refused."""
        if self._writer.queued_spans >= self._writer.max_queued_spans:
            raise RetryableError(
                f"ingest queue is full ({self._writer.queued_spans} spans waiting to be written); retry later",
                self._retry_after_s, overloaded=True, reason="queue_full",
            )
        return self._writer.call(lambda: self._commit_metrics(tenant, points))

    def _commit_metrics(self, tenant: str, points: list[MetricPoint]) -> MetricCommit:
        result = self._metrics.commit(tenant, points)
        if result.minutes and any(r.kind in METRIC_SLI_KINDS for r in self._sli_rules.get(tenant, [])):
            self._mark_dirty({tenant: result.minutes})
        return result

    def compact_metrics(self) -> int:
        """Fold every metric minute's rows into one now (the engine's merges do it anyway)."""
        return int(self._writer.call(lambda: self._metrics.compact(2**62)).result(600))

    def metric_series(self, tenant: str, metric: str | None = None) -> list[dict[str, Any]]:
        """The tenant's series (name, labels, kind, unit, first and last seen, and what a
        recognised metric measures), by name."""
        where, params = "tenant = {tenant:String}", {"tenant": tenant}
        if metric is not None:
            where += " AND metric = {metric:String}"
            params["metric"] = metric
        rows = _rows(self.client.query(
            f"SELECT series_id, metric, labels, kind, unit, first_ns, last_ns FROM metric_series FINAL "
            f"WHERE {where} ORDER BY metric, labels", params))
        for row in rows:
            row["meaning"] = KNOWN_METRICS.get(row["metric"], (None, None))[0]
        return rows

    def metric_series_stats(self, tenant: str, series_ids: list[int]) -> list[MetricSeriesStats]:
        """First and last kept minute and points of each of ``series_ids`` that has minutes, by id."""
        if not series_ids:
            return []
        # Summing over unmerged parts is exact: points is a SimpleAggregateFunction(sum).
        rows = _rows(self.client.query(
            "SELECT series_id, min(minute_ns) AS first_minute_ns, max(minute_ns) AS last_minute_ns, "
            "sum(points) AS points FROM metric_minutes WHERE tenant = {tenant:String} AND series_id IN {ids:Array(Int64)} "
            "GROUP BY series_id ORDER BY series_id", {"tenant": tenant, "ids": [int(i) for i in series_ids]}))
        return [MetricSeriesStats(series_id=int(r["series_id"]), first_minute_ns=int(r["first_minute_ns"]),
                                  last_minute_ns=int(r["last_minute_ns"]), points=int(r["points"])) for r in rows]

    def metric_minutes(self, tenant: str, series_ids: list[int], start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Minute rows of the given series in [start_ns, end_ns), by series and minute."""
        return [
            {"series_id": sid, "minute_ns": minute, "value": a.value, "points": a.points, "min": a.min, "max": a.max,
             "last": a.last, "sum": a.sum, "bounds": list(a.bounds) if a.bounds is not None else None,
             "buckets": a.buckets}
            for sid, minute, a in self._metrics.minutes(tenant, series_ids, start_ns, end_ns)
        ]

    # -- metric rollups and platform scores, read back and written as stored (aisre store copy)

    def metric_tenants(self) -> list[str]:
        """Every tenant with metric series or platform scores."""
        return sorted({str(r["tenant"]) for r in _rows(self.client.query(
            "SELECT DISTINCT tenant FROM metric_series UNION DISTINCT SELECT DISTINCT tenant FROM platform_scores"))})

    def export_metric_series(self, tenant: str, after: int | None, limit: int) -> list[MetricSeriesRow]:
        """Up to ``limit`` series with their kept point, by series id after ``after``."""
        return metric_copy.export_series(self.client, tenant, after, limit)

    def export_metric_minutes(self, tenant: str, after: list[int] | None, limit: int) -> ExportedMinutes:
        """Up to ``limit`` folded minute rows by (series_id, minute_ns), the table's order, after ``after``."""
        return metric_copy.export_minutes(self._metrics, self.client, tenant, after, limit)

    def export_platform_scores(self, tenant: str, after: list[Any] | None, limit: int) -> list[PlatformScoreRow]:
        """Up to ``limit`` platform scores by (subject, name, time_ns) after ``after``."""
        return metric_copy.export_platform_scores(self.client, tenant, after, limit)

    def import_metric_series(self, tenant: str, rows: list[MetricSeriesRow]) -> int:
        """Store series the tenant does not have yet, kept point included; returns how many were new."""
        return int(self._writer.call(lambda: metric_copy.import_series(self.client, tenant, rows)).result(600))

    def import_metric_minutes(self, tenant: str, rows: list[MetricMinuteRow]) -> int:
        """Store (series, minute) rows the tenant does not have yet; returns how many were new."""
        def run() -> int:
            minutes = metric_copy.import_minutes(self.client, tenant, rows)
            if minutes and any(r.kind in METRIC_SLI_KINDS for r in self._sli_rules.get(tenant, [])):
                self._mark_dirty({tenant: set(minutes)})
            return len(minutes)
        return int(self._writer.call(run).result(600))

    def metric_copy_totals(self, tenant: str) -> dict[str, float]:
        """Series, per metric the minutes' value and point sums, platform scores and their sum."""
        return metric_copy.copy_totals(self.client, tenant)

    def put_slo_minutes(self, tenant: str, slo: str, start_ns: int, end_ns: int, rows: list[tuple[int, int, int]]) -> None:
        """Replace an externally counted SLO's (minute_ns, good, total) rows in [start_ns, end_ns)
        (SLIs read from Prometheus; the rollups never recount them)."""
        self._writer.call(lambda: self._put_slo_minutes(tenant, slo, start_ns, end_ns, rows)).result(600)

    def _put_slo_minutes(self, tenant: str, slo: str, start_ns: int, end_ns: int, rows: list[tuple[int, int, int]]) -> None:
        kept = [r for r in rows if start_ns <= r[0] < end_ns and r[2] > 0]
        # Rows the new ones do not replace are overwritten with zeros (a newer version).
        self.client.command(
            "INSERT INTO slo_minutes SELECT tenant, slo, minute_ns, 0, 0, {v:Int64} FROM slo_minutes FINAL "
            "WHERE tenant = {tenant:String} AND slo = {slo:String} AND minute_ns >= {start:Int64} "
            "AND minute_ns < {end:Int64} AND total > 0",
            {"tenant": tenant, "slo": slo, "start": start_ns, "end": end_ns, "v": self._next_seq()})
        if kept:
            self.client.insert_arrow("slo_minutes", pa.table({
                "tenant": pa.array([tenant] * len(kept), pa.string()), "slo": pa.array([slo] * len(kept), pa.string()),
                "minute_ns": pa.array([r[0] for r in kept], pa.int64()),
                "good": pa.array([r[1] for r in kept], pa.int64()), "total": pa.array([r[2] for r in kept], pa.int64()),
                "version": pa.array([self._next_seq()] * len(kept), pa.int64()),
            }))
        small = end_ns - start_ns <= 10_000 * MINUTE_NS
        first = start_ns // MINUTE_NS * MINUTE_NS
        self._slo_changes.record(tenant, set(range(first, end_ns, MINUTE_NS)) if small else None)

    # -- retention -----------------------------------------------------------------

    def expire(self, now_ns: int | None = None, max_steps: int = 1_000_000) -> ExpiryStats:
        """Expire, as of ``now_ns`` (default: the clock), what is past its retention, and
        return the running totals. The engine's TTL does this in the background against the
        server's clock (whole daily parts of spans, rows of the rest); this is the explicit
        pass: spans, runs and scores past the retention stamped on them, and minute rollups
        past rollup_retention_days, deleted now, synchronously. The rollups of the expired
        spans' minutes stay (rollups outlive raw data); ``max_steps`` is unused (one pass)."""
        return self._writer.call(lambda: self._expire(self._clock() if now_ns is None else now_ns)).result(3600)

    def _expire(self, now: int) -> ExpiryStats:
        params = {"now": int(now), "day": _DAY_NS}
        traces = 0
        for table, column in _RAW_TABLES:
            due = f"retention_days > 0 AND {column} + toInt64(retention_days) * {{day:Int64}} < {{now:Int64}}"
            what = "uniqExact(tenant, trace_id)" if table == "run_parts" else "count()"
            n = int(self.client.query(f"SELECT {what} AS n FROM {table} WHERE {due}", params).column("n")[0].as_py())
            if not n:
                continue  # a mutation is a pass over the table's parts: only when something is due
            # Literals, not parameters: not every server takes query parameters in ALTER.
            literal = due.replace("{day:Int64}", str(_DAY_NS)).replace("{now:Int64}", str(int(now)))
            self.client.command(f"ALTER TABLE {table} DELETE WHERE {literal} SETTINGS mutations_sync = 1")
            if table == "spans":
                self.expiry.spans += n
            elif table == "run_parts":
                traces = n
        self.expiry.traces += traces
        self.expiry.steps += 1
        self.expiry.last_step_traces = traces
        if self._rollup_retention_days > 0:
            cutoff = {"cutoff": int(now) - int(self._rollup_retention_days * _DAY_NS)}
            old = _rows(self.client.query(
                "SELECT " + ", ".join(f"(SELECT uniqExact(minute_ns) FROM {t} WHERE minute_ns < {{cutoff:Int64}}) AS {t}"
                                      for t in ROLLUP_TABLES), cutoff))[0]
            for table in ROLLUP_TABLES:
                if old[table]:
                    self.client.command(
                        f"ALTER TABLE {table} DELETE WHERE minute_ns < {cutoff['cutoff']} SETTINGS mutations_sync = 1")
            self.expiry.rollup_minutes += int(old["run_minutes"])
        return self.expiry

    # -- rollups -------------------------------------------------------------------

    def refresh_rollups(self) -> int:
        """Recount the minutes commits touched since the last refresh (and the minutes of
        deadlines that fell due since: a run that never came counts bad without new data)."""
        self._passed_deadlines(self._clock())
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, {}
        if not dirty:
            return 0
        try:
            return self._rebuild(dirty)
        except Exception:
            with self._dirty_lock:
                for tenant, minutes in dirty.items():
                    self._dirty.setdefault(tenant, set()).update(minutes)
            raise

    def _first_recountable_minute(self, tenant: str) -> int:
        """Minutes before this may have lost runs to expiry: a recount would count what is
        left, so they keep the counts they have (rollups outlive raw data)."""
        days = self._retention_of(tenant)
        return -(2**62) if days == 0 else (self._clock() - days * 86_400 * 10**9) // MINUTE_NS * MINUTE_NS

    def _deadline_minutes(self, tenant: str, minutes: set[int], now_ns: int) -> set[int]:
        """Deadline minutes a recount of ``minutes`` must include (as store/duckdb does: every
        due deadline from the first of them on, at most the last 1000)."""
        out: set[int] = set()
        for rule in self._sli_rules.get(tenant, []) if minutes else []:
            if rule.kind == "deadline" and rule.period_ns:
                first = next_deadline(rule, min(minutes))
                if first is not None:
                    begin = max(first, now_ns - 1000 * rule.period_ns)
                    out.update(d // MINUTE_NS * MINUTE_NS for d in deadlines(rule, begin, now_ns + 1))
        return out

    def _passed_deadlines(self, now_ns: int) -> None:
        """Mark the minutes of deadlines that fell due since the last pass."""
        last = self._deadline_checked_ns
        self._deadline_checked_ns = now_ns
        due: dict[str, set[int]] = {}
        for tenant, rules in self._sli_rules.items():
            for rule in rules:
                if rule.kind == "deadline":
                    for d in deadlines(rule, (last if last is not None else now_ns) + 1, now_ns + 1):
                        due.setdefault(tenant, set()).add(d // MINUTE_NS * MINUTE_NS)
            # Freshness minutes count once they end, new data or not (a stale dataset goes bad).
            if any(rule.kind == "dataset_freshness" for rule in rules):
                due.setdefault(tenant, set()).update(passed_minutes(last, now_ns))
        if due:
            self._mark_dirty(due)

    def _rebuild(self, dirty: dict[str, set[int]]) -> int:
        count = 0
        now = self._clock()
        dirty = {
            tenant: kept | self._deadline_minutes(tenant, kept, now) for tenant, minutes in dirty.items()
            if (kept := {m for m in minutes if m >= self._first_recountable_minute(tenant)})
        }
        for tenant, minutes in dirty.items():
            for start, end in _ranges(minutes):
                self._rebuild_run_minutes(tenant, start, end)
                self._rebuild_cost_minutes(tenant, start, end)
                self._rebuild_slo_minutes(tenant, self._sli_rules.get(tenant, []), start, end)
                count += (end - start) // MINUTE_NS
            self._slo_changes.record(tenant, minutes)
            self._recount_freshness(tenant, minutes, now)
        return count

    def _recount_freshness(self, tenant: str, minutes: set[int], now_ns: int) -> None:
        """Recount dataset-freshness SLIs from the first dirty minute to now (as store/duckdb
        does): an update, even a late one, decides every later minute until the next."""
        rules = [r for r in self._sli_rules.get(tenant, []) if r.kind == "dataset_freshness"]
        end = now_ns // MINUTE_NS * MINUTE_NS
        # An update at a minute's first instant already counts for the minute before.
        start = min(minutes) - MINUTE_NS if minutes else end
        if not rules or start >= end:
            return
        self._rebuild_slo_minutes(tenant, rules, start, end)
        small = end - start <= 10_000 * MINUTE_NS
        self._slo_changes.record(tenant, set(range(start, end, MINUTE_NS)) if small else None)

    @staticmethod
    def _runs_in(prefix: str = "") -> str:
        """The merged runs whose root starts in [{start}, {end}) of {tenant}, found by minute."""
        return "(" + merged_runs_sql(
            f"{_TENANT_KEY} AND trace_id IN (SELECT trace_id FROM run_roots WHERE {_TENANT_KEY} "
            "AND minute_ns >= intDiv({start:Int64}, 60000000000) * 60000000000 AND minute_ns < {end:Int64})"
        ) + f") AS {prefix or 'runs'}"

    def _rebuild_run_minutes(self, tenant: str, start: int, end: int) -> None:
        params = {"tenant": tenant, "start": start, "end": end}
        zeros = ", ".join("[]" if n == "duration_buckets" else "0" for n in measure_names())
        # Rows a recount no longer produces are overwritten with zeros first.
        self.client.command(
            f"INSERT INTO run_minutes SELECT tenant, journey, minute_ns, {zeros}, {{v:Int64}} FROM run_minutes FINAL "
            "WHERE tenant = {tenant:String} AND minute_ns >= {start:Int64} AND minute_ns < {end:Int64} AND runs > 0",
            {**params, "v": self._next_seq()},
        )
        self.client.command(
            f"INSERT INTO run_minutes SELECT *, {{v:Int64}} FROM ({run_minutes_select(self._runs_in())})",
            {**params, "v": self._next_seq()},
        )

    def _rebuild_cost_minutes(self, tenant: str, start: int, end: int) -> None:
        params = {"tenant": tenant, "start": start, "end": end}
        self.client.command(
            "INSERT INTO cost_minutes SELECT tenant, journey, minute_ns, provider, model, prompt_version, "
            f"service_version, {', '.join(['0'] * 17)}, {{v:Int64}} FROM cost_minutes FINAL "
            "WHERE tenant = {tenant:String} AND minute_ns >= {start:Int64} AND minute_ns < {end:Int64} AND calls > 0",
            {**params, "v": self._next_seq()},
        )
        self.client.command(
            f"INSERT INTO cost_minutes SELECT *, {{v:Int64}} FROM ({recount_sql(self._runs_in())})",
            {**params, "v": self._next_seq()},
        )

    def _rebuild_slo_minutes(self, tenant: str, rules: list[SliRule], start: int, end: int) -> None:
        # Prometheus-sourced SLIs are written by their reader (put_slo_minutes), never recounted.
        rules = [r for r in rules if r.kind != "prometheus"]
        if not rules:
            return
        params: dict[str, Any] = {"tenant": tenant, "start": start, "end": end}
        self.client.command(
            "INSERT INTO slo_minutes SELECT tenant, slo, minute_ns, 0, 0, {v:Int64} FROM slo_minutes FINAL "
            "WHERE tenant = {tenant:String} AND slo IN {slos:Array(String)} AND minute_ns >= {start:Int64} "
            "AND minute_ns < {end:Int64} AND total > 0",
            {**params, "slos": [r.slo for r in rules], "v": self._next_seq()},
        )
        # Versioned before reading: of two nodes recounting one minute, the one that started
        # reading later (and so saw the other's commit) wins.
        version = self._next_seq()
        out: dict[str, list[Any]] = {"tenant": [], "slo": [], "minute_ns": [], "good": [], "total": []}
        now = self._clock()
        for rule in rules:
            if rule.kind in METRIC_SLI_KINDS or rule.kind in JOB_SLI_KINDS:
                counts = (metric_slo_counts(self._metrics, tenant, rule, start, end) if rule.kind in METRIC_SLI_KINDS
                          else job_slo_counts(self.client, tenant, rule, start, end, now))
                for minute, good, total in counts:
                    out["tenant"].append(tenant)
                    out["slo"].append(rule.slo)
                    out["minute_ns"].append(int(minute))
                    out["good"].append(int(good))
                    out["total"].append(int(total))
        for slo, minute, good, total in platform_counts(self.client, tenant, [r for r in rules if is_platform_rule(r)], start, end):
            out["tenant"].append(tenant)
            out["slo"].append(slo)
            out["minute_ns"].append(minute)
            out["good"].append(good)
            out["total"].append(total)
        for names, sql in self._slo_count_queries(rules):
            counted = self.client.query(sql, params)
            for minute, goods, totals in zip(*(counted.column(c).to_pylist() for c in ("minute_ns", "goods", "totals")), strict=True):
                for name, good, total in zip(names, goods, totals, strict=True):
                    if total:
                        out["tenant"].append(tenant)
                        out["slo"].append(name)
                        out["minute_ns"].append(int(minute))
                        out["good"].append(int(good))
                        out["total"].append(int(total))
        if out["slo"]:
            table = pa.table({**out, "version": [version] * len(out["slo"])},
                             schema=pa.schema([("tenant", pa.string()), ("slo", pa.string()), ("minute_ns", pa.int64()),
                                               ("good", pa.int64()), ("total", pa.int64()), ("version", pa.int64())]))
            self.client.insert_arrow("slo_minutes", table)

    def _slo_count_queries(self, rules: list[SliRule]) -> list[tuple[list[str], str]]:
        """(SLO names, SQL counting their good and total events per minute) per kind of rule."""
        minute = f"intDiv(root_start_ns, {MINUTE_NS}) * {MINUTE_NS}"
        queries: list[tuple[list[str], str]] = []
        run_rules = [r for r in rules if r.kind not in ("step", "score", *METRIC_SLI_KINDS, *JOB_SLI_KINDS)]
        step_rules = [r for r in rules if r.kind == "step"]
        score_rules = [r for r in rules if r.kind == "score" and not is_platform_rule(r)]
        if run_rules:
            goods = ", ".join(f"toInt64(countIf(j = {_literal(r.journey)} AND {good_predicate(r)}))" for r in run_rules)
            totals = ", ".join(f"toInt64(countIf(j = {_literal(r.journey)}))" for r in run_rules)
            queries.append(([r.slo for r in run_rules], (
                f"SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals FROM (\n"
                f"    SELECT *, {journey_sql()} AS j, {minute} AS minute_ns FROM {self._runs_in()}\n"
                "    WHERE has_root AND root_start_ns >= {start:Int64} AND root_start_ns < {end:Int64}\n"
                ") GROUP BY minute_ns")))
        if step_rules:
            def good(r: SliRule) -> str:
                return good_sql(r, lambda field: f"s.{field}")

            def match(r: SliRule) -> str:
                return f"t.j = {_literal(r.journey)} AND s.operation = {_literal(r.operation or '')}"

            goods = ", ".join(f"toInt64(countIf({match(r)} AND {good(r)}))" for r in step_rules)
            totals = ", ".join(f"toInt64(countIf({match(r)}))" for r in step_rules)
            operations = ", ".join(sorted({_literal(r.operation or "") for r in step_rules}))
            queries.append(([r.slo for r in step_rules], (
                f"SELECT t.minute_ns AS minute_ns, [{goods}] AS goods, [{totals}] AS totals\n"
                "FROM spans AS s INNER JOIN (\n"
                f"    SELECT trace_id, {journey_sql()} AS j, {minute} AS minute_ns FROM {self._runs_in()}\n"
                "    WHERE has_root AND root_start_ns >= {start:Int64} AND root_start_ns < {end:Int64}\n"
                ") AS t ON s.trace_id = t.trace_id\n"
                f"WHERE s.tenant = {{tenant:String}} AND s.operation IN ({operations})\n"
                f"  AND s.start_ns >= {{start:Int64}} AND s.start_ns < {{end:Int64}} + {_STEP_SLACK_NS}\n"
                "GROUP BY t.minute_ns")))
        if score_rules:
            def score_match(r: SliRule) -> str:
                return f"j = {_literal(r.journey)} AND name = {_literal(r.score or '')}"

            goods = ", ".join(
                f"toInt64(countIf({score_match(r)} AND {good_sql(r, lambda field: 'v')}))" for r in score_rules)
            totals = ", ".join(f"toInt64(countIf({score_match(r)}))" for r in score_rules)
            names = ", ".join(sorted({_literal(r.score or "") for r in score_rules}))
            queries.append(([r.slo for r in score_rules], (
                f"SELECT minute_ns, [{goods}] AS goods, [{totals}] AS totals FROM (\n"
                "    SELECT t.trace_id, s.name AS name, avg(s.value) AS v, any(t.j) AS j, any(t.minute_ns) AS minute_ns\n"
                "    FROM scores AS s INNER JOIN (\n"
                f"        SELECT trace_id, {journey_sql()} AS j, {minute} AS minute_ns FROM {self._runs_in()}\n"
                "        WHERE has_root AND root_start_ns >= {start:Int64} AND root_start_ns < {end:Int64}\n"
                "    ) AS t ON s.trace_id = t.trace_id\n"
                f"    WHERE s.tenant = {{tenant:String}} AND s.name IN ({names}) AND s.value IS NOT NULL\n"
                "    GROUP BY t.trace_id, s.name\n"
                ") GROUP BY minute_ns")))
        return queries

    def rebuild_rollups(self, tenant: str, start_ns: int, end_ns: int) -> int:
        """Recount the minutes of [start_ns, end_ns) from the runs (repairs, benchmarks)."""
        first = start_ns // MINUTE_NS * MINUTE_NS
        return self._writer.call(lambda: self._rebuild({tenant: set(range(first, end_ns, MINUTE_NS))})).result(600)

    def flush_rollups(self) -> None:
        """Wait until every committed run is in the rollups."""
        self._writer.call(self.refresh_rollups).result(120)

    def set_sli_rules(self, tenant: str, rules: list[SliRule]) -> None:
        """Count these SLOs from now on; new or changed ones are recounted from every run."""
        self._writer.call(lambda: self._apply_sli_rules(tenant, list(rules))).result(600)

    def _apply_sli_rules(self, tenant: str, rules: list[SliRule]) -> None:
        old = {r.slo: r for r in self._sli_rules.get(tenant, [])}
        changed = [r for r in rules if old.get(r.slo) != r]
        gone = [name for name in old if name not in {r.slo for r in rules}]
        if gone:
            self.client.command(
                "INSERT INTO slo_minutes SELECT tenant, slo, minute_ns, 0, 0, {v:Int64} FROM slo_minutes FINAL "
                "WHERE tenant = {tenant:String} AND slo IN {slos:Array(String)} AND total > 0",
                {"tenant": tenant, "slos": gone, "v": self._next_seq()},
            )
        self._rebuild_slo_minutes(tenant, [r for r in changed if not is_platform_rule(r)],
                                  self._first_recountable_minute(tenant), 2**62)
        # Platform scores are kept as long as the rollups: counted from the first of them.
        self._rebuild_slo_minutes(tenant, [r for r in changed if is_platform_rule(r)], -(2**62), 2**62)
        self._sli_rules[tenant] = rules
        if changed or gone:
            self._slo_changes.record(tenant, None)

    # -- SLO minutes ---------------------------------------------------------------

    def slo_changes(self, tenant: str, since: int) -> tuple[int, set[int] | None]:
        """(generation, minutes whose SLO counts changed after ``since``; None: re-read all)."""
        return self._slo_changes.since(tenant, since)

    def slo_minutes_at(self, tenant: str, minutes: list[int]) -> list[tuple[str, int, int, int]]:
        """(slo, minute_ns, good, total) rows of the given minutes, for every SLO."""
        if not minutes:
            return []
        found = self.client.query(
            "SELECT slo, minute_ns, good, total FROM slo_minutes FINAL WHERE tenant = {tenant:String} "
            "AND minute_ns IN {minutes:Array(Int64)} AND total > 0",
            {"tenant": tenant, "minutes": [int(m) for m in minutes]},
        )
        return list(zip(*(found.column(c).to_pylist() for c in ("slo", "minute_ns", "good", "total")), strict=True))

    def slo_first_minutes(self, tenant: str) -> dict[str, int]:
        """Per SLO, the start of the first minute in which it counted events."""
        found = self.client.query(
            "SELECT slo, min(minute_ns) AS first_ns FROM slo_minutes FINAL WHERE tenant = {tenant:String} "
            "AND total > 0 GROUP BY slo", {"tenant": tenant},
        )
        return {s: int(m) for s, m in zip(found.column("slo").to_pylist(), found.column("first_ns").to_pylist(), strict=True)}

    def slo_minute_arrays(
        self, tenant: str, start_ns: int, end_ns: int, slo: str | None = None
    ) -> dict[str, tuple[Any, Any, Any]]:
        """(minute_ns, good, total) arrays per SLO (or just ``slo``) for [start_ns, end_ns)."""
        where = "tenant = {tenant:String} AND minute_ns >= {start:Int64} AND minute_ns < {end:Int64} AND total > 0"
        params: dict[str, Any] = {"tenant": tenant, "start": start_ns, "end": end_ns}
        if slo is not None:
            where += " AND slo = {slo:String}"
            params["slo"] = slo
        found = self.client.query(
            f"SELECT slo, minute_ns, good, total FROM slo_minutes FINAL WHERE {where} ORDER BY slo, minute_ns", params)
        slos = np.array(found.column("slo").to_pylist(), dtype=object)
        minutes, goods, totals = (found.column(c).to_numpy().astype(np.int64) for c in ("minute_ns", "good", "total"))
        out: dict[str, tuple[Any, Any, Any]] = {}
        for name in dict.fromkeys(slos.tolist()):
            pick = slos == name
            out[name] = (minutes[pick], goods[pick], totals[pick])
        return out

    def metric_totals(self, tenant: str) -> dict[str, Any]:
        """Cumulative counters for /metrics, summed from the rollups (not from spans)."""
        params = {"tenant": tenant}
        slos = _rows(self.client.query(
            "SELECT slo, sum(total) AS total, sum(total - good) AS bad, min(minute_ns) AS first_ns "
            "FROM slo_minutes FINAL WHERE tenant = {tenant:String} AND total > 0 GROUP BY slo", params))
        runs = _rows(self.client.query(
            "SELECT journey, sum(runs) AS runs, sum(failures) AS failures, sum(duration_sum_ns) AS duration_ns, "
            "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd, "
            "sum(retries) AS retries FROM run_minutes FINAL WHERE tenant = {tenant:String} AND runs > 0 GROUP BY journey",
            params))
        buckets = self.client.query(
            "SELECT journey, sumForEach(duration_buckets) AS n FROM run_minutes FINAL "
            "WHERE tenant = {tenant:String} AND runs > 0 GROUP BY journey", params)
        hist = {j: [int(x) for x in n] for j, n in zip(buckets.column("journey").to_pylist(), buckets.column("n").to_pylist(), strict=True)}
        return {"slos": slos, "runs": runs, "duration_buckets": hist}

    # -- reads ---------------------------------------------------------------------

    def count_spans(self, tenant: str | None = None) -> int:
        sql = "SELECT count() AS n FROM spans" + (" WHERE tenant = {tenant:String}" if tenant else "")
        return int(self.client.query(sql, {"tenant": tenant} if tenant else {}).column("n")[0].as_py())

    def get_trace(self, tenant: str, trace_id: str) -> tuple[TraceRun, list[dict[str, Any]]]:
        """The run row and every span of one trace; NotFound if the id is unknown."""
        params = {"tenant": tenant, "trace": trace_id}
        runs = _rows(self.client.query(
            f"SELECT {_RUN_COLUMNS}, start_ns, end_ns FROM ({journey_runs_sql(_TENANT_KEY + ' AND trace_id = {trace:String}')})",
            params))
        if not runs:
            raise NotFound(f"no trace with id {trace_id!r} (never received, or expired past the tenant's retention)")
        run = runs[0]
        spans = self.client.query(
            f"SELECT {', '.join(_TRACE_SPAN_COLUMNS)}, resource_id FROM spans WHERE tenant = {{tenant:String}} "
            "AND trace_id = {trace:String} AND start_ns >= {lo:Int64} AND start_ns <= {hi:Int64} "
            "ORDER BY start_ns, span_id",
            {**params, "lo": run["start_ns"], "hi": run["end_ns"]},
        )
        ids = sorted(set(spans.column("resource_id").to_pylist()))
        found = self.client.query(
            "SELECT resource_id, any(resource) AS resource FROM resources WHERE tenant = {tenant:String} "
            "AND resource_id IN {ids:Array(Int64)} GROUP BY resource_id", {"tenant": tenant, "ids": ids})
        by_id = dict(zip(found.column("resource_id").to_pylist(), found.column("resource").to_pylist(), strict=True))
        out = []
        for row in spans.to_pylist():
            row["resource"] = by_id.get(row.pop("resource_id"))
            out.append(row)
        return cast(TraceRun, run), out

    def trace_ids_with_prefix(self, tenant: str, prefix: str, limit: int = 5) -> list[str]:
        """Trace ids of stored runs that start with ``prefix`` (lowercase hex), at most ``limit``."""
        found = self.client.query(
            "SELECT DISTINCT trace_id FROM run_parts WHERE tenant = {tenant:String} AND startsWith(trace_id, {prefix:String}) "
            "ORDER BY trace_id LIMIT {limit:UInt64}", {"tenant": tenant, "prefix": prefix, "limit": int(limit)})
        return [str(t) for t in found.column("trace_id").to_pylist()] if found.num_columns else []

    def list_runs(self, q: RunQuery) -> list[JourneyRun]:
        """Runs matching ``q``, newest first; at most ``q.limit`` rows."""
        where = ["true"]
        params: dict[str, Any] = {"tenant": q.tenant, "limit": q.limit}
        for clause, name, value in (
            ("journey = {journey:String}", "journey", q.journey), ("outcome = {outcome:String}", "outcome", q.outcome),
            ("run_start_ns >= {since:Int64}", "since", q.since_ns), ("run_start_ns < {until:Int64}", "until", q.until_ns),
            ("service_version = {sv:String}", "sv", q.service_version), ("has(models, {model:String})", "model", q.model),
        ):
            if value is not None and value != "":
                where.append(clause)
                params[name] = value
        if q.after is not None:
            where.append("(run_start_ns < {a0:Int64} OR (run_start_ns = {a0:Int64} AND trace_id < {a1:String}))")
            params.update(a0=q.after[0], a1=q.after[1])
        # Two steps: which runs, merging only the columns the filters and the order need,
        # then those runs whole (merging every column of every run costs far more).
        order = "ORDER BY run_start_ns DESC, trace_id DESC LIMIT {limit:UInt64}"
        picked = (f"SELECT trace_id FROM ({journey_runs_sql(_TENANT_KEY, LISTING_COLUMNS)}) "
                  f"WHERE {' AND '.join(where)} {order}")
        return cast(list[JourneyRun], _rows(self.client.query(
            f"SELECT {_RUN_COLUMNS} FROM ({journey_runs_sql(f'{_TENANT_KEY} AND trace_id IN ({picked})')}) {order}",
            params)))

    def journey_summaries(self, r: TimeRange) -> list[JourneySummary]:
        """Per journey: runs, failures, duration percentiles, tokens and cost per run, last seen."""
        where = ["has_root"]
        params: dict[str, Any] = {"tenant": r.tenant}
        if r.since_ns is not None:
            where.append("run_start_ns >= {since:Int64}")
            params["since"] = r.since_ns
        if r.until_ns is not None:
            where.append("run_start_ns < {until:Int64}")
            params["until"] = r.until_ns
        return cast(list[JourneySummary], _rows(self.client.query(
            "SELECT journey, count() AS runs, countIf(outcome = 'failure') AS failures,\n"
            "    quantileExactInclusive(0.5)(duration_ns) / 1e6 AS p50_ms,\n"
            "    quantileExactInclusive(0.95)(duration_ns) / 1e6 AS p95_ms,\n"
            "    avg(input_tokens + output_tokens) AS tokens_per_run, avg(llm_calls) AS llm_calls_per_run,\n"
            "    sum(retries) AS retries, sum(cost_usd) AS cost_usd, max(run_start_ns) AS last_seen_ns\n"
            f"FROM ({journey_runs_sql(_TENANT_KEY)}) WHERE {' AND '.join(where)}\n"
            "GROUP BY journey ORDER BY runs DESC, journey", params)))

    def incomplete_traces(self, tenant: str) -> int:
        """Traces whose root span has not arrived."""
        found = self.client.query(
            "SELECT count() AS n FROM (SELECT trace_id FROM run_parts WHERE tenant = {tenant:String} "
            "GROUP BY trace_id HAVING NOT max(has_root))", {"tenant": tenant})
        return int(found.column("n")[0].as_py())

    def stats(self, tenant: str | None = None) -> dict[str, Any]:
        """Store-wide counts and writer figures."""
        where = " WHERE tenant = {tenant:String}" if tenant else ""
        params = {"tenant": tenant} if tenant else {}
        counts = _rows(self.client.query(
            f"SELECT (SELECT count() FROM spans{where}) AS spans, "
            f"(SELECT uniqExact(tenant, trace_id) FROM run_parts{where}) AS traces", params))[0]
        writer = self._writer.stats
        return {
            "backend": self.backend, "spans": int(counts["spans"]), "traces": int(counts["traces"]),
            "queued_spans": self._writer.queued_spans, "commits": writer.commits,
            "spans_committed": writer.spans_committed, "refused_full": writer.refused_full,
            "failed_commits": writer.failed_commits, "last_commit_seconds": writer.last_commit_seconds,
            "duplicate_spans": self.duplicate_spans, "expired_spans": self.expiry.spans,
            "expired_traces": self.expiry.traces, "expiry_steps": self.expiry.steps,
            "expired_decisions": self.expiry.decisions, "expired_violations": self.expiry.violations,
        }

    def gate_population(self, q: PopulationQuery) -> Population:
        """Completed runs of ``q.journey`` matching every selector, oldest first, with score means."""
        where = ["has_root", f"{journey_sql()} = {{journey:String}}", "root_start_ns >= {since:Int64}",
                 "root_start_ns < {until:Int64}"]
        params: dict[str, Any] = {"tenant": q.tenant, "journey": q.journey, "since": q.since_ns, "until": q.until_ns,
                                  "limit": q.limit}
        for i, sel in enumerate(q.selectors):
            params[f"v{i}"] = sel.value
            if sel.column == "models":
                where.append(f"has(models, {{v{i}:String}})")
            elif sel.column is not None:
                where.append(f"{sel.column} = {{v{i}:String}}")
            else:
                if not _ATTRIBUTE_KEY.match(sel.key):
                    raise PermanentError(f"selector key {sel.key!r} may only hold letters, digits and . _ - /")
                params[f"k{i}"] = sel.key
                # Any span of the run carrying the attribute (or its resource carrying it) selects the run.
                where.append(
                    f"trace_id IN (SELECT s.trace_id FROM spans AS s LEFT JOIN resources AS r "
                    f"ON r.tenant = s.tenant AND r.resource_id = s.resource_id WHERE s.tenant = {{tenant:String}} "
                    f"AND (JSONExtractString(ifNull(s.attributes, '{{}}'), {{k{i}:String}}) = {{v{i}:String}} "
                    f"OR JSONExtractString(r.resource, {{k{i}:String}}) = {{v{i}:String}}))")
        runs = self.client.query(
            "SELECT trace_id, root_start_ns AS start_ns, failed, (root_end_ns - root_start_ns) / 1e6 AS duration_ms, "
            f"cost_usd, input_tokens + output_tokens AS tokens FROM ({merged_runs_sql(_TENANT_KEY)}) "
            f"WHERE {' AND '.join(where)} ORDER BY root_start_ns, trace_id LIMIT {{limit:UInt64}}", params)
        ids = runs.column("trace_id").to_pylist()
        scores: dict[str, np.ndarray] = {}
        if ids:
            position = {trace: i for i, trace in enumerate(ids)}
            found = self.client.query(
                "SELECT trace_id, name, avg(value) AS value FROM scores WHERE tenant = {tenant:String} "
                "AND value IS NOT NULL AND trace_id IN {ids:Array(String)} GROUP BY trace_id, name",
                {"tenant": q.tenant, "ids": ids})
            for row in found.to_pylist():
                # A run without a given score is NaN there: the metric's NaN strategy decides.
                arr = scores.setdefault(row["name"], np.full(len(ids), np.nan))
                arr[position[row["trace_id"]]] = row["value"]
        return Population(
            trace_ids=ids,
            start_ns=np.array(runs.column("start_ns").to_pylist(), dtype=np.int64),
            failed=np.array([1.0 if f else 0.0 for f in runs.column("failed").to_pylist()], dtype=np.float64),
            duration_ms=np.array(runs.column("duration_ms").to_pylist(), dtype=np.float64),
            cost_usd=np.array(runs.column("cost_usd").to_pylist(), dtype=np.float64),
            tokens=np.array(runs.column("tokens").to_pylist(), dtype=np.float64),
            scores=scores,
        )

    def _retention_setting(self, tenant: str) -> tuple[float, str]:
        """The tenant's raw-span retention in days and where it comes from: set through the
        API (kept in the control store, applied here), the retention file, or the default."""
        if tenant in self._retention_api:
            return self._retention_api[tenant], "api"
        if tenant in self._retention_file:
            return self._retention_file[tenant], "file"
        return self._retention_days, "default"

    def set_retention(self, tenant: str, days: float | None) -> dict[str, Any]:
        """Apply the tenant's retention setting (None: back to file/default) to the spans that
        arrive from now on: each is stamped with it at ingest and the TTL expires it. Spans
        stored before keep the stamp they arrived with."""
        if days is None:
            self._retention_api.pop(tenant, None)
        else:
            self._retention_api[tenant] = check_days(days)
        return self.retention(tenant)

    def retention(self, tenant: str) -> dict[str, Any]:
        """The tenant's retention of raw spans (stamped on each span at ingest; TTL expires
        it), of the minute rollups, and the window in which a span delivered again is stored
        once: a redelivered span is looked up in ``spans`` itself, so the window is as long
        as raw spans are kept. What is reported is the promise of ``dedup_window_s`` (as on
        DuckDB), cut to the retention when spans expire sooner."""
        days, source = self._retention_setting(tenant)
        stamped = self._retention_of(tenant)
        window = self._dedup_window_s if not stamped else min(self._dedup_window_s, stamped * 86_400.0)
        return {"tenant": tenant, "retention_days": days, "source": source,
                "rollup_retention_days": self._rollup_retention_days, "dedup_window_s": window}

    def rollup_cutoff(self, now_ns: int | None = None, periodic: bool = False) -> int | None:
        """Minute rollups, decision records and violations older than this expire as of
        ``now_ns`` (None: kept, or with ``periodic`` while expiry is off)."""
        if self._rollup_retention_days <= 0 or (periodic and not self._expiry_on):
            return None
        return int(self._clock() if now_ns is None else now_ns) - int(self._rollup_retention_days * _DAY_NS)

    def oldest_span_ns(self) -> int | None:
        found = self.client.query("SELECT min(start_ns) AS t, count() AS n FROM spans")
        return int(found.column("t")[0].as_py()) if found.column("n")[0].as_py() else None

    def memory(self) -> dict[str, int]:
        return {"limit_bytes": 0, "used_bytes": 0, "index_bytes": 0}


for _name in NOT_YET:
    setattr(ClickHouseStore, _name, _not_yet(_name))
