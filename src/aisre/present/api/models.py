"""What the REST routes answer, as typed models: the routes build these, and the OpenAPI
document's response schemas are generated from them (openapi.py), so the two cannot drift.

Times are RFC 3339 strings (UTC, ``Z``); durations carry their unit in the field name
(``_ms``, ``_s``); money is USD (``_usd``). Nested parts whose shape belongs to a lower layer
and varies by kind (an SLO's indicator, a gate metric's test) are typed as open objects.
"""

from typing import Any, Literal, NotRequired, TypedDict

from aisre.core.rows import CostKeys, CostSums

Json = dict[str, Any]
Time = str  # RFC 3339, e.g. 2026-12-05T09:00:27.077273Z


class Error(TypedDict):
    """Every 4xx/5xx answer: one message, and for a spec set each error with its place."""

    error: str
    errors: NotRequired[list[Any]]


class Deleted(TypedDict):
    deleted: str


# -- health, stats ---------------------------------------------------------------------------


class Health(TypedDict):
    status: str
    store: str


class Retention(TypedDict):
    tenant: str
    retention_days: float | None
    source: str
    rollup_retention_days: float | None
    dedup_window_s: float


class Stats(TypedDict):
    backend: str
    spans: int
    traces: int
    queued_spans: int
    commits: int
    spans_committed: int
    refused_full: int
    failed_commits: int
    last_commit_seconds: float | None
    commit_seconds_total: float
    upkeep_seconds_total: float
    duplicate_spans: int
    expired_spans: int
    expired_traces: int
    expiry_steps: int
    expired_decisions: NotRequired[int]
    expired_violations: NotRequired[int]
    oldest_span: Time | None
    retention: NotRequired[Retention]


# -- journeys and traces ---------------------------------------------------------------------


class JourneySummary(TypedDict):
    journey: str
    runs: int
    failures: int
    failure_rate: float
    p50_ms: float | None
    p95_ms: float | None
    tokens_per_run: float | None
    llm_calls_per_run: float | None
    retries: int
    cost_usd: float | None
    last_seen: Time | None


class JourneyList(TypedDict):
    items: list[JourneySummary]


Outcome = Literal["success", "failure", "incomplete"]


class Run(TypedDict):
    trace_id: str
    journey: str
    outcome: Outcome
    failure_reason: str | None
    start_time: Time | None
    duration_ms: float | None
    root_span: str | None
    service: str | None
    span_count: int
    error_spans: int
    llm_calls: int
    llm_errors: int
    tool_calls: int
    retrieval_calls: int
    agent_steps: int
    retries: int
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cost_usd: float | None
    service_version: str | None
    prompt_name: str | None
    prompt_version: str | None
    environment: str | None
    models: list[str]
    user_id: str | None
    session_id: str | None


class RunPage(TypedDict):
    items: list[Run]
    next_cursor: str | None


class Span(TypedDict):
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str | None
    service: str | None
    scope: str | None
    status: str
    status_message: str | None
    operation: str
    provider: str | None
    request_model: str | None
    response_model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cost_usd: float | None
    http_status: int | None
    retry_attempt: int | None
    error_type: str | None
    tool_name: str | None
    service_version: str | None
    prompt_name: str | None
    prompt_version: str | None
    depth: int
    orphan: bool
    start_time: Time
    end_time: Time
    offset_ms: float
    duration_ms: float
    attributes: Json
    resource: Json
    events: list[Json]
    links: list[Json]
    genai: NotRequired[Json | None]


class Trace(Run):
    spans: list[Span]


# -- SLOs, alerts ----------------------------------------------------------------------------


class ErrorBudget(TypedDict):
    total_events: float | None
    spent_events: float | None
    remaining_ratio: float | None
    time_to_exhaustion_s: float | None


class BurnDownPoint(TypedDict):
    time: Time
    remaining_ratio: float | None


