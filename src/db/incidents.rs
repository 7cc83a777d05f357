//! Incidents and their timeline.

use super::group::{commit_or_each_alone, in_group, GroupQueue};
use super::{from_ms, insert_event, to_ms, with_pool, Db, OneTrip, INSERT_JOB, ONE_TRIP_BEGIN, ONE_TRIP_COMMIT};
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

/// A declaration ready to be stored, as [`Db::declare`] prepared it (owned: on SQLite it waits
/// in a queue for its group commit).
pub(super) struct Declaring {
    new: NewIncident,
    key: String,
    at: i64,
    services: String,
    details: String,
    update_due_at: Option<i64>,
    reminder_at: Option<i64>,
    /// When customers are owed their first update, if they are.
    customer_due: Option<i64>,
}

/// What a declaration's commit answers: the stored row, or the database's refusal.
type Stored = Result<IncidentRow, sqlx::Error>;

/// The declarations waiting for a group commit ([`super::group`]).
pub(super) type DeclareQueue = GroupQueue<Declaring, Stored>;

/// The columns a declaration writes, in [`declaring_query`]'s order, then its number.
const DECLARED_COLUMNS: &str = "INSERT INTO incidents (declare_key, title, description, severity, status, services, \
     is_private, declared_by, spoc, origin_channel, declared_at, update_due_at, reminder_at, number) ";

/// The values each declaration of a group binds, after the group's two shared ones.
const DECLARING_VALUES: usize = 15;

/// SQLite: the writes of `n` declarations and their stored rows in one statement text. `$1` and
/// `$2` are the event's and the job's kinds; declaration `k`'s values follow from
/// `$(3 + 15k)`, as [`declaring_query`] binds them, then its event details and customer due
/// time. Each number is the counter's next (one writer at a time, nothing to queue on); the rows
/// that need the incident's id find it by its declaration key. The rows come back in the
/// group's order (ids are given in insertion order).
fn sqlite_declare_group_sql(n: usize) -> String {
    let mut sql = String::new();
    let mut keys = Vec::with_capacity(n);
    for k in 0..n {
        let p = |i: usize| format!("${}", 2 + DECLARING_VALUES * k + i);
        let this = format!("(SELECT id FROM incidents WHERE declare_key = {})", p(1));
        let row: Vec<String> = (1..=13).map(p).collect();
        let (at, actor, details, customer_due) = (p(11), p(8), p(14), p(15));
        sql.push_str(&format!(
            "UPDATE counters SET value = value + 1 WHERE name = 'incident_number'; \
             {DECLARED_COLUMNS}VALUES ({row}, (SELECT value FROM counters WHERE name = 'incident_number')); \
             {events}VALUES ({this}, {at}, {actor}, $1, {details}); \
             {jobs}VALUES ({this}, $2, '{{}}', {at}, {at}); \
             INSERT INTO customer_clocks (incident_id, due_at, remind_at) \
             SELECT {this}, {customer_due}, {customer_due} WHERE {customer_due} IS NOT NULL; \
             INSERT INTO change_jobs (change_id, kind, payload, due_at, created_at) \
             VALUES (NULL, 'correlate', json_object('incident', {this}), {at}, {at}); ",
            row = row.join(", "),
            events = super::insert_events_into!(),
            jobs = super::insert_jobs_into!(),
        ));
        keys.push(p(1));
    }
    sql.push_str(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE declare_key IN ({}) ORDER BY id",
        keys.join(", ")
    ));
    sql
}

