-- Agent policies (evaluate/policy/): every applied set is kept, newest in force; a run is
-- judged by the set in force when it started.
CREATE TABLE policy_sets (
    tenant VARCHAR NOT NULL,
    bundle VARCHAR NOT NULL,             -- content hash of the whole set
    applied_ns BIGINT NOT NULL,
    actor VARCHAR NOT NULL,
    source VARCHAR NOT NULL,             -- the YAML as applied
    policies_json VARCHAR NOT NULL,      -- [{name, version}]
    PRIMARY KEY (tenant, applied_ns)
);

-- Decision records (OPA decision-log style), append-only: nothing updates or deletes them.
CREATE TABLE policy_decisions (
    id VARCHAR PRIMARY KEY,
    tenant VARCHAR NOT NULL,
    at_ns BIGINT NOT NULL,
    source VARCHAR NOT NULL,             -- inline | trace
    journey VARCHAR,
    trace_id VARCHAR,
    span_id VARCHAR,
    result VARCHAR NOT NULL,             -- allow | deny
    bundle VARCHAR,
    policies_json VARCHAR NOT NULL,
    rules VARCHAR[] NOT NULL,
    reasons_json VARCHAR NOT NULL,
    input_digest VARCHAR NOT NULL,
    input_json VARCHAR                   -- redacted as the tenant's content policy says
);

-- Violations found over stored traces, replaced whole each time a trace is judged again
-- (a late span can add or clear one).
CREATE TABLE policy_violations (
    tenant VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    journey VARCHAR,
    run_start_ns BIGINT NOT NULL,
    policy VARCHAR NOT NULL,
    version VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    effect VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    count DOUBLE NOT NULL,
    span_id VARCHAR NOT NULL,
    span_ids VARCHAR[] NOT NULL,
    start_ns BIGINT NOT NULL
);

-- Which state of each trace was judged: a trace whose last_received_ns moved on is judged again.
CREATE TABLE policy_runs (
    tenant VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    journey VARCHAR,
    run_start_ns BIGINT NOT NULL,
    bundle VARCHAR,
    last_received_ns BIGINT NOT NULL,
    evaluated_ns BIGINT NOT NULL,
    actions BIGINT NOT NULL,
    violations BIGINT NOT NULL,
    guardrail_checks BIGINT NOT NULL,
    guardrail_trips BIGINT NOT NULL,
    undetermined VARCHAR[] NOT NULL,
    PRIMARY KEY (tenant, trace_id)
);
