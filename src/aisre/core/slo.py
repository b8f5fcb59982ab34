"""The SLO domain model every spec format maps to (native, OpenSLO, Sloth): values, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar, Literal

from aisre.core.errors import PermanentError

# ---------------------------------------------------------------------------- durations

_UNITS: dict[str, timedelta] = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    # OpenSLO shorthand (go-sdk maps M=30d, Q=90d, Y=365d); 'y' is Prometheus's year.
    "M": timedelta(days=30),
    "Q": timedelta(days=90),
    "Y": timedelta(days=365),
    "y": timedelta(days=365),
}
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwMQYy])")
DURATION_HELP = "a number and a unit, e.g. 30d, 4w, 1h30m (units: ms, s, m, h, d, w; M, Q, Y)"


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus/OpenSLO duration such as ``28d`` or ``1h30m``; ValueError if malformed."""
    s = text.strip()
    pos, total = 0, timedelta(0)
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        try:
            total += int(m.group(1)) * _UNITS[m.group(2)]
        except OverflowError:
            raise ValueError(f"duration {text!r} is too long (at most {timedelta.max.days} days)") from None
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r}: use {DURATION_HELP}")
    if total <= timedelta(0):
        raise ValueError(f"duration {text!r} must be longer than zero")
    return total


def format_duration(value: timedelta) -> str:
    """Render a duration as Sloth names its windows (``5m``, ``1h30m``, ``1d``, ``28d``; no weeks)."""
    ms = int(value.total_seconds() * 1000)
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


# ---------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class SpecSource:
    """Where an SLO was declared; ``fields`` maps model fields to (spec path, line)."""

    file: str
    line: int
    path: str = ""
    fields: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def where(self, name: str) -> tuple[str, int]:
        """The spec path and line of a model field, falling back to the SLO itself."""
        if name in self.fields:
            return self.fields[name]
        prefix = f"{self.path}." if self.path else ""
        return f"{prefix}{name}", self.line


