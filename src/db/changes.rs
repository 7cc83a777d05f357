//! Applying a change to an incident: lock, apply the pure domain rule, write the new state,
//! its timeline events and its outbox jobs, all in one transaction.

use super::incidents::{IncidentRow, INCIDENT_COLUMNS};
use super::{begin_write, first_time_in, insert_effect_jobs, insert_event, insert_follow_up, to_ms, with_pool, Db};
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
        // Takes the row's write lock first (on SQLite, the database's), so concurrent changes
        // to one incident apply one after the other, and reads the row in the same statement.
        let lock_and_read =
            format!("UPDATE incidents SET version = version + 1 WHERE id = $1 RETURNING {INCIDENT_COLUMNS}");
        let result: anyhow::Result<Result<Applied, Refused>> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let found: Option<IncidentRow> = sqlx::query_as(&lock_and_read).bind(id.0).fetch_optional(&mut *tx).await?;
                let Some(row) = found else {
                    // A form or button naming an incident that is gone (another database, a
                    // restored backup): the person's answer, not a database failure.
                    tracing::info!(incident_id = id.0, "change for an incident that does not exist");
                    return Ok(Err(Refused::Rule(
                        "That incident no longer exists; nothing was changed.".into(),
                    )));
                };
                if let Some(key) = key {
                    if !first_time_in!(tx, key, at)? {
                        return Ok(Err(Refused::AlreadyHandled));
                    }
                }
                let current = Incident::try_from(row)?;
                let applied = match current.apply_under(change, actor, now, rules) {
                    Ok(applied) => applied,
                    Err(reason) => return Ok(Err(Refused::Rule(reason))),
                };
                let i = &applied.incident;
                let ms = |t: Option<DateTime<Utc>>| t.map(to_ms);
                sqlx::query(
                    "UPDATE incidents SET status = $2, severity = $3, spoc = $4, services = $5, roles = $6, regions = $7, \
                     customers = $8, merchants = $9, transactions = $10, impact_start = $11, impact_end = $12, \
                     resolution = $13, root_cause = $14, last_update_at = $15, acknowledged_at = $16, identified_at = $17, \
                     mitigated_at = $18, resolved_at = $19, closed_at = $20, canceled_at = $21, \
                     update_due_at = $22, reminder_at = $23, reminder_stage = $24, snoozed = $25, \
                     follow_up_seq = $26, pir_remind_at = $27, pir_done_at = $28, pir_link = $29 WHERE id = $1",
                )
                .bind(id.0)
                .bind(i.status.as_str())
                .bind(i.severity.as_str())
                .bind(i.spoc.as_str())
                .bind(serde_json::to_string(&i.services)?)
                .bind(serde_json::to_string(&i.roles)?)
                .bind(serde_json::to_string(&i.footprint.regions)?)
                .bind(i.footprint.customers)
                .bind(i.footprint.merchants)
                .bind(i.footprint.transactions)
                .bind(ms(i.footprint.impact_start))
                .bind(ms(i.footprint.impact_end))
                .bind(&i.resolution)
                .bind(&i.root_cause)
                .bind(ms(i.last_update_at))
                .bind(ms(i.acknowledged_at))
                .bind(ms(i.identified_at))
                .bind(ms(i.mitigated_at))
                .bind(ms(i.resolved_at))
                .bind(ms(i.closed_at))
                .bind(ms(i.canceled_at))
                .bind(i.clock.map(|c| to_ms(c.due_at)))
                .bind(i.clock.map(|c| to_ms(c.next_at)))
                .bind(i.clock.map_or("due", |c| c.stage.as_str()))
                .bind(i.clock.is_some_and(|c| c.snoozed))
                .bind(i.follow_up_seq)
                .bind(ms(i.pir_remind_at))
                .bind(ms(i.pir_done_at))
                .bind(i.pir_link.as_deref())
                .execute(&mut *tx)
                .await?;
                for f in &applied.follow_ups {
                    insert_follow_up!(tx, id.0, f, actor, at, rules)?;
                }
                for (kind, details) in &applied.events {
                    insert_event!(tx, id.0, at, actor.as_str(), kind.as_str(), details.to_string())?;
                }
                // Vendor tickets are aged against the SLA of the incident's severity, while it is open.
                let reopened = i.status.is_open() && !current.status.is_open();
                if reopened || (i.status.is_open() && i.severity != current.severity) {
                    super::replan_vendor_chases!(tx, id.0, i.severity, now, rules, reopened)?;
                }
                // Slack effects need the channel; before it exists, provisioning renders the
                // current state anyway.
                if i.channel_id.is_some() {
                    insert_effect_jobs!(tx, id.0, &applied.effects, actor, at)?;
                    // Just resolved: ask whether its open vendor tickets should be closed.
                    if i.status == Status::Resolved && current.status != Status::Resolved {
                        super::enqueue_vendor_resolve_ask!(tx, id.0, at)?;
                    }
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
