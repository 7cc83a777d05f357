//! Customer communications (issue 14): customer updates (draft → published, or superseded by
//! an edit), public incidents, the customer-update cadence the reminder scheduler fires, the
//! status page's reads and the report's rows. Each change is stored with its timeline event and
//! its outbox job in one transaction.

use super::{
    begin_write, first_time_in, from_ms, insert_event, skip_locked, to_ms, with_pool, write_alone, Db, Refused,
    BOT_ACTOR, INSERT_JOB,
};
use crate::comms::metrics::{CommsIncident, Published};
use crate::comms::{
    may_approve, new_public_id, next_due, ComponentImpact, CustomerUpdate, NewCustomerUpdate, PublicIncident,
    PublicUpdate, StatusPage, UpdateState,
};
use crate::incident::model::{EventKind, IncidentId, IncidentNumber, Severity, Status, UserId};
use crate::outbox::JobKind;
use chrono::{DateTime, Utc};
use serde_json::json;

const UPDATE_COLUMNS: &str = "id, incident_id, uuid, state, public_title, message, components, last_update, author, \
     created_at, approved_by, published_at, draft_ts";

#[derive(sqlx::FromRow)]
struct UpdateRow {
    id: i64,
    incident_id: i64,
    uuid: String,
    state: String,
    public_title: String,
    message: String,
    components: String,
    last_update: bool,
    author: String,
    created_at: i64,
    approved_by: Option<String>,
    published_at: Option<i64>,
    draft_ts: Option<String>,
}

impl TryFrom<UpdateRow> for CustomerUpdate {
    type Error = anyhow::Error;
    fn try_from(r: UpdateRow) -> anyhow::Result<Self> {
        Ok(CustomerUpdate {
            id: r.id,
            incident_id: IncidentId(r.incident_id),
            uuid: r.uuid,
            state: UpdateState::parse(&r.state).map_err(anyhow::Error::msg)?,
            public_title: r.public_title,
            message: r.message,
            components: serde_json::from_str(&r.components)?,
            last: r.last_update,
            author: UserId::parse(&r.author).map_err(anyhow::Error::msg)?,
            created_at: from_ms(r.created_at),
            approved_by: r
                .approved_by
                .map(|u| UserId::parse(&u))
                .transpose()
                .map_err(anyhow::Error::msg)?,
            published_at: r.published_at.map(from_ms),
            draft_ts: r.draft_ts,
        })
    }
}

/// What the incident looks like to the comms rules, read under its row lock.
struct Owner {
    number: IncidentNumber,
    severity: Severity,
    status: Status,
    is_private: bool,
    spoc: UserId,
    roles: std::collections::BTreeMap<String, UserId>,
}

macro_rules! lock_incident {
    ($tx:ident, $id:expr) => {{
        let found = sqlx::query("UPDATE incidents SET version = version + 1 WHERE id = $1")
            .bind($id)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        if found == 0 {
            None
        } else {
            let (number, severity, status, is_private, spoc, roles): (i64, String, String, bool, String, String) =
                sqlx::query_as("SELECT number, severity, status, is_private, spoc, roles FROM incidents WHERE id = $1")
                    .bind($id)
                    .fetch_one(&mut *$tx)
                    .await?;
            Some(Owner {
                number: IncidentNumber(number),
                severity: severity.parse().map_err(anyhow::Error::msg)?,
                status: status.parse().map_err(anyhow::Error::msg)?,
                is_private,
                spoc: UserId::parse(&spoc).map_err(anyhow::Error::msg)?,
                roles: serde_json::from_str(&roles).unwrap_or_default(),
            })
        }
    }};
}

/// Why an incident takes no customer update, if it does not.
fn refuse_for(owner: &Owner) -> Option<String> {
    crate::comms::refusal(owner.number, owner.is_private, owner.status == Status::Canceled)
}

