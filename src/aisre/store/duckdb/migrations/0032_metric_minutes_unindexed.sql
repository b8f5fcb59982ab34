-- metric_minutes loses its (tenant, series_id, minute_ns) index: no read uses it (they scan
-- by tenant and minute range, joined to a set of series, where zone maps serve), while every
-- metric commit paid to keep it (a quarter of the commit's time, measured with
-- bench/metrics.py) and the whole of it had to stay in memory.
DROP INDEX IF EXISTS metric_minutes_key;
