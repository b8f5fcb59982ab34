"""Journey and SLO counters on /metrics, read from the rollups at scrape time, and the
tenant scoping of the whole exposition.

These are the series aisre's exported Prometheus rules read
(evaluate/export/prometheus.py): per SLO `aisre_slo_events_total`,
`aisre_slo_bad_events_total` and `aisre_slo_first_event_timestamp_seconds`; per journey runs, failures, tokens, cost and a run
duration histogram.

The process registry also holds series with a ``tenant`` label (what ingest did to each
tenant's content). ``/metrics`` shows those only for the caller's tenant
(:class:`TenantScoped`); process-wide series carry no tenant label and are shown as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from aisre.core import display
from aisre.core.auth import caller_tenant
from aisre.core.schema import DURATION_BUCKETS_MS
from aisre.evaluate.policy.service import PolicyService
from aisre.evaluate.slo import SloEngine
from aisre.store.protocol import Lease, MetricTotals, StoreMemory, StoreRetention


class SloCountsCollector(Collector):
    """A prometheus_client collector over the store's rollups."""

    def __init__(self, store: MetricTotals, slos: SloEngine, tenant: str) -> None:
        self._store = store
        self._slos = slos
        self._tenant = tenant

    def collect(self) -> Iterator[Metric]:
        # Scraped with a key: that key's tenant; otherwise (auth off) the default tenant.
        tenant = caller_tenant() or self._tenant
        totals = self._store.metric_totals(tenant)
        journeys = {s.id: s.journey or "" for s in self._slos.specs(tenant)}
        events = CounterMetricFamily("aisre_slo_events", "Journey runs an SLO counted (its SLI's valid events)", labels=["slo", "journey"])
        bad = CounterMetricFamily("aisre_slo_bad_events", "Journey runs that failed an SLO's SLI", labels=["slo", "journey"])
        # When each SLO's events began: the exported alerts scale young windows by it.
        first = GaugeMetricFamily("aisre_slo_first_event_timestamp_seconds",
                                  "Start of the first minute in which an SLO counted events (Unix seconds)",
                                  labels=["slo", "journey"])
        for row in totals["slos"]:
            labels = [row["slo"], journeys.get(row["slo"], "")]
            events.add_metric(labels, float(row["total"]))
            bad.add_metric(labels, float(row["bad"]))
            if row.get("first_ns") is not None:
                first.add_metric(labels, row["first_ns"] / 1e9)
        yield events
        yield bad
        yield first
        runs = CounterMetricFamily("aisre_journey_runs", "Journey runs by outcome", labels=["journey", "outcome"])
        tokens = CounterMetricFamily("aisre_journey_tokens", "Model tokens spent by journey runs", labels=["journey", "direction"])
        cost = CounterMetricFamily("aisre_journey_cost_usd", "Model cost of journey runs, USD", labels=["journey"])
        retries = CounterMetricFamily("aisre_journey_retries", "Model-call retries in journey runs", labels=["journey"])
        duration = HistogramMetricFamily("aisre_journey_run_duration_seconds", "Journey run duration", labels=["journey"])
        for row in totals["runs"]:
            journey = row["journey"]
            runs.add_metric([journey, "success"], float(row["runs"] - row["failures"]))
            runs.add_metric([journey, "failure"], float(row["failures"]))
            tokens.add_metric([journey, "input"], float(row["input_tokens"]))
            tokens.add_metric([journey, "output"], float(row["output_tokens"]))
            cost.add_metric([journey], float(row["cost_usd"]))
            retries.add_metric([journey], float(row["retries"]))
            counts = totals["duration_buckets"].get(journey, [])
            cumulative = list(itertools.accumulate(counts))
            # The rollups keep 61 fine bounds (1.25^i ms); the exposition shows a short list of
            # round ones, each counting the runs up to the largest fine bound not above it.
            buckets = [
                (_le(seconds), float(cumulative[i] if i < len(cumulative) else (cumulative[-1] if cumulative else 0)))
                for seconds, i in _ROUND_BOUNDS
            ]
            buckets.append(("+Inf", float(cumulative[-1] if cumulative else 0)))
            duration.add_metric([journey], buckets, sum_value=float(row["duration_ns"] or 0) / 1e9)
        yield from (runs, tokens, cost, retries, duration)


def _le(seconds: float) -> str:
    return f"{seconds:g}"


# Round run-duration bounds (seconds) shown on /metrics, mapped onto the rollups' fine bounds.
ROUND_DURATION_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300)
_ROUND_BOUNDS = display.round_bounds(tuple(ms / 1000 for ms in DURATION_BUCKETS_MS), ROUND_DURATION_BOUNDS_S)


