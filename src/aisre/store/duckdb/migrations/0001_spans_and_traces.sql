-- Spans as normalized at ingest (core/schema.py); attributes, events and links are kept
-- whole as JSON, and the resource whole in `resources`, so nothing sent is lost.
CREATE TABLE spans (
    tenant VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR NOT NULL,
    parent_span_id VARCHAR NOT NULL,
    name VARCHAR,
    kind VARCHAR,
    service VARCHAR,
    scope VARCHAR,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    status VARCHAR,
    status_message VARCHAR,
    journey VARCHAR,
    is_root BOOLEAN,
    operation VARCHAR,
    provider VARCHAR,
    request_model VARCHAR,
    response_model VARCHAR,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cached_input_tokens BIGINT,
    cost_usd DOUBLE,
    price_version VARCHAR,
    service_version VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    deployment_environment VARCHAR,
    http_status INTEGER,
    retry_attempt INTEGER,
    error_type VARCHAR,
    tool_name VARCHAR,
    user_id VARCHAR,
    session_id VARCHAR,
    marks_failure BOOLEAN,
    attributes JSON,
    resource_id BIGINT NOT NULL,
    events JSON,
    links JSON,
    received_ns BIGINT NOT NULL
);

-- Each distinct resource once, by the hash spans refer to.
CREATE TABLE resources (
    tenant VARCHAR NOT NULL,
    resource_id BIGINT NOT NULL,
    resource JSON NOT NULL,
    PRIMARY KEY (tenant, resource_id)
);

-- One row per trace, maintained incrementally in the same transaction as its spans.
-- A trace with a root span is a journey run; one without is shown as incomplete.
CREATE TABLE traces (
    tenant VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    journey_attr VARCHAR,
    journey_rule VARCHAR,
    has_root BOOLEAN NOT NULL,
    root_span_id VARCHAR,
    root_name VARCHAR,
    root_service VARCHAR,
    root_start_ns BIGINT,
    root_end_ns BIGINT,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    failed BOOLEAN NOT NULL,
    failure_reason VARCHAR,
    span_count BIGINT NOT NULL,
    error_spans BIGINT NOT NULL,
    llm_calls BIGINT NOT NULL,
    llm_errors BIGINT NOT NULL,
    tool_calls BIGINT NOT NULL,
    retrieval_calls BIGINT NOT NULL,
    agent_steps BIGINT NOT NULL,
    retries BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cost_usd DOUBLE NOT NULL,
    service_version VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    environment VARCHAR,
    models VARCHAR[],
    -- Model calls in brief (parent, operation/model, start, end, failed, resend): enough
    -- to recognise a retry whose failed sibling came in another batch, without
    -- reading spans back.
    llm_call_log STRUCT(p VARCHAR, m VARCHAR, s BIGINT, e BIGINT, f BOOLEAN, r INTEGER)[],
    user_id VARCHAR,
    session_id VARCHAR,
    first_received_ns BIGINT NOT NULL,
    last_received_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, trace_id)
);

CREATE VIEW journey_runs AS
SELECT
    tenant,
    trace_id,
    coalesce(journey_attr, journey_rule, root_name, '(incomplete)') AS journey,
    CASE WHEN NOT has_root THEN 'incomplete' WHEN failed THEN 'failure' ELSE 'success' END AS outcome,
    failure_reason,
    coalesce(root_start_ns, start_ns) AS run_start_ns,
    coalesce(root_end_ns, end_ns) - coalesce(root_start_ns, start_ns) AS duration_ns,
    * EXCLUDE (tenant, trace_id, failure_reason, llm_call_log)
FROM traces;
