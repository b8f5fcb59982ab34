-- Per tenant × journey × minute of run start, and per SLO × minute: what SLO, budget and
-- /metrics queries read. A run's minute, journey and outcome are known only once its
-- partials are merged (a late root moves it into its minute, a late child can fail it),
-- so a view over the inserted partials cannot count it; instead each touched minute is
-- recounted from the merged runs and written as a new version of its rows. Readers take
-- the newest version (FINAL) and skip rows whose count fell to zero (a recount writes
-- zero rows over the rows it no longer produces), so nothing is counted twice.
CREATE TABLE IF NOT EXISTS run_minutes (
    tenant LowCardinality(String),
    journey String,
    minute_ns Int64,
    runs Int64,
    failures Int64,
    duration_sum_ns Int64,
    -- Counts of run durations per bucket (DURATION_BUCKETS_MS, the last everything longer).
    duration_buckets Array(Int64),
    llm_calls Int64,
    tool_calls Int64,
    retries Int64,
    input_tokens Int64,
    output_tokens Int64,
    cached_input_tokens Int64,
    cost_usd Float64,
    failed_cost_usd Float64,
    version Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fromUnixTimestamp64Nano(minute_ns))
ORDER BY (tenant, journey, minute_ns);

CREATE TABLE IF NOT EXISTS slo_minutes (
    tenant LowCardinality(String),
    slo String,
    minute_ns Int64,
    good Int64,
    total Int64,
    version Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fromUnixTimestamp64Nano(minute_ns))
ORDER BY (tenant, slo, minute_ns);
