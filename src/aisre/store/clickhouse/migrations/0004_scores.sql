-- Evaluations of a trace or one of its spans: numeric value or categorical label.
CREATE TABLE IF NOT EXISTS scores (
    tenant LowCardinality(String),
    trace_id String,
    span_id Nullable(String),
    name LowCardinality(String),
    value Nullable(Float64),
    label Nullable(String),
    source LowCardinality(String),
    comment Nullable(String),
    time_ns Int64,
    received_ns Int64
)
ENGINE = MergeTree
ORDER BY (tenant, trace_id, name)
SETTINGS non_replicated_deduplication_window = 10000;
