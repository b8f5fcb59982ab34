"""Every port the layers above use to reach a store, in one place.

Consumers import the narrow port they need (an alert evaluator sees ``AlertStore``, the
gate ``GateStore``); ``Store`` is their union, what ``factory.open_store`` hands out. Values
crossing these ports are typed values from ``core/`` (queries, populations, SLI rules),
rows as dicts typed by ``core/rows.py`` (runs, journey summaries, alert episodes,
incidents, changes, keys, audit records and gate verdicts so far;
the contract suite checks each backend's rows against them), and Arrow tables; never SQL
text. A backend (store/duckdb/, and next
store/clickhouse/) implements them; nothing above store/ imports a backend, and tenant
scoping is not a backend's job: ``guard.TenantGuard`` enforces it for every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyarrow as pa

from aisre.core.model import RunQuery, SliRule, SpanSample, SpanSampleQuery, TimeRange
from aisre.core.population import Population, PopulationQuery
from aisre.core.rows import (
    AlertEpisode,
    ApiKey,
    AuditEntry,
    CapacityLevel,
    Change,
    CostBreakdown,
    CostBudget,
    GateVerdictSummary,
    Incident,
    JourneyRun,
    JourneySummary,
    MetricMinuteRow,
    MetricSeriesRow,
    MetricSeriesStats,
    PlatformScoreRow,
    PriceOverride,
    RateLimit,
    RunCounts,
    TraceRun,
)
from aisre.core.series import MetricPoint

# A module-level function turning normalized spans into what the writer commits (e.g.
# spans plus per-trace partials); it runs in the decoder processes, so it must pickle.
Prepare = Callable[[pa.Table, pa.Table, pa.Table, pa.Table], tuple[pa.Table, ...]]

# How cost exemplars are picked and ranked (evaluate/cost names a cause's evidence).
ExemplarRank = Literal["retries", "input_tokens", "recent", "cost"]


class SpanSink(Protocol):
    """Where ingest hands normalized spans; a future resolves once they are committed."""

    @property
    def prepare(self) -> Prepare: ...

    def submit_prepared(self, prepared: tuple[pa.Table, ...]) -> Future[int]: ...

    def submit_spans(self, spans: pa.Table, resources: pa.Table, scores: pa.Table | None = None) -> Future[int]: ...

    @property
    def queued_spans(self) -> int: ...

    @property
    def queue_capacity(self) -> int:
        """Spans the writer queues before it refuses more (queue_max_spans)."""
        ...


class MetricSink(Protocol):
    """Where ingest hands OTLP metric points; the future resolves once they are committed
    (a ``MetricCommit``: points accepted, refused past the series limit, minutes touched)."""

    def submit_metrics(self, tenant: str, points: list[MetricPoint]) -> Future[Any]: ...


class MetricTableSink(Protocol):
    """A metric sink that also takes decoded points as an Arrow table (one row per data
    point, ``normalize.metrics.METRIC_POINTS_SCHEMA``) and commits them columnar; ingest uses
    it when the store has it, ``MetricSink.submit_metrics`` otherwise."""

    def submit_metric_table(self, tenant: str, points: pa.Table) -> Future[Any]: ...


class ExternalSloMinutes(Protocol):
    """SLO minutes counted outside the store (read from Prometheus)."""

    def put_slo_minutes(self, tenant: str, slo: str, start_ns: int, end_ns: int, rows: list[tuple[int, int, int]]) -> None: ...


class MetricReads(Protocol):
    """Metric series and their minute rollups."""

    def metric_series(self, tenant: str, metric: str | None = None) -> list[dict[str, Any]]: ...

    def metric_minutes(self, tenant: str, series_ids: list[int], start_ns: int, end_ns: int) -> list[dict[str, Any]]: ...


class MetricSeriesReads(Protocol):
    """Per metric series, what its kept minutes hold (the series listing reads it)."""

    def metric_series_stats(self, tenant: str, series_ids: list[int]) -> list[MetricSeriesStats]:
        """First and last kept minute and points of each of ``series_ids`` that has minutes, by id."""
        ...


class ScoreSink(Protocol):
    def add_scores(self, scores: pa.Table) -> list[int]:
        """Store evaluations; returns, per row, 1 if stored."""
        ...


class PlatformScores(Protocol):
    """Scores of subjects (a model, a dataset) at a time, not of traces: drift and quality."""

    def add_platform_scores(self, scores: pa.Table) -> int:
        """Store rows of PLATFORM_SCORE_ARROW_SCHEMA, one per (tenant, subject, name, time_ns)
        (the last sent wins); returns the rows kept."""
        ...

    def platform_scores(
        self, tenant: str, subject: str | None = None, name: str | None = None,
        since_ns: int | None = None, until_ns: int | None = None, limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Stored scores of subjects, oldest first (subject, name, value, source, comment, time_ns, received_ns)."""
        ...


