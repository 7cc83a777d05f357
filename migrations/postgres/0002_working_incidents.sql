-- Working an incident: roles, footprint, resolution, the update clock, optimistic version.
ALTER TABLE incidents ADD COLUMN roles TEXT NOT NULL DEFAULT '{}';
ALTER TABLE incidents ADD COLUMN regions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE incidents ADD COLUMN customers BIGINT;
ALTER TABLE incidents ADD COLUMN merchants BIGINT;
ALTER TABLE incidents ADD COLUMN transactions BIGINT;
ALTER TABLE incidents ADD COLUMN impact_start BIGINT;
ALTER TABLE incidents ADD COLUMN impact_end BIGINT;
ALTER TABLE incidents ADD COLUMN resolution TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN root_cause TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN last_update_at BIGINT;
ALTER TABLE incidents ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