class SloStatus(TypedDict):
    name: str
    journey: str | None  # None for a platform SLO (service instead of journey)
    objective: float
    window: str
    indicator: Json
    tier: int | None
    owner: str | None
    runbook: str | None
    diagnostic: bool
    carries_budget: bool
    description: str | None
    status: str
    data: Json
    sli: float | None
    good: int | float
    total: int | float
    error_budget: ErrorBudget
    burn_rates: dict[str, float | None]
    alerts: list[Json]
    warnings: NotRequired[list[str]]
    burn_down: NotRequired[list[BurnDownPoint]]
    # The platform SLOs this one depends on, their burn over the alert window, and which
    # of them burn while this SLO burns ("burning because").
    depends_on: NotRequired[list[str]]
    dependencies: NotRequired[list[Json]]
    burning_because: NotRequired[list[Json]]


class AlertEpisode(TypedDict):
    id: int
    kind: Literal["slo", "budget"]
    slo: str
    journey: str | None
    severity: str
    state: Literal["pending", "firing", "resolved"]
    pending_since: Time | None
    started: Time | None
    ended: Time | None
    peak_burn: float | None
    summary: str | None
    owner: NotRequired[str | None]
    tier: NotRequired[int | None]
    runbook: NotRequired[str | None]
    incident: NotRequired[Json | None]


class SloDetail(SloStatus):
    alert_episodes: list[AlertEpisode]


class SloList(TypedDict):
    items: list[SloStatus]


class AlertList(TypedDict):
    items: list[AlertEpisode]


class ReplayInterval(TypedDict):
    severity: str
    start: Time
    end: Time | None
    peak_burn: float


class ReplayList(TypedDict):
    items: list[ReplayInterval]


class SloApplied(TypedDict):
    applied: list[str]


class ScoreRefusal(TypedDict):
    index: int
    reason: str


class ScoresAccepted(TypedDict):
    accepted: int
    rejected: list[ScoreRefusal]


class EvidentlyScore(TypedDict):
    name: str
    value: float | None


class EvidentlySkipped(TypedDict):
    index: int
    metric: str | None
    reason: str


class EvidentlyImported(TypedDict):
    subject: str
    time: Time
    accepted: int
    rejected: list[ScoreRefusal]
    scores: list[EvidentlyScore]
    skipped: list[EvidentlySkipped]


class PlatformScore(TypedDict):
    subject: str
    name: str
    value: float
    source: str
    comment: str | None
    time: Time
    received: Time


class PlatformScoreList(TypedDict):
    items: list[PlatformScore]
class EventSpanRef(TypedDict):
    index: int
    trace_id: str
    span_id: str


class EventsAccepted(TypedDict):
    accepted: int
    rejected: list[ScoreRefusal]
    spans: list[EventSpanRef]


# -- admin -----------------------------------------------------------------------------------


Role = Literal["ingest", "read", "admin"]


class ApiKey(TypedDict):
    key_id: str
    tenant: str
    role: Role
    name: str
    status: Literal["active", "expired", "revoked"]
    created: Time | None
    created_by: str | None
    expires: Time | None
    revoked: Time | None
    revoked_by: str | None


class NewApiKey(TypedDict):
    key: str
    key_id: str
    tenant: str
    role: Role
    name: str
    expires: Time | None


class KeyList(TypedDict):
    items: list[ApiKey]


class AuditRecord(TypedDict):
    id: int
    tenant: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    at: Time


class AuditList(TypedDict):
    items: list[AuditRecord]


# -- changes, incidents ----------------------------------------------------------------------


class Change(TypedDict):
    id: int
    kind: str
    summary: str | None
    who: str | None
    at: Time
    services: list[str]
    journeys: list[str]
    version: str | None
    previous: str | None
    prompt_name: str | None
    link: str | None
    metadata: Any
    source: str
    observed: Time | None


class ChangeList(TypedDict):
    items: list[Change]


class TimelineEntry(TypedDict):
    time: Time
    kind: str
    actor: str | None
    message: str | None
    data: Any


class ActionItem(TypedDict):
    id: int
    incident_id: int
    title: str
    owner: str | None
    due: Time | None
    status: Literal["open", "done"]
    created: Time
    done: Time | None


