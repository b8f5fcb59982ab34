-- Per-tenant retention of raw spans and traces, set through PUT /api/retention or
-- `aisre store retention`; tenants without a row get retention_file, then retention_days.
CREATE TABLE retention (
    tenant VARCHAR PRIMARY KEY,
    days DOUBLE NOT NULL,
    updated_ns BIGINT NOT NULL
);

-- Per tenant, the latest cutoff at which expiry deleted something: minutes before it may
-- have lost runs, so their rollups are kept as counted and never rebuilt from what is left.
CREATE TABLE expiry_marks (
    tenant VARCHAR PRIMARY KEY,
    expired_before_ns BIGINT NOT NULL
);
