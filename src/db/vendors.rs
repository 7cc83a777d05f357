//! Vendor tickets: opening one, replies, escalations, closing, snoozing, and the aging chase
//! the reminder scheduler fires, each with the ticket's own event, the incident's timeline
//! event and the Slack jobs in one transaction (the incident row locked).

use super::changes::Refused;
use super::outbox::BOT_ACTOR;
use super::ReportScope;
use super::{begin_write, first_time_in, from_ms, insert_event, skip_locked, to_ms, with_pool, Db, INSERT_JOB};
use crate::incident::model::*;
use crate::outbox::JobKind;
use crate::vendor::report::VendorRaw;
use crate::vendor::{Catalogue, NewTicket, TicketAction, TicketEvent, TicketHistory, TicketState, VendorTicket};
use chrono::{DateTime, Utc};
use serde_json::json;

const TICKET_COLUMNS: &str = "t.id, t.incident_id, i.number, i.is_private, i.status AS incident_status, i.severity, \
    t.seq, t.vendor, t.reference, t.link, t.asked, t.state, t.opened_by, t.opened_at, t.first_response_at, \
    t.last_reply_at, t.escalations, t.missed, t.breaches, t.due_at, t.chase_at, t.closed_by, t.closed_at";
const FROM: &str = "FROM vendor_tickets t JOIN incidents i ON i.id = t.incident_id";

/// Appends an event to a ticket's own timeline: (ticket id, at, actor, kind, text, missed).
const INSERT_VENDOR_EVENT: &str =
    "INSERT INTO vendor_events (ticket_id, at, actor, kind, text, missed) VALUES ($1, $2, $3, $4, $5, $6)";

/// Asks, in the incident channel, whether the open vendor tickets of an incident that was just
/// resolved should be closed: enqueued inside `apply_change`'s transaction, only when there is
/// an open ticket. `(tx, incident id, at ms)`.
macro_rules! enqueue_vendor_resolve_ask {
    ($tx:ident, $incident:expr, $at:expr) => {
        sqlx::query(concat!(
            $crate::db::insert_jobs_into!(),
            "SELECT $1, $2, $3, $4, $4 WHERE EXISTS \
             (SELECT 1 FROM vendor_tickets WHERE incident_id = $1 AND state <> 'closed')",
        ))
        .bind($incident)
        .bind($crate::outbox::JobKind::Vendor.as_str())
        .bind(serde_json::json!({ "what": "resolve_ask" }).to_string())
        .bind($at)
        .execute(&mut *$tx)
        .await
    };
}
pub(crate) use enqueue_vendor_resolve_ask;

