-- Scheduled reports: one row per (schedule, local wall-clock slot) that has fired. The primary
-- key is what makes a slot fire once across restarts and replicas.
CREATE TABLE report_fires (
    schedule_key  TEXT NOT NULL,
    slot          TEXT NOT NULL,
    fired_at      BIGINT NOT NULL,
    PRIMARY KEY (schedule_key, slot)
);
