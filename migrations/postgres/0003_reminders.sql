-- The SLA clock of each incident: when the next stakeholder update is due, when the scheduler
-- acts next (reminder, escalation, repeat) and at which stage. NULL reminder_at = no clock.
ALTER TABLE incidents ADD COLUMN update_due_at BIGINT;
ALTER TABLE incidents ADD COLUMN reminder_at BIGINT;
ALTER TABLE incidents ADD COLUMN reminder_stage TEXT NOT NULL DEFAULT 'due';
ALTER TABLE incidents ADD COLUMN snoozed BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX incidents_reminder_at ON incidents (reminder_at) WHERE reminder_at IS NOT NULL;
