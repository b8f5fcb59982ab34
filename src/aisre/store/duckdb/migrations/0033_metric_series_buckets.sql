-- A histogram's kept bucket counts move from metric_series to a narrow table of their own:
-- they change with every point, and DuckDB rewrites a whole row to update a list, so each
-- commit rewrote every histogram series' name, labels and bounds with them (about a third
-- of a steady metric commit, bench/metrics.py). Bounds stay in metric_series: they change
-- only when a histogram's layout does. Sums keep no buckets.
CREATE TABLE metric_series_buckets (
    tenant VARCHAR NOT NULL,
    series_id BIGINT NOT NULL,
    last_buckets DOUBLE[] NOT NULL
);
INSERT INTO metric_series_buckets
SELECT tenant, series_id, last_buckets FROM metric_series WHERE kind = 'histogram' AND last_buckets IS NOT NULL;
ALTER TABLE metric_series DROP COLUMN last_buckets;
