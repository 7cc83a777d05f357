//! Applying a change to an incident: lock, apply the pure domain rule, write the new state,
//! its timeline events and its outbox jobs, all in one transaction.

use super::group::{commit_or_each_alone, in_group, GroupQueue};
use super::incidents::{IncidentRow, INCIDENT_COLUMNS};
use super::{insert_follow_up, to_ms, with_pool, Db, OneTrip, ONE_TRIP_BEGIN, ONE_TRIP_COMMIT};
use crate::incident::change::{Applied, Change, Effect, Rules};
use crate::incident::model::*;
use crate::outbox::JobKind;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashMap;

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

/// PostgreSQL: takes the incident's row lock, so concurrent changes to one incident apply one
/// after the other, and reads the row in the same statement, with whether the interaction's
/// key (`$2`) is new. The key is recorded here (at `$3`), in a data-modifying CTE: a second
/// submission with the same key, on this replica or another, waits on the first one's row in
/// the key's index and then finds it.
fn postgres_lock_and_read_sql(keyed: bool) -> String {
    let bump = "UPDATE incidents SET version = version + 1 WHERE id = $1";
    match keyed {
        false => format!("{bump} RETURNING {INCIDENT_COLUMNS}, TRUE AS fresh"),
        true => format!(
            "WITH recorded AS (INSERT INTO handled_interactions (key, at) VALUES ($2, $3) \
             ON CONFLICT (key) DO NOTHING RETURNING 1) \
             {bump} RETURNING {INCIDENT_COLUMNS}, (SELECT COUNT(*) FROM recorded) > 0 AS fresh"
        ),
    }
}

/// SQLite: reads the `n` incidents of a group of changes in one statement (`$1, $2` the first
/// one's id and key, `$3, $4` the second's, …), each with whether its key is new. The process's
/// write turn already orders every writer, so the keys are only looked up here and recorded
/// with the group's other writes.
fn sqlite_read_group_sql(n: usize) -> String {
    let wanted: Vec<String> = (0..n).map(|k| format!("(${}, ${})", 2 * k + 1, 2 * k + 2)).collect();
    format!(
        "WITH wanted (id, key) AS (VALUES {}) \
         UPDATE incidents SET version = version + 1 WHERE id IN (SELECT id FROM wanted) \
         RETURNING {INCIDENT_COLUMNS}, NOT EXISTS (SELECT 1 FROM handled_interactions h, wanted w \
         WHERE w.id = incidents.id AND h.key = w.key) AS fresh",
        wanted.join(", ")
    )
}

/// Joins writes into one statement: on SQLite, statements of one text (sqlx runs them in turn,
/// in one hop to the connection's thread); on PostgreSQL, which prepares one statement at a
/// time, data-modifying CTEs of one `WITH … SELECT 1`.
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

