-- OTLP metrics as per-minute series rollups (raw data points are not kept), as in the
-- DuckDB store (store/duckdb/migrations/0030_metrics.sql): what each column means is said there.
-- metric_series: one row per (tenant, series), each commit that moves a series on writes a
-- new version of its row (its last cumulative point), read with FINAL; every node reads
-- it at each commit, so a series whose exports land on two nodes still counts increases once.
CREATE TABLE IF NOT EXISTS metric_series (
    tenant LowCardinality(String),
    series_id Int64,
    metric LowCardinality(String),
    labels String,
    kind LowCardinality(String),
    unit LowCardinality(String),
    first_ns Int64,
    start_ns Nullable(Int64),
    last_ns Nullable(Int64),
    last_value Nullable(Float64),
    last_sum Nullable(Float64),
    last_bounds Array(Float64),
    last_buckets Array(Float64),
    version Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, series_id);

-- metric_minutes: per tenant × series × minute (× histogram bounds, so rows with the same
-- bounds fold), an AggregatingMergeTree: each commit inserts what it adds to a minute and
-- the engine folds the rows in its merges; reads GROUP BY the key (never trust merges to be
-- done), and fold rows of one minute with different bounds onto their union (as DuckDB does).
-- A gauge's last value is the one with the latest time: max((last_ns, last)); no last: (-1, 0).
-- A commit's insert carries a token of its points: a retried commit is dropped.
-- A histogram row has buckets (at least the +Inf one); sums and gauges have none.
CREATE TABLE IF NOT EXISTS metric_minutes (
    tenant LowCardinality(String),
    series_id Int64,
    minute_ns Int64,
    bounds Array(Float64),
    value SimpleAggregateFunction(sum, Float64),
    points SimpleAggregateFunction(sum, Int64),
    min SimpleAggregateFunction(min, Nullable(Float64)),
    max SimpleAggregateFunction(max, Nullable(Float64)),
    last_at SimpleAggregateFunction(max, Tuple(Int64, Float64)),
    sum SimpleAggregateFunction(sum, Float64),
    buckets AggregateFunction(sumForEach, Array(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(fromUnixTimestamp64Nano(minute_ns))
ORDER BY (tenant, series_id, minute_ns, bounds)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS metric_minutes_in (
    tenant String,
    series_id Int64,
    minute_ns Int64,
    bounds Array(Float64),
    value Float64,
    points Int64,
    min Nullable(Float64),
    max Nullable(Float64),
    last_ns Int64,
    last Float64,
    sum Float64,
    buckets Array(Float64)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS metric_minutes_mv TO metric_minutes AS
SELECT m.tenant AS tenant, m.series_id AS series_id, m.minute_ns AS minute_ns, m.bounds AS bounds,
    sum(m.value) AS value, sum(m.points) AS points, min(m.min) AS min, max(m.max) AS max,
    max((m.last_ns, m.last)) AS last_at, sum(m.sum) AS sum, sumForEachState(m.buckets) AS buckets
FROM metric_minutes_in AS m
GROUP BY m.tenant, m.series_id, m.minute_ns, m.bounds;
