//! Applying a change to an incident: lock, apply the pure domain rule, write the new state,
//! its timeline events and its outbox jobs, all in one transaction.

use super::incidents::{IncidentRow, INCIDENT_COLUMNS};
use super::{begin_write, insert_follow_up, to_ms, with_pool, Db};
use crate::incident::change::{Applied, Change, Effect, Rules};
use crate::incident::model::*;
use crate::outbox::JobKind;
use chrono::{DateTime, Utc};
use serde_json::json;

/// Why a change was not applied (shown to the user as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The lifecycle rules say no.
    Rule(String),
    /// This exact interaction was handled before (a redelivery or a double click).
    AlreadyHandled,
}

/// The outbox jobs for a change's effects. A notice for stakeholders is two jobs (channel,
/// announcement thread), so a failure of one never repeats the other.
pub fn jobs_for(effects: &[Effect], actor: &UserId) -> Vec<(JobKind, serde_json::Value)> {
    let mut jobs = Vec::new();
    for e in effects {
        match e {
            Effect::RefreshCard => jobs.push((JobKind::RefreshCard, json!({}))),
            Effect::Post { notice, stakeholders } => {
                jobs.push((
                    JobKind::PostNotice,
                    json!({ "notice": notice, "actor": actor, "to": "channel" }),
                ));
                if *stakeholders {
                    jobs.push((
                        JobKind::PostNotice,
                        json!({ "notice": notice, "actor": actor, "to": "thread" }),
                    ));
                }
            }
            Effect::Invite(users) => jobs.push((JobKind::InviteUsers, json!({ "users": users }))),
        }
    }
    jobs
}

/// The incident row as a change locks and reads it, and whether the interaction is new.
#[derive(sqlx::FromRow)]
struct Locked {
    #[sqlx(flatten)]
    row: IncidentRow,
    fresh: bool,
}

/// Takes the incident's write lock (on SQLite, the database's), so concurrent changes to one
/// incident apply one after the other, and reads the row in the same statement, with whether
/// the interaction's key (`$2`) is new. On PostgreSQL the key is recorded here (at `$3`), in a
/// data-modifying CTE: a second submission with the same key waits on the first one's row in
/// the key's index and then finds it. On SQLite the process's write turn already orders every
/// writer, so the key is only looked up here and recorded with the change's other writes.
fn lock_and_read_sql(postgres: bool, keyed: bool) -> String {
    let bump = "UPDATE incidents SET version = version + 1 WHERE id = $1";
    match (keyed, postgres) {
        (false, _) => format!("{bump} RETURNING {INCIDENT_COLUMNS}, TRUE AS fresh"),
        (true, true) => format!(
            "WITH recorded AS (INSERT INTO handled_interactions (key, at) VALUES ($2, $3) \
             ON CONFLICT (key) DO NOTHING RETURNING 1) \
             {bump} RETURNING {INCIDENT_COLUMNS}, (SELECT COUNT(*) FROM recorded) > 0 AS fresh"
        ),
        (true, false) => format!(
            "{bump} RETURNING {INCIDENT_COLUMNS}, \
             NOT EXISTS (SELECT 1 FROM handled_interactions WHERE key = $2) AS fresh"
        ),
    }
}

/// Joins a change's writes into one statement: on SQLite, statements of one text (sqlx runs
/// them in turn, in one hop to the connection's thread); on PostgreSQL, which prepares one
/// statement at a time, data-modifying CTEs of one `WITH … SELECT 1`.
struct Parts {
    postgres: bool,
    count: usize,
}

impl Parts {
    fn new(postgres: bool) -> Parts {
        Parts { postgres, count: 0 }
    }

    /// Before each write.
    fn next<DB: sqlx::Database>(&mut self, q: &mut sqlx::QueryBuilder<'_, DB>) {
        self.count += 1;
        match (self.postgres, self.count) {
            (true, 1) => q.push("WITH w1 AS ("),
            (true, n) => q.push(format!("), w{n} AS (")),
            (false, 1) => q,
            (false, _) => q.push("; "),
        };
    }

    /// After the last write.
    fn end<DB: sqlx::Database>(&self, q: &mut sqlx::QueryBuilder<'_, DB>) {
        if self.postgres {
            q.push(") SELECT 1");
        }
    }
}

