-- Reports count the follow-ups of a period's incidents (open, overdue, done, won't do). For an
-- index-only join, the incidents' covering index also carries the id (PostgreSQL's indexes do
-- not, unlike SQLite's rowid), and each incident's follow-ups are found by its id with the two
-- columns the counts read.
DROP INDEX incidents_report;
CREATE INDEX incidents_report ON incidents (declared_at) INCLUDE (id, status, canceled_at, severity, services,
    acknowledged_at, mitigated_at, resolved_at, impact_start, impact_end, customers, merchants, transactions,
    sla_on_time, sla_missed, sla_breaches);
CREATE INDEX follow_ups_report ON follow_ups (incident_id) INCLUDE (state, due_at);
