-- OTLP metrics as per-minute series rollups (raw data points are not kept).
-- metric_series: one row per (tenant, series); the per-tenant series limit counts these
-- rows. The last_* columns are the last cumulative point seen, to turn cumulative sums
-- and histograms into increases (a counter reset starts again from the new value).
CREATE TABLE metric_series (
    tenant VARCHAR NOT NULL,
    series_id BIGINT NOT NULL,
    metric VARCHAR NOT NULL,
    labels VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    first_ns BIGINT NOT NULL,
    start_ns BIGINT,
    last_ns BIGINT,
    last_value DOUBLE,
    last_sum DOUBLE,
    last_bounds DOUBLE[],
    last_buckets DOUBLE[]
);
-- metric_minutes: per series and minute. Sums: value = increase in the minute. Gauges:
-- value = sum of the points, points = how many (mean = value / points), min, max, last.
-- Histograms: value = observations, sum, and bucket counts over bounds (+Inf last).
CREATE TABLE metric_minutes (
    tenant VARCHAR NOT NULL,
    series_id BIGINT NOT NULL,
    minute_ns BIGINT NOT NULL,
    value DOUBLE NOT NULL,
    points BIGINT NOT NULL,
    min DOUBLE,
    max DOUBLE,
    last DOUBLE,
    last_ns BIGINT,
    sum DOUBLE,
    bounds DOUBLE[],
    buckets DOUBLE[]
);
CREATE INDEX metric_minutes_key ON metric_minutes (tenant, series_id, minute_ns);
