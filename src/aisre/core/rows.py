"""The rows that cross the store seam, typed.

A backend returns these as plain dicts (cheap to build from a cursor, and what the API
serialises), but their fields and types are declared here once: the layers above are
type-checked against them, and the store contract suite checks every backend's rows field
by field with ``row_problems``, so a second backend cannot drift by a column or a type.
(No ``from __future__ import annotations`` here: TypedDict must see ``NotRequired`` itself.)
"""

import types
import typing
from typing import Any, NotRequired, TypedDict, Union


class JourneyRun(TypedDict):
    """One journey run (a trace with its root), as ``RunReads.list_runs`` lists it."""

    trace_id: str
    journey: str
    outcome: str  # success | failure | incomplete
    failure_reason: str | None
    run_start_ns: int
    duration_ns: int
    has_root: bool
    root_name: str | None
    root_service: str | None
    span_count: int
    error_spans: int
    llm_calls: int
    llm_errors: int
    tool_calls: int
    retrieval_calls: int
    agent_steps: int
    retries: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    service_version: str | None
    prompt_name: str | None
    prompt_version: str | None
    environment: str | None
    models: list[str] | None
    user_id: str | None
    session_id: str | None


class TraceRun(JourneyRun):
    """The run row ``RunReads.get_trace`` returns with its spans: the run plus the span extent."""

    start_ns: int
    end_ns: int


class JourneySummary(TypedDict):
    """Per journey over a time range (``RunReads.journey_summaries``)."""

    journey: str
    runs: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    tokens_per_run: float | None
    llm_calls_per_run: float | None
    retries: int | None
    cost_usd: float | None
    last_seen_ns: int | None


class AlertEpisode(TypedDict):
    """One SLO alert episode, pending → firing → resolved (``AlertStore``)."""

    id: int
    tenant: str
    slo: str
    journey: str | None
    severity: str  # page | ticket
    state: str  # pending | firing | resolved
    pending_since_ns: int
    started_ns: int | None
    ended_ns: int | None
    peak_burn: float
    updated_ns: int
    summary: str


class Incident(TypedDict):
    """One incident (``IncidentStore``): its state machine's times and who moved it.
    ``evidence`` (decoded JSON) is left out of listings unless asked for."""

    id: int
    tenant: str
    group_key: str
    title: str
    journey: str | None
    slo: str | None
    severity: str  # sev1 (worst) .. sev4
    state: str  # open | acknowledged | mitigated | resolved
    commander: str | None
    owner: str | None
    tier: int | None
    runbook: str | None
    source: str  # slo | alertmanager | manual
    impact_start_ns: int | None
    first_alert_ns: int | None
    opened_ns: int
    acknowledged_ns: int | None
    acknowledged_by: str | None
    mitigated_ns: int | None
    mitigated_by: str | None
    resolved_ns: int | None
    resolved_by: str | None
    evidence: NotRequired[dict[str, Any] | None]
    evidence_ns: int | None
    updated_ns: int


class Change(TypedDict):
    """A deploy, model or prompt rollout, config or flag change: recorded, or detected when a
    new version first appears in a journey's runs (``IncidentStore.list_changes``)."""

    id: int
    tenant: str
    kind: str  # deploy | model | prompt | config | flag | loadtest | gameday
    summary: str
    who: str | None
    at_ns: int
    services: list[str]
    journeys: list[str]
    version: str | None
    previous: str | None
    prompt_name: str | None
    link: str | None
    metadata: dict[str, Any] | None
    source: str  # api | detected
    observed_ns: int | None
    created_ns: int


class ApiKey(TypedDict):
    """An API key as listed (``KeyTables.list_keys``): never its digest."""

    key_id: str
    tenant: str
    role: str  # ingest | read | admin
    name: str
    created_ns: int
    created_by: str
    expires_ns: int | None
    revoked_ns: int | None
    revoked_by: str | None


class AuditEntry(TypedDict):
    """One audit record (``AuditLog.list_audit``), before and after as decoded JSON."""

    id: int
    tenant: str
    at_ns: int
    actor: str
    action: str
    target: str
    before: Any
    after: Any


class GateVerdictSummary(TypedDict):
    """A recorded gate verdict without its evidence document (``GateStore.list_gate_verdicts``)."""

    id: int
    journey: str
    baseline: str
    candidate: str
    verdict: str  # pass | marginal | fail | no_data
    score: float | None
    baseline_runs: int
    candidate_runs: int
    decided_ns: int


class PriceOverride(TypedDict):
    """A tenant's price for a model from ``effective_ns`` on (``CostSettings.list_overrides``);
    prices in USD per 1M tokens."""

    tenant: str
    model: str
    provider: str
    input: float
    output: float
    cached_input: float
    effective_ns: int
    created_ns: int


class CostBudget(TypedDict):
    """A cost budget per calendar week or month (``CostSettings.list_budgets``); journey ''
    is the whole tenant."""

    tenant: str
    name: str
    journey: str
    period: str  # week | month
    amount_usd: float
    thresholds: list[float]
    created_ns: int


class RateLimit(TypedDict):
    """A provider's rate limit for a model (``CostSettings.list_rate_limits``)."""

    tenant: str
    model: str
    requests_per_min: float | None
    tokens_per_min: float | None
    warn_at: float


class CapacityLevel(TypedDict):
    """A tenant's own warning level for one capacity resource, by its metric
    (``CapacityLevelTables.capacity_levels``): threshold None keeps the built-in level;
    enabled False turns the resource off."""

    tenant: str
    metric: str
    threshold: float | None
    enabled: bool
    updated_ns: int


class CostSums(TypedDict):
    """The model-call sums of a cost breakdown row (normalize/semantics.py
    COST_MINUTE_MEASURES); zero over no rows."""

    calls: int
    billed_calls: int
    first_calls: int
    resent_calls: int
    retry_calls: int
    retry_billed_calls: int
    errors: int
    http_429: int
    http_5xx: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    retry_cost_usd: float
    failed_run_cost_usd: float
    unpriced_calls: int
    unpriced_tokens: int


class CostKeys(TypedDict):
    """The dimensions a cost group is keyed by (normalize/semantics.py COST_DIMENSIONS): only
    those asked for are present."""

    journey: NotRequired[str | None]
    model: NotRequired[str | None]
    provider: NotRequired[str | None]
    prompt_version: NotRequired[str | None]
    service_version: NotRequired[str | None]


class CostBreakdown(CostSums, CostKeys):
    """One group of ``CostStore.breakdown``: the dimensions asked for (and the bucket) with
    their sums."""

    bucket_ns: NotRequired[int]


class RunCounts(TypedDict):
    """Runs, failures and their cost (``CostStore.run_counts``), per journey and bucket when asked."""

    bucket_ns: NotRequired[int]
    journey: NotRequired[str]
    runs: int
    failures: int
    run_cost_usd: float
    failed_cost_usd: float


class MetricSeriesStats(TypedDict):
    """What the kept minutes of one metric series hold (``MetricSeriesStats.metric_series_stats``):
    its first and last minute and the data points folded into them."""

    series_id: int
    first_minute_ns: int
    last_minute_ns: int
    points: int


class MetricSeriesRow(TypedDict):
    """One metric series as stored, with its kept cumulative point (``MetricExport``): what
    the next point of a cumulative series is an increase over. ``last_bounds`` and
    ``last_buckets`` are a histogram's kept buckets (None for gauges and sums)."""

    series_id: int
    metric: str
    labels: str
    kind: str
    unit: str
    first_ns: int
    start_ns: int | None
    last_ns: int | None
    last_value: float | None
    last_sum: float | None
    last_bounds: list[float] | None
    last_buckets: list[float] | None


class MetricMinuteRow(TypedDict):
    """One (series, minute) of the metric rollups, every row written for it folded into one
    (``MetricExport``). Sums: value = increase; gauges: value = sum of points, min, max, last
    (at last_ns); histograms: value = observations, sum, buckets over bounds (+Inf last)."""

    series_id: int
    minute_ns: int
    value: float
    points: int
    min: float | None
    max: float | None
    last: float | None
    last_ns: int | None
    sum: float | None
    bounds: list[float] | None
    buckets: list[float] | None


class PlatformScoreRow(TypedDict):
    """One stored platform score (``MetricExport.export_platform_scores``), as stored."""

    tenant: str
    subject: str
    name: str
    value: float
    source: str
    comment: str | None
    time_ns: int
    minute_ns: int
    received_ns: int


class PolicySetRow(TypedDict):
    """One applied agent policy set (``PolicyStore.policy_sets``), newest first."""

    tenant: str
    bundle: str
    applied_ns: int
    actor: str
    source: str
    policies: list[dict[str, Any]]


class DecisionRecord(TypedDict):
    """One decision record (``PolicyStore.list_decisions``), reasons and input decoded."""

    id: str
    tenant: str
    at_ns: int
    source: str  # inline | trace
    journey: str | None
    trace_id: str | None
    span_id: str | None
    result: str  # allow | deny
    bundle: str | None
    policies: list[dict[str, Any]]
    rules: list[str]
    reasons: list[Any]
    input_digest: str
    input: Any


class PolicyViolation(TypedDict):
    """One violation found over a stored trace (``PolicyStore.list_violations``)."""

    trace_id: str
    journey: str | None
    run_start_ns: int
    policy: str
    version: str
    rule: str
    kind: str
    effect: str  # deny | warn
    message: str
    count: float
    span_id: str
    span_ids: list[str]
    start_ns: int


class PolicyRunMark(TypedDict):
    """How a trace was last judged (``PolicyStore.policy_run``)."""

    trace_id: str
    journey: str | None
    run_start_ns: int
    bundle: str | None
    last_received_ns: int
    evaluated_ns: int
    actions: int
    violations: int
    guardrail_checks: int
    guardrail_trips: int
    undetermined: list[str]


def fired_at(alert: AlertEpisode) -> int:
    """When an episode began firing; for episodes known to have fired (``started_ns`` set)."""
    started = alert["started_ns"]
    if started is None:
        raise ValueError(f"alert episode {alert['id']} has not fired")
    return started


def columns(kind: type) -> str:
    """The fields of the TypedDict ``kind`` as a SELECT list, in declaration order (for
    tables whose columns are the row's fields)."""
    return ", ".join(typing.get_type_hints(kind))


def row_problems(row: dict[str, Any], kind: type) -> list[str]:
    """What in ``row`` disagrees with the TypedDict ``kind``: missing or extra fields, and
    values of the wrong type (an int is accepted where a float is declared)."""
    hints = typing.get_type_hints(kind)
    required = getattr(kind, "__required_keys__", frozenset(hints))
    problems = [f"missing field {name!r}" for name in hints if name in required and name not in row]
    problems += [f"undeclared field {name!r}" for name in row if name not in hints]
    for name, hint in hints.items():
        if name in row and not _conforms(row[name], hint):
            problems.append(f"{name}={row[name]!r} is not {hint}")
    return problems


def _conforms(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is Any:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)
