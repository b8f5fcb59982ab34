-- Spans as normalized at ingest (core/schema.py). Ordered by tenant, then an hour bucket
-- of the start, then trace id: a time scan reads a tenant's hours, a trace lookup (which
-- knows its run's start and end) reads one or two buckets and then one trace's rows; the
-- bloom filter finds a trace whose time is not known (the duplicate check of a batch).
-- Daily partitions, so retention drops whole days (ttl_only_drop_parts). Each row carries
-- the retention its tenant had when it arrived (0: kept for ever), so TTL does the
-- expiry per tenant. Attributes, events and links are kept whole as JSON text, so nothing
-- sent is lost; `attrs` is a Map of the top-level attributes (raw JSON values) for filters.
CREATE TABLE IF NOT EXISTS spans (
    tenant LowCardinality(String),
    trace_id String,
    span_id String,
    parent_span_id String,
    name LowCardinality(Nullable(String)),
    kind LowCardinality(Nullable(String)),
    service LowCardinality(Nullable(String)),
    scope LowCardinality(Nullable(String)),
    start_ns Int64,
    end_ns Int64,
    duration_ns Int64,
    status LowCardinality(Nullable(String)),
    status_message Nullable(String) CODEC(ZSTD(1)),
    journey LowCardinality(Nullable(String)),
    is_root Nullable(Bool),
    operation LowCardinality(Nullable(String)),
    provider LowCardinality(Nullable(String)),
    request_model LowCardinality(Nullable(String)),
    response_model LowCardinality(Nullable(String)),
    input_tokens Nullable(Int64),
    output_tokens Nullable(Int64),
    cached_input_tokens Nullable(Int64),
    cost_usd Nullable(Float64),
    price_version LowCardinality(Nullable(String)),
    service_version LowCardinality(Nullable(String)),
    prompt_name LowCardinality(Nullable(String)),
    prompt_version LowCardinality(Nullable(String)),
    deployment_environment LowCardinality(Nullable(String)),
    http_status Nullable(Int32),
    retry_attempt Nullable(Int32),
    error_type LowCardinality(Nullable(String)),
    tool_name LowCardinality(Nullable(String)),
    user_id Nullable(String),
    session_id Nullable(String),
    marks_failure Nullable(Bool),
    attributes Nullable(String) CODEC(ZSTD(1)),
    resource_id Int64,
    events Nullable(String) CODEC(ZSTD(1)),
    links Nullable(String) CODEC(ZSTD(1)),
    received_ns Int64,
    retention_days UInt32 DEFAULT 0,
    attrs Map(LowCardinality(String), String) MATERIALIZED
        CAST(JSONExtractKeysAndValuesRaw(ifNull(attributes, '{}')), 'Map(LowCardinality(String), String)'),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toDate(fromUnixTimestamp64Nano(start_ns))
ORDER BY (tenant, intDiv(start_ns, 3600000000000), trace_id, span_id)
TTL toDateTime(intDiv(end_ns, 1000000000)) + toIntervalDay(retention_days) DELETE WHERE retention_days > 0
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

-- Each distinct resource once per tenant, by the hash spans refer to.
CREATE TABLE IF NOT EXISTS resources (
    tenant LowCardinality(String),
    resource_id Int64,
    resource String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, resource_id);