@dataclass(frozen=True)
class SpecError:
    """One problem in a spec file, said so a person can fix it."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


# ---------------------------------------------------------------------------- windows and budgeting

CalendarUnit = Literal["week", "month", "quarter", "year"]
CALENDAR_UNITS: tuple[str, ...] = ("week", "month", "quarter", "year")
_CALENDAR_NOMINAL = {"week": 7, "month": 30, "quarter": 90, "year": 365}


@dataclass(frozen=True)
class SloWindow:
    """A rolling window, or a calendar one (aligned to weeks/months, or to ``start`` in ``timezone``)."""

    duration: timedelta
    rolling: bool = True
    calendar: CalendarUnit | None = None
    start: str | None = None
    timezone: str = "UTC"

    @classmethod
    def rolling_window(cls, duration: timedelta) -> SloWindow:
        """A rolling window of the given length."""
        return cls(duration=duration)

    @classmethod
    def calendar_window(cls, unit: CalendarUnit, timezone: str = "UTC") -> SloWindow:
        """A calendar week/month/quarter/year; its nominal length scales the burn factors."""
        return cls(duration=timedelta(days=_CALENDAR_NOMINAL[unit]), rolling=False,
                   calendar=unit, timezone=timezone)

    def __str__(self) -> str:
        if self.rolling:
            return format_duration(self.duration)
        return f"calendar {self.calendar or format_duration(self.duration)}"


BudgetingMethodName = Literal["occurrences", "timeslices", "ratio_timeslices"]
BUDGETING_METHODS: tuple[str, ...] = ("occurrences", "timeslices", "ratio_timeslices")


@dataclass(frozen=True)
class Budgeting:
    """Occurrences (good/total events) or timeslices (good slices / all slices)."""

    method: BudgetingMethodName = "occurrences"
    slice_length: timedelta | None = None
    # Percent of good events a slice needs to count as good (OpenSLO timeSliceTarget × 100).
    slice_objective: float | None = None


# ---------------------------------------------------------------------------- SLIs


@dataclass(frozen=True)
class OutcomeSli:
    """Good = the journey run succeeded (and, if set, finished within ``latency_ms``)."""

    kind: ClassVar[str] = "outcome"
    latency_ms: float | None = None


@dataclass(frozen=True)
class LatencySli:
    """Good = the journey run finished within ``latency_ms``, whatever its outcome."""

    kind: ClassVar[str] = "latency"
    latency_ms: float


@dataclass(frozen=True)
class CostSli:
    """Good = the journey run cost at most ``max_usd``."""

    kind: ClassVar[str] = "cost"
    max_usd: float


@dataclass(frozen=True)
class ScoreSli:
    """Good = the run's ``score`` evaluation is within [min, max] (either bound optional).

    With ``subject`` (``model:churn-v3``, ``dataset:customer_orders``) it is a platform SLI
    over scores posted for that subject (a drift report's numbers): each score posted is one
    event in its minute, good when within [min, max]; such an SLO has no journey.
    """

    kind: ClassVar[str] = "score"
    score: str
    min: float | None = None
    max: float | None = None
    subject: str | None = None


@dataclass(frozen=True)
class StepSli:
    """Good = a span of ``operation`` in the journey succeeded (and ran within ``latency_ms``)."""

    kind: ClassVar[str] = "step"
    operation: str
    latency_ms: float | None = None


@dataclass(frozen=True)
class PrometheusSli:
    """An SLI made of queries (Sloth events/raw, OpenSLO ratio/threshold metrics, native).

    Exactly one shape is set: error_query+total_query (events), good_query+total_query,
    error_ratio_query (raw), good_ratio_query, threshold_query with op/value (each series of
    the result is one event per minute, good when ``value op threshold``), or histogram with
    le (a histogram's base selector: observations in the ``le`` bucket over all of them).
    ``source_type`` keeps OpenSLO's data source type (``Prometheus``, ``Datadog``…) so
    non-Prometheus SLIs load.
    """

    kind: ClassVar[str] = "prometheus"
    error_query: str | None = None
    total_query: str | None = None
    good_query: str | None = None
    error_ratio_query: str | None = None
    good_ratio_query: str | None = None
    threshold_query: str | None = None
    op: str | None = None
    value: float | None = None
    source_type: str = "prometheus"
    counter: bool | None = None
    histogram: str | None = None
    le: float | None = None

    @property
    def shape(self) -> str:
        """Which of the query shapes this SLI uses."""
        if self.error_ratio_query is not None:
            return "raw"
        if self.good_ratio_query is not None:
            return "raw_good"
        if self.threshold_query is not None:
            return "threshold"
        if self.histogram is not None:
            return "histogram"
        if self.good_query is not None:
            return "good_total"
        return "events"


# A threshold SLI's comparison (OpenSLO's op): good when ``value <op> threshold``.
THRESHOLD_OPS: tuple[str, ...] = ("lte", "gte", "lt", "gt")
# Query shapes read from a Prometheus server into SLO minutes; the raw ones (a ratio with
# no count of events) are not: weighing their minutes would mean inventing counts.
PROMETHEUS_SHAPES: frozenset[str] = frozenset({"events", "good_total", "threshold", "histogram"})
# Data source types (OpenSLO metricSource.type) that answer the Prometheus query API.
PROMETHEUS_SOURCES: frozenset[str] = frozenset({"prometheus", "thanos", "cortex", "mimir", "victoriametrics"})


def threshold_met(value: float, op: str, threshold: float) -> bool:
    """Whether ``value <op> threshold`` holds (op: lt, lte, gt, gte)."""
    if op == "lt":
        return value < threshold
    if op == "lte":
        return value <= threshold
    if op == "gt":
        return value > threshold
    if op == "gte":
        return value >= threshold
    raise ValueError(f"unknown threshold op {op!r}; use one of {', '.join(THRESHOLD_OPS)}")


def prometheus_unsupported(sli: PrometheusSli) -> str | None:
    """Why a Prometheus SLI cannot be read into SLO minutes; None when it can."""
    if sli.source_type.lower() not in PROMETHEUS_SOURCES:
        return (f"its data source is {sli.source_type or 'not named'}: aisre reads SLIs only from a "
                "Prometheus-compatible query API (prometheus_url)")
    shape = sli.shape
    if shape in ("raw", "raw_good"):
        key = "error_ratio_query" if shape == "raw" else "good_ratio_query"
        return (f"{key} (a raw ratio SLI) gives a ratio per minute without the number of events behind it, "
                "so its minutes cannot be weighed into an error budget without inventing counts; write it as "
                "error_query (or good_query) over total_query, each a count per minute")
    if shape == "threshold" and (sli.op not in THRESHOLD_OPS or sli.value is None):
        return f"a threshold_query SLI needs op (one of {', '.join(THRESHOLD_OPS)}) and value"
    if shape not in PROMETHEUS_SHAPES:
        return f"the {shape} shape of a Prometheus SLI is not read"
    return None


@dataclass(frozen=True)
class RatioSli:
    """Good = the increase of the ``good`` counter series (or total minus ``bad``) over the
    increase of ``total``; each a metric selector ``name{label="v",...}`` (OTLP metrics)."""

    kind: ClassVar[str] = "ratio"
    total: str
    good: str | None = None
    bad: str | None = None


@dataclass(frozen=True)
class ThresholdSli:
    """One event per selected gauge series per minute: good when the minute's ``aggregate``
    (avg, min, max, last) of its points is within [min, max]."""

    kind: ClassVar[str] = "threshold"
    metric: str
    min: float | None = None
    max: float | None = None
    aggregate: str = "avg"


@dataclass(frozen=True)
class HistogramSli:
    """Good = observations of the selected histogram series in buckets bounded by ``le``
    (in the metric's unit, e.g. seconds) over all observations."""

    kind: ClassVar[str] = "histogram"
    metric: str
    le: float


@dataclass(frozen=True)
class FreshnessSli:
    """One event per selected timestamp-gauge series per minute (a dataset's or feature
    view's last update, in unix seconds): good when the minute's end is at most
    ``max_age`` after the newest update the minute reported. With ``dataset`` instead of
    ``metric``: one event per minute from the dataset's first update on, good when the newest
    update span (attribute ``aisre.dataset``) that ended by the minute's end is at most
    ``max_age`` old."""

    kind: ClassVar[str] = "freshness"
    metric: str | None
    max_age: timedelta
    dataset: str | None = None


@dataclass(frozen=True)
class PipelineSli:
    """Good = a run of ``pipeline`` succeeded: spans carrying OTel CI/CD
    ``cicd.pipeline.name`` (result from ``cicd.pipeline.result``, else the span status), or
    root job spans named ``pipeline``; cancelled and skipped runs are not counted."""

    kind: ClassVar[str] = "pipeline"
    pipeline: str


@dataclass(frozen=True)
class DeadlineSli:
    """One event per scheduled deadline (every ``every``, at ``at`` after each period's
    start, in UTC; e.g. daily 06:00): good when a successful run of ``pipeline`` ended in the
    period before the deadline."""

    kind: ClassVar[str] = "deadline"
    pipeline: str
    at: timedelta
    every: timedelta = timedelta(days=1)


Sli = (OutcomeSli | LatencySli | CostSli | ScoreSli | StepSli | PrometheusSli | RatioSli | ThresholdSli
       | HistogramSli | FreshnessSli | PipelineSli | DeadlineSli)
SLI_KINDS: tuple[str, ...] = (
    "outcome", "latency", "cost", "score", "step", "prometheus", "ratio", "threshold", "histogram",
    "freshness", "pipeline", "deadline",
)
METRIC_SLI_KINDS: frozenset[str] = frozenset({"ratio", "threshold", "histogram", "freshness"})
# ML-platform SLIs over pipeline/job spans (platform SLOs, like the metric ones).
# ``dataset_freshness`` is the rule kind (core/model.py SliRule) of a freshness SLI over
# dataset-update spans, counted with the job SLIs.
JOB_SLI_KINDS: frozenset[str] = frozenset({"pipeline", "deadline", "dataset_freshness"})
# The span attribute naming the dataset (or feature view) a span updated: POST /api/events
# dataset_update events carry it, and so may a team's own materialisation spans.
DATASET_ATTRIBUTE = "aisre.dataset"
GAUGE_AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "last")
# Kinds that measure the user's outcome carry the journey's budget; the rest default to diagnostic.
# Metric SLIs are platform SLOs (their own budget, paging alerts), so they carry one too.
USER_OUTCOME_KINDS: frozenset[str] = frozenset({"outcome", "latency", "prometheus", *METRIC_SLI_KINDS, *JOB_SLI_KINDS})

# ---------------------------------------------------------------------------- alerting


@dataclass(frozen=True)
class AlertWindow:
    """One multi-window pair: alert when both windows burn faster than the factor."""

    short: timedelta
    long: timedelta
    error_budget_percent: float


@dataclass(frozen=True)
class AlertWindows:
    """A multi-window multi-burn-rate policy for one SLO period (Sloth's AlertWindows)."""

    slo_period: timedelta
    page_quick: AlertWindow
    page_slow: AlertWindow
    ticket_quick: AlertWindow
    ticket_slow: AlertWindow
    source: str = ""

    def burn_factor(self, window: AlertWindow, slo_period: timedelta | None = None) -> float:
        """Burn factor for a pair, as Sloth computes it: budget% × period hours / 100 / long hours."""
        period_h = (slo_period or self.slo_period).total_seconds() / 3600
        long_h = window.long.total_seconds() / 3600
        # Same operation order as Sloth's getBurnRateFactor, so floats match its rules exactly.
        return (window.error_budget_percent * period_h / 100) / long_h

    def factors(self, slo_period: timedelta | None = None) -> dict[str, float]:
        """Burn factors of the four pairs, keyed page_quick, page_slow, ticket_quick, ticket_slow."""
        return {name: self.burn_factor(w, slo_period) for name, w in self.pairs().items()}

    def pairs(self) -> dict[str, AlertWindow]:
        """The four window pairs by name."""
        return {"page_quick": self.page_quick, "page_slow": self.page_slow,
                "ticket_quick": self.ticket_quick, "ticket_slow": self.ticket_slow}


@dataclass(frozen=True)
class AlertSpec:
    """One severity's alert (page or ticket)."""

    enabled: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BurnRateCondition:
    """An OpenSLO AlertCondition (kind burnrate), kept as written."""

    name: str
    severity: str
    op: str
    threshold: float
    lookback_window: timedelta
    alert_after: timedelta = timedelta(0)


@dataclass(frozen=True)
class AlertPolicyRef:
    """An OpenSLO AlertPolicy after inlining: its conditions and notification targets."""

    name: str
    conditions: tuple[BurnRateCondition, ...] = ()
    targets: tuple[str, ...] = ()
    alert_when_breaching: bool = False
    alert_when_resolved: bool = False
    alert_when_no_data: bool = False


@dataclass(frozen=True)
class AlertGuard:
    """What a burn-rate pair needs in its long window before it may fire.

    The SRE Workbook's advice for low-traffic services: a ratio over a handful of events is
    noise, so a pair fires only when its long window holds at least ``min_events`` events of
    which at least ``min_bad_events`` are bad. ``None`` takes the default for the SLO's
    budgeting method (occurrences: 10 and 3; time slices, which are already per-slice
    judgements: no minimum).
    """

    min_events: int | None = None
    min_bad_events: int | None = None

    def resolved(self, method: str) -> tuple[int, int]:
        """(min_events, min_bad_events) for a budgeting method, defaults filled in."""
        if method == "occurrences":
            defaults = (DEFAULT_MIN_EVENTS, DEFAULT_MIN_BAD_EVENTS)
        else:
            defaults = (0, 0)
        return (
            defaults[0] if self.min_events is None else self.min_events,
            defaults[1] if self.min_bad_events is None else self.min_bad_events,
        )


DEFAULT_MIN_EVENTS = 10
DEFAULT_MIN_BAD_EVENTS = 3


@dataclass(frozen=True)
class Alerting:
    """Alert names, labels and annotations; ``windows_file`` overrides the burn-rate policy."""

    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    page: AlertSpec = field(default_factory=AlertSpec)
    ticket: AlertSpec = field(default_factory=AlertSpec)
    windows_file: str | None = None
    windows: AlertWindows | None = None
    policies: tuple[AlertPolicyRef, ...] = ()
    guard: AlertGuard = field(default_factory=AlertGuard)


# ---------------------------------------------------------------------------- the SLO


@dataclass(frozen=True)
class SloSpec:
    """One SLO, whatever format it came from."""

    name: str
    objective: float  # percent, 0 < x < 100
    sli: Sli
    window: SloWindow = field(default_factory=lambda: SloWindow(timedelta(days=30)))
    journey: str | None = None
    service: str | None = None
    budgeting: Budgeting = field(default_factory=Budgeting)
    tier: int | None = None
    owner: str | None = None
    runbook: str | None = None
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    diagnostic: bool = False
    alerting: Alerting = field(default_factory=Alerting)
    format: str = "aisre"  # aisre | sloth | openslo
    source: SpecSource = field(default_factory=lambda: SpecSource("", 0))
    # Ids of the platform SLOs this one depends on (a journey's GPU pool, its inference
    # endpoint): when the journey burns, the status names which of them burn too.
    depends_on: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Unique key: the name for journey SLOs, Sloth's ``<service>-<name>`` for imported ones."""
        if self.journey is None and self.service:
            return f"{self.service}-{self.name}"
        return self.name

    @property
    def error_budget(self) -> float:
        """Allowed bad ratio, 1 − objective/100."""
        return 1 - self.objective / 100

    @property
    def alert_guard(self) -> tuple[int, int]:
        """(min_events, min_bad_events) each alert pair's long window needs before it fires."""
        return self.alerting.guard.resolved(self.budgeting.method)

    @property
    def carries_budget(self) -> bool:
        """User-outcome SLOs spend the journey's budget; diagnostic ones never do."""
        return not self.diagnostic


class SpecValidationError(PermanentError):
    """A spec set with errors; nothing from it was loaded."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors
