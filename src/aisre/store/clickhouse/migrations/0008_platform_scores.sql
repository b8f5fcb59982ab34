-- Scores of a subject (a model, a dataset) at a time, not of a trace, as in the DuckDB store
-- (store/duckdb/migrations/0034_platform_scores.sql). The same score (tenant, subject, name,
-- time_ns) posted again is a newer version of one row (read with FINAL); the rows get the
-- minute rollups' TTL (rollup_retention_days) on minute_ns.
CREATE TABLE IF NOT EXISTS platform_scores (
    tenant LowCardinality(String),
    subject String,
    name LowCardinality(String),
    value Float64,
    source LowCardinality(String),
    comment Nullable(String),
    time_ns Int64,
    minute_ns Int64,
    received_ns Int64,
    version Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fromUnixTimestamp64Nano(minute_ns))
ORDER BY (tenant, subject, name, time_ns);
