-- Model calls per tenant × journey × minute of the run's start × model × the run's prompt
-- version and release (DESIGN §5): what cost breakdowns and spike explanations read.
-- Recounted with run_minutes for the minutes a commit touched, as versioned rows (see
-- 0003_rollups.sql: readers take FINAL and skip rows whose calls fell to zero).
CREATE TABLE IF NOT EXISTS cost_minutes (
    tenant LowCardinality(String),
    journey String,
    minute_ns Int64,
    provider LowCardinality(String),
    model LowCardinality(String),
    prompt_version String,
    service_version String,
    calls Int64,
    billed_calls Int64,
    first_calls Int64,
    resent_calls Int64,
    retry_calls Int64,
    retry_billed_calls Int64,
    errors Int64,
    http_429 Int64,
    http_5xx Int64,
    input_tokens Int64,
    output_tokens Int64,
    cached_input_tokens Int64,
    cost_usd Float64,
    retry_cost_usd Float64,
    failed_run_cost_usd Float64,
    unpriced_calls Int64,
    unpriced_tokens Int64,
    version Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fromUnixTimestamp64Nano(minute_ns))
ORDER BY (tenant, journey, minute_ns, provider, model, prompt_version, service_version);
