"""Every server setting in one table of (name, default, help), datasette-style.

The CLI validates overrides against this table at start-up, so a typo fails fast
instead of being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aisre.core.errors import PermanentError


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Interface for the HTTP (OTLP/HTTP, API, UI) and gRPC listeners"),
    Setting("port", 4318, "HTTP port: OTLP/HTTP at /v1/traces, the REST API, the UI and /metrics"),
    Setting("grpc_port", 4317, "OTLP/gRPC port (TraceService/Export); 0 turns gRPC off"),
    Setting("db", "aisre.duckdb", "Path of the embedded DuckDB file (short for store=duckdb:///PATH)"),
    Setting("store", "", "Store URL, e.g. duckdb:///var/lib/aisre/aisre.duckdb; when empty, the DuckDB file of db"),
    Setting("control_store", "", "Control-plane store URL, postgresql://user:pass@host:5432/db: keys, alerts, incidents, changes, verdicts, budgets and the audit log live there and the store keeps spans, runs and rollups (several nodes share one); when empty, the store holds everything"),
    Setting("lease_ttl_s", 15.0, "With a PostgreSQL control store: how long the evaluator lease lasts unrenewed; another node takes over at most 4/3 of this after the holder dies"),
    Setting("tenant", "default", "Tenant that data without credentials belongs to (auth off)"),
    Setting("auth", "auto", "API keys: auto (required once the store has ever had a key, or on a non-loopback host), required, or off (loopback only)"),
    Setting("operator_tenant", "", "Tenant whose admin keys may read /metrics/all (every tenant's series); default: the tenant setting"),
    Setting("slos", "", "SLO spec file or folder (aisre, OpenSLO or Sloth YAML) loaded at start"),
    Setting("policies", "", "Agent policy file or folder applied at start as the default tenant's policy set (audited when it changes the set in force)"),
    Setting("gate_config", "", "Release-gate file (judge, metric settings, error-budget policy) that /api/gate judges with; defaults when empty"),
    Setting("scorecard_rules", "", "Scorecard rules YAML (levels from facts, docs/scorecards.md) for /api/scorecards; the shipped DORA tiers when empty"),
    Setting("catalog_file", "", "Service catalog YAML (owner, tier, runbook, on-call per service, docs/catalog.md) merged with what the traces show in /api/catalog"),
    Setting("readiness_template", "", "Launch-readiness template YAML (items added, built-ins switched off, docs/readiness.md) for /api/readiness and aisre readiness"),
    Setting("check_required", "", "Required-attributes YAML (docs/check.md) the telemetry checker (/api/check, /check) applies besides its built-in checks"),
    Setting("price_catalog", "", "Price catalog YAML used instead of the shipped one (versions with effective dates; USD per 1M tokens)"),
    Setting("journey_rules", "", "YAML file of rules naming journeys from service and root span name (traces without aisre.journey)"),
    Setting("max_body_bytes", 16 * 1024 * 1024, "Largest accepted OTLP request body, after decompression (413 above it)"),
    Setting("queue_max_spans", 200_000, "Spans waiting for the store writer before ingest answers 429/RESOURCE_EXHAUSTED"),
    Setting("commit_max_spans", 100_000, "Most spans the writer commits in one transaction (group commit)"),
    Setting("commit_max_wait_ms", 5, "How long the writer waits to gather more requests into one commit"),
    Setting("retry_after_s", 1, "Seconds a refused exporter is told to wait (Retry-After / RetryInfo)"),
    Setting("ingest_workers", 2, "Processes that decode and normalize OTLP requests; 0 does it in the server process"),
    Setting("checkpoint_mb", 256, "WAL size (MiB) at which DuckDB folds it into the database file; larger commits faster, replays longer after a crash"),
    Setting("db_memory_limit", "1GB", "Memory DuckDB may use for its buffers, indexes and queries"),
    Setting("retention_days", 14, "Days raw spans and traces are kept per tenant (their minute rollups stay for rollup_retention_days); 0 keeps them for ever"),
    Setting("retention_file", "", "YAML file giving tenants their own raw-span retention (tenants: {name: days}); PUT /api/retention overrides it, others get retention_days"),
    Setting("rollup_retention_days", 400, "Days run, SLO and cost minute rollups are kept, so SLO windows, burn-downs and postmortems outlive the raw spans; 0 keeps them for ever"),
    Setting("retention_interval_s", 60, "How often the writer looks for expired data; expiry then runs one bounded step per writer tick until done; 0 turns expiry off"),
    Setting("retention_step_traces", 5000, "Most traces (with their spans and scores) one expiry transaction deletes, so ingest waits for at most one such commit"),
    Setting("dedup_window_s", 3600, "How far back a span delivered again (same tenant, trace id and span id) is recognised and not stored or counted twice"),
    Setting("rollup_interval_ms", 1000, "How often the writer rebuilds the minute rollups that commits touched; 0 turns rollups off (benchmarks only)"),
    Setting("evaluation_interval_s", 15, "How often SLO alert conditions are evaluated into alert state; 0 turns the evaluator off"),
    Setting("alert_keep_firing_s", 300, "Seconds an SLO alert keeps firing after its condition clears, so a burn that hovers at its factor does not resolve and fire again (Prometheus's keep_firing_for); 0 resolves at once"),
    Setting("policy_interval_s", 10, "How often committed runs (new, or changed by late spans) are judged against the agent policy in force when they ran; 0 turns trace judging off"),
    Setting("budget_evaluation_interval_s", 300, "How often cost budgets are forecast and checked against their alert thresholds; 0 turns budget alerts off"),
    Setting("explain_min_runs", 20, "Runs, and billed model calls, each window of a cost explanation needs; with fewer the answer is insufficient_data with the counts, and no cause"),
    Setting("explain_min_exemplars", 3, "Runs of the current window that must show a cost-change cause (retries, the new prompt, the costlier model…) before it is named"),
    Setting("explain_min_share", 0.05, "Share of a cost change a cause must carry to be named; smaller parts are noise in 'unexplained'"),
    Setting("receivers", "", "YAML file of notification receivers (generic webhook, Slack, PagerDuty Events v2) told when incidents open, escalate, are acknowledged or resolve"),
    Setting("public_url", "", "Base URL people reach this server at, for links in notifications (default http://HOST:PORT)"),
    Setting("notify_timeout_s", 5.0, "Seconds one notification attempt may take before it counts as a timeout"),
    Setting("notify_max_attempts", 5, "Attempts per notification (retried with exponential backoff on 5xx, 429, timeouts)"),
    Setting("notify_backoff_s", 1.0, "Wait before the first retry of a notification; doubles each attempt (capped at 30 s)"),
    Setting("evidence_interval_s", 60, "How often the triage evidence of unresolved incidents is recomputed"),
    Setting("alertmanager_max_alerts", 1000, "Most alerts one Alertmanager webhook may carry (413 above it: set max_alerts in Alertmanager's webhook_config)"),
    Setting("read_pool_size", 4, "Read-only cursors serving API queries"),
    Setting("max_spans_per_request", 100_000, "Most spans one OTLP export request may hold (400 above it: send smaller batches)"),
    Setting("prometheus_url", "", "Prometheus (or compatible) server whose query API Prometheus SLIs (error_query/good_query over total_query, threshold_query, histogram) are read from at minute resolution; empty: such SLIs are not evaluated"),
    Setting("prometheus_interval_s", 60, "How often Prometheus SLIs are read again (the last hour each time; the whole window at start and for a new or changed SLI)"),
    Setting("max_metric_series", 10_000, "Most metric series (metric name + label set) a tenant may have; data points of new series past it are rejected (partial success), known series keep flowing"),
    Setting("max_span_attributes", 1000, "Most attributes a span, its resource, an event or a link may carry; a span over it is rejected (partial success)"),
    Setting("max_attribute_chars", 1_000_000, "Longest attribute value, span name or status message in characters; longer ones are truncated, counted in aisre.truncated and reported in partial_success"),
    Setting("max_value_depth", 16, "Deepest nesting of array/kvlist attribute values; a span over it is rejected (partial success)"),
    Setting("content_capture", "redact", "What happens to prompt, completion, tool and retrieval content before it is stored: keep, redact (PII replaced by [REDACTED:KIND]) or drop"),
    Setting("content_capture_file", "", "YAML file giving tenants their own content mode (tenants: {name: keep|redact|drop}); others get content_capture"),
    Setting("redact_phone_region", "US", "Region whose national phone formats redaction recognises (numbers written with +country code are found in any region)"),
    Setting("redact_attributes", True, "Attribute rules outside content: hash user ids, sessions and client addresses, drop credential headers, scan URLs, exception and status messages, span names and resource attributes (tune per tenant in content_capture_file)"),
    Setting("redact_hash_salt", "", "Secret key of the HMAC-SHA256 that hashes attributes (text, env:NAME or file:PATH); empty: a random key kept in DB.salt beside the database file"),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Resolved settings; build with :func:`resolve`."""

    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int = 4317
    db: str = "aisre.duckdb"
    store: str = ""
    control_store: str = ""
    lease_ttl_s: float = 15.0
    tenant: str = "default"
    auth: str = "auto"
    operator_tenant: str = ""
    journey_rules: str = ""
    price_catalog: str = ""
    slos: str = ""
    policies: str = ""
    gate_config: str = ""
    check_required: str = ""
    scorecard_rules: str = ""
    catalog_file: str = ""
    readiness_template: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    queue_max_spans: int = 200_000
    commit_max_spans: int = 100_000
    commit_max_wait_ms: int = 5
    retry_after_s: int = 1
    ingest_workers: int = 2
    checkpoint_mb: int = 256
    db_memory_limit: str = "1GB"
    retention_days: int = 14
    retention_file: str = ""
    rollup_retention_days: int = 400
    retention_interval_s: int = 60
    retention_step_traces: int = 5000
    dedup_window_s: int = 3600
    rollup_interval_ms: int = 1000
    evaluation_interval_s: int = 15
    alert_keep_firing_s: int = 300
    policy_interval_s: int = 10
    budget_evaluation_interval_s: int = 300
    explain_min_runs: int = 20
    explain_min_exemplars: int = 3
    explain_min_share: float = 0.05
    receivers: str = ""
    public_url: str = ""
    notify_timeout_s: float = 5.0
    notify_max_attempts: int = 5
    notify_backoff_s: float = 1.0
    evidence_interval_s: int = 60
    alertmanager_max_alerts: int = 1000
    read_pool_size: int = 4
    max_spans_per_request: int = 100_000
    prometheus_url: str = ""
    prometheus_interval_s: int = 60
    max_metric_series: int = 10_000
    max_span_attributes: int = 1000
    max_attribute_chars: int = 1_000_000
    max_value_depth: int = 16
    content_capture: str = "redact"
    content_capture_file: str = ""
    redact_phone_region: str = "US"
    redact_attributes: bool = True
    redact_hash_salt: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def resolve(**overrides: Any) -> Settings:
    """Return Settings with ``overrides`` applied; unknown names or wrong types are refused."""
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        setting = _BY_NAME.get(name)
        if setting is None:
            known = ", ".join(sorted(_BY_NAME))
            raise PermanentError(f"unknown setting {name!r}; known settings: {known}")
        values[name] = _coerce(setting, value)
    return Settings(**values)


def _coerce(setting: Setting, value: Any) -> Any:
    kind = type(setting.default)
    if kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise PermanentError(f"setting {setting.name!r} must be true or false, got {value!r}")
        return bool(value)
    try:
        coerced = kind(value)
    except (TypeError, ValueError):
        raise PermanentError(
            f"setting {setting.name!r} must be {kind.__name__}, got {value!r}"
        ) from None
    if kind is int and coerced < 0:
        raise PermanentError(f"setting {setting.name!r} must be ≥ 0, got {value!r}")
    return coerced