/// One transaction for a group of declarations on SQLite, under the caller's write turn, in one
/// round trip ([`OneTrip`]): `BEGIN`, every write, the stored rows, `COMMIT`.
async fn sqlite_declare_group(pool: &sqlx::SqlitePool, group: &[&Declaring]) -> Result<Vec<IncidentRow>, sqlx::Error> {
    let sql = format!(
        "{ONE_TRIP_BEGIN}{}{ONE_TRIP_COMMIT}",
        sqlite_declare_group_sql(group.len())
    );
    let mut q = sqlx::query_as::<_, IncidentRow>(&sql)
        .bind(EventKind::Declared.as_str())
        .bind(JobKind::CreateChannel.as_str());
    for d in group {
        q = declaring_query(q, d).bind(d.details.as_str()).bind(d.customer_due);
    }
    let mut trip = OneTrip::acquire(pool).await?;
    let rows = q.fetch_all(trip.conn()).await;
    let rows = trip.finish(rows)?;
    if rows.len() != group.len() {
        // Cannot happen: every insert succeeded, and each row is found by its unique key.
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(rows)
}

/// Binds the incident row's values (thirteen, from the declaration key to the first reminder), in
/// the order of [`DECLARED_COLUMNS`].
fn declaring_query<'q, DB: sqlx::Database, O>(
    q: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>,
    d: &'q Declaring,
) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    q.bind(d.key.as_str())
        .bind(d.new.title.as_str())
        .bind(d.new.description.as_str())
        .bind(d.new.severity.as_str())
        .bind(Status::Investigating.as_str())
        .bind(d.services.as_str())
        .bind(d.new.is_private)
        .bind(d.new.declared_by.as_str())
        .bind(d.new.spoc.as_str())
        .bind(d.new.origin_channel.as_deref())
        .bind(d.at)
        .bind(d.update_due_at)
        .bind(d.reminder_at)
}