class IncidentSummary(TypedDict):
    id: int
    title: str
    state: Literal["open", "acknowledged", "mitigated", "resolved"]
    severity: str
    journey: str | None
    slo: str | None
    source: str
    commander: str | None
    owner: str | None
    tier: int | None
    runbook: str | None
    url: str
    opened: Time
    impact_start: Time | None
    first_alert: Time | None
    acknowledged: Time | None
    acknowledged_by: str | None
    mitigated: Time | None
    mitigated_by: str | None
    resolved: Time | None
    resolved_by: str | None
    updated: Time
    time_to_detect_s: float | None
    time_to_acknowledge_s: float | None
    time_to_mitigate_s: float | None
    time_to_restore_s: float | None
    time_to_resolve_s: float | None
    summary: str | None
    impact: Json | None
    points_at: Any
    top_suspect: Any
    warnings: list[Any]
    # A journey SLO's platform dependencies burning when the incident opened (depends_on).
    burning_dependencies: NotRequired[list[Json]]


class Incident(IncidentSummary):
    evidence: Json | None
    evidence_computed: Time | None
    alerts: list[Json]
    timeline: list[TimelineEntry]
    action_items: list[ActionItem]
    notifications: list[Json]


class IncidentList(TypedDict):
    items: list[IncidentSummary]


class IncidentMetrics(TypedDict):
    incidents: int
    by_state: dict[str, int]
    by_severity: dict[str, int]
    mttd_s: float | None
    mttd_median_s: float | None
    mttd_count: int
    mtta_s: float | None
    mtta_median_s: float | None
    mtta_count: int
    mttr_s: float | None
    mttr_median_s: float | None
    mttr_count: int
    mtt_resolve_s: float | None
    mtt_resolve_median_s: float | None
    mtt_resolve_count: int
    action_items: Json
    since: Time | None
    until: Time | None


class AlertmanagerResult(TypedDict):
    alerts: int
    incidents: list[Any]


# -- gate ------------------------------------------------------------------------------------


class GatePopulation(TypedDict):
    selector: str
    runs: int
    first_run: Time | None
    last_run: Time | None


class Verdict(TypedDict):
    journey: str
    verdict: Literal["pass", "marginal", "fail", "insufficient_data"]
    exit_code: int
    score: float | None
    score_range: Any
    thresholds: dict[str, float]
    failed_metrics: list[Any]
    insufficient_data: list[Json]
    reasons: list[Any]
    notes: list[Any]
    fix: bool
    window: Json
    baseline: GatePopulation
    candidate: GatePopulation
    min_runs: int
    judge: Json
    metrics: list[Json]
    groups: list[Json]
    policy: Json
    id: NotRequired[int | None]
    decided_at: NotRequired[Time | None]


class VerdictSummary(TypedDict):
    id: int
    journey: str
    baseline: str
    candidate: str
    verdict: str
    score: float | None
    baseline_runs: int | None
    candidate_runs: int | None
    decided_at: Time


class VerdictList(TypedDict):
    items: list[VerdictSummary]


# -- cost ------------------------------------------------------------------------------------


class CostGroup(CostSums, CostKeys):
    """Sums (the store's breakdown row) and ratios of one group; its key fields are those of
    ``by`` (and bucket)."""

    bucket: NotRequired[Time]
    runs: int | None
    failures: NotRequired[int]
    cost_per_1k_runs_usd: float | None
    cost_per_call_usd: float | None
    retry_cost_share: float | None
    failed_run_cost_share: float | None
    cache_hit_rate: float | None


class CostBreakdown(TypedDict):
    since: Time | None
    until: Time | None
    by: list[str]
    bucket_s: float | None
    journey: str | None
    model: str | None
    groups: list[CostGroup]
    total: CostGroup
    unpriced: list[Json]


class CostExplanation(TypedDict):
    journey: str
    status: Literal["explained", "insufficient_data"]
    summary: str
    minimums: Json
    baseline: Json
    current: Json


class PriceVersion(TypedDict):
    id: str
    effective: Time


class ModelPrice(TypedDict):
    provider: str | None
    model: str
    input: float
    output: float
    cached_input: float | None


class PriceCatalog(TypedDict):
    version: str
    effective: Time | None
    versions: list[PriceVersion]
    models: list[ModelPrice]
    overrides: list[Json]


class PriceOverride(TypedDict):
    model: str
    version: str
    input: float
    output: float
    cached_input: float | None


class Repriced(TypedDict):
    spans: int
    runs: int
    cost_before_usd: float
    cost_after_usd: float
    unpriced_calls: int
    since: Time
    until: Time
    unpriced_models: list[Any]


class UnpricedList(TypedDict):
    unpriced: list[Json]


class SpentPoint(TypedDict):
    """Spend this period up to the end of the hour that starts at hour_start."""

    hour_start: Time
    cumulative_usd: float


class ForecastPoint(TypedDict):
    """The forecast at a step end; step_low/high_usd are this step's share of the 80 % band."""

    time: Time
    cumulative_usd: float
    step_low_usd: float
    step_high_usd: float


class BudgetStatus(TypedDict):
    name: str
    journey: str | None
    period: Literal["week", "month"]
    amount_usd: float
    thresholds: list[float]
    period_start: Time
    period_end: Time
    as_of: Time
    spent_usd: float
    spent_share: float
    forecast_usd: float
    forecast_share: float
    forecast_low_usd: float
    forecast_high_usd: float
    forecast_model: str
    forecast_basis: Json
    projected_exhaustion: Time | None
    alert: float | None
    spent_series: NotRequired[list[SpentPoint]]
    forecast_series: NotRequired[list[ForecastPoint]]


class BudgetList(TypedDict):
    budgets: list[BudgetStatus]


class ModelHeadroom(TypedDict):
    model: str
    provider: str | None
    peak_requests_per_min: int
    peak_requests_at: Time | None
    peak_tokens_per_min: int
    peak_tokens_at: Time | None
    avg_requests_per_active_min: float | None
    requests_per_min_limit: float | None
    tokens_per_min_limit: float | None
    warn_at: float | None
    requests_headroom: float | None
    tokens_headroom: float | None
    peak_share: float | None
    warning: str | None


class Headroom(TypedDict):
    models: list[ModelHeadroom]


class RateLimit(TypedDict):
    tenant: str
    model: str
    requests_per_min: float | None
    tokens_per_min: float | None
    warn_at: float


# -- OTLP ------------------------------------------------------------------------------------


class ExportTraceServiceResponse(TypedDict):
    """OTLP/HTTP's JSON answer (protobuf when the request was protobuf)."""

    partialSuccess: NotRequired[Json]


class ExportMetricsServiceResponse(TypedDict):
    """OTLP/HTTP's JSON answer to a metrics export (protobuf when the request was protobuf)."""

    partialSuccess: NotRequired[Json]


# -- telemetry check -------------------------------------------------------------------------


class CheckFinding(TypedDict):
    """One kind of gap in one service (and journey), shaped like OTel Weaver's live-check findings."""

    id: str
    level: Literal["violation", "improvement", "information"]
    signal: str
    attribute: str
    message: str
    service: str
    journey: str | None
    count: int
    exemplar: dict[str, str]
    signal_type: str
    signal_name: str | None
    context: Json


class CheckReport(TypedDict):
    since: Time | None
    until: Time | None
    service: str | None
    journey: str | None
    sampled: int
    spans_seen: int
    sample_limit: int
    spans: int
    runs: int
    rejected: int
    reasons: list[str]
    coverage: dict[str, float]
    findings: list[CheckFinding]


# -- scorecards ------------------------------------------------------------------------------


class Period(TypedDict):
    kind: Literal["week", "month", "quarter"]
    label: str
    start: Time
    end: Time


class ScorecardSlo(TypedDict):
    """One SLO over the period: attainment = good / total; budget_remaining = 1 − bad / (allowed × total)."""

    slo: str
    journey: str | None
    objective: float
    owner: str | None
    tier: int | None
    runbook: str | None
    diagnostic: bool
    good: int
    total: int
    attainment: float | None
    met: bool | None
    budget_remaining: float | None


class ScorecardRule(TypedDict):
    name: str
    level: str
    fact: str
    op: str
    threshold: float
    value: Any
    passed: bool
    description: str


class Scorecard(TypedDict):
    scope: Literal["journey", "service", "team"]
    name: str
    journeys: list[str]
    period: Period
    level: str | None
    levels: list[str]
    facts: Json
    slos: list[ScorecardSlo]
    failed_change_ids: list[int]
    rules: list[ScorecardRule]
    trend: Json


class Scorecards(TypedDict):
    period: Period
    scope: str
    rules_source: str
    levels: list[str]
    change_failure_window_s: float
    scorecards: list[Scorecard]


class ScorecardEntityFacts(TypedDict):
    entityRef: str
    scope: str
    name: str
    timestamp: Time
    level: str | None
    facts: Json
    checks: dict[str, bool]


class ScorecardFacts(TypedDict):
    version: int
    generator: str
    period: Period
    entities: list[ScorecardEntityFacts]


# -- service catalog -------------------------------------------------------------------------


class CatalogDependency(TypedDict):
    kind: Literal["model", "vector_store", "tool", "database", "http", "service"]
    provider: str | None
    name: str
    calls: int
    errors: int
    error_rate: float | None
    mean_ms: float | None
    p50_ms: float
    p95_ms: float
    journeys: list[str]


class CatalogService(TypedDict):
    name: str
    spans: int
    traces: int
    errors: int
    error_rate: float | None
    roots: int
    journeys: list[str]
    first_seen: Time | None
    last_seen: Time | None
    seen: bool
    declared: bool
    owner: str | None
    tier: int | None
    runbook: str | None
    on_call: str | None
    description: str
    lifecycle: str
    system: str | None
    tags: list[str]
    slos: list[str]
    dependencies: list[CatalogDependency]


class CatalogJourney(TypedDict):
    name: str
    services: list[str]
    slos: list[str]
    owner: str | None


class Catalog(TypedDict):
    services: list[CatalogService]
    journeys: list[CatalogJourney]
    catalog_source: str | None
    since: Time | None
    until: Time | None


# -- launch readiness ------------------------------------------------------------------------


class ReadinessItem(TypedDict):
    id: str
    title: str
    required: bool
    passed: bool
    fact: str
    op: str
    expected: float
    value: Any
    fix: str


class Readiness(TypedDict):
    journey: str
    ready: bool
    passed: int
    total: int
    failed_required: list[str]
    items: list[ReadinessItem]
    facts: Json
    detail: Json
    template: str
    lookback_days: int


class GamedayScore(TypedDict):
    journey: str
    scenario: str | None
    start: Time
    end: Time
    time_to_first_alert_s: float | None
    time_to_first_page_s: float | None
    page_window_s: float | None
    detected_within_page_window: bool | None
    incident_opened: bool
    incident_id: int | None
    time_to_incident_s: float | None
    named_layer: str | None
    expected_layer: str | None
    cause_named: bool | None
    time_to_mitigate_s: float | None
    alerts: int
    pages: int
    should_not_have_fired: list[Json]
    detect: str
    policy_violations: int
    violating_runs: int
    time_to_first_violation_s: float | None
    passed: bool
    drill_id: NotRequired[int]
    running: NotRequired[bool]
    who: NotRequired[str | None]


class GamedayDrill(TypedDict):
    """A game day recorded on the server (its id is the start change's)."""

    id: int
    journey: str
    scenario: str | None
    expect: str | None
    who: str | None
    start_ns: int
    end_ns: int | None
    start: Time
    end: Time | None


class GamedayList(TypedDict):
    drills: list[GamedayScore]


# -- the reliability review ------------------------------------------------------------------