/// Pushes an applied change's writes onto QueryBuilder `$q`, each a part of `$parts`: the new
/// state, the key `$key` when it is recorded here (SQLite), the timeline events and the outbox
/// jobs. Slack effects need the channel; before it exists, provisioning renders the current
/// state anyway.
macro_rules! push_change_writes {
    ($q:ident, $parts:ident, $id:expr, $applied:expr, $actor:expr, $at:expr, $key:expr) => {{
        let (id, applied, actor, at): (i64, &Applied, &UserId, i64) = ($id, $applied, $actor, $at);
        let i = &applied.incident;
        let jobs = match i.channel_id {
            Some(_) => jobs_for(&applied.effects, actor),
            None => Vec::new(),
        };
        let ms = |t: Option<DateTime<Utc>>| t.map(to_ms);
        $parts.next(&mut $q);
        $q.push("UPDATE incidents SET status = ").push_bind(i.status.as_str());
        $q.push(", severity = ").push_bind(i.severity.as_str());
        $q.push(", spoc = ").push_bind(i.spoc.as_str().to_string());
        $q.push(", services = ").push_bind(serde_json::to_string(&i.services)?);
        $q.push(", roles = ").push_bind(serde_json::to_string(&i.roles)?);
        $q.push(", regions = ")
            .push_bind(serde_json::to_string(&i.footprint.regions)?);
        $q.push(", customers = ").push_bind(i.footprint.customers);
        $q.push(", merchants = ").push_bind(i.footprint.merchants);
        $q.push(", transactions = ").push_bind(i.footprint.transactions);
        $q.push(", impact_start = ").push_bind(ms(i.footprint.impact_start));
        $q.push(", impact_end = ").push_bind(ms(i.footprint.impact_end));
        $q.push(", resolution = ").push_bind(i.resolution.clone());
        $q.push(", root_cause = ").push_bind(i.root_cause.clone());
        $q.push(", last_update_at = ").push_bind(ms(i.last_update_at));
        $q.push(", acknowledged_at = ").push_bind(ms(i.acknowledged_at));
        $q.push(", identified_at = ").push_bind(ms(i.identified_at));
        $q.push(", mitigated_at = ").push_bind(ms(i.mitigated_at));
        $q.push(", resolved_at = ").push_bind(ms(i.resolved_at));
        $q.push(", closed_at = ").push_bind(ms(i.closed_at));
        $q.push(", canceled_at = ").push_bind(ms(i.canceled_at));
        $q.push(", update_due_at = ")
            .push_bind(i.clock.map(|c| to_ms(c.due_at)));
        $q.push(", reminder_at = ").push_bind(i.clock.map(|c| to_ms(c.next_at)));
        $q.push(", reminder_stage = ")
            .push_bind(i.clock.map_or("due", |c| c.stage.as_str()));
        $q.push(", snoozed = ").push_bind(i.clock.is_some_and(|c| c.snoozed));
        $q.push(", follow_up_seq = ").push_bind(i.follow_up_seq);
        $q.push(", pir_remind_at = ").push_bind(ms(i.pir_remind_at));
        $q.push(", pir_done_at = ").push_bind(ms(i.pir_done_at));
        $q.push(", pir_link = ").push_bind(i.pir_link.clone());
        $q.push(" WHERE id = ").push_bind(id);
        if let Some(key) = $key {
            $parts.next(&mut $q);
            $q.push("INSERT INTO handled_interactions (key, at) VALUES (")
                .push_bind(key.to_string())
                .push(", ")
                .push_bind(at)
                .push(")");
        }
        if !applied.events.is_empty() {
            $parts.next(&mut $q);
            $q.push(super::insert_events_into!());
            $q.push_values(&applied.events, |mut row, (kind, details)| {
                row.push_bind(id)
                    .push_bind(at)
                    .push_bind(actor.as_str().to_string())
                    .push_bind(kind.as_str())
                    .push_bind(details.to_string());
            });
        }
        if !jobs.is_empty() {
            $parts.next(&mut $q);
            super::push_job_rows!($q, id, &jobs, at);
        }
    }};
}

/// The writes a change rarely needs, each a statement of its own inside transaction `$tx`:
/// its new follow-ups, and its vendor tickets' chases.
macro_rules! change_side_writes {
    ($tx:ident, $id:expr, $applied:expr, $before:expr, $actor:expr, $now:expr, $rules:expr) => {{
        let (id, applied, before, now): (i64, &Applied, &Incident, DateTime<Utc>) = ($id, $applied, $before, $now);
        let at = to_ms(now);
        for f in &applied.follow_ups {
            insert_follow_up!($tx, id, f, $actor, at, $rules)?;
        }
        let i = &applied.incident;
        if let Some(reopened) = vendor_chases_replanned(applied, before) {
            super::replan_vendor_chases!($tx, id, i.severity, now, $rules, reopened)?;
        }
        if asks_to_close_vendor_tickets(applied, before) {
            super::enqueue_vendor_resolve_ask!($tx, id, at)?;
        }
    }};
}

