-- Changes, incidents and what hangs off them (DESIGN §6).

-- Deploys, model and prompt rollouts, config and flag changes: recorded through the API
-- or CLI, or detected when a new service.version, model or prompt version first appears
-- in a journey's runs.
CREATE SEQUENCE change_ids START 1;
CREATE TABLE changes (
    id BIGINT PRIMARY KEY DEFAULT nextval('change_ids'),
    tenant VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,              -- deploy | model | prompt | config | flag
    summary VARCHAR NOT NULL,
    who VARCHAR,
    at_ns BIGINT NOT NULL,
    services VARCHAR[] NOT NULL,
    journeys VARCHAR[] NOT NULL,
    version VARCHAR,                    -- the new service.version / model / prompt version
    previous VARCHAR,                   -- what it replaced, when known
    prompt_name VARCHAR,
    link VARCHAR,
    metadata JSON,
    source VARCHAR NOT NULL,            -- api | detected
    observed_ns BIGINT,                 -- first run carrying ``version`` (detected, or seen after recording)
    created_ns BIGINT NOT NULL
);

-- What change detection has already seen per journey: one row per (kind, value).
CREATE TABLE change_seen (
    tenant VARCHAR NOT NULL,
    journey VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    first_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant, journey, kind, value)
);

-- Detection reads runs received after this mark only.
CREATE TABLE change_cursor (
    tenant VARCHAR PRIMARY KEY,
    received_ns BIGINT NOT NULL
);

CREATE SEQUENCE incident_ids START 1;
CREATE TABLE incidents (
    id BIGINT PRIMARY KEY DEFAULT nextval('incident_ids'),
    tenant VARCHAR NOT NULL,
    group_key VARCHAR NOT NULL,         -- alerts with the same key join one open incident
    title VARCHAR NOT NULL,
    journey VARCHAR,
    slo VARCHAR,
    severity VARCHAR NOT NULL,          -- sev1 (worst) .. sev4
    state VARCHAR NOT NULL,             -- open | acknowledged | mitigated | resolved
    commander VARCHAR,
    owner VARCHAR,
    tier INTEGER,
    runbook VARCHAR,
    source VARCHAR NOT NULL,            -- slo | alertmanager | manual
    impact_start_ns BIGINT,
    first_alert_ns BIGINT,
    opened_ns BIGINT NOT NULL,
    acknowledged_ns BIGINT,
    acknowledged_by VARCHAR,
    mitigated_ns BIGINT,
    mitigated_by VARCHAR,
    resolved_ns BIGINT,
    resolved_by VARCHAR,
    evidence JSON,
    evidence_ns BIGINT,
    updated_ns BIGINT NOT NULL
);

-- Alerts that opened or joined an incident: SLO alert episodes and Alertmanager alerts.
CREATE TABLE incident_alerts (
    incident_id BIGINT NOT NULL,
    tenant VARCHAR NOT NULL,
    alert_key VARCHAR NOT NULL,         -- slo:<episode id> | am:<fingerprint>
    source VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    started_ns BIGINT NOT NULL,
    ended_ns BIGINT,
    summary VARCHAR,
    labels JSON,
    PRIMARY KEY (tenant, alert_key, incident_id)
);

-- The audited timeline: every state change, alert, note, change and notification.
CREATE SEQUENCE incident_event_ids START 1;
CREATE TABLE incident_events (
    id BIGINT PRIMARY KEY DEFAULT nextval('incident_event_ids'),
    incident_id BIGINT NOT NULL,
    tenant VARCHAR NOT NULL,
    at_ns BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    data JSON
);

CREATE SEQUENCE action_item_ids START 1;
CREATE TABLE action_items (
    id BIGINT PRIMARY KEY DEFAULT nextval('action_item_ids'),
    incident_id BIGINT NOT NULL,
    tenant VARCHAR NOT NULL,
    title VARCHAR NOT NULL,
    owner VARCHAR,
    due_ns BIGINT,
    status VARCHAR NOT NULL,            -- open | done
    created_ns BIGINT NOT NULL,
    done_ns BIGINT
);

-- Every delivery attempt of every notification, successful or not.
CREATE SEQUENCE notification_ids START 1;
CREATE TABLE notification_attempts (
    id BIGINT PRIMARY KEY DEFAULT nextval('notification_ids'),
    tenant VARCHAR NOT NULL,
    incident_id BIGINT NOT NULL,
    receiver VARCHAR NOT NULL,
    receiver_type VARCHAR NOT NULL,
    event VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,        -- one per message; attempts of one message share it
    attempt INTEGER NOT NULL,
    at_ns BIGINT NOT NULL,
    duration_ms DOUBLE NOT NULL,
    status_code INTEGER,
    ok BOOLEAN NOT NULL,
    final BOOLEAN NOT NULL,             -- no further attempt follows
    error VARCHAR
);