class StoreMemoryCollector(Collector):
    """DuckDB's memory at scrape time: the limit, what it holds, and the index share that
    must stay in memory whole (ingest fails with a clear error once it outgrows the limit)."""

    def __init__(self, store: StoreMemory) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        memory = self._store.memory()
        limit = GaugeMetricFamily("aisre_store_memory_limit_bytes", "db_memory_limit: memory DuckDB may use")
        limit.add_metric([], float(memory["limit_bytes"]))
        used = GaugeMetricFamily(
            "aisre_store_memory_bytes", "Memory DuckDB's buffer manager holds: all of it, and its indexes", labels=["kind"]
        )
        used.add_metric(["total"], float(memory["used_bytes"]))
        used.add_metric(["index"], float(memory["index_bytes"]))
        yield limit
        yield used


class LeaseCollector(Collector):
    """Whether this node holds the evaluator lease (runs alert and budget evaluation, change
    detection, policy judging): exactly one node of those sharing a control store shows 1."""

    def __init__(self, lease: Lease) -> None:
        self._lease = lease

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "aisre_evaluator_lease_held", "1 while this node holds the evaluator lease and runs the singleton jobs",
            labels=["holder"])
        held.add_metric([self._lease.holder], 1.0 if self._lease.held() else 0.0)
        term = GaugeMetricFamily("aisre_evaluator_lease_term", "Term of the lease this node last held (grows at each takeover)")
        term.add_metric([], float(self._lease.term))
        yield held
        yield term


class StoreRetentionCollector(Collector):
    """What retention expired and what exactly-once ingest left out, store-wide."""

    def __init__(self, store: StoreRetention) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        expiry = self._store.expiry
        spans = CounterMetricFamily("aisre_store_expired_spans", "Raw spans deleted by retention since the server started")
        spans.add_metric([], float(expiry.spans))
        traces = CounterMetricFamily("aisre_store_expired_traces", "Traces deleted by retention since the server started")
        traces.add_metric([], float(expiry.traces))
        duplicates = CounterMetricFamily(
            "aisre_store_duplicate_spans", "Spans delivered again within dedup_window_s and not stored a second time"
        )
        duplicates.add_metric([], float(self._store.duplicate_spans))
        decisions = CounterMetricFamily(
            "aisre_store_expired_policy_decisions",
            "Agent policy decision records deleted past rollup_retention_days since the server started")
        decisions.add_metric([], float(getattr(expiry, "decisions", 0)))
        violations = CounterMetricFamily(
            "aisre_store_expired_policy_violations",
            "Agent policy violations deleted past rollup_retention_days since the server started")
        violations.add_metric([], float(getattr(expiry, "violations", 0)))
        yield spans
        yield traces
        yield decisions
        yield violations
        yield duplicates
        oldest = self._store.oldest_span_ns()
        if oldest is not None:
            gauge = GaugeMetricFamily(
                "aisre_store_oldest_span_timestamp_seconds", "Start time of the oldest stored span (as of the last expiry pass)"
            )
            gauge.add_metric([], oldest / 1e9)
            yield gauge


TENANT_LABEL = "tenant"


class TenantScoped:
    """A view of a registry for one tenant: samples labelled with another tenant are left out
    (a family left without samples still shows its HELP and TYPE, as an unused one does)."""

    def __init__(self, registry: CollectorRegistry, tenant: str) -> None:
        self._registry = registry
        self._tenant = tenant

    def collect(self) -> Iterator[Metric]:
        """What ``generate_latest`` reads."""
        for metric in self._registry.collect():
            kept = [s for s in metric.samples if s.labels.get(TENANT_LABEL, self._tenant) == self._tenant]
            if len(kept) == len(metric.samples):
                yield metric
                continue
            scoped = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            scoped.samples = kept
            yield scoped


class PolicyCollector(Collector):
    """Agent policy counters of the caller's tenant: inline decisions by result, runs judged by verdict."""

    def __init__(self, service: PolicyService, tenant: str) -> None:
        self._service = service
        self._tenant = tenant

    def collect(self) -> Iterator[Metric]:
        tenant = caller_tenant() or self._tenant
        decisions = CounterMetricFamily("aisre_policy_decisions", "Inline agent policy decisions by result",
                                        labels=["result"])
        for (t, result), n in sorted(self._service.decisions.items()):
            if t == tenant:
                decisions.add_metric([result], float(n))
        yield decisions
        judged = CounterMetricFamily("aisre_policy_runs_judged",
                                     "Runs judged over their traces (again after late spans) by verdict",
                                     labels=["verdict"])
        for (t, verdict), n in sorted(self._service.judged.items()):
            if t == tenant:
                judged.add_metric([verdict], float(n))
        yield judged
        rejudged = CounterMetricFamily(
            "aisre_policy_runs_rejudged",
            "Runs judged again because an earlier run of their session arrived or changed after them")
        rejudged.add_metric([], float(self._service.rejudged.get(tenant, 0)))
        yield rejudged
