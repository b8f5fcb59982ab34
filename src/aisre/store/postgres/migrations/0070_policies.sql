-- Agent policies (evaluate/policy/): the same tables as the DuckDB store's (store/duckdb/
-- migrations/0020_policies.sql), in PostgreSQL types. The judged marks and violations live
-- here; the runs they judge, and the policy scores, live in the span store.

-- Every applied set is kept; the newest is in force.
CREATE TABLE policy_sets (
    tenant TEXT NOT NULL,
    bundle TEXT NOT NULL,
    applied_ns BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    policies JSONB NOT NULL,
    PRIMARY KEY (tenant, applied_ns)
);

-- Decision records, append-only (deleted only by expiry, after rollup_retention_days).
CREATE TABLE policy_decisions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    source TEXT NOT NULL,
    journey TEXT,
    trace_id TEXT,
    span_id TEXT,
    result TEXT NOT NULL,
    bundle TEXT,
    policies JSONB NOT NULL,
    rules TEXT[] NOT NULL,
    reasons JSONB NOT NULL,
    input_digest TEXT NOT NULL,
    input JSONB
);
CREATE INDEX policy_decisions_tenant ON policy_decisions (tenant, at_ns);
CREATE INDEX policy_decisions_at ON policy_decisions (at_ns);

-- Violations found over stored traces, replaced whole each time a trace is judged again.
CREATE TABLE policy_violations (
    tenant TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    journey TEXT,
    run_start_ns BIGINT NOT NULL,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    effect TEXT NOT NULL,
    message TEXT NOT NULL,
    count DOUBLE PRECISION NOT NULL,
    span_id TEXT NOT NULL,
    span_ids TEXT[] NOT NULL,
    start_ns BIGINT NOT NULL
);
CREATE INDEX policy_violations_trace ON policy_violations (tenant, trace_id);
CREATE INDEX policy_violations_start ON policy_violations (tenant, run_start_ns);

-- Which state of each trace was judged.
CREATE TABLE policy_runs (
    tenant TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    journey TEXT,
    run_start_ns BIGINT NOT NULL,
    bundle TEXT,
    last_received_ns BIGINT NOT NULL,
    evaluated_ns BIGINT NOT NULL,
    actions BIGINT NOT NULL,
    violations BIGINT NOT NULL,
    guardrail_checks BIGINT NOT NULL,
    guardrail_trips BIGINT NOT NULL,
    undetermined TEXT[] NOT NULL,
    PRIMARY KEY (tenant, trace_id)
);
CREATE INDEX policy_runs_start ON policy_runs (run_start_ns);
CREATE INDEX policy_runs_received ON policy_runs (tenant, last_received_ns);

-- Per tenant: every run received before this instant (less an overlap) has been judged in
-- some state; the split store's runs_to_judge reads the span store's runs from here on.
CREATE TABLE policy_cursor (
    tenant TEXT PRIMARY KEY,
    received_ns BIGINT NOT NULL
);
