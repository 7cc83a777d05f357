//! Outbox jobs: claim with a lease, complete atomically with their incident changes.

use super::{from_ms, insert_event, skip_locked, to_ms, with_pool, Db, INSERT_JOB};
use crate::incident::model::{EventKind, IncidentId};
use crate::outbox::{Job, JobKind};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub payload: serde_json::Value,
}

impl NewJob {
    pub fn new(kind: JobKind) -> Self {
        NewJob {
            kind,
            payload: serde_json::json!({}),
        }
    }
}

/// What a finished job changes, applied in the same transaction that marks it done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobUpdate {
    /// The incident channel was created: (id, name).
    pub channel: Option<(String, String)>,
    pub card_ts: Option<String>,
    pub announce_ts: Option<String>,
    /// Timeline event to append (actor is the bot).
    pub event: Option<(EventKind, serde_json::Value)>,
    /// Jobs that may start now that this one is done.
    pub then: Vec<NewJob>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    incident_id: i64,
    kind: String,
    payload: String,
    attempts: i64,
}

pub const BOT_ACTOR: &str = "bot";

impl Db {
    /// Claims up to `limit` due jobs for `lease`. On PostgreSQL rows locked by another replica
    /// are skipped; on SQLite the single `UPDATE … RETURNING` is atomic by itself.
    pub async fn claim_jobs(&self, now: DateTime<Utc>, lease: Duration, limit: i64) -> anyhow::Result<Vec<Job>> {
        let lock = skip_locked(self, "");
        let sql = format!(
            "UPDATE outbox SET locked_until = $1, attempts = attempts + 1 WHERE id IN (\
               SELECT id FROM outbox WHERE done_at IS NULL AND failed_at IS NULL AND due_at <= $2 \
               AND (locked_until IS NULL OR locked_until <= $2) ORDER BY due_at, id LIMIT $3 {lock}) \
             RETURNING id, incident_id, kind, payload, attempts"
        );
        let until = to_ms(now) + lease.as_millis() as i64;
        let rows: Vec<JobRow> = with_pool!(self, |pool| {
            sqlx::query_as::<_, JobRow>(&sql)
                .bind(until)
                .bind(to_ms(now))
                .bind(limit)
                .fetch_all(pool)
                .await
        })?;
        // RETURNING does not keep the subquery's order (PostgreSQL returns rows as it updates
        // them): restore creation order, which the outbox relies on for one incident's notices.
        let mut rows = rows;
        rows.sort_by_key(|r| r.id);
        let mut jobs = Vec::with_capacity(rows.len());
        for r in rows {
            match JobKind::parse(&r.kind) {
                Some(kind) => jobs.push(Job {
                    id: r.id,
                    incident_id: IncidentId(r.incident_id),
                    kind,
                    payload: serde_json::from_str(&r.payload).unwrap_or_default(),
                    attempt: r.attempts.clamp(1, u32::MAX as i64) as u32,
                }),
                None => {
                    // Written by a newer version of the bot: leave it for that version.
                    tracing::warn!(job = r.id, kind = %r.kind, "outbox: unknown job kind; releasing it");
                    self.retry_job_id(r.id, now + chrono::Duration::minutes(5), "unknown job kind")
                        .await?;
                }
            }
        }
        Ok(jobs)
    }

    /// When the next pending job can be claimed (past due, or when its lease runs out).
    pub async fn next_job_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (due,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT MIN(CASE WHEN locked_until IS NOT NULL AND locked_until > due_at THEN locked_until ELSE due_at END) \
                 FROM outbox WHERE done_at IS NULL AND failed_at IS NULL",
            )
            .fetch_one(pool)
            .await
        })?;
        Ok(due.map(from_ms))
    }

    /// Whether the incident's announcement is still to be posted (its job neither done nor
    /// failed): thread notices wait for it.
    pub async fn announcement_pending(&self, incident: IncidentId) -> anyhow::Result<bool> {
        let (n,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM outbox WHERE incident_id = $1 AND kind = $2 AND done_at IS NULL AND failed_at IS NULL",
            )
            .bind(incident.0)
            .bind(JobKind::Announce.as_str())
            .fetch_one(pool)
            .await
        })?;
        Ok(n > 0)
    }

    /// Jobs not yet done or failed (the outbox backlog).
    pub async fn pending_jobs(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE done_at IS NULL AND failed_at IS NULL")
                .fetch_one(pool)
                .await
        })?;
        Ok(n)
    }

    /// Marks `job` done and applies `update`, in one transaction.
    pub async fn complete_job(&self, job: &Job, update: JobUpdate, now: DateTime<Utc>) -> anyhow::Result<()> {
        let at = to_ms(now);
        let id = job.incident_id.0;
        with_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                if let Some((channel_id, name)) = &update.channel {
                    sqlx::query("UPDATE incidents SET channel_id = $1, channel_name = $2 WHERE id = $3")
                        .bind(channel_id)
                        .bind(name)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(ts) = &update.card_ts {
                    sqlx::query("UPDATE incidents SET card_ts = $1 WHERE id = $2")
                        .bind(ts)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(ts) = &update.announce_ts {
                    sqlx::query("UPDATE incidents SET announce_ts = $1 WHERE id = $2")
                        .bind(ts)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some((kind, details)) = &update.event {
                    insert_event!(tx, id, at, BOT_ACTOR, kind.as_str(), details.to_string())?;
                }
                for next in &update.then {
                    sqlx::query(INSERT_JOB)
                        .bind(id)
                        .bind(next.kind.as_str())
                        .bind(next.payload.to_string())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE outbox SET done_at = $1, locked_until = NULL WHERE id = $2")
                    .bind(at)
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }

    /// Releases `job` to run again at `due`.
    pub async fn retry_job(&self, job: &Job, due: DateTime<Utc>, error: &str) -> anyhow::Result<()> {
        self.retry_job_id(job.id, due, error).await
    }

    async fn retry_job_id(&self, job_id: i64, due: DateTime<Utc>, error: &str) -> anyhow::Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE outbox SET due_at = $1, locked_until = NULL, last_error = $2 WHERE id = $3")
                .bind(to_ms(due))
                .bind(error)
                .bind(job_id)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Gives up on `job`, recording why on the incident's timeline.
    pub async fn fail_job(&self, job: &Job, error: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let details = serde_json::json!({ "step": job.kind.as_str(), "error": error }).to_string();
        with_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                sqlx::query("UPDATE outbox SET failed_at = $1, locked_until = NULL, last_error = $2 WHERE id = $3")
                    .bind(to_ms(now))
                    .bind(error)
                    .bind(job.id)
                    .execute(&mut *tx)
                    .await?;
                insert_event!(
                    tx,
                    job.incident_id.0,
                    to_ms(now),
                    BOT_ACTOR,
                    EventKind::SideEffectFailed.as_str(),
                    details
                )?;
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }
}