/// A declaration on PostgreSQL: the row goes in first with a provisional negative number no
/// committed row has; the real number is taken from the counter last, just before the commit,
/// so declarations handled side by side (one replica's or several) queue on the counter row
/// for one statement rather than the whole transaction. A duplicate key fails the insert
/// (unique), which rolls everything back.
async fn postgres_declare(pool: &sqlx::PgPool, d: &Declaring) -> Result<IncidentRow, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let provisional = -1 - (rand::random::<i64>() & (i64::MAX >> 1));
    let (id,): (i64,) = declaring_query(
        sqlx::query_as::<_, (i64,)>(&format!(
            "{DECLARED_COLUMNS}VALUES ({}) RETURNING id",
            super::parameters(1, 14)
        )),
        d,
    )
    .bind(provisional)
    .fetch_one(&mut *tx)
    .await?;
    insert_event!(
        tx,
        id,
        d.at,
        d.new.declared_by.as_str(),
        EventKind::Declared.as_str(),
        &d.details
    )?;
    sqlx::query(INSERT_JOB)
        .bind(id)
        .bind(JobKind::CreateChannel.as_str())
        .bind("{}")
        .bind(d.at)
        .execute(&mut *tx)
        .await?;
    if let Some(due) = d.customer_due {
        sqlx::query("INSERT INTO customer_clocks (incident_id, due_at, remind_at) VALUES ($1, $2, $2)")
            .bind(id)
            .bind(due)
            .execute(&mut *tx)
            .await?;
    }
    // Issue 12: which changes may have caused it, posted once its card is up.
    sqlx::query(super::calendar::ENQUEUE_CORRELATE)
        .bind(super::calendar::correlate_payload(id))
        .bind(d.at)
        .execute(&mut *tx)
        .await?;
    // The number, given and read back with the row in one statement: the counter row stays
    // locked until the commit, and every other declaration waits on it (no round trip more).
    let row = sqlx::query_as(&format!(
        "{} RETURNING {INCIDENT_COLUMNS}",
        super::next_number_sql!("incident_number", "incidents")
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
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
        // Issue 14: customers are owed their first update a customer cadence after the
        // declaration (never for a private incident).
        let customer_due =
            (sla.customer_every > chrono::Duration::zero() && !new.is_private).then(|| to_ms(now + sla.customer_every));
        let declaring = Declaring {
            new: new.clone(),
            key: key.to_owned(),
            at,
            services,
            details,
            update_due_at,
            reminder_at,
            customer_due,
        };
        let stored = match self {
            Db::Sqlite(pool) => {
                let turns = super::sqlite_write_turns(pool.connect_options().get_filename());
                let same_key = |a: &Declaring, b: &Declaring| a.key == b.key;
                // A group the database refuses (a declaration stored before, whose key is
                // taken) is committed one by one: only that one is a duplicate.
                let group = |group| {
                    commit_or_each_alone(group, |all| {
                        let pool = pool.clone();
                        Box::pin(async move { sqlite_declare_group(&pool, all).await })
                    })
                };
                in_group(
                    self,
                    &turns.declarations,
                    std::sync::Arc::new(declaring),
                    same_key,
                    group,
                )
                .await
            }
            Db::Postgres(pool) => postgres_declare(pool, &declaring).await,
        };
        match stored {
            Ok(row) => Ok(DeclareOutcome::Created(row.try_into()?)),
            // A concurrent delivery of the same declaration won the race (unique violation on
            // declare_key): report the stored incident.
            Err(e @ sqlx::Error::Database(_)) => match self.find(Lookup::DeclareKey(key)).await? {
                Some(existing) => Ok(DeclareOutcome::Duplicate(existing)),
                None => Err(e).context("cannot store the incident"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn declaring(k: usize, customer_due: Option<i64>) -> Declaring {
        let user = UserId::parse("U0ALICE").unwrap();
        Declaring {
            new: NewIncident {
                title: Title::parse(&format!("Group {k}")).unwrap(),
                severity: Severity::Sev2,
                services: vec![format!("svc-{k}")],
                description: format!("d{k}"),
                spoc: user.clone(),
                declared_by: user,
                is_private: false,
                origin_channel: None,
            },
            key: format!("view:group-{k}"),
            at: 1_000 + k as i64,
            services: format!("[\"svc-{k}\"]"),
            details: format!("{{\"title\":\"Group {k}\"}}"),
            update_due_at: Some(5_000),
            reminder_at: Some(5_000),
            customer_due,
        }
    }

    /// The group's one statement text binds each declaration's values to its own rows (the
    /// store tests cannot tell: a group that failed would be committed one by one).
    #[tokio::test]
    async fn a_group_of_declarations_writes_each_one_whole_in_one_statement_text() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("group.db").display()))
            .await
            .unwrap();
        let Db::Sqlite(pool) = &db else { unreachable!() };
        let group = [declaring(0, Some(9_000)), declaring(1, None), declaring(2, Some(9_002))];
        let rows = sqlite_declare_group(pool, &group.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        let incidents: Vec<Incident> = rows.into_iter().map(|r| r.try_into().unwrap()).collect();
        for (k, incident) in incidents.iter().enumerate() {
            assert_eq!(incident.number, IncidentNumber(k as i64 + 1));
            assert_eq!(incident.title.as_str(), format!("Group {k}"));
            assert_eq!(incident.services, vec![format!("svc-{k}")]);
            assert_eq!(incident.declared_at, from_ms(1_000 + k as i64));
            let events = db.timeline(incident.id).await.unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].details["title"], format!("Group {k}"));
        }
        let per_incident =
            |sql: &'static str| async move { sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(pool).await.unwrap() };
        let ids: Vec<i64> = incidents.iter().map(|i| i.id.0).collect();
        let clocks = per_incident("SELECT incident_id, due_at FROM customer_clocks ORDER BY incident_id").await;
        assert_eq!(clocks, vec![(ids[0], 9_000), (ids[2], 9_002)]);
        let jobs =
            per_incident("SELECT incident_id, due_at FROM outbox WHERE kind = 'create_channel' ORDER BY id").await;
        assert_eq!(jobs, vec![(ids[0], 1_000), (ids[1], 1_001), (ids[2], 1_002)]);
        let correlations = per_incident(
            "SELECT json_extract(payload, '$.incident'), due_at FROM change_jobs WHERE kind = 'correlate' ORDER BY id",
        )
        .await;
        assert_eq!(correlations, vec![(ids[0], 1_000), (ids[1], 1_001), (ids[2], 1_002)]);
        let (counter,): (i64,) = sqlx::query_as("SELECT value FROM counters WHERE name = 'incident_number'")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(counter, 3);
    }
}