/// Publishes `update` inside `$tx`: the row, the public incident (created on the first
/// publish), the cadence clock, the timeline event and the Slack job.
macro_rules! publish_in_tx {
    ($tx:ident, $update:expr, $owner:expr, $approver:expr, $page:expr, $at:expr) => {{
        let update: &CustomerUpdate = $update;
        let at: i64 = $at;
        sqlx::query("UPDATE customer_updates SET state = 'published', approved_by = $2, published_at = $3 WHERE id = $1")
            .bind(update.id)
            .bind($approver)
            .bind(at)
            .execute(&mut *$tx)
            .await?;
        let resolved = update.last.then_some(at);
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT public_id FROM public_incidents WHERE incident_id = $1")
                .bind(update.incident_id.0)
                .fetch_optional(&mut *$tx)
                .await?;
        let public_id = match existing {
            Some((public_id,)) => {
                sqlx::query(
                    "UPDATE public_incidents SET title = $2, last_published_at = $3, resolved_at = $4 WHERE incident_id = $1",
                )
                .bind(update.incident_id.0)
                .bind(&update.public_title)
                .bind(at)
                .bind(resolved)
                .execute(&mut *$tx)
                .await?;
                public_id
            }
            None => {
                let public_id = new_public_id();
                sqlx::query(
                    "INSERT INTO public_incidents (incident_id, public_id, title, first_published_at, last_published_at, resolved_at) \
                     VALUES ($1, $2, $3, $4, $4, $5)",
                )
                .bind(update.incident_id.0)
                .bind(&public_id)
                .bind(&update.public_title)
                .bind(at)
                .bind(resolved)
                .execute(&mut *$tx)
                .await?;
                public_id
            }
        };
        match next_due($page, $owner.severity, from_ms(at), update.last).filter(|_| $owner.status.is_open()) {
            Some(due) => {
                sqlx::query(
                    "INSERT INTO customer_clocks (incident_id, due_at, remind_at, reminders) VALUES ($1, $2, $2, 0) \
                     ON CONFLICT (incident_id) DO UPDATE SET due_at = excluded.due_at, remind_at = excluded.remind_at, reminders = 0",
                )
                .bind(update.incident_id.0)
                .bind(to_ms(due))
                .execute(&mut *$tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM customer_clocks WHERE incident_id = $1")
                    .bind(update.incident_id.0)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        let details = json!({
            "action": "published", "update": update.id, "public_id": public_id, "public_title": update.public_title,
            "last": update.last, "author": update.author.as_str(), "components": update.components,
        });
        insert_event!($tx, update.incident_id.0, at, $approver, EventKind::Customer.as_str(), details.to_string())?;
        sqlx::query(INSERT_JOB)
            .bind(update.incident_id.0)
            .bind(JobKind::Customer.as_str())
            .bind(json!({ "what": "published", "update": update.id }).to_string())
            .bind(at)
            .execute(&mut *$tx)
            .await?;
    }};
}

impl Db {
    /// Stores a customer update for incident `id` written by `author`, once per `key`: a draft
    /// waiting for approval (any earlier draft is superseded: only the newest can be approved),
    /// or, with approval off, published at once.
    pub async fn write_customer_update(
        &self,
        id: IncidentId,
        new: &NewCustomerUpdate,
        author: &UserId,
        now: DateTime<Utc>,
        key: &str,
        page: &StatusPage,
    ) -> anyhow::Result<Result<CustomerUpdate, Refused>> {
        let at = to_ms(now);
        let select = format!("SELECT {UPDATE_COLUMNS} FROM customer_updates WHERE id = $1");
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let Some(owner) = lock_incident!(tx, id.0) else {
                    return Ok(Err(Refused::Rule("That incident no longer exists; nothing was stored.".into())));
                };
                if let Some(why) = refuse_for(&owner) {
                    return Ok(Err(Refused::Rule(why)));
                }
                if !first_time_in!(tx, key, at)? {
                    return Ok(Err(Refused::AlreadyHandled));
                }
                let superseded = sqlx::query(
                    "UPDATE customer_updates SET state = 'superseded' WHERE incident_id = $1 AND state = 'draft'",
                )
                .bind(id.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let (update_id,): (i64,) = sqlx::query_as(
                    "INSERT INTO customer_updates (incident_id, uuid, state, public_title, message, components, last_update, author, created_at, request_key) \
                     VALUES ($1, $2, 'draft', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(id.0)
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&new.public_title)
                .bind(&new.message)
                .bind(serde_json::to_string(&new.components)?)
                .bind(new.last)
                .bind(author.as_str())
                .bind(at)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                let update = CustomerUpdate::try_from(
                    sqlx::query_as::<_, UpdateRow>(&select).bind(update_id).fetch_one(&mut *tx).await?,
                )?;
                let details = json!({
                    "action": "drafted", "update": update_id, "public_title": new.public_title,
                    "superseded": superseded, "last": new.last, "components": new.components,
                });
                insert_event!(tx, id.0, at, author.as_str(), EventKind::Customer.as_str(), details.to_string())?;
                if page.comms_approval {
                    sqlx::query(INSERT_JOB)
                        .bind(id.0)
                        .bind(JobKind::Customer.as_str())
                        .bind(json!({ "what": "draft", "update": update_id }).to_string())
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(Ok(update));
                }
                publish_in_tx!(tx, &update, owner, author.as_str(), page, at);
                // Read again: publishing set its state, approver and time.
                let update = CustomerUpdate::try_from(
                    sqlx::query_as::<_, UpdateRow>(&select).bind(update_id).fetch_one(&mut *tx).await?,
                )?;
                tx.commit().await?;
                Ok(Ok(update))
            }
            .await
        })
    }

    /// Approves draft `update_id` as `actor` and publishes it, once per `key`: refused unless
    /// `actor` is the approver (comms role, or the SPOC), is not the author (unless allowed),
    /// and the draft is still the newest.
    pub async fn approve_customer_update(
        &self,
        update_id: i64,
        actor: &UserId,
        now: DateTime<Utc>,
        key: &str,
        page: &StatusPage,
    ) -> anyhow::Result<Result<CustomerUpdate, Refused>> {
        let at = to_ms(now);
        let select = format!("SELECT {UPDATE_COLUMNS} FROM customer_updates WHERE id = $1");
        // Which incident, read before the transaction: it must write first (the incident's row
        // lock), since on SQLite a transaction that reads first cannot take the write lock
        // under contention.
        let Some(found) = self.customer_update(update_id).await? else {
            return Ok(Err(Refused::Rule("That customer update no longer exists.".into())));
        };
        let incident = found.incident_id.0;
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let Some(owner) = lock_incident!(tx, incident) else {
                    return Ok(Err(Refused::Rule("That incident no longer exists.".into())));
                };
                // Read again under the incident's lock: an edit or another approval may have won.
                let update = CustomerUpdate::try_from(
                    sqlx::query_as::<_, UpdateRow>(&select)
                        .bind(update_id)
                        .fetch_one(&mut *tx)
                        .await?,
                )?;
                if let Some(why) = refuse_for(&owner) {
                    return Ok(Err(Refused::Rule(why)));
                }
                let approver = crate::comms::approver(&owner.roles, &owner.spoc);
                if let Err(why) = may_approve(&update, actor, approver, page.allow_self_approval) {
                    return Ok(Err(Refused::Rule(why)));
                }
                if !first_time_in!(tx, key, at)? {
                    return Ok(Err(Refused::AlreadyHandled));
                }
                publish_in_tx!(tx, &update, owner, actor.as_str(), page, at);
                let update = CustomerUpdate::try_from(
                    sqlx::query_as::<_, UpdateRow>(&select)
                        .bind(update_id)
                        .fetch_one(&mut *tx)
                        .await?,
                )?;
                tx.commit().await?;
                Ok(Ok(update))
            }
            .await
        })
    }

    pub async fn customer_update(&self, id: i64) -> anyhow::Result<Option<CustomerUpdate>> {
        let sql = format!("SELECT {UPDATE_COLUMNS} FROM customer_updates WHERE id = $1");
        let row: Option<UpdateRow> = with_pool!(self, |pool| sqlx::query_as::<_, UpdateRow>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        row.map(CustomerUpdate::try_from).transpose()
    }

    /// An incident's customer updates, oldest first.
    pub async fn customer_updates_of(&self, incident: IncidentId) -> anyhow::Result<Vec<CustomerUpdate>> {
        let sql = format!("SELECT {UPDATE_COLUMNS} FROM customer_updates WHERE incident_id = $1 ORDER BY id");
        let rows: Vec<UpdateRow> = with_pool!(self, |pool| sqlx::query_as::<_, UpdateRow>(&sql)
            .bind(incident.0)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(CustomerUpdate::try_from).collect()
    }

    /// Records where a draft's Approve / Edit message is.
    pub async fn set_customer_draft_ts(&self, update_id: i64, ts: &str) -> anyhow::Result<()> {
        write_alone!(self, |pool| sqlx::query(
            "UPDATE customer_updates SET draft_ts = $2 WHERE id = $1"
        )
        .bind(update_id)
        .bind(ts)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Fires up to `limit` due customer-update reminders: the timeline event, the reminder job
    /// (to the comms role or the SPOC) and the next reminder a cadence later, in one transaction
    /// with the rows locked (skipped by other replicas on PostgreSQL; SQLite's write lock
    /// serializes). A clock whose incident ended, turned private or lost its cadence is dropped.
    pub async fn fire_due_customer_reminders(
        &self,
        now: DateTime<Utc>,
        page: &StatusPage,
        late_after: chrono::Duration,
        limit: i64,
    ) -> anyhow::Result<usize> {
        let at = to_ms(now);
        let lock = skip_locked(self, "OF c");
        let select = format!(
            "SELECT c.incident_id, c.due_at, c.remind_at, c.reminders, i.severity, i.status, i.is_private \
             FROM customer_clocks c JOIN incidents i ON i.id = c.incident_id \
             WHERE c.remind_at <= $1 ORDER BY c.remind_at LIMIT $2 {lock}"
        );
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                if !self.is_postgres() {
                    // Take SQLite's write lock before reading (see fire_due_reminders).
                    sqlx::query("UPDATE customer_clocks SET remind_at = remind_at WHERE remind_at <= $1")
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                let rows: Vec<(i64, i64, i64, i64, String, String, bool)> =
                    sqlx::query_as(&select).bind(at).bind(limit).fetch_all(&mut *tx).await?;
                let mut fired = 0;
                for (incident, due_at, remind_at, reminders, severity, status, is_private) in rows {
                    let severity: Severity = severity.parse().map_err(anyhow::Error::msg)?;
                    let status: Status = status.parse().map_err(anyhow::Error::msg)?;
                    let every = page.cadence(severity);
                    let Some(every) = every.filter(|_| status.is_open() && !is_private) else {
                        sqlx::query("DELETE FROM customer_clocks WHERE incident_id = $1")
                            .bind(incident)
                            .execute(&mut *tx)
                            .await?;
                        continue;
                    };
                    let late = now - from_ms(remind_at) > late_after;
                    sqlx::query(
                        "UPDATE customer_clocks SET remind_at = $2, reminders = reminders + 1 WHERE incident_id = $1",
                    )
                    .bind(incident)
                    .bind(to_ms(now + every))
                    .execute(&mut *tx)
                    .await?;
                    let details = json!({
                        "action": "reminder", "due_at": due_at, "planned_at": remind_at, "late": late,
                        "overdue": reminders > 0,
                    });
                    insert_event!(
                        tx,
                        incident,
                        at,
                        BOT_ACTOR,
                        EventKind::Customer.as_str(),
                        details.to_string()
                    )?;
                    sqlx::query(INSERT_JOB)
                        .bind(incident)
                        .bind(JobKind::Customer.as_str())
                        .bind(
                            json!({ "what": "reminder", "due_at": due_at, "overdue": reminders > 0, "late": late })
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

    /// The earliest planned customer-update reminder (an index lookup).
    pub async fn next_customer_reminder_at(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (next,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(remind_at) FROM customer_clocks")
                .fetch_one(pool)
                .await
        })?;
        Ok(next.map(from_ms))
    }

    /// When the next customer update of `incident` is due, if it runs a cadence.
    pub async fn customer_update_due(&self, incident: IncidentId) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row: Option<(i64,)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT due_at FROM customer_clocks WHERE incident_id = $1")
                .bind(incident.0)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(|(d,)| from_ms(d)))
    }

    /// The public incidents the status page shows at `now`: unresolved, or resolved since
    /// `since`, with their published updates (newest first). Private incidents never.
    pub async fn public_incidents_since(&self, since: DateTime<Utc>) -> anyhow::Result<Vec<PublicIncident>> {
        self.public_incidents_where(
            "(p.resolved_at IS NULL OR p.resolved_at >= $1)",
            PublicKey::Since(to_ms(since)),
        )
        .await
    }

    /// One public incident by its public id, with its whole published history.
    pub async fn public_incident(&self, public_id: &str) -> anyhow::Result<Option<PublicIncident>> {
        Ok(self
            .public_incidents_where("p.public_id = $1", PublicKey::Id(public_id.to_string()))
            .await?
            .pop())
    }

    async fn public_incidents_where(&self, filter: &str, key: PublicKey) -> anyhow::Result<Vec<PublicIncident>> {
        let sql = format!(
            "SELECT p.incident_id, p.public_id, p.title, p.first_published_at, p.resolved_at \
             FROM public_incidents p JOIN incidents i ON i.id = p.incident_id \
             WHERE i.is_private = FALSE AND {filter} ORDER BY p.first_published_at DESC"
        );
        let heads: Vec<(i64, String, String, i64, Option<i64>)> = with_pool!(self, |pool| {
            let q = sqlx::query_as(&sql);
            match &key {
                PublicKey::Since(ms) => q.bind(*ms).fetch_all(pool).await,
                PublicKey::Id(id) => q.bind(id.clone()).fetch_all(pool).await,
            }
        })?;
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = heads.iter().map(|h| h.0).collect();
        let mut updates = self.published_updates_of(&ids).await?;
        Ok(heads
            .into_iter()
            .map(|(incident, public_id, title, started, resolved)| PublicIncident {
                public_id,
                title,
                started_at: from_ms(started),
                resolved_at: resolved.map(from_ms),
                updates: updates.remove(&incident).unwrap_or_default(),
            })
            .collect())
    }

    /// Published updates of `incidents`, newest first per incident.
    async fn published_updates_of(
        &self,
        incidents: &[i64],
    ) -> anyhow::Result<std::collections::HashMap<i64, Vec<PublicUpdate>>> {
        let mut out: std::collections::HashMap<i64, Vec<PublicUpdate>> = std::collections::HashMap::new();
        for chunk in incidents.chunks(500) {
            let sql = format!(
                "SELECT incident_id, uuid, published_at, message, components, last_update FROM customer_updates \
                 WHERE state = 'published' AND incident_id IN ({}) ORDER BY published_at DESC, id DESC",
                super::parameters(1, chunk.len())
            );
            let rows: Vec<(i64, String, i64, String, String, bool)> = with_pool!(self, |pool| {
                let mut q = sqlx::query_as(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(pool).await
            })?;
            for (incident, uuid, at, message, components, last) in rows {
                out.entry(incident).or_default().push(PublicUpdate {
                    uuid,
                    published_at: from_ms(at),
                    message,
                    components: serde_json::from_str::<Vec<ComponentImpact>>(&components)?,
                    last,
                });
            }
        }
        Ok(out)
    }

    /// The newest `limit` published updates of public incidents, newest first, with their
    /// incident's public id and title (the Atom feed).
    pub async fn public_feed(&self, limit: i64) -> anyhow::Result<Vec<(String, String, PublicUpdate)>> {
        let rows: Vec<(String, String, String, i64, String, String, bool)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT p.public_id, p.title, u.uuid, u.published_at, u.message, u.components, u.last_update \
                 FROM customer_updates u JOIN public_incidents p ON p.incident_id = u.incident_id \
                 JOIN incidents i ON i.id = u.incident_id \
                 WHERE u.published_at IS NOT NULL AND u.state = 'published' AND i.is_private = FALSE \
                 ORDER BY u.published_at DESC, u.id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter()
            .map(|(public_id, title, uuid, at, message, components, last)| {
                Ok((
                    public_id,
                    title,
                    PublicUpdate {
                        uuid,
                        published_at: from_ms(at),
                        message,
                        components: serde_json::from_str(&components)?,
                        last,
                    },
                ))
            })
            .collect()
    }

    /// The rows of the customer-comms figures over `[from, to)`: incidents declared then
    /// (non-private, not canceled) and incidents whose public life overlaps it, each with its
    /// published updates oldest first.
    pub async fn comms_rows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> anyhow::Result<(Vec<CommsIncident>, Vec<CommsIncident>)> {
        let (lo, hi) = (to_ms(from), to_ms(to));
        let rows: Vec<CommsRow> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT i.id, i.declared_at, i.severity, COALESCE(i.resolved_at, i.closed_at, i.canceled_at), \
                        p.first_published_at, p.resolved_at, (i.declared_at >= $1 AND i.declared_at < $2) \
                 FROM incidents i LEFT JOIN public_incidents p ON p.incident_id = i.id \
                 WHERE i.is_private = FALSE AND i.status <> 'canceled' AND ( \
                   (i.declared_at >= $1 AND i.declared_at < $2) \
                   OR (p.first_published_at < $2 AND (p.resolved_at IS NULL OR p.resolved_at >= $1)))",
            )
            .bind(lo)
            .bind(hi)
            .fetch_all(pool)
            .await
        })?;
        let public_ids: Vec<i64> = rows.iter().filter(|r| r.4.is_some()).map(|r| r.0).collect();
        let mut published = self.published_updates_of(&public_ids).await?;
        let (mut declared, mut public) = (Vec::new(), Vec::new());
        for (id, declared_at, severity, ended, first_published, _, in_period) in rows {
            let mut list: Vec<Published> = published
                .remove(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|u| Published {
                    at: u.published_at,
                    components: u.components,
                    last: u.last,
                })
                .collect();
            list.reverse();
            let incident = CommsIncident {
                declared_at: from_ms(declared_at),
                severity: severity.parse().map_err(anyhow::Error::msg)?,
                ended_at: ended.map(from_ms),
                published: list,
            };
            if first_published.is_some() {
                public.push(incident.clone());
            }
            if in_period {
                declared.push(incident);
            }
        }
        Ok((declared, public))
    }

    /// How many incidents are public (for tests).
    pub async fn public_incident_count_for_tests(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM public_incidents")
                .fetch_one(pool)
                .await
        })?;
        Ok(n)
    }

    /// Moves an incident's customer update (and its reminder) to `at` (for tests).
    pub async fn backdate_customer_clock_for_tests(
        &self,
        incident: IncidentId,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE customer_clocks SET due_at = $2, remind_at = $2 WHERE incident_id = $1")
                .bind(incident.0)
                .bind(to_ms(at))
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }
}

/// `(id, declared_at, severity, ended_at, first_published_at, public resolved_at, declared in the period)`.
type CommsRow = (i64, i64, String, Option<i64>, Option<i64>, Option<i64>, bool);

enum PublicKey {
    Since(i64),
    Id(String),
}
