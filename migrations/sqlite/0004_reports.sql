-- Reports (issue 5). Update-SLA counters per incident, kept by triggers as timeline events are
-- appended (events are never updated or deleted), so a report reads incidents only:
--   sla_on_time  = `update` events whose details say "on_time": true
--   sla_missed   = `reminder` events whose details say "stage": "due" (a due time passed)
--   sla_breaches = `breach` events
-- A CASE guards json_extract, which would fail on text that is not JSON.
ALTER TABLE incidents ADD COLUMN sla_on_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN sla_missed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN sla_breaches BIGINT NOT NULL DEFAULT 0;

UPDATE incidents SET
    sla_on_time = (SELECT COUNT(*) FROM events e WHERE e.incident_id = incidents.id AND e.kind = 'update'
        AND CASE WHEN json_valid(e.details) THEN json_type(e.details, '$.on_time') IS 'true' ELSE 0 END),
    sla_missed = (SELECT COUNT(*) FROM events e WHERE e.incident_id = incidents.id AND e.kind = 'reminder'
        AND CASE WHEN json_valid(e.details) THEN json_extract(e.details, '$.stage') IS 'due' ELSE 0 END),
    sla_breaches = (SELECT COUNT(*) FROM events e WHERE e.incident_id = incidents.id AND e.kind = 'breach');

CREATE TRIGGER events_sla_on_time AFTER INSERT ON events
WHEN NEW.kind = 'update'
    AND CASE WHEN json_valid(NEW.details) THEN json_type(NEW.details, '$.on_time') IS 'true' ELSE 0 END
BEGIN
    UPDATE incidents SET sla_on_time = sla_on_time + 1 WHERE id = NEW.incident_id;
END;

CREATE TRIGGER events_sla_missed AFTER INSERT ON events
WHEN NEW.kind = 'reminder'
    AND CASE WHEN json_valid(NEW.details) THEN json_extract(NEW.details, '$.stage') IS 'due' ELSE 0 END
BEGIN
    UPDATE incidents SET sla_missed = sla_missed + 1 WHERE id = NEW.incident_id;
END;

CREATE TRIGGER events_sla_breaches AFTER INSERT ON events
WHEN NEW.kind = 'breach'
BEGIN
    UPDATE incidents SET sla_breaches = sla_breaches + 1 WHERE id = NEW.incident_id;
END;

-- Every column a report reads, after the period's key: report queries never visit the table.
CREATE INDEX incidents_report ON incidents (declared_at, status, canceled_at, severity, services,
    acknowledged_at, mitigated_at, resolved_at, impact_start, impact_end, customers, merchants, transactions,
    sla_on_time, sla_missed, sla_breaches);
