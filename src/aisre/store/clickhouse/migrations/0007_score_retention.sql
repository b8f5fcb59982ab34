-- Scores expire with their tenant's raw data: each carries the retention stamped at ingest
-- (0: kept), counted from the score's own time, so the engine's TTL drops them as it drops
-- spans (DuckDB deletes a trace's scores with the trace).
ALTER TABLE scores ADD COLUMN IF NOT EXISTS retention_days UInt32 DEFAULT 0;
ALTER TABLE scores MODIFY TTL toDateTime(intDiv(time_ns, 1000000000)) + toIntervalDay(retention_days) DELETE WHERE retention_days > 0;
