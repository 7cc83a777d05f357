//! Incidents and their timeline.

use super::{begin_write, from_ms, insert_event, to_ms, with_pool, Db, INSERT_JOB};
use crate::incident::model::*;
use crate::outbox::JobKind;
use crate::reminder::plan::{Clock, Slas, Stage};
use anyhow::Context;
use chrono::{DateTime, Utc};

/// Result of storing a declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum DeclareOutcome {
    Created(Incident),
    /// The same declaration (same modal) was stored before: nothing new was written.
    Duplicate(Incident),
}

/// The unique keys an incident can be found by.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    Id(IncidentId),
    Number(IncidentNumber),
    Channel(&'a str),
    DeclareKey(&'a str),
}

pub(super) const INCIDENT_COLUMNS: &str = "id, number, title, description, severity, status, services, \
    is_private, declared_by, spoc, origin_channel, channel_id, channel_name, card_ts, announce_ts, \
    declared_at, acknowledged_at, identified_at, mitigated_at, resolved_at, closed_at, canceled_at, \
    roles, regions, customers, merchants, transactions, impact_start, impact_end, resolution, root_cause, last_update_at, \
    update_due_at, reminder_at, reminder_stage, snoozed, follow_up_seq, pir_remind_at, pir_done_at, pir_link";

#[derive(sqlx::FromRow)]
pub(super) struct IncidentRow {
    pub(super) id: i64,
    number: i64,
    title: String,
    description: String,
    severity: String,
    status: String,
    services: String,
    is_private: bool,
    declared_by: String,
    spoc: String,
    origin_channel: Option<String>,
    channel_id: Option<String>,
    channel_name: Option<String>,
    card_ts: Option<String>,
    announce_ts: Option<String>,
    declared_at: i64,
    acknowledged_at: Option<i64>,
    identified_at: Option<i64>,
    mitigated_at: Option<i64>,
    resolved_at: Option<i64>,
    closed_at: Option<i64>,
    canceled_at: Option<i64>,
    roles: String,
    regions: String,
    customers: Option<i64>,
    merchants: Option<i64>,
    transactions: Option<i64>,
    impact_start: Option<i64>,
    impact_end: Option<i64>,
    resolution: String,
    root_cause: String,
    last_update_at: Option<i64>,
    update_due_at: Option<i64>,
    reminder_at: Option<i64>,
    reminder_stage: String,
    snoozed: bool,
    follow_up_seq: i64,
    pir_remind_at: Option<i64>,
    pir_done_at: Option<i64>,
    pir_link: Option<String>,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = anyhow::Error;
    fn try_from(r: IncidentRow) -> anyhow::Result<Incident> {
        let user = |s: &str| UserId::parse(s).map_err(anyhow::Error::msg);
        Ok(Incident {
            id: IncidentId(r.id),
            number: IncidentNumber(r.number),
            title: r.title,
            description: r.description,
            severity: r.severity.parse().map_err(anyhow::Error::msg)?,
            status: r.status.parse().map_err(anyhow::Error::msg)?,
            services: serde_json::from_str(&r.services).context("incidents.services is not a JSON list")?,
            is_private: r.is_private,
            declared_by: user(&r.declared_by)?,
            spoc: user(&r.spoc)?,
            origin_channel: r.origin_channel,
            channel_id: r.channel_id,
            channel_name: r.channel_name,
            card_ts: r.card_ts,
            announce_ts: r.announce_ts,
            declared_at: from_ms(r.declared_at),
            acknowledged_at: r.acknowledged_at.map(from_ms),
            identified_at: r.identified_at.map(from_ms),
            mitigated_at: r.mitigated_at.map(from_ms),
            resolved_at: r.resolved_at.map(from_ms),
            closed_at: r.closed_at.map(from_ms),
            canceled_at: r.canceled_at.map(from_ms),
            roles: serde_json::from_str(&r.roles).context("incidents.roles is not a JSON map")?,
            footprint: Footprint {
                regions: serde_json::from_str(&r.regions).context("incidents.regions is not a JSON list")?,
                customers: r.customers,
                merchants: r.merchants,
                transactions: r.transactions,
                impact_start: r.impact_start.map(from_ms),
                impact_end: r.impact_end.map(from_ms),
            },
            resolution: r.resolution,
            root_cause: r.root_cause,
            last_update_at: r.last_update_at.map(from_ms),
            clock: match (r.update_due_at, r.reminder_at) {
                (Some(due), Some(next)) => Some(Clock {
                    due_at: from_ms(due),
                    next_at: from_ms(next),
                    stage: Stage::parse(&r.reminder_stage),
                    snoozed: r.snoozed,
                }),
                _ => None,
            },
            follow_up_seq: r.follow_up_seq,
            pir_remind_at: r.pir_remind_at.map(from_ms),
            pir_done_at: r.pir_done_at.map(from_ms),
            pir_link: r.pir_link,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    at: i64,
    actor: String,
    kind: String,
    details: String,
}

impl Db {
    /// Stores a declaration with its `declared` event and its first side effect (create the
    /// channel), all in one transaction. `key` identifies the declaration (the modal's view id):
    /// storing the same key twice returns the first incident and writes nothing.
    pub async fn declare(
        &self,
        new: &NewIncident,
        key: &str,
        now: DateTime<Utc>,
        slas: &Slas,
    ) -> anyhow::Result<DeclareOutcome> {
        // The first update is due a cadence after the declaration.
        let sla = slas.of(new.severity);
        let (update_due_at, reminder_at) = if sla.update_every > chrono::Duration::zero() {
            let due = to_ms(now + sla.update_every);
            (Some(due), Some(due))
        } else {
            (None, None)
        };
        let services = serde_json::to_string(&new.services)?;
        let details = serde_json::json!({
            "title": new.title.as_str(),
            "severity": new.severity.as_str(),
            "services": new.services,
            "spoc": new.spoc.as_str(),
            "private": new.is_private,
        })
        .to_string();
        let at = to_ms(now);
        let inserted: Result<Option<i64>, sqlx::Error> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                // The row goes in first (a write first: on SQLite a transaction that reads before
                // writing cannot upgrade its lock under contention) with a provisional negative
                // number no committed row has; the real number is taken from the counter last,
                // just before the commit, so declarations handled side by side queue on the
                // counter row for one statement rather than the whole transaction. A duplicate
                // key fails the insert (unique), which rolls everything back: see below.
                let provisional = -1 - (rand::random::<i64>() & (i64::MAX >> 1));
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO incidents (number, declare_key, title, description, severity, status, services, \
                     is_private, declared_by, spoc, origin_channel, declared_at, update_due_at, reminder_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
                )
                .bind(provisional)
                .bind(key)
                .bind(new.title.as_str())
                .bind(&new.description)
                .bind(new.severity.as_str())
                .bind(Status::Investigating.as_str())
                .bind(&services)
                .bind(new.is_private)
                .bind(new.declared_by.as_str())
                .bind(new.spoc.as_str())
                .bind(new.origin_channel.as_deref())
                .bind(at)
                .bind(update_due_at)
                .bind(reminder_at)
                .fetch_one(&mut *tx)
                .await?;
                insert_event!(
                    tx,
                    id,
                    at,
                    new.declared_by.as_str(),
                    EventKind::Declared.as_str(),
                    &details
                )?;
                sqlx::query(INSERT_JOB)
                    .bind(id)
                    .bind(JobKind::CreateChannel.as_str())
                    .bind("{}")
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                // Issue 14: customers are owed their first update a customer cadence after the
                // declaration (never for a private incident).
                if sla.customer_every > chrono::Duration::zero() && !new.is_private {
                    let due = to_ms(now + sla.customer_every);
                    sqlx::query("INSERT INTO customer_clocks (incident_id, due_at, remind_at) VALUES ($1, $2, $2)")
                        .bind(id)
                        .bind(due)
                        .execute(&mut *tx)
                        .await?;
                }
                // Issue 12: which changes may have caused it, posted once its card is up.
                sqlx::query(super::calendar::ENQUEUE_CORRELATE)
                    .bind(super::calendar::correlate_payload(id))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                super::assign_next_number!(self, tx, "incident_number", "incidents", id);
                tx.commit().await?;
                Ok(Some(id))
            }
            .await
        });
        match inserted {
            Ok(Some(id)) => Ok(DeclareOutcome::Created(self.incident(IncidentId(id)).await?)),
            // Either seen before, or a concurrent delivery of the same declaration won the race
            // (unique violation on declare_key): report the stored incident.
            Ok(None) | Err(sqlx::Error::Database(_)) => match self.find(Lookup::DeclareKey(key)).await? {
                Some(existing) => Ok(DeclareOutcome::Duplicate(existing)),
                None => match inserted {
                    Err(e) => Err(e).context("cannot store the incident"),
                    Ok(_) => anyhow::bail!("declaration {key} vanished while being stored"),
                },
            },
            Err(e) => Err(e).context("cannot store the incident"),
        }
    }

    pub async fn incident(&self, id: IncidentId) -> anyhow::Result<Incident> {
        self.find(Lookup::Id(id))
            .await?
            .with_context(|| format!("incident id {} not found", id.0))
    }

    pub async fn incident_by_number(&self, number: IncidentNumber) -> anyhow::Result<Option<Incident>> {
        self.find(Lookup::Number(number)).await
    }

    pub async fn incident_by_channel(&self, channel_id: &str) -> anyhow::Result<Option<Incident>> {
        self.find(Lookup::Channel(channel_id)).await
    }

    async fn find(&self, by: Lookup<'_>) -> anyhow::Result<Option<Incident>> {
        let (column, int, text) = match by {
            Lookup::Id(id) => ("id", id.0, ""),
            Lookup::Number(n) => ("number", n.0, ""),
            Lookup::Channel(c) => ("channel_id", 0, c),
            Lookup::DeclareKey(k) => ("declare_key", 0, k),
        };
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {column} = $1");
        let by_int = matches!(by, Lookup::Id(_) | Lookup::Number(_));
        let row: Option<IncidentRow> = with_pool!(self, |pool| {
            let q = sqlx::query_as::<_, IncidentRow>(&sql);
            let q = if by_int { q.bind(int) } else { q.bind(text) };
            q.fetch_optional(pool).await
        })?;
        row.map(Incident::try_from).transpose()
    }

    /// The incident's timeline, oldest first.
    pub async fn timeline(&self, id: IncidentId) -> anyhow::Result<Vec<TimelineEvent>> {
        let rows: Vec<EventRow> = with_pool!(self, |pool| {
            sqlx::query_as::<_, EventRow>(
                "SELECT at, actor, kind, details FROM events WHERE incident_id = $1 ORDER BY id",
            )
            .bind(id.0)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|r| {
                Ok(TimelineEvent {
                    at: from_ms(r.at),
                    actor: r.actor,
                    kind: r.kind,
                    details: serde_json::from_str(&r.details)?,
                })
            })
            .collect()
    }

    /// How many incidents exist (all statuses); for tests and the demo.
    pub async fn incident_count(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = with_pool!(self, |pool| sqlx::query_as("SELECT COUNT(*) FROM incidents")
            .fetch_one(pool)
            .await)?;
        Ok(n)
    }
}
