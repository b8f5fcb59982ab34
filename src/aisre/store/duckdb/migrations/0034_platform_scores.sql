-- Scores of a subject (a model, a dataset) at a time, not of a trace: a drift or data-quality
-- report's numbers (POST /api/scores with subject, POST /api/scores/evidently). One row per
-- (tenant, subject, name, time_ns): the same score posted again replaces the row. minute_ns
-- is the minute of time_ns; the rows expire with the minute rollups (rollup_retention_days),
-- since score SLIs over subjects are counted from them.
CREATE TABLE platform_scores (
    tenant VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE NOT NULL,
    source VARCHAR NOT NULL,
    comment VARCHAR,
    time_ns BIGINT NOT NULL,
    minute_ns BIGINT NOT NULL,
    received_ns BIGINT NOT NULL
);
