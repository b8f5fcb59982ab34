-- API keys: only the SHA-256 digest of each secret is kept.
CREATE TABLE api_keys (
    key_id VARCHAR PRIMARY KEY,          -- short public id, shown in lists and the audit log
    digest VARCHAR NOT NULL UNIQUE,
    tenant VARCHAR NOT NULL,
    role VARCHAR NOT NULL,               -- ingest | read | admin
    name VARCHAR NOT NULL,
    created_ns BIGINT NOT NULL,
    created_by VARCHAR NOT NULL,
    revoked_ns BIGINT,
    revoked_by VARCHAR
);

-- Append-only record of every change to control-plane state.
CREATE SEQUENCE audit_ids START 1;
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('audit_ids'),
    tenant VARCHAR NOT NULL,
    at_ns BIGINT NOT NULL,
    actor VARCHAR NOT NULL,              -- key id, or "local" when auth is off
    action VARCHAR NOT NULL,             -- e.g. slo.apply, key.create, key.revoke
    target VARCHAR NOT NULL,
    before_json VARCHAR,
    after_json VARCHAR
);