impl Db {
    /// Applies `change` to incident `id` as `actor`. `key` (a trigger id, or a button click id)
    /// makes the call idempotent: the second time it is [`Refused::AlreadyHandled`].
    pub async fn apply_change(
        &self,
        id: IncidentId,
        change: &Change,
        actor: &UserId,
        now: DateTime<Utc>,
        key: Option<&str>,
        rules: &Rules,
    ) -> anyhow::Result<Result<Applied, Refused>> {
        let at = to_ms(now);
        let postgres = self.is_postgres();
        let lock_and_read = lock_and_read_sql(postgres, key.is_some());
        let result: anyhow::Result<Result<Applied, Refused>> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let mut read = sqlx::query_as::<_, Locked>(&lock_and_read).bind(id.0);
                if let Some(key) = key {
                    read = read.bind(key);
                    if postgres {
                        read = read.bind(at);
                    }
                }
                let Some(Locked { row, fresh }) = read.fetch_optional(&mut *tx).await? else {
                    // A form or button naming an incident that is gone (another database, a
                    // restored backup): the person's answer, not a database failure.
                    tracing::info!(incident_id = id.0, "change for an incident that does not exist");
                    return Ok(Err(Refused::Rule(
                        "That incident no longer exists; nothing was changed.".into(),
                    )));
                };
                if !fresh {
                    return Ok(Err(Refused::AlreadyHandled));
                }
                let current = Incident::try_from(row)?;
                let applied = match current.apply_under(change, actor, now, rules) {
                    Ok(applied) => applied,
                    Err(reason) => return Ok(Err(Refused::Rule(reason))),
                };
                let i = &applied.incident;
                // Slack effects need the channel; before it exists, provisioning renders the
                // current state anyway.
                let jobs = match i.channel_id {
                    Some(_) => jobs_for(&applied.effects, actor),
                    None => Vec::new(),
                };
                let (services, roles, regions) = (
                    serde_json::to_string(&i.services)?,
                    serde_json::to_string(&i.roles)?,
                    serde_json::to_string(&i.footprint.regions)?,
                );
                // The new state, the key (SQLite: checked in the read, recorded here), the
                // timeline events and the outbox jobs in one statement: one round trip (a hop
                // to the connection's thread on SQLite) instead of one each, on the ack path.
                let mut q = sqlx::QueryBuilder::new("");
                let mut parts = Parts::new(postgres);
                parts.next(&mut q);
                let ms = |t: Option<DateTime<Utc>>| t.map(to_ms);
                q.push("UPDATE incidents SET status = ").push_bind(i.status.as_str());
                q.push(", severity = ").push_bind(i.severity.as_str());
                q.push(", spoc = ").push_bind(i.spoc.as_str());
                q.push(", services = ").push_bind(services);
                q.push(", roles = ").push_bind(roles);
                q.push(", regions = ").push_bind(regions);
                q.push(", customers = ").push_bind(i.footprint.customers);
                q.push(", merchants = ").push_bind(i.footprint.merchants);
                q.push(", transactions = ").push_bind(i.footprint.transactions);
                q.push(", impact_start = ").push_bind(ms(i.footprint.impact_start));
                q.push(", impact_end = ").push_bind(ms(i.footprint.impact_end));
                q.push(", resolution = ").push_bind(i.resolution.clone());
                q.push(", root_cause = ").push_bind(i.root_cause.clone());
                q.push(", last_update_at = ").push_bind(ms(i.last_update_at));
                q.push(", acknowledged_at = ").push_bind(ms(i.acknowledged_at));
                q.push(", identified_at = ").push_bind(ms(i.identified_at));
                q.push(", mitigated_at = ").push_bind(ms(i.mitigated_at));
                q.push(", resolved_at = ").push_bind(ms(i.resolved_at));
                q.push(", closed_at = ").push_bind(ms(i.closed_at));
                q.push(", canceled_at = ").push_bind(ms(i.canceled_at));
                q.push(", update_due_at = ").push_bind(i.clock.map(|c| to_ms(c.due_at)));
                q.push(", reminder_at = ").push_bind(i.clock.map(|c| to_ms(c.next_at)));
                q.push(", reminder_stage = ")
                    .push_bind(i.clock.map_or("due", |c| c.stage.as_str()));
                q.push(", snoozed = ").push_bind(i.clock.is_some_and(|c| c.snoozed));
                q.push(", follow_up_seq = ").push_bind(i.follow_up_seq);
                q.push(", pir_remind_at = ").push_bind(ms(i.pir_remind_at));
                q.push(", pir_done_at = ").push_bind(ms(i.pir_done_at));
                q.push(", pir_link = ").push_bind(i.pir_link.clone());
                q.push(" WHERE id = ").push_bind(id.0);
                if let (Some(key), false) = (key, postgres) {
                    parts.next(&mut q);
                    q.push("INSERT INTO handled_interactions (key, at) VALUES (")
                        .push_bind(key.to_string())
                        .push(", ")
                        .push_bind(at)
                        .push(")");
                }
                if !applied.events.is_empty() {
                    parts.next(&mut q);
                    q.push(super::insert_events_into!());
                    q.push_values(&applied.events, |mut row, (kind, details)| {
                        row.push_bind(id.0)
                            .push_bind(at)
                            .push_bind(actor.as_str().to_string())
                            .push_bind(kind.as_str())
                            .push_bind(details.to_string());
                    });
                }
                if !jobs.is_empty() {
                    parts.next(&mut q);
                    super::push_job_rows!(q, id.0, &jobs, at);
                }
                parts.end(&mut q);
                q.build().execute(&mut *tx).await?;
                for f in &applied.follow_ups {
                    insert_follow_up!(tx, id.0, f, actor, at, rules)?;
                }
                // Vendor tickets are aged against the SLA of the incident's severity, while it is open.
                let reopened = i.status.is_open() && !current.status.is_open();
                if reopened || (i.status.is_open() && i.severity != current.severity) {
                    super::replan_vendor_chases!(tx, id.0, i.severity, now, rules, reopened)?;
                }
                // Just resolved: ask whether its open vendor tickets should be closed.
                if i.channel_id.is_some() && i.status == Status::Resolved && current.status != Status::Resolved {
                    super::enqueue_vendor_resolve_ask!(tx, id.0, at)?;
                }
                tx.commit().await?;
                Ok(Ok(applied))
            }
            .await
        });
        result
    }

    /// Open incidents (and resolved ones), worst severity first, then oldest first.
    pub async fn active_incidents(&self) -> anyhow::Result<Vec<Incident>> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE status IN ('investigating', 'identified', 'mitigated') \
             ORDER BY severity, declared_at"
        );
        let rows: Vec<IncidentRow> = with_pool!(self, |pool| sqlx::query_as::<_, IncidentRow>(&sql)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(Incident::try_from).collect()
    }
}
