-- Evaluations of a trace or one of its spans: numeric value or categorical label.
CREATE TABLE scores (
    tenant VARCHAR NOT NULL,
    trace_id VARCHAR NOT NULL,
    span_id VARCHAR,
    name VARCHAR NOT NULL,
    value DOUBLE,
    label VARCHAR,
    source VARCHAR NOT NULL,
    comment VARCHAR,
    time_ns BIGINT NOT NULL,
    received_ns BIGINT NOT NULL
);