class RunReads(Protocol):
    """Journey runs and traces."""

    def list_runs(self, q: RunQuery) -> list[JourneyRun]: ...

    def journey_summaries(self, r: TimeRange) -> list[JourneySummary]: ...

    # Spans come as rows of core.schema.TRACE_SPAN_COLUMNS (checked by span_row_problems).
    def get_trace(self, tenant: str, trace_id: str) -> tuple[TraceRun, list[dict[str, Any]]]: ...

    def trace_ids_with_prefix(self, tenant: str, prefix: str, limit: int = 5) -> list[str]:
        """Trace ids starting with ``prefix`` (so a shortened id from the CLI can be looked up)."""
        ...

    def incomplete_traces(self, tenant: str) -> int: ...

    def count_spans(self, tenant: str | None = None) -> int: ...

    def stats(self, tenant: str | None = None) -> dict[str, Any]: ...



@dataclass(frozen=True)
class ExportedTraces:
    """A page of whole stored traces, as ``SpanExport.export_traces`` reads them back: their
    spans (SPAN_ARROW_SCHEMA), the resources those spans name, and their scores."""

    spans: pa.Table
    resources: pa.Table
    scores: pa.Table
    traces: int
    last_trace_id: str | None  # where the next page starts after; None when none was left
    remaining: int = 0  # traces after this page


class SpanExport(Protocol):
    """Stored traces read back a page at a time, in trace-id order (``aisre store copy``)."""

    def span_tenants(self) -> list[str]:
        """Every tenant with stored traces."""
        ...

    def export_traces(self, tenant: str, after_trace_id: str, limit: int) -> ExportedTraces:
        """Up to ``limit`` whole traces whose id sorts after ``after_trace_id``."""
        ...


