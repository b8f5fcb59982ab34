"""Values that cross layer seams: immutable, typed, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aisre.core.series import MetricSelector

OUTCOMES = ("success", "failure", "incomplete")


@dataclass(frozen=True)
class RunQuery:
    """A filter over journey runs; every field is optional."""

    tenant: str
    journey: str | None = None
    outcome: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    service_version: str | None = None
    model: str | None = None
    limit: int = 50
    # Keyset cursor: runs strictly older than (start_ns, trace_id).
    after: tuple[int, str] | None = None


@dataclass(frozen=True)
class TimeRange:
    tenant: str
    since_ns: int | None = None
    until_ns: int | None = None


@dataclass(frozen=True)
class SliRule:
    """What the store counts per minute for one SLO: runs of ``journey`` (total) and
    those that were good by ``kind``'s test (DESIGN §4)."""

    slo: str
    journey: str
    kind: str  # outcome | latency | cost (over runs) | step (spans of one operation) | score
    latency_ns: int | None = None
    max_cost_usd: float | None = None
    operation: str | None = None
    score: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    # Metric SLIs (kind ratio | threshold | histogram): the series counted, see core/series.py.
    # ratio: good (or bad) over total increases; threshold: series-minutes whose value
    # (``aggregate`` of the minute's points) is within [min_value, max_value]; histogram:
    # observations under ``le`` (a bucket bound, in the metric's unit) over all.
    good: MetricSelector | None = None
    bad: MetricSelector | None = None
    total: MetricSelector | None = None
    aggregate: str | None = None
    le: float | None = None
    # Job SLIs (kind pipeline | deadline): runs of ``pipeline`` (see core/slo.py PipelineSli);
    # deadline: one event at ``deadline_at_ns`` after the start of every ``period_ns``.
    # Freshness (a metric kind) keeps its bound in ``max_value`` (seconds of age).
    pipeline: str | None = None
    deadline_at_ns: int | None = None
    period_ns: int | None = None
    # Platform score SLIs (kind score with a subject): scores posted for ``subject`` (not
    # for a trace), one event each in the minute of its time, good within [min, max].
    subject: str | None = None
    # Freshness from spans (kind dataset_freshness): updates are spans whose aisre.dataset
    # attribute is ``dataset``; the bound is in ``max_value`` (seconds of age).
    dataset: str | None = None


@dataclass(frozen=True)
class SpanSampleQuery:
    """Which spans the telemetry checker reads from a store: one tenant's, in a period,
    optionally of one service or one journey, newest traces first up to ``limit`` spans."""

    tenant: str
    since_ns: int | None = None
    until_ns: int | None = None
    service: str | None = None
    journey: str | None = None
    limit: int = 50_000


@dataclass(frozen=True)
class SpanSample:
    """Span rows (as normalized at ingest), their resources by id, each trace's journey
    (and whether a span or a rule named it), and how many spans the period held in all."""

    spans: list[dict[str, Any]]
    resources: dict[int, dict[str, Any]]
    journeys: dict[str, tuple[str | None, bool]]
    spans_seen: int