/// Re-plans the chases of incident `$incident`'s open tickets inside `apply_change`'s
/// transaction `$tx`, after its severity changed or it was reopened (`$restart`); see
/// [`VendorTicket::replan`]. `(tx, incident id, severity, now, rules, restart)`.
macro_rules! replan_vendor_chases {
    ($tx:ident, $incident:expr, $severity:expr, $now:expr, $rules:expr, $restart:expr) => {{
        let mut result: Result<(), sqlx::Error> = Ok(());
        let rows: Result<Vec<(i64, String, i64, Option<i64>, Option<i64>)>, sqlx::Error> = sqlx::query_as(
            "SELECT id, vendor, opened_at, first_response_at, last_reply_at FROM vendor_tickets \
             WHERE incident_id = $1 AND state <> 'closed'",
        )
        .bind($incident)
        .fetch_all(&mut *$tx)
        .await;
        match rows {
            Err(e) => result = Err(e),
            Ok(rows) => {
                for (ticket, vendor, opened, first, last) in rows {
                    let due = $crate::vendor::VendorTicket::replan(
                        $crate::db::from_ms(opened),
                        first.map($crate::db::from_ms),
                        last.map($crate::db::from_ms),
                        $rules.vendors.sla(&vendor, $severity),
                        $now,
                        $restart,
                    );
                    if let Err(e) = sqlx::query(
                        "UPDATE vendor_tickets SET due_at = $2, chase_at = $2, \
                         missed = CASE WHEN $3 THEN 0 ELSE missed END WHERE id = $1",
                    )
                    .bind(ticket)
                    .bind(due.map($crate::db::to_ms))
                    .bind($restart)
                    .execute(&mut *$tx)
                    .await
                    {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        result
    }};
}
pub(crate) use replan_vendor_chases;

#[derive(sqlx::FromRow)]
struct TicketRow {
    id: i64,
    incident_id: i64,
    number: i64,
    is_private: bool,
    incident_status: String,
    severity: String,
    seq: i64,
    vendor: String,
    reference: String,
    link: Option<String>,
    asked: String,
    state: String,
    opened_by: String,
    opened_at: i64,
    first_response_at: Option<i64>,
    last_reply_at: Option<i64>,
    escalations: i64,
    missed: i64,
    breaches: i64,
    due_at: Option<i64>,
    chase_at: Option<i64>,
    closed_by: Option<String>,
    closed_at: Option<i64>,
}

impl TryFrom<TicketRow> for VendorTicket {
    type Error = anyhow::Error;
    fn try_from(r: TicketRow) -> anyhow::Result<VendorTicket> {
        let user = |s: &str| UserId::parse(s).map_err(anyhow::Error::msg);
        Ok(VendorTicket {
            id: r.id,
            incident_id: IncidentId(r.incident_id),
            number: IncidentNumber(r.number),
            private: r.is_private,
            incident_status: r.incident_status.parse().map_err(anyhow::Error::msg)?,
            severity: r.severity.parse().map_err(anyhow::Error::msg)?,
            seq: r.seq,
            vendor: r.vendor,
            reference: r.reference,
            link: r.link,
            asked: r.asked,
            state: TicketState::parse(&r.state).ok_or_else(|| anyhow::anyhow!("unknown ticket state {}", r.state))?,
            opened_by: user(&r.opened_by)?,
            opened_at: from_ms(r.opened_at),
            first_response_at: r.first_response_at.map(from_ms),
            last_reply_at: r.last_reply_at.map(from_ms),
            escalations: r.escalations,
            missed: r.missed,
            breaches: r.breaches,
            due_at: r.due_at.map(from_ms),
            chase_at: r.chase_at.map(from_ms),
            closed_by: r.closed_by.as_deref().map(user).transpose()?,
            closed_at: r.closed_at.map(from_ms),
        })
    }
}

fn convert(rows: Vec<TicketRow>) -> anyhow::Result<Vec<VendorTicket>> {
    rows.into_iter().map(VendorTicket::try_from).collect()
}

/// One entry of a ticket's own timeline.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct VendorEvent {
    pub ticket_id: i64,
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub text: String,
    pub missed: i64,
}

impl VendorEvent {
    pub fn at(&self) -> DateTime<Utc> {
        from_ms(self.at)
    }
}

/// The incident timeline's one line about a ticket event.
fn summary(t: &VendorTicket, kind: &str, text: &str) -> String {
    let what = match kind {
        "opened" => "raised with the vendor",
        "reply" => "vendor replied",
        "escalated" => "escalated",
        "closed" => "closed",
        "snoozed" => "chase snoozed 15 min",
        "chase" => "SPOC reminded to chase the vendor",
        other => other,
    };
    let mut line = format!("{} {} {what}", t.label(), t.title());
    if !text.is_empty() {
        line.push_str(&format!(": {text}"));
    }
    line
}

/// The writes every ticket change shares, inside transaction `$tx`: the ticket's own event,
/// the incident's timeline event and (when the incident has a channel; not for a snooze,
/// which only the clicker is told about) the channel post and a card refresh.
/// `(tx, ticket, kind, text, actor, at ms, has channel)`.
macro_rules! record_ticket_change {
    ($tx:ident, $ticket:expr, $kind:expr, $text:expr, $actor:expr, $at:expr, $has_channel:expr) => {{
        let (ticket, kind, text, actor): (&VendorTicket, &str, &str, &UserId) = ($ticket, $kind, $text, $actor);
        sqlx::query(INSERT_VENDOR_EVENT)
            .bind(ticket.id)
            .bind($at)
            .bind(actor.as_str())
            .bind(kind)
            .bind(text)
            .bind(0_i64)
            .execute(&mut *$tx)
            .await?;
        let details = json!({
            "action": kind, "ticket": ticket.seq, "vendor": ticket.vendor, "ref": ticket.reference,
            "text": text, "state": ticket.state.as_str(), "summary": summary(ticket, kind, text),
        });
        insert_event!($tx, ticket.incident_id.0, $at, actor.as_str(), EventKind::Vendor.as_str(), details.to_string())?;
        if $has_channel && kind != "snoozed" {
            let payload = json!({ "what": kind, "ticket": ticket.id, "actor": actor, "text": text });
            for (job, payload) in [(JobKind::Vendor, payload), (JobKind::RefreshCard, json!({}))] {
                sqlx::query(INSERT_JOB)
                    .bind(ticket.incident_id.0)
                    .bind(job.as_str())
                    .bind(payload.to_string())
                    .bind($at)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    }};
}

impl Db {
    /// Opens vendor ticket `V<n>` on incident `id` (its first-response deadline planned from
    /// the vendor's SLA at the incident's severity), with its events and Slack jobs, once per
    /// `key`.
    pub async fn open_vendor_ticket(
        &self,
        id: IncidentId,
        new: &NewTicket,
        actor: &UserId,
        now: DateTime<Utc>,
        key: &str,
        catalogue: &Catalogue,
    ) -> anyhow::Result<Result<VendorTicket, Refused>> {
        let at = to_ms(now);
        let select = format!("SELECT {TICKET_COLUMNS} {FROM} WHERE t.id = $1");
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let found = sqlx::query("UPDATE incidents SET version = version + 1 WHERE id = $1")
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if found == 0 {
                    return Ok(Err(Refused::Rule("That incident no longer exists; nothing was stored.".into())));
                }
                if !first_time_in!(tx, key, at)? {
                    return Ok(Err(Refused::AlreadyHandled));
                }
                let (number, status, severity, channel): (i64, String, String, Option<String>) =
                    sqlx::query_as("SELECT number, status, severity, channel_id FROM incidents WHERE id = $1")
                        .bind(id.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let status: Status = status.parse().map_err(anyhow::Error::msg)?;
                if status == Status::Canceled {
                    return Ok(Err(Refused::Rule(format!(
                        "{} was canceled: it takes no vendor tickets.",
                        IncidentNumber(number)
                    ))));
                }
                let severity: Severity = severity.parse().map_err(anyhow::Error::msg)?;
                let (seq,): (i64,) =
                    sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM vendor_tickets WHERE incident_id = $1")
                        .bind(id.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let due = VendorTicket::first_deadline(now, catalogue.sla(&new.vendor, severity))
                    .filter(|_| status.is_open())
                    .map(to_ms);
                let (ticket_id,): (i64,) = sqlx::query_as(
                    "INSERT INTO vendor_tickets (incident_id, seq, vendor, reference, link, asked, state, opened_by, opened_at, due_at, chase_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $9) RETURNING id",
                )
                .bind(id.0)
                .bind(seq)
                .bind(&new.vendor)
                .bind(&new.reference)
                .bind(new.link.as_deref())
                .bind(&new.asked)
                .bind(actor.as_str())
                .bind(at)
                .bind(due)
                .fetch_one(&mut *tx)
                .await?;
                let ticket = VendorTicket::try_from(
                    sqlx::query_as::<_, TicketRow>(&select).bind(ticket_id).fetch_one(&mut *tx).await?,
                )?;
                record_ticket_change!(tx, &ticket, "opened", &new.asked, actor, at, channel.is_some());
                tx.commit().await?;
                Ok(Ok(ticket))
            }
            .await
        })
    }

    /// Applies `action` to ticket `ticket_id` as `actor` (the domain rule decides), with its
    /// events and Slack jobs, once per `key`.
    pub async fn vendor_ticket_action(
        &self,
        ticket_id: i64,
        action: &TicketAction,
        actor: &UserId,
        now: DateTime<Utc>,
        key: &str,
        catalogue: &Catalogue,
    ) -> anyhow::Result<Result<VendorTicket, Refused>> {
        let at = to_ms(now);
        let select = format!("SELECT {TICKET_COLUMNS} {FROM} WHERE t.id = $1");
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let locked = sqlx::query(
                    "UPDATE incidents SET version = version + 1 WHERE id = (SELECT incident_id FROM vendor_tickets WHERE id = $1)",
                )
                .bind(ticket_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if locked == 0 {
                    return Ok(Err(Refused::Rule("That vendor ticket no longer exists.".into())));
                }
                if !first_time_in!(tx, key, at)? {
                    return Ok(Err(Refused::AlreadyHandled));
                }
                let current = VendorTicket::try_from(
                    sqlx::query_as::<_, TicketRow>(&select).bind(ticket_id).fetch_one(&mut *tx).await?,
                )?;
                let sla = catalogue.sla(&current.vendor, current.severity);
                let sla = sla.filter(|_| current.incident_status.is_open());
                let next = match current.apply(action, actor, now, sla) {
                    Ok(next) => next,
                    Err(reason) => return Ok(Err(Refused::Rule(reason))),
                };
                sqlx::query(
                    "UPDATE vendor_tickets SET state = $2, first_response_at = $3, last_reply_at = $4, escalations = $5, \
                     missed = $6, due_at = $7, chase_at = $8, closed_by = $9, closed_at = $10 WHERE id = $1",
                )
                .bind(ticket_id)
                .bind(next.state.as_str())
                .bind(next.first_response_at.map(to_ms))
                .bind(next.last_reply_at.map(to_ms))
                .bind(next.escalations)
                .bind(next.missed)
                .bind(next.due_at.map(to_ms))
                .bind(next.chase_at.map(to_ms))
                .bind(next.closed_by.as_ref().map(UserId::as_str))
                .bind(next.closed_at.map(to_ms))
                .execute(&mut *tx)
                .await?;
                let (channel,): (Option<String>,) = sqlx::query_as("SELECT channel_id FROM incidents WHERE id = $1")
                    .bind(next.incident_id.0)
                    .fetch_one(&mut *tx)
                    .await?;
                record_ticket_change!(tx, &next, action.kind(), action.text(), actor, at, channel.is_some());
                tx.commit().await?;
                Ok(Ok(next))
            }
            .await
        })
    }

    /// Chases up to `limit` tickets whose chase is due: for each, the ticket's `chase` event
    /// (with the deadlines it newly missed), the incident's timeline event, the reminder job
    /// and the next chase, in one transaction with the rows locked (skipped by other replicas
    /// on PostgreSQL; SQLite's write lock serializes). Returns how many reminded.
    pub async fn fire_due_vendor_chases(
        &self,
        now: DateTime<Utc>,
        catalogue: &Catalogue,
        late_after: chrono::Duration,
        limit: i64,
    ) -> anyhow::Result<usize> {
        let at = to_ms(now);
        let lock = skip_locked(self, "OF t");
        let select = format!(
            "SELECT {TICKET_COLUMNS} {FROM} WHERE t.chase_at IS NOT NULL AND t.chase_at <= $1 \
             ORDER BY t.chase_at LIMIT $2 {lock}"
        );
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                if !self.is_postgres() {
                    // Take SQLite's write lock before reading (see fire_due_reminders).
                    sqlx::query("UPDATE vendor_tickets SET chase_at = chase_at WHERE chase_at <= $1")
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                let rows: Vec<TicketRow> = sqlx::query_as(&select).bind(at).bind(limit).fetch_all(&mut *tx).await?;
                let mut fired = 0;
                for row in rows {
                    let ticket = VendorTicket::try_from(row)?;
                    let planned = ticket.chase_at.unwrap_or(now);
                    let sla = catalogue.sla(&ticket.vendor, ticket.severity);
                    let (chase, next) = ticket.fire(now, sla, late_after);
                    sqlx::query("UPDATE vendor_tickets SET missed = $2, breaches = $3, due_at = $4, chase_at = $5 WHERE id = $1")
                        .bind(ticket.id)
                        .bind(next.missed)
                        .bind(next.breaches)
                        .bind(next.due_at.map(to_ms))
                        .bind(next.chase_at.map(to_ms))
                        .execute(&mut *tx)
                        .await?;
                    let Some(chase) = chase else { continue };
                    tracing::info_span!("vendor_chase", incident = %ticket.number).in_scope(|| {
                        tracing::info!(ticket = ticket.seq, missed = chase.missed, late = chase.late, "vendor ticket chase fired")
                    });
                    sqlx::query(INSERT_VENDOR_EVENT)
                        .bind(ticket.id)
                        .bind(at)
                        .bind(BOT_ACTOR)
                        .bind("chase")
                        .bind("")
                        .bind(chase.newly_missed)
                        .execute(&mut *tx)
                        .await?;
                    let details = json!({
                        "action": "chase", "ticket": ticket.seq, "vendor": ticket.vendor, "ref": ticket.reference,
                        "missed": chase.missed, "newly_missed": chase.newly_missed, "escalate": chase.escalate,
                        "planned_at": to_ms(planned), "late": chase.late,
                        "summary": summary(&next, "chase", ""),
                    });
                    insert_event!(tx, ticket.incident_id.0, at, BOT_ACTOR, EventKind::Vendor.as_str(), details.to_string())?;
                    sqlx::query(INSERT_JOB)
                        .bind(ticket.incident_id.0)
                        .bind(JobKind::Vendor.as_str())
                        .bind(
                            json!({
                                "what": "chase", "ticket": ticket.id, "missed": chase.missed, "escalate": chase.escalate,
                                "first_response": chase.first_response, "late": chase.late, "fired_at": at,
                            })
                            .to_string(),
                        )
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    fired += 1;
                }
                tx.commit().await?;
                Ok(fired)
            }
            .await
        })
    }

    /// The earliest planned vendor chase (an index lookup).
    pub async fn next_vendor_chase_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (next,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(chase_at) FROM vendor_tickets WHERE chase_at IS NOT NULL")
                .fetch_one(pool)
                .await
        })?;
        Ok(next.map(from_ms))
    }

    /// An incident's vendor tickets, by number.
    pub async fn vendor_tickets_of(&self, incident: IncidentId) -> anyhow::Result<Vec<VendorTicket>> {
        let sql = format!("SELECT {TICKET_COLUMNS} {FROM} WHERE t.incident_id = $1 ORDER BY t.seq");
        let rows: Vec<TicketRow> =
            with_pool!(self, |pool| sqlx::query_as(&sql).bind(incident.0).fetch_all(pool).await)?;
        convert(rows)
    }

    pub async fn vendor_ticket(&self, id: i64) -> anyhow::Result<Option<VendorTicket>> {
        let sql = format!("SELECT {TICKET_COLUMNS} {FROM} WHERE t.id = $1");
        let row: Option<TicketRow> = with_pool!(self, |pool| sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)?;
        row.map(VendorTicket::try_from).transpose()
    }

    /// Open vendor tickets of every incident (of one vendor, as stored), oldest first, at
    /// most `limit`.
    pub async fn open_vendor_tickets(&self, vendor: Option<&str>, limit: i64) -> anyhow::Result<Vec<VendorTicket>> {
        let rows: Vec<TicketRow> = match vendor {
            Some(vendor) => {
                let sql = format!(
                    "SELECT {TICKET_COLUMNS} {FROM} WHERE t.state <> 'closed' AND t.vendor = $1 ORDER BY t.opened_at, t.id LIMIT $2"
                );
                with_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(vendor)
                    .bind(limit)
                    .fetch_all(pool)
                    .await)?
            }
            None => {
                let sql = format!(
                    "SELECT {TICKET_COLUMNS} {FROM} WHERE t.state <> 'closed' ORDER BY t.opened_at, t.id LIMIT $1"
                );
                with_pool!(self, |pool| sqlx::query_as(&sql).bind(limit).fetch_all(pool).await)?
            }
        };
        convert(rows)
    }

    /// The events of every vendor ticket of an incident, oldest first.
    pub async fn vendor_events_of(&self, incident: IncidentId) -> anyhow::Result<Vec<VendorEvent>> {
        with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT e.ticket_id, e.at, e.actor, e.kind, e.text, e.missed FROM vendor_events e \
                 JOIN vendor_tickets t ON t.id = e.ticket_id WHERE t.incident_id = $1 ORDER BY e.id",
            )
            .bind(incident.0)
            .fetch_all(pool)
            .await
        })
        .map_err(Into::into)
    }

    /// An incident's vendor tickets with their own timelines, by number.
    pub async fn vendor_histories(&self, incident: IncidentId) -> anyhow::Result<Vec<TicketHistory>> {
        let tickets = self.vendor_tickets_of(incident).await?;
        let mut events = self.vendor_events_of(incident).await?;
        Ok(tickets
            .into_iter()
            .map(|ticket| {
                let mine: Vec<TicketEvent> = events
                    .iter_mut()
                    .filter(|e| e.ticket_id == ticket.id)
                    .map(|e| TicketEvent {
                        at: e.at(),
                        actor: std::mem::take(&mut e.actor),
                        kind: std::mem::take(&mut e.kind),
                        text: std::mem::take(&mut e.text),
                        missed: e.missed,
                    })
                    .collect();
                TicketHistory { ticket, events: mine }
            })
            .collect())
    }

    /// Moves a ticket's deadline and chase to `at` (tests cannot wait for an SLA of minutes).
    pub async fn backdate_vendor_chase(&self, ticket_id: i64, at: DateTime<Utc>) -> anyhow::Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE vendor_tickets SET due_at = $2, chase_at = $2 WHERE id = $1 AND chase_at IS NOT NULL")
                .bind(ticket_id)
                .bind(to_ms(at))
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Spreads every open ticket's chase evenly over `[first, first + window)`, by id, as if
    /// all had just reached their SLA (for the benchmark).
    pub async fn arm_vendor_chases_for_bench(
        &self,
        first: DateTime<Utc>,
        window: chrono::Duration,
    ) -> anyhow::Result<()> {
        self.spread_for_bench(
            "vendor_tickets",
            "due_at = $1 + (id - 1) * $2 / $3, chase_at = $1 + (id - 1) * $2 / $3 WHERE state <> 'closed'",
            first,
            window,
        )
        .await
    }

    /// Every fired chase as (fired at, planned at), in ms (for the benchmark).
    pub async fn fired_vendor_chases(&self) -> anyhow::Result<Vec<(i64, i64)>> {
        self.fired_for_bench(EventKind::Vendor, "planned_at").await
    }
}