class ControlExport(Protocol):
    """Control-plane tables read back a page at a time, in key order (``aisre store copy
    --control``): rows as stored, ids and timestamps included, JSON documents as text."""

    def export_control(self, table: str, key: tuple[str, ...], after: list[Any] | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows of ``table`` whose ``key`` sorts after ``after`` (all, from None)."""
        ...

    def control_count(self, table: str) -> int:
        """Rows in ``table`` (0 when this store has no such table)."""
        ...


class ControlImport(Protocol):
    """Control-plane rows written as they were exported (ids kept), each once."""

    def import_control(self, table: str, rows: list[dict[str, Any]], replace: tuple[str, ...] | None = None) -> int:
        """Insert rows not present yet (by their keys); returns how many were new. With
        ``replace`` (columns naming groups of rows, e.g. a trace's violations), the rows replace
        whatever the target holds of their groups instead."""
        ...

    def control_count(self, table: str) -> int:
        """Rows in ``table``."""
        ...

    def finish_import(self) -> None:
        """Move id sequences past the copied ids, so new rows never reuse one."""
        ...


@dataclass(frozen=True)
class ExportedMinutes:
    """A page of metric minute rows (``MetricExport.export_metric_minutes``) and the key the
    next page starts after, in the exporting backend's own order (its cheapest to page by)."""

    rows: list[MetricMinuteRow]
    after: list[int] | None  # None when no row was left


class MetricExport(Protocol):
    """Metric rollups and platform scores read back and written as stored, a page at a time
    in key order (``aisre store copy``): raw metric points are not kept, so the target cannot
    recount them. Imports skip keys the target holds already, so a page sent twice adds nothing."""

    def metric_tenants(self) -> list[str]:
        """Every tenant with metric series or platform scores."""
        ...

    def export_metric_series(self, tenant: str, after: int | None, limit: int) -> list[MetricSeriesRow]:
        """Up to ``limit`` series with their kept point, by series id after ``after``."""
        ...

    def export_metric_minutes(self, tenant: str, after: list[int] | None, limit: int) -> ExportedMinutes:
        """Up to ``limit`` (series, minute) rows after the key ``after`` (from the page before),
        each folded from every row written for it."""
        ...

    def export_platform_scores(self, tenant: str, after: list[Any] | None, limit: int) -> list[PlatformScoreRow]:
        """Up to ``limit`` platform scores by (subject, name, time_ns) after ``after``."""
        ...

    def import_metric_series(self, tenant: str, rows: list[MetricSeriesRow]) -> int:
        """Store series the target does not have yet, kept point included; returns how many were new."""
        ...

    def import_metric_minutes(self, tenant: str, rows: list[MetricMinuteRow]) -> int:
        """Store (series, minute) rows the target does not have yet; returns how many were new."""
        ...

    def metric_copy_totals(self, tenant: str) -> dict[str, float]:
        """What a copy must keep of the tenant's metrics: series, minute value and point sums
        per metric, platform scores and their sum."""
        ...


class SpanSampler(Protocol):
    def span_sample(self, q: SpanSampleQuery) -> SpanSample:
        """The telemetry checker's sample: the newest whole traces of a period, bounded."""
        ...


class CatalogReads(Protocol):
    def dependency_calls(self, tenant: str, since_ns: int | None = None, until_ns: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """Services seen in a period, and per service × journey what they call (models, vector
        stores, tools, databases, HTTP hosts, other traced services) with calls, errors, latency."""
        ...


class SloMinuteSource(Protocol):
    """Per-minute good/total counts of each SLO, and which minutes changed since when."""

    def slo_changes(self, tenant: str, since: int) -> tuple[int, set[int] | None]: ...

    def slo_minutes_at(self, tenant: str, minutes: list[int]) -> list[tuple[str, int, int, int]]: ...

    def slo_first_minutes(self, tenant: str) -> dict[str, int]: ...

    def slo_minute_arrays(
        self, tenant: str, start_ns: int, end_ns: int, slo: str | None = None
    ) -> dict[str, tuple[Any, Any, Any]]: ...


class SliRules(Protocol):
    """The SLIs the store counts per minute (the rollups are rebuilt when they change)."""

    def set_sli_rules(self, tenant: str, rules: list[SliRule]) -> None: ...

    def rebuild_rollups(self, tenant: str, start_ns: int, end_ns: int) -> int: ...

    def flush_rollups(self) -> None: ...


class AlertStore(Protocol):
    def active_alerts(self, tenant: str) -> list[AlertEpisode]: ...

    def save_alerts(self, rows: list[dict[str, Any]]) -> None: ...

    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[AlertEpisode]: ...


class KeyTables(Protocol):
    """API keys (digests only) and the auth latch."""

    def add_key(self, key: dict[str, Any], actor: str) -> None: ...

    def revoke_key(self, tenant: str, key_id: str, actor: str, keep_admin: bool = False) -> dict[str, Any]: ...

    def active_keys(self) -> list[dict[str, Any]]: ...

    def auth_latched(self) -> bool: ...

    def list_keys(self, tenant: str) -> list[ApiKey]: ...


class AuditLog(Protocol):
    def audit(self, tenant: str, actor: str, action: str, target: str, before: Any, after: Any) -> None: ...

    def list_audit(
        self, tenant: str, action: str | None = None, since_ns: int | None = None, limit: int = 100
    ) -> list[AuditEntry]: ...


class RetentionPolicy(Protocol):
    """Retention of raw spans per tenant (rollups and control-plane records outlive it)."""

    def retention(self, tenant: str) -> dict[str, Any]: ...

    def set_retention(self, tenant: str, days: float | None) -> dict[str, Any]: ...


class CapacityLevelTables(Protocol):
    """Each tenant's own warning levels for the capacity resources (a control-plane table)."""

    def capacity_levels(self, tenant: str) -> list[CapacityLevel]:
        """The tenant's levels, by metric (empty: every resource at its built-in level)."""
        ...

    def put_capacity_levels(self, tenant: str, rows: list[dict[str, Any]]) -> None:
        """Replace the tenant's levels with ``rows`` (metric, threshold, enabled), in one transaction."""
        ...


class PolicyControl(Protocol):
    """Agent policy records kept in the control plane: applied sets (audited), decision
    records, violations and the judged marks (which state of a run was judged)."""

    def put_policy_set(self, row: dict[str, Any]) -> dict[str, Any]: ...

    def policy_sets(self, tenant: str, limit: int = 50) -> list[dict[str, Any]]: ...

    def policy_tenants(self) -> list[str]: ...

    def add_decisions(self, rows: list[dict[str, Any]]) -> None: ...

    def list_decisions(
        self, tenant: str, journey: str | None = None, rule: str | None = None, result: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]: ...

    def save_policy_marks(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None: ...

    def policy_marks(self, tenant: str, trace_ids: list[str]) -> dict[str, int]: ...

    def list_violations(
        self, tenant: str, trace_id: str | None = None, journey: str | None = None, rule: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]: ...

    def policy_run(self, tenant: str, trace_id: str) -> dict[str, Any] | None: ...

    def violation_counts(self, tenant: str, since_ns: int, bucket_ns: int) -> list[dict[str, Any]]: ...

    def policy_totals(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]: ...


class PolicySpanReads(Protocol):
    """What agent policy reads from (and scores in) the span store: other runs' calls for
    shared budgets, runs to judge, a session's later runs, a judged run's policy scores."""

    def policy_usage(
        self, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str = "",
        sessions: list[str] | None = None,
    ) -> list[dict[str, Any]]: ...

    def policy_usage_totals(
        self, tenant: str, since_ns: int, until_ns: int, exclude_trace_id: str = "",
        sessions: list[str] | None = None,
    ) -> dict[str, Any]: ...

    def policy_usage_by_trace(
        self, tenant: str, since_ns: int, until_ns: int, sessions: list[str] | None = None,
    ) -> list[dict[str, Any]]: ...

    def policy_candidate_runs(self, tenant: str, since_received_ns: int, limit: int = 500) -> list[dict[str, Any]]: ...

    def policy_session_runs(self, tenant: str, session: str, after_ns: int, limit: int = 100) -> list[dict[str, Any]]: ...

    def put_policy_scores(self, row: dict[str, Any], violated: bool) -> None: ...


class PolicyStore(PolicyControl, PolicySpanReads, Protocol):
    """Agent policies: applied sets (audited), decision records, violations over traces.
    ``runs_to_judge``, ``save_policy_run`` and ``expire_policy_records`` need both planes on
    a split store (store/split.py composes them)."""

    def runs_to_judge(self, tenant: str, limit: int = 500) -> list[dict[str, Any]]: ...

    def save_policy_run(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None: ...

    def expire_policy_records(self, cutoff_ns: int, max_rows: int = 5000) -> dict[str, int]: ...

    def rollup_cutoff(self, now_ns: int | None = None, periodic: bool = False) -> int | None: ...

    def get_trace(self, tenant: str, trace_id: str) -> tuple[TraceRun, list[dict[str, Any]]]: ...


class MetricTotals(Protocol):
    def metric_totals(self, tenant: str) -> dict[str, Any]: ...


class StoreMemory(Protocol):
    def memory(self) -> dict[str, int]: ...


class StoreRetention(Protocol):
    """What /metrics shows of expiry and exactly-once."""

    @property
    def expiry(self) -> Any: ...

    @property
    def duplicate_spans(self) -> int: ...

    def oldest_span_ns(self) -> int | None: ...


class GateStore(Protocol):
    """Run populations by attribute, and verdict history."""

    def gate_population(self, q: PopulationQuery) -> Population: ...

    def save_gate_verdict(self, row: dict[str, Any]) -> int: ...

    def list_gate_verdicts(self, tenant: str, journey: str | None = None, limit: int = 50) -> list[GateVerdictSummary]: ...

    def get_gate_verdict(self, tenant: str, verdict_id: int) -> dict[str, Any]: ...


class TriageStore(Protocol):
    """What incident triage reads: runs to sample and compare, their spans, and changes."""

    def sample_runs(self, tenant: str, journey: str, start_ns: int, end_ns: int, outcome: str, limit: int) -> list[dict[str, Any]]: ...

    def count_runs(self, tenant: str, journey: str, start_ns: int, end_ns: int, outcome: str) -> int: ...

    def span_profile(self, tenant: str, trace_ids: list[str], start_ns: int, end_ns: int) -> list[dict[str, Any]]: ...

    def list_changes(
        self, tenant: str, since_ns: int | None = None, until_ns: int | None = None,
        journey: str | None = None, kind: str | None = None, limit: int = 200,
    ) -> list[Change]: ...


class IncidentStore(TriageStore, Protocol):
    """Incidents, their timeline, alerts, action items, changes and notification attempts."""

    def create_incident(self, row: dict[str, Any], events: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> Incident: ...
    def update_incident(self, tenant: str, incident_id: int, changes: dict[str, Any], events: list[dict[str, Any]] = ...,
                        alerts: list[dict[str, Any]] = ..., expect_state: str | None = None) -> Incident: ...
    def get_incident(self, tenant: str, incident_id: int) -> Incident: ...
    def open_incident_for(self, tenant: str, group_key: str) -> Incident | None: ...
    def list_incidents(self, tenant: str, state: str | None = None, journey: str | None = None, since_ns: int | None = None,
                       until_ns: int | None = None, limit: int = 100, with_evidence: bool = False) -> list[Incident]: ...
    def events(self, tenant: str, incident_id: int) -> list[dict[str, Any]]: ...
    def alerts(self, tenant: str, incident_id: int) -> list[dict[str, Any]]: ...
    def incidents_of_alert(self, tenant: str, alert_key: str) -> list[dict[str, Any]]: ...
    def incidents_for_alert_keys(self, tenant: str, keys: list[str]) -> dict[str, int]: ...
    def add_action_item(self, row: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]: ...
    def update_action_item(self, tenant: str, item_id: int, changes: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]: ...
    def action_items(self, tenant: str, incident_id: int | None = None) -> list[dict[str, Any]]: ...
    def add_change(self, row: dict[str, Any]) -> Change: ...
    def detect_changes(self, tenant: str) -> list[Change]: ...
    def run_minutes(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]: ...
    def first_failure(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> int | None: ...
    def impact(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> dict[str, Any]: ...
    def add_notification_attempt(self, row: dict[str, Any]) -> None: ...
    def notification_attempts(self, tenant: str, incident_id: int | None = None) -> list[dict[str, Any]]: ...


class CostSettings(Protocol):
    """Price overrides, budgets and rate limits (the control-plane half of CostStore)."""

    def list_overrides(self, tenant: str | None = None) -> list[PriceOverride]: ...

    def put_override(self, row: dict[str, Any]) -> None: ...

    def delete_override(self, tenant: str, model: str) -> int: ...

    def budget_tenants(self, tenant: str | None = None) -> list[str]: ...

    def list_budgets(self, tenant: str) -> list[CostBudget]: ...

    def put_budget(self, row: dict[str, Any]) -> None: ...

    def delete_budget(self, tenant: str, name: str) -> None: ...

    def list_rate_limits(self, tenant: str) -> list[RateLimit]: ...

    def put_rate_limit(self, row: dict[str, Any]) -> None: ...


class CostStore(CostSettings, Protocol):
    """Spend and tokens per minute, prices, budgets and rate limits."""

    def breakdown(
        self, tenant: str, since_ns: int | None, until_ns: int | None, by: Sequence[str] = ("journey",),
        bucket_ns: int | None = None, journey: str | None = None, model: str | None = None,
    ) -> list[CostBreakdown]: ...

    def run_counts(
        self, tenant: str, since_ns: int | None, until_ns: int | None, by_journey: bool = False,
        bucket_ns: int | None = None, journey: str | None = None,
    ) -> list[RunCounts]: ...

    def model_windows(self, tenant: str, journey: str, windows: Sequence[tuple[int, int]]) -> list[dict[str, Any]]: ...

    def run_windows(self, tenant: str, journey: str, windows: Sequence[tuple[int, int]]) -> list[dict[str, Any]]: ...

    def version_first_seen(self, tenant: str, journey: str, column: str, before_ns: int) -> dict[str, int]: ...

    def exemplars(
        self, tenant: str, journey: str, start_ns: int, end_ns: int, rank: ExemplarRank,
        prompt_versions: Sequence[str] | None = None, service_versions: Sequence[str] | None = None, limit: int = 5,
    ) -> list[str]: ...

    def model_exemplars(self, tenant: str, journey: str, start_ns: int, end_ns: int, model: str, limit: int = 5) -> list[str]: ...

    def peak_minutes(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]: ...

    def unpriced(self, tenant: str, since_ns: int | None, until_ns: int | None) -> list[dict[str, Any]]: ...

    def priced_models(self, tenant: str, since_ns: int, until_ns: int) -> list[tuple[str, str]]: ...

    def reprice(self, tenant: str, since_ns: int, until_ns: int, prices: pa.Table) -> dict[str, Any]: ...


class ScorecardStore(Protocol):
    """What a scorecard reads: SLO minute counts, alert episodes, gate verdicts, incidents, runs."""

    def slo_minute_arrays(self, tenant: str, start_ns: int, end_ns: int, slo: str | None = None) -> dict[str, tuple[Any, Any, Any]]: ...

    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[AlertEpisode]: ...

    def list_gate_verdicts(self, tenant: str, journey: str | None = None, limit: int = 50) -> list[GateVerdictSummary]: ...

    def policy_totals(self, tenant: str, since_ns: int, until_ns: int) -> list[dict[str, Any]]: ...

    def span_sample(self, q: SpanSampleQuery) -> Any: ...

    @property
    def incidents(self) -> IncidentStore: ...

    @property
    def cost(self) -> CostStore: ...


class GamedayStore(Protocol):
    def list_alerts(self, tenant: str, state: str | None = None, slo: str | None = None, limit: int = 100) -> list[AlertEpisode]: ...

    def list_violations(
        self, tenant: str, trace_id: str | None = None, journey: str | None = None, rule: str | None = None,
        since_ns: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]: ...

    @property
    def incidents(self) -> IncidentStore: ...


class ReadinessStore(Protocol):
    """What the checklist reads."""

    def list_gate_verdicts(self, tenant: str, journey: str | None = None, limit: int = 50) -> list[GateVerdictSummary]: ...

    def span_sample(self, q: SpanSampleQuery) -> Any: ...

    @property
    def incidents(self) -> IncidentStore: ...

    @property
    def cost(self) -> CostStore: ...


class ReviewStore(ScorecardStore, GamedayStore, Protocol):
    """What the review report reads: the scorecards' facts and the period's game days."""


class GateVerdicts(Protocol):
    """Release-gate verdict history (the control-plane half of GateStore)."""

    def save_gate_verdict(self, row: dict[str, Any]) -> int: ...

    def list_gate_verdicts(self, tenant: str, journey: str | None = None, limit: int = 50) -> list[dict[str, Any]]: ...

    def get_gate_verdict(self, tenant: str, verdict_id: int) -> dict[str, Any]: ...


class IncidentRunReads(Protocol):
    """What incidents read from the span store besides triage: run minutes, first failure,
    impact, and the first appearance of versions, models and prompts (change detection)."""

    def run_minutes(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]: ...

    def first_failure(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> int | None: ...

    def impact(self, tenant: str, journey: str, start_ns: int, end_ns: int) -> dict[str, Any]: ...

    def run_appearances(self, tenant: str, since_received_ns: int) -> list[tuple[Any, ...]]:
        """Per journey and (deploy | model | prompt) value seen in runs received after
        ``since_received_ns``: (journey, kind, value, prompt_name, first run start, a root
        service, last received)."""
        ...


class Lease(Protocol):
    """Whether this node runs the singleton background jobs (store/lease.py)."""

    holder: str
    term: int

    def held(self) -> bool: ...


class Store(
    SpanSink, ScoreSink, RunReads, SpanSampler, CatalogReads, SloMinuteSource, SliRules, AlertStore, KeyTables, AuditLog,
    RetentionPolicy, MetricTotals, StoreMemory, StoreRetention, GateStore, PolicyStore, MetricSink, MetricReads,
    ExternalSloMinutes, MetricSeriesReads, PlatformScores, CapacityLevelTables, Protocol,
):
    """A whole backend: what ``factory.open_store`` returns (wrapped in the tenant guard)."""

    backend: str

    @property
    def incidents(self) -> IncidentStore: ...

    @property
    def cost(self) -> CostStore: ...

    def close(self) -> None: ...


# Methods that name no tenant. Those acting for the whole process (the writer's upkeep,
# every tenant's keys) are refused to a caller bound to one tenant; the others reveal
# nothing about another tenant. Every public method of a backend is either tenant-scoped
# (a ``tenant`` argument, a query or row carrying one, or Arrow rows with a tenant column)
# or listed here; tests/store/test_guard.py checks that.
PROCESS_WIDE = frozenset({
    "active_keys", "close", "compact_metrics", "expire", "expire_policy_records", "flush_rollups", "policy_tenants",
    "refresh_rollups", "rollup_cutoff", "span_tenants", "metric_tenants", "export_control", "control_count", "import_control", "finish_import",
})
OPEN_TO_EVERY_CALLER = frozenset({"auth_latched", "memory", "oldest_span_ns", "prepare", "schema_version"})
