-- Customer communications (issue 14): customer updates (drafts, approved and published, or
-- superseded by an edit), the public face of an incident, and the customer-update cadence the
-- reminder scheduler drives (customer_clocks.remind_at, indexed).
CREATE TABLE customer_updates (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     BIGINT NOT NULL REFERENCES incidents (id),
    -- The public identity of a published update (the Atom entry's id).
    uuid            TEXT NOT NULL UNIQUE,
    -- draft · published · superseded
    state           TEXT NOT NULL,
    public_title    TEXT NOT NULL,
    message         TEXT NOT NULL,
    -- JSON: [{"component": "card-payments", "status": "partial_outage"}, …]
    components      TEXT NOT NULL,
    last_update     BOOLEAN NOT NULL DEFAULT FALSE,
    author          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    approved_by     TEXT,
    published_at    BIGINT,
    -- The draft's message in the incident channel (Approve / Edit).
    draft_ts        TEXT,
    -- The submission that wrote it (a view id), so a resubmission is stored once.
    request_key     TEXT NOT NULL UNIQUE
);
CREATE INDEX customer_updates_incident ON customer_updates (incident_id, id);
CREATE INDEX customer_updates_published ON customer_updates (published_at) WHERE published_at IS NOT NULL;

-- An incident once its first customer update is published: what the status page lists.
CREATE TABLE public_incidents (
    incident_id         BIGINT PRIMARY KEY REFERENCES incidents (id),
    public_id           TEXT NOT NULL UNIQUE,
    title               TEXT NOT NULL,
    first_published_at  BIGINT NOT NULL,
    last_published_at   BIGINT NOT NULL,
    -- Set when the last update is published.
    resolved_at         BIGINT
);
CREATE INDEX public_incidents_resolved ON public_incidents (resolved_at);

-- The customer-update cadence of an open, non-private incident whose severity has one.
CREATE TABLE customer_clocks (
    incident_id  BIGINT PRIMARY KEY REFERENCES incidents (id),
    due_at       BIGINT NOT NULL,
    remind_at    BIGINT NOT NULL,
    reminders    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX customer_clocks_remind_at ON customer_clocks (remind_at);