impl Db {
    /// Per-vendor figures of a report period (see [`crate::vendor::report`] for what each
    /// counts): tickets opened in `[from, to)` on incidents that are not canceled (and on the
    /// scope's service line), their first responses, the SLA deadlines missed and escalations
    /// recorded in the period, and tickets open more than 7 days at `min(to, now)`.
    pub async fn vendor_figures(&self, scope: &ReportScope) -> anyhow::Result<Vec<VendorRaw>> {
        let pattern = scope.service_pattern();
        let of = "FROM vendor_tickets t JOIN incidents i ON i.id = t.incident_id";
        let incident_ok = "i.status <> 'canceled' AND i.services LIKE $3 ESCAPE '!'";
        let opened = format!(
            "SELECT t.vendor, COUNT(*), COUNT(DISTINCT t.incident_id) {of} \
             WHERE t.opened_at >= $1 AND t.opened_at < $2 AND {incident_ok} GROUP BY t.vendor"
        );
        let responses = format!(
            "SELECT t.vendor, t.first_response_at - t.opened_at {of} \
             WHERE t.opened_at >= $1 AND t.opened_at < $2 AND t.first_response_at IS NOT NULL AND {incident_ok}"
        );
        let events = format!(
            "SELECT t.vendor, CAST(SUM(CASE WHEN e.kind = 'chase' THEN e.missed ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN e.kind = 'escalated' THEN 1 ELSE 0 END) AS BIGINT) \
             FROM vendor_events e JOIN vendor_tickets t ON t.id = e.ticket_id JOIN incidents i ON i.id = t.incident_id \
             WHERE e.at >= $1 AND e.at < $2 AND e.kind IN ('chase', 'escalated') AND {incident_ok} GROUP BY t.vendor"
        );
        let stale = format!(
            "SELECT t.vendor, COUNT(*) {of} WHERE t.opened_at < $1 AND (t.closed_at IS NULL OR t.closed_at > $2) \
             AND {incident_ok} GROUP BY t.vendor"
        );
        let week = chrono::Duration::days(7).num_milliseconds();
        let (from, to) = (scope.from_ms, scope.to_ms);
        let opened: Vec<(String, i64, i64)> = with_pool!(self, |pool| sqlx::query_as(&opened)
            .bind(from)
            .bind(to)
            .bind(&pattern)
            .fetch_all(pool)
            .await)?;
        let responses: Vec<(String, i64)> = with_pool!(self, |pool| sqlx::query_as(&responses)
            .bind(from)
            .bind(to)
            .bind(&pattern)
            .fetch_all(pool)
            .await)?;
        let events: Vec<(String, Option<i64>, Option<i64>)> = with_pool!(self, |pool| sqlx::query_as(&events)
            .bind(from)
            .bind(to)
            .bind(&pattern)
            .fetch_all(pool)
            .await)?;
        let stale: Vec<(String, i64)> = with_pool!(self, |pool| sqlx::query_as(&stale)
            .bind(scope.cap_ms - week)
            .bind(scope.cap_ms)
            .bind(&pattern)
            .fetch_all(pool)
            .await)?;
        let mut by: std::collections::BTreeMap<String, VendorRaw> = std::collections::BTreeMap::new();
        fn row<'a>(by: &'a mut std::collections::BTreeMap<String, VendorRaw>, vendor: &str) -> &'a mut VendorRaw {
            by.entry(vendor.to_string()).or_insert_with(|| VendorRaw {
                vendor: vendor.to_string(),
                ..VendorRaw::default()
            })
        }
        for (vendor, tickets, incidents) in opened {
            let r = row(&mut by, &vendor);
            r.tickets = tickets;
            r.incidents = incidents;
        }
        for (vendor, ms) in responses {
            row(&mut by, &vendor).first_response_ms.push(ms);
        }
        for (vendor, breaches, escalations) in events {
            let r = row(&mut by, &vendor);
            r.breaches = breaches.unwrap_or(0);
            r.escalations = escalations.unwrap_or(0);
        }
        for (vendor, n) in stale {
            row(&mut by, &vendor).open_over_7_days = n;
        }
        Ok(by.into_values().collect())
    }

    /// Stores a vendor ticket as given, with its events `(kind, at ms, missed)`: for report
    /// tests and benches. Times are epoch ms; `state` is derived (`closed` when `closed_at`).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_vendor_fixture(
        &self,
        incident: IncidentId,
        vendor: &str,
        opened_at: i64,
        first_response_at: Option<i64>,
        closed_at: Option<i64>,
        events: &[(&str, i64, i64)],
    ) -> anyhow::Result<i64> {
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let (seq,): (i64,) =
                    sqlx::query_as("SELECT COALESCE(MAX(seq), 0) + 1 FROM vendor_tickets WHERE incident_id = $1")
                        .bind(incident.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let state = match (closed_at, first_response_at) {
                    (Some(_), _) => "closed",
                    (None, Some(_)) => "responded",
                    (None, None) => "open",
                };
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO vendor_tickets (incident_id, seq, vendor, reference, state, opened_by, opened_at, \
                     first_response_at, last_reply_at, closed_at) VALUES ($1, $2, $3, $4, $5, 'U0FIXTURE', $6, $7, $7, $8) RETURNING id",
                )
                .bind(incident.0)
                .bind(seq)
                .bind(vendor)
                .bind(format!("fixture-{seq}"))
                .bind(state)
                .bind(opened_at)
                .bind(first_response_at)
                .bind(closed_at)
                .fetch_one(&mut *tx)
                .await?;
                for (kind, at, missed) in events {
                    sqlx::query(INSERT_VENDOR_EVENT)
                        .bind(id)
                        .bind(*at)
                        .bind(BOT_ACTOR)
                        .bind(*kind)
                        .bind("")
                        .bind(*missed)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                anyhow::Ok(id)
            }
            .await
        })
    }
}
