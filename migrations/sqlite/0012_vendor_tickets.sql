-- Vendor escalations (issue 13): tickets raised with vendors during an incident, aged
-- against the vendor's SLA by the reminder scheduler (chase_at, indexed).
CREATE TABLE vendor_tickets (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id        BIGINT NOT NULL REFERENCES incidents (id),
    -- V<seq> within the incident; allocated under the incident's row lock.
    seq                BIGINT NOT NULL,
    -- The catalogue name (`other` for a vendor outside it) and the vendor's own reference.
    vendor             TEXT NOT NULL,
    reference          TEXT NOT NULL,
    link               TEXT,
    asked              TEXT NOT NULL DEFAULT '',
    -- open · responded · escalated · closed
    state              TEXT NOT NULL DEFAULT 'open',
    opened_by          TEXT NOT NULL,
    opened_at          BIGINT NOT NULL,
    first_response_at  BIGINT,
    last_reply_at      BIGINT,
    escalations        BIGINT NOT NULL DEFAULT 0,
    -- SLA deadlines missed since the last reply (or the opening), and ever.
    missed             BIGINT NOT NULL DEFAULT 0,
    breaches           BIGINT NOT NULL DEFAULT 0,
    -- The current SLA deadline, and when the scheduler chases next (NULL = no chase).
    due_at             BIGINT,
    chase_at           BIGINT,
    closed_by          TEXT,
    closed_at          BIGINT,
    UNIQUE (incident_id, seq)
);
CREATE INDEX vendor_tickets_chase_at ON vendor_tickets (chase_at) WHERE chase_at IS NOT NULL;
CREATE INDEX vendor_tickets_open ON vendor_tickets (state, opened_at);
CREATE INDEX vendor_tickets_vendor ON vendor_tickets (vendor, opened_at);

-- Each ticket's own timeline: opened, reply, escalated, closed, chase (a reminder; `missed` =
-- SLA deadlines newly missed by it), snoozed.
CREATE TABLE vendor_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   BIGINT NOT NULL REFERENCES vendor_tickets (id),
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL DEFAULT '',
    missed      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX vendor_events_ticket ON vendor_events (ticket_id, id);
CREATE INDEX vendor_events_at ON vendor_events (kind, at);