/// Vendor tickets are aged against the SLA of the incident's severity, while it is open: a
/// change of severity, or a reopening, plans their chases again. `Some(reopened)` when it does.
fn vendor_chases_replanned(applied: &Applied, before: &Incident) -> Option<bool> {
    let i = &applied.incident;
    let reopened = i.status.is_open() && !before.status.is_open();
    (reopened || (i.status.is_open() && i.severity != before.severity)).then_some(reopened)
}

/// Just resolved: ask whether its open vendor tickets should be closed.
fn asks_to_close_vendor_tickets(applied: &Applied, before: &Incident) -> bool {
    let i = &applied.incident;
    i.channel_id.is_some() && i.status == Status::Resolved && before.status != Status::Resolved
}

/// Whether [`change_side_writes!`] writes anything for this change.
fn has_side_writes(applied: &Applied, before: &Incident) -> bool {
    !applied.follow_ups.is_empty()
        || vendor_chases_replanned(applied, before).is_some()
        || asks_to_close_vendor_tickets(applied, before)
}

/// What a change is asked to do, kept whole so that it can be queued for a group commit and
/// queued again when its group was abandoned.
pub(super) struct Request {
    id: IncidentId,
    change: Change,
    actor: UserId,
    now: DateTime<Utc>,
    key: Option<String>,
    rules: Rules,
}

type ChangeOutcome = anyhow::Result<Result<Applied, Refused>>;

