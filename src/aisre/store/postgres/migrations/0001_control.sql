-- The control plane on PostgreSQL: the same tables as the DuckDB store's control side
-- (store/duckdb/migrations 0004, 0006-0008, 0010-0012), in PostgreSQL types. Times are
-- nanoseconds since the epoch in BIGINT, as everywhere in aisre; JSON documents are JSONB.

-- API keys: only the SHA-256 digest of each secret is kept.
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,                  -- ingest | read | admin
    name TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_ns BIGINT,
    revoked_ns BIGINT,
    revoked_by TEXT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_ns);

-- Facts that only move one way ('auth_required': set with the first key, never cleared).
CREATE TABLE control_flags (
    name TEXT PRIMARY KEY,
    set_ns BIGINT NOT NULL,
    set_by TEXT NOT NULL
);

-- Append-only record of every change to control-plane state.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_log_tenant ON audit_log (tenant, at_ns);

-- SLO alert episodes: pending -> firing -> resolved.
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    slo TEXT NOT NULL,
    journey TEXT,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    pending_since_ns BIGINT NOT NULL,
    started_ns BIGINT,
    ended_ns BIGINT,
    peak_burn DOUBLE PRECISION NOT NULL,
    updated_ns BIGINT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX alerts_tenant ON alerts (tenant, state);

-- Changes: recorded through the API or detected in the runs.
CREATE TABLE changes (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    who TEXT,
    at_ns BIGINT NOT NULL,
    services TEXT[] NOT NULL,
    journeys TEXT[] NOT NULL,
    version TEXT,
    previous TEXT,
    prompt_name TEXT,
    link TEXT,
    metadata JSONB,
    source TEXT NOT NULL,
    observed_ns BIGINT,
    created_ns BIGINT NOT NULL
);
CREATE INDEX changes_tenant ON changes (tenant, at_ns);

CREATE TABLE change_seen (
    tenant TEXT NOT NULL,
    journey TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, journey, kind, value)
);

CREATE TABLE change_cursor (
    tenant TEXT PRIMARY KEY,
    received_ns BIGINT NOT NULL
);

-- Incidents. ``version`` grows by one with every update: an update that expects a state
-- is a conditional UPDATE, so two nodes acknowledging at once cannot both win.
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    group_key TEXT NOT NULL,
    title TEXT NOT NULL,
    journey TEXT,
    slo TEXT,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    commander TEXT,
    owner TEXT,
    tier INTEGER,
    runbook TEXT,
    source TEXT NOT NULL,
    impact_start_ns BIGINT,
    first_alert_ns BIGINT,
    opened_ns BIGINT NOT NULL,
    acknowledged_ns BIGINT,
    acknowledged_by TEXT,
    mitigated_ns BIGINT,
    mitigated_by TEXT,
    resolved_ns BIGINT,
    resolved_by TEXT,
    evidence JSONB,
    evidence_ns BIGINT,
    updated_ns BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX incidents_tenant ON incidents (tenant, opened_ns);
-- At most one unresolved incident per group: alerts for one journey arriving at two nodes at
-- once open one incident, not two (the second joins the first).
CREATE UNIQUE INDEX incidents_open_group ON incidents (tenant, group_key) WHERE state <> 'resolved';

CREATE TABLE incident_alerts (
    incident_id BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    alert_key TEXT NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    severity TEXT NOT NULL,
    started_ns BIGINT NOT NULL,
    ended_ns BIGINT,
    summary TEXT,
    labels JSONB,
    PRIMARY KEY (tenant, alert_key, incident_id)
);

CREATE TABLE incident_events (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    data JSONB
);
CREATE INDEX incident_events_incident ON incident_events (tenant, incident_id, at_ns);

CREATE TABLE action_items (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    title TEXT NOT NULL,
    owner TEXT,
    due_ns BIGINT,
    status TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    done_ns BIGINT
);

CREATE TABLE notification_attempts (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    incident_id BIGINT NOT NULL,
    receiver TEXT NOT NULL,
    receiver_type TEXT NOT NULL,
    event TEXT NOT NULL,
    message_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at_ns BIGINT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    status_code INTEGER,
    ok BOOLEAN NOT NULL,
    final BOOLEAN NOT NULL,
    error TEXT
);

-- Release-gate verdicts with their whole evidence document.
CREATE TABLE gate_verdicts (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    journey TEXT NOT NULL,
    baseline TEXT NOT NULL,
    candidate TEXT NOT NULL,
    verdict TEXT NOT NULL,
    score DOUBLE PRECISION,
    baseline_runs BIGINT NOT NULL,
    candidate_runs BIGINT NOT NULL,
    decided_ns BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX gate_verdicts_journey ON gate_verdicts (tenant, journey, decided_ns);

-- Per-tenant retention of raw spans set through the API (the data plane applies it).
CREATE TABLE retention (
    tenant TEXT PRIMARY KEY,
    days DOUBLE PRECISION NOT NULL,
    updated_ns BIGINT NOT NULL
);

-- Prices, budgets and rate limits.
CREATE TABLE price_overrides (
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    input DOUBLE PRECISION NOT NULL,
    output DOUBLE PRECISION NOT NULL,
    cached_input DOUBLE PRECISION NOT NULL,
    effective_ns BIGINT NOT NULL,
    created_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, model, effective_ns)
);

CREATE TABLE cost_budgets (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    journey TEXT NOT NULL,
    period TEXT NOT NULL,
    amount_usd DOUBLE PRECISION NOT NULL,
    thresholds DOUBLE PRECISION[] NOT NULL,
    created_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE rate_limits (
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    requests_per_min DOUBLE PRECISION,
    tokens_per_min DOUBLE PRECISION,
    warn_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, model)
);

-- Leases of singleton jobs (the evaluator): one holder at a time, until expires_at
-- (the database's clock, so node clocks never decide). ``term`` grows with every new holder.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    term BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
