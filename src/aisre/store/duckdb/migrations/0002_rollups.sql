-- Per tenant × journey × minute of run start: what SLO and cost queries read, so their
-- cost grows with time buckets, not with span count. Rebuilt minute by minute from
-- `traces` whenever a commit touches a minute (late spans adjust the right minute).
CREATE TABLE run_minutes (
    tenant VARCHAR NOT NULL,
    journey VARCHAR NOT NULL,
    minute_ns BIGINT NOT NULL,
    runs BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    duration_sum_ns BIGINT NOT NULL,
    -- Counts of run durations per bucket; bucket i holds durations up to
    -- DURATION_BUCKETS_MS[i] (store/duckdb/rollups.py), the last one everything longer.
    duration_buckets BIGINT[] NOT NULL,
    llm_calls BIGINT NOT NULL,
    tool_calls BIGINT NOT NULL,
    retries BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cost_usd DOUBLE NOT NULL,
    failed_cost_usd DOUBLE NOT NULL
);
