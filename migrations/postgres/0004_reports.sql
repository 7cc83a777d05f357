-- Reports (issue 5). Update-SLA counters per incident, kept by a trigger as timeline events are
-- appended (events are never updated or deleted), so a report reads incidents only:
--   sla_on_time  = `update` events whose details say "on_time": true
--   sla_missed   = `reminder` events whose details say "stage": "due" (a due time passed)
--   sla_breaches = `breach` events
ALTER TABLE incidents ADD COLUMN sla_on_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN sla_missed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN sla_breaches BIGINT NOT NULL DEFAULT 0;

-- 1 = on-time update, 2 = missed due time, 3 = breach, NULL = anything else (text that is not
-- JSON included: it must never make an insert fail).
CREATE FUNCTION report_sla_class(kind TEXT, details TEXT) RETURNS SMALLINT
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    d JSONB;
BEGIN
    IF kind = 'breach' THEN
        RETURN 3;
    END IF;
    IF kind NOT IN ('update', 'reminder') THEN
        RETURN NULL;
    END IF;
    BEGIN
        d := details::jsonb;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
    IF kind = 'update' AND d -> 'on_time' = 'true'::jsonb THEN
        RETURN 1;
    END IF;
    IF kind = 'reminder' AND d ->> 'stage' = 'due' THEN
        RETURN 2;
    END IF;
    RETURN NULL;
END;
$$;

UPDATE incidents i SET
    sla_on_time = c.on_time,
    sla_missed = c.missed,
    sla_breaches = c.breaches
FROM (
    SELECT incident_id,
        COUNT(*) FILTER (WHERE report_sla_class(kind, details) = 1) AS on_time,
        COUNT(*) FILTER (WHERE report_sla_class(kind, details) = 2) AS missed,
        COUNT(*) FILTER (WHERE report_sla_class(kind, details) = 3) AS breaches
    FROM events
    WHERE kind IN ('update', 'reminder', 'breach')
    GROUP BY incident_id
) c
WHERE c.incident_id = i.id;

CREATE FUNCTION report_count_sla_event() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    CASE report_sla_class(NEW.kind, NEW.details)
        WHEN 1 THEN UPDATE incidents SET sla_on_time = sla_on_time + 1 WHERE id = NEW.incident_id;
        WHEN 2 THEN UPDATE incidents SET sla_missed = sla_missed + 1 WHERE id = NEW.incident_id;
        WHEN 3 THEN UPDATE incidents SET sla_breaches = sla_breaches + 1 WHERE id = NEW.incident_id;
        ELSE NULL;
    END CASE;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_sla AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.kind IN ('update', 'reminder', 'breach'))
EXECUTE FUNCTION report_count_sla_event();

-- Every column a report reads, after the period's key: report queries are index-only scans.
CREATE INDEX incidents_report ON incidents (declared_at) INCLUDE (status, canceled_at, severity, services,
    acknowledged_at, mitigated_at, resolved_at, impact_start, impact_end, customers, merchants, transactions,
    sla_on_time, sla_missed, sla_breaches);
