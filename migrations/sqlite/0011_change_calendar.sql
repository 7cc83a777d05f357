-- The change calendar (issue 12). Times are BIGINT epoch milliseconds, as everywhere.
INSERT INTO counters (name, value) VALUES ('change_number', 0);

CREATE TABLE changes (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    number           BIGINT NOT NULL UNIQUE,
    -- The form's view id (or import line key): a redelivered submission never plans twice.
    create_key       TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    services         TEXT NOT NULL DEFAULT '[]',
    starts_at        BIGINT NOT NULL,
    ends_at          BIGINT NOT NULL,
    owner            TEXT NOT NULL,
    risk             TEXT NOT NULL,
    customer_facing  BOOLEAN NOT NULL DEFAULT FALSE,
    vendor           TEXT,
    link             TEXT,
    override_reason  TEXT,
    state            TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    sequence         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX changes_starts_at ON changes (starts_at);
CREATE INDEX changes_finished_at ON changes (finished_at);

-- One row per (service line, change), kept with the change: the correlation look-up reads
-- these indexes only. active_until is the planned end while planned, the actual end once done
-- / rolled back, far in the future while in progress; a canceled change has no rows. A
-- finished change's active_from is at most 31 days before its active_until (changes last at
-- most 30 days), so a look-up is two bounded range scans: finished changes by active_from,
-- changes in progress by active_until. Vendor maintenance also has a row under '~vendor'.
CREATE TABLE change_services (
    service       TEXT NOT NULL,
    change_id     BIGINT NOT NULL REFERENCES changes (id),
    active_from   BIGINT NOT NULL,
    active_until  BIGINT NOT NULL,
    PRIMARY KEY (service, change_id)
);
CREATE INDEX change_services_from ON change_services (service, active_from, active_until, change_id);
CREATE INDEX change_services_until ON change_services (service, active_until, active_from, change_id);
CREATE INDEX change_services_change ON change_services (change_id);

-- A change's own timeline (append-only, like events).
CREATE TABLE change_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id  BIGINT NOT NULL REFERENCES changes (id),
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    details    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX change_events_change ON change_events (change_id, id);

-- Changes linked to an incident as a suspected cause (/incident change CHG-n).
CREATE TABLE change_links (
    change_id    BIGINT NOT NULL REFERENCES changes (id),
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    linked_by    TEXT NOT NULL,
    linked_at    BIGINT NOT NULL,
    PRIMARY KEY (change_id, incident_id)
);
CREATE INDEX change_links_incident ON change_links (incident_id);

-- Changes the bot posted in an incident's channel as possible causes (each once).
CREATE TABLE change_correlations (
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    change_id    BIGINT NOT NULL REFERENCES changes (id),
    posted_at    BIGINT NOT NULL,
    PRIMARY KEY (incident_id, change_id)
);

-- Ad-hoc freezes (/change freeze); configured ones live in the config file.
CREATE TABLE change_freezes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL,
    services    TEXT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX change_freezes_ends_at ON change_freezes (ends_at);

-- The change calendar's scheduled Slack work (announcements, the owner's reminder before the
-- start, the "is it done?" question, the digest, posts in incident channels): due time
-- indexed, claimed with a lease, once across replicas. dedupe makes a cron slot's digest one
-- row however many replicas enqueue it.
CREATE TABLE change_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id     BIGINT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL DEFAULT '{}',
    due_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    locked_until  BIGINT,
    done_at       BIGINT,
    failed_at     BIGINT,
    created_at    BIGINT NOT NULL,
    dedupe        TEXT UNIQUE
);
CREATE INDEX change_jobs_pending ON change_jobs (due_at) WHERE done_at IS NULL AND failed_at IS NULL;
