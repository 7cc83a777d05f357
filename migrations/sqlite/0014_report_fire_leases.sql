-- Scheduled reports survive a crash between claiming a slot and posting it (issue 16): a slot
-- is claimed with a short lease and marked posted once Slack said so. A slot whose lease ran
-- out unposted (its holder died, or Slack's answer was lost) is claimed again, and the new
-- holder first looks in the channel for the report an earlier attempt may have posted.
-- Slots recorded before this migration were posted.
ALTER TABLE report_fires ADD COLUMN posted BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE report_fires ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE report_fires ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