/// The changes waiting for a group commit ([`super::group`]).
pub(super) type ChangeQueue = GroupQueue<Request, ChangeOutcome>;

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
    ) -> ChangeOutcome {
        let request = Request {
            id,
            change: change.clone(),
            actor: actor.clone(),
            now,
            key: key.map(str::to_string),
            rules: rules.clone(),
        };
        match self {
            Db::Sqlite(pool) => self.apply_in_group(pool, std::sync::Arc::new(request)).await,
            Db::Postgres(pool) => postgres_apply_change(pool, &request).await,
        }
    }

    /// SQLite: a change waits in its file's queue for a group commit ([`super::group`]), which
    /// takes two round trips for all the changes queued at once.
    async fn apply_in_group(&self, pool: &sqlx::SqlitePool, request: std::sync::Arc<Request>) -> ChangeOutcome {
        let turns = super::sqlite_write_turns(pool.connect_options().get_filename());
        let same_incident = |a: &Request, b: &Request| a.id == b.id;
        let commit = |group| {
            commit_or_each_alone(group, |requests| {
                let pool = pool.clone();
                Box::pin(async move { sqlite_apply_group(&pool, requests).await })
            })
        };
        in_group(self, &turns.changes, request, same_incident, commit).await
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

/// One transaction for `requests` (distinct incidents) on SQLite, under the caller's write
/// turn, in two round trips ([`OneTrip`]): `BEGIN` and one statement reading every incident;
/// the pure domain rule for each; one statement for all their writes and `COMMIT` (with a
/// round trip more for each rare side write: follow-ups, vendor chases). An outcome per
/// request, in order.
async fn sqlite_apply_group(
    pool: &sqlx::SqlitePool,
    requests: &[&Request],
) -> anyhow::Result<Vec<Result<Applied, Refused>>> {
    let mut trip = OneTrip::acquire(pool).await?;
    let read_sql = format!("{ONE_TRIP_BEGIN}{}", sqlite_read_group_sql(requests.len()));
    let mut read = sqlx::query_as::<_, Locked>(&read_sql);
    for r in requests {
        read = read.bind(r.id.0).bind(r.key.as_deref());
    }
    let mut found: HashMap<i64, Locked> = read
        .fetch_all(trip.conn())
        .await?
        .into_iter()
        .map(|locked| (locked.row.id, locked))
        .collect();
    // Each applied change with the incident as it was, which its side writes compare against.
    let mut outcomes: Vec<Result<(Incident, Applied), Refused>> = Vec::with_capacity(requests.len());
    let mut q = sqlx::QueryBuilder::new("");
    let mut parts = Parts::new(false);
    for r in requests {
        let Some(Locked { row, fresh }) = found.remove(&r.id.0) else {
            outcomes.push(Err(gone(r.id)));
            continue;
        };
        if !fresh {
            outcomes.push(Err(Refused::AlreadyHandled));
            continue;
        }
        let before = Incident::try_from(row)?;
        match before.apply_under(&r.change, &r.actor, r.now, &r.rules) {
            Ok(applied) => {
                push_change_writes!(q, parts, r.id.0, &applied, &r.actor, to_ms(r.now), r.key.as_deref());
                outcomes.push(Ok((before, applied)));
            }
            Err(reason) => outcomes.push(Err(Refused::Rule(reason))),
        }
    }
    let side_writes = outcomes.iter().any(|o| {
        o.as_ref()
            .is_ok_and(|(before, applied)| has_side_writes(applied, before))
    });
    if parts.count > 0 && !side_writes {
        q.push(ONE_TRIP_COMMIT);
        q.build().execute(trip.conn()).await?;
    } else {
        if parts.count > 0 {
            q.build().execute(trip.conn()).await?;
        }
        let conn = trip.conn();
        for (r, outcome) in requests.iter().zip(&outcomes) {
            if let Ok((before, applied)) = outcome {
                change_side_writes!(conn, r.id.0, applied, before, &r.actor, r.now, &r.rules);
            }
        }
        sqlx::query("COMMIT").execute(trip.conn()).await?;
    }
    trip.finish(Ok(()))?;
    Ok(outcomes.into_iter().map(|o| o.map(|(_, applied)| applied)).collect())
}

/// The answer to a change naming incident `id` that is gone (another database, a restored
/// backup): the person's answer, not a database failure.
fn gone(id: IncidentId) -> Refused {
    tracing::info!(incident_id = id.0, "change for an incident that does not exist");
    Refused::Rule("That incident no longer exists; nothing was changed.".into())
}

/// PostgreSQL: one transaction for one change (its row locks order concurrent writers), in 4
/// round trips: `BEGIN`, lock and read (recording the key), all the writes, `COMMIT`.
async fn postgres_apply_change(pool: &sqlx::PgPool, request: &Request) -> ChangeOutcome {
    let Request {
        id,
        change,
        actor,
        now,
        key,
        rules,
    } = request;
    let (id, now, at) = (*id, *now, to_ms(*now));
    let lock_and_read = postgres_lock_and_read_sql(key.is_some());
    let mut tx = pool.begin().await?;
    let mut read = sqlx::query_as::<_, Locked>(&lock_and_read).bind(id.0);
    if let Some(key) = key {
        read = read.bind(key).bind(at);
    }
    let Some(Locked { row, fresh }) = read.fetch_optional(&mut *tx).await? else {
        return Ok(Err(gone(id)));
    };
    if !fresh {
        return Ok(Err(Refused::AlreadyHandled));
    }
    let before = Incident::try_from(row)?;
    let applied = match before.apply_under(change, actor, now, rules) {
        Ok(applied) => applied,
        Err(reason) => return Ok(Err(Refused::Rule(reason))),
    };
    // The new state, the timeline events and the outbox jobs in one statement: one round trip
    // instead of one each, on the ack path. (The key was recorded by the read.)
    let mut q = sqlx::QueryBuilder::new("");
    let mut parts = Parts::new(true);
    push_change_writes!(q, parts, id.0, &applied, actor, at, None::<&str>);
    parts.end(&mut q);
    q.build().execute(&mut *tx).await?;
    change_side_writes!(tx, id.0, &applied, &before, actor, now, rules);
    tx.commit().await?;
    Ok(Ok(applied))
}
