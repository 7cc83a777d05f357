//! Follow-ups and post-incident review reminders: listing, closing, and firing what is due,
//! once, with its timeline event and Slack job in the same transaction.

use super::changes::Refused;
use super::incidents::{IncidentRow, INCIDENT_COLUMNS};
use super::outbox::BOT_ACTOR;
use super::{
    begin_write, first_time_in, from_ms, insert_effect_jobs, insert_event, skip_locked, to_ms, with_pool, Db,
    INSERT_JOB,
};
use crate::incident::change::{Effect, Notice, Rules};
use crate::incident::followup::{self, FollowUp, FollowUpState};
use crate::incident::model::*;
use crate::outbox::JobKind;
use chrono::{DateTime, Utc};
use serde_json::json;

const FOLLOW_UP_COLUMNS: &str = "f.id, f.incident_id, i.number, i.is_private, f.seq, f.text, f.owner, f.due_date, \
    f.due_at, f.link, f.state, f.created_by, f.created_at, f.closed_by, f.closed_at, f.remind_at";
const FROM: &str = "FROM follow_ups f JOIN incidents i ON i.id = f.incident_id";

#[derive(sqlx::FromRow)]
struct FollowUpRow {
    id: i64,
    incident_id: i64,
    number: i64,
    is_private: bool,
    seq: i64,
    text: String,
    owner: Option<String>,
    due_date: Option<String>,
    due_at: Option<i64>,
    link: Option<String>,
    state: String,
    created_by: String,
    created_at: i64,
    closed_by: Option<String>,
    closed_at: Option<i64>,
    remind_at: Option<i64>,
}

impl TryFrom<FollowUpRow> for FollowUp {
    type Error = anyhow::Error;
    fn try_from(r: FollowUpRow) -> anyhow::Result<FollowUp> {
        let user = |s: &str| UserId::parse(s).map_err(anyhow::Error::msg);
        Ok(FollowUp {
            id: r.id,
            incident_id: IncidentId(r.incident_id),
            number: IncidentNumber(r.number),
            private: r.is_private,
            seq: r.seq,
            text: r.text,
            owner: r.owner.as_deref().map(user).transpose()?,
            due: r.due_date.as_deref().map(str::parse).transpose()?,
            due_at: r.due_at.map(from_ms),
            link: r.link,
            state: FollowUpState::parse(&r.state)
                .ok_or_else(|| anyhow::anyhow!("unknown follow-up state {}", r.state))?,
            created_by: user(&r.created_by)?,
            created_at: from_ms(r.created_at),
            closed_by: r.closed_by.as_deref().map(user).transpose()?,
            closed_at: r.closed_at.map(from_ms),
            remind_at: r.remind_at.map(from_ms),
        })
    }
}

fn convert(rows: Vec<FollowUpRow>) -> anyhow::Result<Vec<FollowUp>> {
    rows.into_iter().map(FollowUp::try_from).collect()
}

impl Db {
    /// An incident's follow-ups, by number.
    pub async fn follow_ups_of(&self, incident: IncidentId) -> anyhow::Result<Vec<FollowUp>> {
        let sql = format!("SELECT {FOLLOW_UP_COLUMNS} {FROM} WHERE f.incident_id = $1 ORDER BY f.seq");
        let rows: Vec<FollowUpRow> =
            with_pool!(self, |pool| sqlx::query_as(&sql).bind(incident.0).fetch_all(pool).await)?;
        convert(rows)
    }

