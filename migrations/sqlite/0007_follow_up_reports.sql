-- Reports count the follow-ups of a period's incidents (open, overdue, done, won't do): each
-- incident's follow-ups by its id, with the two columns the counts read, so the join never
-- visits the follow_ups table. (SQLite indexes carry the rowid, so incidents_report already
-- gives the incident's id.)
CREATE INDEX follow_ups_report ON follow_ups (incident_id, state, due_at);
