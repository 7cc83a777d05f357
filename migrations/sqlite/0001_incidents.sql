-- Times are BIGINT unix epoch milliseconds (UTC) on both backends: the same SQL compares,
-- orders and subtracts them identically on SQLite and PostgreSQL.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('incident_number', 0);

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    number           BIGINT NOT NULL UNIQUE,
    -- Slack id of the declare modal (view.id): a redelivered submission never declares twice.
    declare_key      TEXT NOT NULL UNIQUE,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    severity         TEXT NOT NULL,
    status           TEXT NOT NULL,
    services         TEXT NOT NULL DEFAULT '[]',
    is_private       BOOLEAN NOT NULL DEFAULT FALSE,
    declared_by      TEXT NOT NULL,
    spoc             TEXT NOT NULL,
    origin_channel   TEXT,
    channel_id       TEXT UNIQUE,
    channel_name     TEXT,
    card_ts          TEXT,
    announce_ts      TEXT,
    declared_at      BIGINT NOT NULL,
    acknowledged_at  BIGINT,
    identified_at    BIGINT,
    mitigated_at     BIGINT,
    resolved_at      BIGINT,
    closed_at        BIGINT,
    canceled_at      BIGINT
);
CREATE INDEX incidents_status ON incidents (status);
CREATE INDEX incidents_declared_at ON incidents (declared_at);

CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_incident ON events (incident_id, id);

-- Slack side effects still to do (create channel, invite, post card, …): the incident is stored
-- first, then these are driven to done with retries, surviving restarts and crashes.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id   BIGINT NOT NULL REFERENCES incidents (id),
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL DEFAULT '{}',
    due_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    locked_until  BIGINT,
    done_at       BIGINT,
    failed_at     BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX outbox_pending ON outbox (due_at) WHERE done_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_incident ON outbox (incident_id);

-- Idempotency keys of interactions already handled (trigger ids, view ids, button clicks).
CREATE TABLE handled_interactions (
    key  TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