    /// Open follow-ups of every incident: `user`'s first, then overdue ones, then by due day
    /// (undated last), at most `limit`.
    pub async fn open_follow_ups(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<FollowUp>> {
        let sql = format!(
            "SELECT {FOLLOW_UP_COLUMNS} {FROM} WHERE f.state = 'open' ORDER BY \
             CASE WHEN f.owner = $1 THEN 0 ELSE 1 END, \
             CASE WHEN f.due_at IS NOT NULL AND f.due_at <= $2 THEN 0 ELSE 1 END, \
             CASE WHEN f.due_at IS NULL THEN 1 ELSE 0 END, f.due_at, f.id LIMIT $3"
        );
        let rows: Vec<FollowUpRow> = with_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(user.as_str())
            .bind(to_ms(now))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        convert(rows)
    }

    /// Open follow-ups, and how many of them are overdue at `now` (served by `follow_ups_open`).
    pub async fn count_open_follow_ups(&self, now: DateTime<Utc>) -> anyhow::Result<(i64, i64)> {
        let (open, overdue): (i64, Option<i64>) = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT COUNT(*), SUM(CASE WHEN due_at IS NOT NULL AND due_at <= $1 THEN 1 ELSE 0 END) \
                 FROM follow_ups WHERE state = 'open'",
            )
            .bind(to_ms(now))
            .fetch_one(pool)
            .await
        })?;
        Ok((open, overdue.unwrap_or(0)))
    }

    pub async fn follow_up(&self, id: i64) -> anyhow::Result<Option<FollowUp>> {
        let sql = format!("SELECT {FOLLOW_UP_COLUMNS} {FROM} WHERE f.id = $1");
        let row: Option<FollowUpRow> =
            with_pool!(self, |pool| sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)?;
        row.map(FollowUp::try_from).transpose()
    }

    /// Follow-up `#seq` of an incident.
    pub async fn follow_up_by_seq(&self, incident: IncidentId, seq: i64) -> anyhow::Result<Option<FollowUp>> {
        let sql = format!("SELECT {FOLLOW_UP_COLUMNS} {FROM} WHERE f.incident_id = $1 AND f.seq = $2");
        let row: Option<FollowUpRow> = with_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(incident.0)
            .bind(seq)
            .fetch_optional(pool)
            .await)?;
        row.map(FollowUp::try_from).transpose()
    }

    /// Marks follow-up `id` done or won't do as `actor`, with its timeline event and a notice
    /// in the incident channel, in one transaction (the incident row locked). `key` makes it
    /// idempotent, like [`Db::apply_change`].
    pub async fn close_follow_up(
        &self,
        id: i64,
        to: FollowUpState,
        actor: &UserId,
        now: DateTime<Utc>,
        key: &str,
    ) -> anyhow::Result<Result<FollowUp, Refused>> {
        let at = to_ms(now);
        let select_follow_up = format!("SELECT {FOLLOW_UP_COLUMNS} {FROM} WHERE f.id = $1");
        let select_incident = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1");
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let locked = sqlx::query(
                    "UPDATE incidents SET version = version + 1 WHERE id = (SELECT incident_id FROM follow_ups WHERE id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if locked == 0 {
                    return Ok(Err(Refused::Rule("That follow-up no longer exists.".into())));
                }
                if !first_time_in!(tx, key, at)? {
                    return Ok(Err(Refused::AlreadyHandled));
                }
                let current = FollowUp::try_from(
                    sqlx::query_as::<_, FollowUpRow>(&select_follow_up)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?,
                )?;
                let incident = Incident::try_from(
                    sqlx::query_as::<_, IncidentRow>(&select_incident)
                        .bind(current.incident_id.0)
                        .fetch_one(&mut *tx)
                        .await?,
                )?;
                let closed = match current.close(to, actor, &incident.spoc, now) {
                    Ok(closed) => closed,
                    Err(reason) => return Ok(Err(Refused::Rule(reason))),
                };
                sqlx::query("UPDATE follow_ups SET state = $2, closed_by = $3, closed_at = $4, remind_at = NULL WHERE id = $1")
                    .bind(id)
                    .bind(closed.state.as_str())
                    .bind(actor.as_str())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                let details = json!({ "action": closed.state.as_str(), "seq": closed.seq, "text": closed.text });
                insert_event!(tx, incident.id.0, at, actor.as_str(), EventKind::FollowUp.as_str(), details.to_string())?;
                if incident.channel_id.is_some() {
                    let notice = Notice::FollowUpClosed {
                        seq: closed.seq,
                        text: closed.text.clone(),
                        state: closed.state,
                    };
                    let effects = [Effect::Post {
                        notice,
                        stakeholders: false,
                    }];
                    insert_effect_jobs!(tx, incident.id.0, &effects, actor, at)?;
                }
                tx.commit().await?;
                Ok(Ok(closed))
            }
            .await
        })
    }

    /// Reminds the owners of up to `limit` overdue follow-ups whose reminder is due: for each,
    /// the timeline event, the Slack job and the next reminder (`every` later) in one
    /// transaction, rows locked (skipped by other replicas on PostgreSQL). Returns how many.
    pub async fn fire_due_follow_up_reminders(
        &self,
        now: DateTime<Utc>,
        rules: &Rules,
        late_after: chrono::Duration,
        limit: i64,
    ) -> anyhow::Result<usize> {
        let at = to_ms(now);
        let lock = skip_locked(self, "OF f");
        let select = format!(
            "SELECT {FOLLOW_UP_COLUMNS} {FROM} WHERE f.remind_at IS NOT NULL AND f.remind_at <= $1 \
             ORDER BY f.remind_at LIMIT $2 {lock}"
        );
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                if !self.is_postgres() {
                    // Take SQLite's write lock before reading (see fire_due_reminders).
                    sqlx::query("UPDATE follow_ups SET remind_at = remind_at WHERE remind_at <= $1")
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                let rows: Vec<FollowUpRow> = sqlx::query_as(&select).bind(at).bind(limit).fetch_all(&mut *tx).await?;
                let mut fired = 0;
                for row in rows {
                    let f = FollowUp::try_from(row)?;
                    let Some(planned) = f.remind_at else { continue };
                    let late = now - planned > late_after;
                    let next = (f.state == FollowUpState::Open
                        && rules.follow_up_remind_every > chrono::Duration::zero())
                    .then(|| followup::next_reminder(planned, rules.follow_up_remind_every, now));
                    if f.state == FollowUpState::Open {
                        let details =
                            json!({ "action": "reminder", "seq": f.seq, "owner": f.owner, "due": f.due, "planned_at": to_ms(planned), "late": late });
                        insert_event!(
                            tx,
                            f.incident_id.0,
                            at,
                            BOT_ACTOR,
                            EventKind::FollowUp.as_str(),
                            details.to_string()
                        )?;
                        sqlx::query(INSERT_JOB)
                            .bind(f.incident_id.0)
                            .bind(JobKind::RemindFollowUp.as_str())
                            .bind(json!({ "follow_up": f.id, "late": late }).to_string())
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                        fired += 1;
                    }
                    sqlx::query("UPDATE follow_ups SET remind_at = $2 WHERE id = $1")
                        .bind(f.id)
                        .bind(next.map(to_ms))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(fired)
            }
            .await
        })
    }

    /// Reminds the SPOCs of up to `limit` incidents whose review reminder is due, like
    /// [`Db::fire_due_follow_up_reminders`]. Returns how many.
    pub async fn fire_due_pir_reminders(
        &self,
        now: DateTime<Utc>,
        rules: &Rules,
        late_after: chrono::Duration,
        limit: i64,
    ) -> anyhow::Result<usize> {
        let at = to_ms(now);
        let lock = skip_locked(self, "");
        let select = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE pir_remind_at IS NOT NULL AND pir_remind_at <= $1 \
             ORDER BY pir_remind_at LIMIT $2 {lock}"
        );
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                if !self.is_postgres() {
                    sqlx::query("UPDATE incidents SET version = version WHERE pir_remind_at <= $1")
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                let rows: Vec<IncidentRow> = sqlx::query_as(&select).bind(at).bind(limit).fetch_all(&mut *tx).await?;
                let mut fired = 0;
                for row in rows {
                    let incident = Incident::try_from(row)?;
                    let Some(planned) = incident.pir_remind_at else {
                        continue;
                    };
                    let pending = rules.pir.review_pending(&incident);
                    if pending {
                        let late = now - planned > late_after;
                        let details = json!({ "action": "reminder", "spoc": incident.spoc, "late": late });
                        insert_event!(
                            tx,
                            incident.id.0,
                            at,
                            BOT_ACTOR,
                            EventKind::Pir.as_str(),
                            details.to_string()
                        )?;
                        if incident.channel_id.is_some() {
                            sqlx::query(INSERT_JOB)
                                .bind(incident.id.0)
                                .bind(JobKind::RemindPir.as_str())
                                .bind(json!({ "late": late }).to_string())
                                .bind(at)
                                .execute(&mut *tx)
                                .await?;
                        }
                        fired += 1;
                    }
                    let next = pending.then(|| rules.pir.next_reminder(now, rules.timezone));
                    sqlx::query("UPDATE incidents SET pir_remind_at = $2 WHERE id = $1")
                        .bind(incident.id.0)
                        .bind(next.map(to_ms))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(fired)
            }
            .await
        })
    }

    /// The earliest follow-up or review reminder (index lookups).
    pub async fn next_follow_up_or_pir_reminder_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (follow_up,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(remind_at) FROM follow_ups WHERE remind_at IS NOT NULL")
                .fetch_one(pool)
                .await
        })?;
        let (pir,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(pir_remind_at) FROM incidents WHERE pir_remind_at IS NOT NULL")
                .fetch_one(pool)
                .await
        })?;
        Ok(follow_up.into_iter().chain(pir).min().map(from_ms))
    }

    /// Moves a follow-up's due moment (and its first reminder) to `overdue_at`, as if its due
    /// day had passed: for tests, which cannot wait for midnight.
    pub async fn backdate_follow_up(&self, id: i64, overdue_at: DateTime<Utc>) -> anyhow::Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE follow_ups SET due_at = $2, remind_at = $2 WHERE id = $1 AND state = 'open'")
                .bind(id)
                .bind(to_ms(overdue_at))
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Spreads every open follow-up's reminder evenly over `[first, first + window)`, by id,
    /// as if all had just become overdue (for the benchmark).
    pub async fn arm_follow_up_reminders_for_bench(
        &self,
        first: DateTime<Utc>,
        window: chrono::Duration,
    ) -> anyhow::Result<()> {
        self.spread_for_bench(
            "follow_ups",
            "due_at = $1 + (id - 1) * $2 / $3, remind_at = $1 + (id - 1) * $2 / $3 WHERE state = 'open'",
            first,
            window,
        )
        .await
    }

    /// Every fired follow-up reminder as (fired at, planned at), in ms (for the benchmark):
    /// only reminder events record `planned_at`.
    pub async fn fired_follow_up_reminders(&self) -> anyhow::Result<Vec<(i64, i64)>> {
        self.fired_for_bench(EventKind::FollowUp, "planned_at").await
    }
}
