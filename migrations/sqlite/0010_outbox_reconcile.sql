-- Reconciling uncertain outcomes (issue 16): who holds a job's lease (renewed by its
-- heartbeat), and whether its last attempt may have happened at Slack without our hearing the
-- answer (a timeout, a 5xx, a reclaimed lease): such a job looks before it repeats.
ALTER TABLE outbox ADD COLUMN locked_by TEXT;
ALTER TABLE outbox ADD COLUMN uncertain BOOLEAN NOT NULL DEFAULT FALSE;
