//! Outbox jobs: claim with a lease, complete atomically with their incident changes.

use super::writes::Writes;
use super::{
    begin_write, from_ms, insert_event, skip_locked, to_ms, with_pool, write_alone, Db, INSERT_EVENT, INSERT_JOB,
};
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
    uncertain: bool,
    created_at: i64,
}

/// A job that finished, with what it changes, to be marked done ([`Db::complete_jobs`]).
#[derive(Debug)]
pub struct DoneJob {
    pub job: Job,
    pub update: JobUpdate,
    /// When it finished (its `done_at`, and the time of its timeline event).
    pub at: DateTime<Utc>,
}

pub const BOT_ACTOR: &str = "bot";

impl Db {
    /// Claims up to `limit` due jobs for `lease` on behalf of `owner` (this process's id, which
    /// its heartbeat uses to renew the lease). On PostgreSQL rows locked by another replica are
    /// skipped; on SQLite the single `UPDATE … RETURNING` is atomic by itself.
    ///
    /// A job whose lease ran out while held (its holder died or hung) is claimed as
    /// `uncertain`: its last attempt may have happened at Slack, so it looks before it repeats.
    pub async fn claim_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> anyhow::Result<Vec<Job>> {
        let lock = skip_locked(self, "");
        // SET reads the row's old values: `locked_until IS NOT NULL` is the lease being taken over.
        let sql = format!(
            "UPDATE outbox SET locked_until = $1, attempts = attempts + 1, locked_by = $4, \
               uncertain = CASE WHEN locked_until IS NOT NULL THEN TRUE ELSE uncertain END \
             WHERE id IN (\
               SELECT id FROM outbox WHERE done_at IS NULL AND failed_at IS NULL AND due_at <= $2 \
               AND (locked_until IS NULL OR locked_until <= $2) ORDER BY due_at, id LIMIT $3 {lock}) \
             RETURNING id, incident_id, kind, payload, attempts, uncertain, created_at"
        );
        let until = to_ms(now) + lease.as_millis() as i64;
        let rows: Vec<JobRow> = write_alone!(self, |pool| {
            sqlx::query_as::<_, JobRow>(&sql)
                .bind(until)
                .bind(to_ms(now))
                .bind(limit)
                .bind(owner)
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
                    uncertain: r.uncertain,
                    created_at: from_ms(r.created_at),
                }),
                None => {
                    // Written by a newer version of the bot: leave it for that version.
                    tracing::warn!(job = r.id, kind = %r.kind, "outbox: unknown job kind; releasing it");
                    self.retry_job_id(
                        r.id,
                        now + chrono::Duration::minutes(5),
                        "unknown job kind",
                        r.uncertain,
                    )
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

    /// Marks each job of `done` done and applies what it changes (channel, card, announcement,
    /// timeline event, follow-on jobs), all in one transaction: one write turn and one commit
    /// for every job that finished while the previous batch was being written (group commit,
    /// see `outbox::write_results`). When the database refuses the batch, each job is written
    /// in a transaction of its own, so that one job's failure is its own: one result per job.
    pub async fn complete_jobs(&self, done: &[DoneJob]) -> Vec<anyhow::Result<()>> {
        match self.complete_together(done).await {
            Ok(()) => done.iter().map(|_| Ok(())).collect(),
            Err(e) if done.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut results = Vec::with_capacity(done.len());
                for one in done {
                    results.push(self.complete_together(std::slice::from_ref(one)).await);
                }
                results
            }
        }
    }

    /// [`Db::complete_jobs`]' one transaction: plain writes, listed first ([`Writes`]).
    async fn complete_together(&self, done: &[DoneJob]) -> anyhow::Result<()> {
        let mut writes = Writes::default();
        for DoneJob { job, update, at } in done {
            let (id, at) = (job.incident_id.0, to_ms(*at));
            // What provisioning learnt (channel, card, announcement), in one statement.
            if update.channel.is_some() || update.card_ts.is_some() || update.announce_ts.is_some() {
                let (channel_id, name) = update.channel.as_ref().map(|(c, n)| (c.as_str(), n.as_str())).unzip();
                writes.push(
                    "UPDATE incidents SET channel_id = COALESCE($1, channel_id), \
                     channel_name = COALESCE($2, channel_name), card_ts = COALESCE($3, card_ts), \
                     announce_ts = COALESCE($4, announce_ts) WHERE id = $5",
                    vec![
                        channel_id.into(),
                        name.into(),
                        update.card_ts.as_deref().into(),
                        update.announce_ts.as_deref().into(),
                        id.into(),
                    ],
                );
            }
            if let Some((kind, details)) = &update.event {
                writes.push(
                    INSERT_EVENT,
                    vec![
                        id.into(),
                        at.into(),
                        BOT_ACTOR.into(),
                        kind.as_str().into(),
                        details.to_string().into(),
                    ],
                );
            }
            for next in &update.then {
                writes.push(
                    INSERT_JOB,
                    vec![
                        id.into(),
                        next.kind.as_str().into(),
                        next.payload.to_string().into(),
                        at.into(),
                    ],
                );
            }
            writes.push(
                "UPDATE outbox SET done_at = $1, locked_until = NULL, locked_by = NULL WHERE id = $2",
                vec![at.into(), job.id.into()],
            );
        }
        writes.commit(self).await?;
        Ok(())
    }

    /// Releases `job` to run again at `due`. `uncertain`: its attempt may have happened at Slack
    /// (timeout, 5xx), so the next attempt looks for it first.
    pub async fn retry_job(&self, job: &Job, due: DateTime<Utc>, error: &str, uncertain: bool) -> anyhow::Result<()> {
        self.retry_job_id(job.id, due, error, uncertain).await
    }

    async fn retry_job_id(&self, job_id: i64, due: DateTime<Utc>, error: &str, uncertain: bool) -> anyhow::Result<()> {
        write_alone!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET due_at = $1, locked_until = NULL, locked_by = NULL, last_error = $2, uncertain = $3 \
                 WHERE id = $4",
            )
            .bind(to_ms(due))
            .bind(error)
            .bind(uncertain)
            .bind(job_id)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// The heartbeat: extends to `until` the leases of every job `owner` still holds, so a job
    /// that runs longer than one lease (a `Retry-After`, a slow Slack) is never taken over by
    /// another replica, while a dead holder's jobs are free again one short lease later.
    pub async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> anyhow::Result<u64> {
        let n = write_alone!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET locked_until = $1 WHERE locked_by = $2 AND locked_until IS NOT NULL \
                 AND done_at IS NULL AND failed_at IS NULL",
            )
            .bind(to_ms(until))
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    /// Frees at once, as uncertain, every job held by an owner not in `live` (the runs alive in
    /// this process). Only for SQLite, where one process owns the database: such a job was held
    /// by the bot's previous run, which died (crash, `kill -9`) between a Slack call and its
    /// commit.
    pub async fn reclaim_in_flight_jobs(&self, live: &[String]) -> anyhow::Result<u64> {
        let not_live = if live.is_empty() {
            String::new()
        } else {
            format!(
                " AND (locked_by IS NULL OR locked_by NOT IN ({}))",
                super::parameters(1, live.len())
            )
        };
        let sql = format!(
            "UPDATE outbox SET locked_until = NULL, locked_by = NULL, uncertain = TRUE \
             WHERE locked_until IS NOT NULL AND done_at IS NULL AND failed_at IS NULL{not_live}"
        );
        let n = write_alone!(self, |pool| {
            let mut query = sqlx::query(&sql);
            for owner in live {
                query = query.bind(owner);
            }
            query.execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(n)
    }

    /// Gives up on `job`, recording why on the incident's timeline.
    pub async fn fail_job(&self, job: &Job, error: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let details = serde_json::json!({ "step": job.kind.as_str(), "error": error }).to_string();
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                sqlx::query("UPDATE outbox SET failed_at = $1, locked_until = NULL, locked_by = NULL, last_error = $2 WHERE id = $3")
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
