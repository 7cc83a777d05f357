-- Detection (issue 15): alerts taken in over HTTP, one row per source + fingerprint (the alert
-- group), its triage message in Slack and the incident it became or was linked to.
CREATE TABLE alert_groups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    status          TEXT NOT NULL,
    title           TEXT NOT NULL,
    severity        TEXT,
    raw_severity    TEXT,
    service         TEXT,
    labels          TEXT NOT NULL DEFAULT '{}',
    links           TEXT NOT NULL DEFAULT '[]',
    description     TEXT NOT NULL DEFAULT '',
    starts_at       BIGINT,
    -- One episode = fired … resolved; a fire long after the resolve starts a new one (and a new
    -- message); a fire within the flap window stays in the episode.
    episode         BIGINT NOT NULL DEFAULT 1,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    resolved_at     BIGINT,
    fire_count      BIGINT NOT NULL DEFAULT 0,
    flaps           BIGINT NOT NULL DEFAULT 0,
    acked_by        TEXT,
    acked_at        BIGINT,
    silenced_until  BIGINT,
    silenced_by     TEXT,
    incident_id     BIGINT REFERENCES incidents (id),
    -- An [[alert_rules]] entry asked for an automatic declaration (its index), not yet done.
    auto_rule       BIGINT,
    -- The triage message: posted for a new episode, updated (coalesced) after each change.
    channel_id      TEXT,
    message_ts      TEXT,
    version         BIGINT NOT NULL DEFAULT 0,
    synced_version  BIGINT NOT NULL DEFAULT 0,
    sync_due_at     BIGINT,
    last_synced_at  BIGINT,
    locked_until    BIGINT,
    sync_attempts   BIGINT NOT NULL DEFAULT 0,
    uncertain       BOOLEAN NOT NULL DEFAULT FALSE,
    last_error      TEXT,
    UNIQUE (source, fingerprint)
);
CREATE INDEX alert_groups_sync ON alert_groups (sync_due_at) WHERE sync_due_at IS NOT NULL;
CREATE INDEX alert_groups_incident ON alert_groups (incident_id) WHERE incident_id IS NOT NULL;

-- Every accepted alert (fired, repeated, resolved) and every triage action, append-only: the
-- reports count alerts, noisy alerts and time to declare from here.
CREATE TABLE alert_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id   BIGINT NOT NULL REFERENCES alert_groups (id),
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    details    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_events_at ON alert_events (at);
CREATE INDEX alert_events_group ON alert_events (group_id, id);

-- When the problem was first detected (the first alert's start), for time to declare.
ALTER TABLE incidents ADD COLUMN detected_at BIGINT;
