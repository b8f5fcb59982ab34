-- Release-gate verdicts, one row per judgement: the journey, the two populations compared,
-- the verdict and score, and the whole evidence document, so history shows why.
CREATE SEQUENCE gate_verdict_ids START 1;
CREATE TABLE gate_verdicts (
    id BIGINT PRIMARY KEY DEFAULT nextval('gate_verdict_ids'),
    tenant VARCHAR NOT NULL,
    journey VARCHAR NOT NULL,
    baseline VARCHAR NOT NULL,          -- selector, e.g. service.version=1.4.2
    candidate VARCHAR NOT NULL,
    verdict VARCHAR NOT NULL,           -- pass | marginal | fail | no_data
    score DOUBLE,
    baseline_runs BIGINT NOT NULL,
    candidate_runs BIGINT NOT NULL,
    decided_ns BIGINT NOT NULL,
    document JSON NOT NULL
);
CREATE INDEX gate_verdicts_journey ON gate_verdicts (tenant, journey, decided_ns);
