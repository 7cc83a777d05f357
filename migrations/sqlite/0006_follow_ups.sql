-- Follow-up actions and post-incident reviews (issue 6).

-- Post-incident actions. `seq` numbers them within their incident (#1, #2, …); it comes from
-- incidents.follow_up_seq, bumped in the same transaction, so two replicas never reuse one.
CREATE TABLE follow_ups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    seq          BIGINT NOT NULL,
    text         TEXT NOT NULL,
    owner        TEXT,
    -- The due day (YYYY-MM-DD, a local day in `timezone`) and the moment it is overdue
    -- (00:00 local of the day after), which is what queries compare.
    due_date     TEXT,
    due_at       BIGINT,
    link         TEXT,
    state        TEXT NOT NULL DEFAULT 'open',
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    closed_by    TEXT,
    closed_at    BIGINT,
    -- The next overdue reminder to the owner; NULL = none (not overdue-able, or closed).
    remind_at    BIGINT,
    UNIQUE (incident_id, seq)
);
CREATE INDEX follow_ups_remind_at ON follow_ups (remind_at) WHERE remind_at IS NOT NULL;
CREATE INDEX follow_ups_open ON follow_ups (state, due_at);
CREATE INDEX follow_ups_owner ON follow_ups (owner, state);

ALTER TABLE incidents ADD COLUMN follow_up_seq BIGINT NOT NULL DEFAULT 0;
-- The post-incident review: when the SPOC is next reminded (NULL = no reminder due), when
-- it was marked done and where it lives.
ALTER TABLE incidents ADD COLUMN pir_remind_at BIGINT;
ALTER TABLE incidents ADD COLUMN pir_done_at BIGINT;
ALTER TABLE incidents ADD COLUMN pir_link TEXT;
CREATE INDEX incidents_pir_remind_at ON incidents (pir_remind_at) WHERE pir_remind_at IS NOT NULL;
