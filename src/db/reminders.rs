//! The reminder schedule: fire what is due, once, with its events and Slack jobs.

use super::incidents::{IncidentRow, INCIDENT_COLUMNS};
use super::outbox::BOT_ACTOR;
use super::{begin_write, from_ms, insert_event, skip_locked, to_ms, with_pool, Db, INSERT_JOB};
use crate::incident::model::{EventKind, Incident};
use crate::outbox::JobKind;
use crate::reminder::plan::{self, Action, Slas};
use chrono::{DateTime, Utc};
use serde_json::json;

impl Db {
    /// Fires up to `limit` due clocks: for each, the reminder or breach event, the Slack job
    /// and the advanced clock are written in one transaction, with the rows locked (skipped by
    /// other replicas on PostgreSQL; SQLite's write lock serializes). Returns how many fired.
    pub async fn fire_due_reminders(
        &self,
        now: DateTime<Utc>,
        slas: &Slas,
        late_after: chrono::Duration,
        limit: i64,
    ) -> anyhow::Result<usize> {
        let select = self.due_query();
        let at = to_ms(now);
        let fired: anyhow::Result<usize> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                if !self.is_postgres() {
                    // Take SQLite's write lock before reading, so the read-then-write cannot
                    // fail to upgrade under a concurrent writer.
                    sqlx::query("UPDATE incidents SET version = version WHERE reminder_at <= $1")
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                let rows: Vec<IncidentRow> = sqlx::query_as(&select).bind(at).bind(limit).fetch_all(&mut *tx).await?;
                let mut fired = 0;
                for row in rows {
                    let incident = Incident::try_from(row)?;
                    let Some(clock) = incident.clock else { continue };
                    let (action, next) = plan::fire(clock, slas.of(incident.severity), now, late_after);
                    let (kind, details, jobs) = match action {
                        Action::Remind { stage, due_at, late } => {
                            let details = json!({ "stage": stage.as_str(), "due_at": to_ms(due_at), "late": late, "spoc": incident.spoc.as_str() });
                            (EventKind::Reminder, details.clone(), vec![(JobKind::Remind, details)])
                        }
                        Action::Escalate { due_at, overdue, late } => {
                            let details = json!({ "due_at": to_ms(due_at), "overdue_ms": overdue.num_milliseconds(), "late": late });
                            // Channel and announcement thread are separate jobs: a retry of one never
                            // repeats the other.
                            let mut thread = details.clone();
                            thread["to"] = json!("thread");
                            (EventKind::Breach, details.clone(), vec![(JobKind::Escalate, details), (JobKind::Escalate, thread)])
                        }
                    };
                    tracing::info_span!("reminder", incident = %incident.number)
                        .in_scope(|| tracing::info!(kind = kind.as_str(), late = details["late"].as_bool(), "SLA clock fired"));
                    insert_event!(tx, incident.id.0, at, BOT_ACTOR, kind.as_str(), details.to_string())?;
                    for (job, payload) in jobs.into_iter().filter(|_| incident.channel_id.is_some()) {
                        sqlx::query(INSERT_JOB)
                            .bind(incident.id.0)
                            .bind(job.as_str())
                            .bind(payload.to_string())
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query("UPDATE incidents SET update_due_at = $2, reminder_at = $3, reminder_stage = $4, snoozed = $5 WHERE id = $1")
                        .bind(incident.id.0)
                        .bind(to_ms(next.due_at))
                        .bind(to_ms(next.next_at))
                        .bind(next.stage.as_str())
                        .bind(next.snoozed)
                        .execute(&mut *tx)
                        .await?;
                    fired += 1;
                }
                tx.commit().await?;
                Ok(fired)
            }
            .await
        });
        fired
    }

    /// The query that finds due clocks; it must use `incidents_reminder_at` (see the bench).
    fn due_query(&self) -> String {
        let lock = skip_locked(self, "");
        format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE reminder_at IS NOT NULL AND reminder_at <= $1 \
             ORDER BY reminder_at LIMIT $2 {lock}"
        )
    }

    /// The database's plan for the due query, one line per row (for the benchmark).
    pub async fn explain_due_query(&self) -> anyhow::Result<Vec<String>> {
        let now = to_ms(Utc::now());
        Ok(match self {
            Db::Sqlite(pool) => {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {}", self.due_query()))
                        .bind(now)
                        .bind(200_i64)
                        .fetch_all(pool)
                        .await?;
                rows.into_iter().map(|r| r.3).collect()
            }
            Db::Postgres(pool) => {
                let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {}", self.due_query()))
                    .bind(now)
                    .bind(200_i64)
                    .fetch_all(pool)
                    .await?;
                rows.into_iter().map(|r| r.0).collect()
            }
        })
    }

    /// Spreads every incident's next due time evenly over `[first, first + window)`, by id (for
    /// the benchmark, so that loading time does not eat into the measured window).
    pub async fn arm_clocks_for_bench(&self, first: DateTime<Utc>, window: chrono::Duration) -> anyhow::Result<()> {
        self.spread_for_bench(
            "incidents",
            "update_due_at = $1 + (id - 1) * $2 / $3, reminder_at = $1 + (id - 1) * $2 / $3, \
             reminder_stage = 'due', snoozed = FALSE",
            first,
            window,
        )
        .await
    }

    /// Sets `assignments` (which use `$1` = first ms, `$2` = window ms, `$3` = row count) on
    /// every row of `table`: the benchmarks' way to spread due times by id. Both arguments are
    /// constants of this module, never input.
    pub(super) async fn spread_for_bench(
        &self,
        table: &str,
        assignments: &str,
        first: DateTime<Utc>,
        window: chrono::Duration,
    ) -> anyhow::Result<()> {
        let (n,): (i64,) = with_pool!(self, |pool| sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(pool)
            .await)?;
        let update = format!("UPDATE {table} SET {assignments}");
        with_pool!(self, |pool| {
            sqlx::query(&update)
                .bind(to_ms(first))
                .bind(window.num_milliseconds())
                .bind(n.max(1))
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Every fired reminder as (fired at, due at), in ms (for the benchmark's lag figures).
    pub async fn fired_reminders(&self) -> anyhow::Result<Vec<(i64, i64)>> {
        self.fired_for_bench(EventKind::Reminder, "due_at").await
    }

    /// Every `kind` event whose details carry the time it was planned for, as (fired at,
    /// details[`planned`]) in ms (for the benchmarks' lag figures).
    pub(super) async fn fired_for_bench(&self, kind: EventKind, planned: &str) -> anyhow::Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, String)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT at, details FROM events WHERE kind = $1")
                .bind(kind.as_str())
                .fetch_all(pool)
                .await
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(at, details)| {
                let d: serde_json::Value = serde_json::from_str(&details).ok()?;
                Some((at, d[planned].as_i64()?))
            })
            .collect())
    }

    /// The earliest scheduled reminder (an index lookup).
    pub async fn next_reminder_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (next,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(reminder_at) FROM incidents WHERE reminder_at IS NOT NULL")
                .fetch_one(pool)
                .await
        })?;
        Ok(next.map(from_ms))
    }
}
