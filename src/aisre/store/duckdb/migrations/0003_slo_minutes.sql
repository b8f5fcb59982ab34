-- Good and total events per SLO per minute of run start: what budgets and burn rates
-- read. Rebuilt with run_minutes for touched minutes; backfilled when an SLO is added
-- or changed. Minutes without runs have no row.
CREATE TABLE slo_minutes (
    tenant VARCHAR NOT NULL,
    slo VARCHAR NOT NULL,
    minute_ns BIGINT NOT NULL,
    good BIGINT NOT NULL,
    total BIGINT NOT NULL
);