class Review(TypedDict):
    """The review document (format=json); HTML and Markdown render the same."""

    period: Period
    generated: Time
    days: list[str]
    summary: Json
    top_incidents: list[Json]
    near_misses: list[Json]
    slos: list[Json]
    daily: Json
    changes: list[Json]
    remediation: list[Json]
    game_days: list[GamedayScore]
    scorecards: list[Json]
    levels: list[str]
    # Saturation resources: level, growth, forecast crossing of the warning level, daily peak.
    capacity: NotRequired[list[Json]]


class PolicyApplied(TypedDict):
    bundle: str
    changed: bool
    policies: list[Json]
    before: Json | None


class PolicyList(TypedDict):
    bundle: str | None
    applied_at: str | None
    policies: list[Json]
    history: list[Json]


class PolicyDecision(TypedDict):
    id: str
    result: Literal["allow", "deny"]
    reasons: list[Json]
    policies: list[Json]
    bundle: str | None
    input_digest: str
    undetermined: list[str]


class PolicyDecisionList(TypedDict):
    items: list[Json]


class PolicyViolationList(TypedDict):
    items: list[Json]


class CapacityPoint(TypedDict):
    time: str
    mean: float
    low: float
    high: float


class CapacityLevel(TypedDict):
    """One minute's level a forecast was fit on."""

    time: str
    time_ns: int
    value: float


class CapacitySeries(TypedDict):
    """One gauge series: its trend level now, growth per hour, and when it reaches the
    threshold (crossing), at the earliest and latest (the 80 % band); null: not in the horizon."""

    metric: str
    labels: dict[str, str]
    threshold: float
    current: float | None
    slope_per_hour: float
    model: str
    basis: dict[str, Any]
    crossing: str | None
    crossing_ns: int | None
    earliest: str | None
    earliest_ns: int | None
    latest: str | None
    latest_ns: int | None
    series: list[CapacityPoint]
    direction: NotRequired[Literal["rising", "falling"]]
    minutes: NotRequired[int]
    enough_data: NotRequired[bool]
    history: NotRequired[list[CapacityLevel]]


class CapacityResource(TypedDict):
    """A watched resource: a saturation gauge (kind gauge) or a rate-limited model's token
    throughput or headroom (kind rate_limit, with the model and its limits); its series and the
    one nearest its threshold (worst). direction falling: a headroom that falls to threshold."""

    resource: str
    kind: Literal["gauge", "rate_limit"]
    metric: str
    threshold: float
    unit: str
    direction: Literal["rising", "falling"]
    worst: CapacitySeries
    series: list[CapacitySeries]
    model: NotRequired[str]
    limit: NotRequired[float | None]
    requests_limit: NotRequired[float | None]
    warn_at: NotRequired[float]
    level_source: NotRequired[Literal["built-in", "tenant", "query", "rate limit"]]


class Capacity(TypedDict):
    """Forecasts per series of the metric asked for (items), or, without metric, per watched resource (resources)."""

    items: NotRequired[list[CapacitySeries]]
    resources: NotRequired[list[CapacityResource]]


class CapacityWarningLevel(TypedDict):
    """A watched resource's warning level in force for the tenant: its own (source tenant) or
    the built-in one (default); enabled false: the tenant turned the resource off."""

    resource: str
    metric: str
    unit: str
    direction: Literal["rising", "falling"]
    default: float
    threshold: float
    enabled: bool
    source: Literal["tenant", "built-in"]
    updated_ns: int | None


class CapacityWarningLevels(TypedDict):
    """Every built-in capacity resource with the tenant's level for it."""

    levels: list[CapacityWarningLevel]


class MetricSeries(TypedDict):
    """One metric series: its selector picks exactly it; first_seen is its first point,
    last_seen and points cover the minutes still kept."""

    metric: str
    kind: str
    unit: str
    labels: dict[str, str]
    selector: str
    meaning: str | None
    first_seen: Time
    first_seen_ns: int
    last_seen: Time | None
    last_seen_ns: int | None
    points: int


class MetricSeriesPage(TypedDict):
    items: list[MetricSeries]
    next_cursor: str | None
