-- Each tenant's own warning levels for the capacity resources: the same table as the DuckDB
-- store's (store/duckdb/migrations/0031_capacity_levels.sql), in PostgreSQL types.
CREATE TABLE capacity_levels (
    tenant TEXT NOT NULL,
    metric TEXT NOT NULL,
    threshold DOUBLE PRECISION,
    enabled BOOLEAN NOT NULL,
    updated_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, metric)
);
