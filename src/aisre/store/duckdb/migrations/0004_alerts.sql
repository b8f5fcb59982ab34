-- SLO alert state, one row per alert episode: pending → firing → resolved.
CREATE SEQUENCE alert_ids START 1;
CREATE TABLE alerts (
    id BIGINT PRIMARY KEY DEFAULT nextval('alert_ids'),
    tenant VARCHAR NOT NULL,
    slo VARCHAR NOT NULL,
    journey VARCHAR,
    severity VARCHAR NOT NULL,          -- page | ticket
    state VARCHAR NOT NULL,             -- pending | firing | resolved
    pending_since_ns BIGINT NOT NULL,
    started_ns BIGINT,                  -- when it began firing
    ended_ns BIGINT,                    -- when it resolved
    peak_burn DOUBLE NOT NULL,
    updated_ns BIGINT NOT NULL,
    summary VARCHAR NOT NULL
);
