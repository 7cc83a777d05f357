//! The change calendar's SQL (issue 12): changes and their timeline, the per-service index the
//! correlation reads, links to incidents, ad-hoc freezes, and the scheduled Slack work
//! (`change_jobs`). Every state move is stored with its timeline event and its jobs in one
//! transaction.

use super::{
    begin_write, first_time_in, from_ms, insert_event, skip_locked, to_ms, with_pool, write_alone, Db, INSERT_JOB,
};
use crate::calendar::{
    ChangeKind, ChangeNumber, ChangeState, Conflict, Freeze, Move, NewChange, PlannedChange, Risk,
    REMIND_BEFORE_MINUTES,
};
use crate::incident::model::{IncidentId, TimelineEvent, UserId};
use crate::outbox::JobKind;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Duration;

/// `active_until` of a change in progress: it is a suspect until it is finished.
const FOREVER_MS: i64 = 253_402_300_799_000; // 9999-12-31
/// How far before its `active_until` a finished change's indexed `active_from` may be: a change
/// lasts at most 30 days (one marked done later counts as active for its last 31 days).
const MAX_SPAN_MS: i64 = 31 * 24 * 3_600_000;
/// The pseudo service line under which vendor maintenance is also indexed.
pub const VENDOR_LINE: &str = "~vendor";

/// Enqueued with every declaration (in its transaction, see `db::incidents`): look for the
/// changes that may have caused it once its card is posted. `(payload, now ms)`, the payload
/// from [`correlate_payload`].
pub(crate) const ENQUEUE_CORRELATE: &str = "INSERT INTO change_jobs (change_id, kind, payload, due_at, created_at) \
     VALUES (NULL, 'correlate', $1, $2, $2)";

/// The payload of a `correlate` job for incident `id`.
pub(crate) fn correlate_payload(id: i64) -> String {
    json!({ "incident": id }).to_string()
}

const CHANGE_COLUMNS: &str = "id, number, kind, title, services, starts_at, ends_at, owner, risk, customer_facing, \
    vendor, link, override_reason, state, created_by, created_at, started_at, finished_at, sequence";

#[derive(sqlx::FromRow, serde::Deserialize)]
struct ChangeRow {
    id: i64,
    number: i64,
    kind: String,
    title: String,
    services: String,
    starts_at: i64,
    ends_at: i64,
    owner: String,
    risk: String,
    customer_facing: bool,
    vendor: Option<String>,
    link: Option<String>,
    override_reason: Option<String>,
    state: String,
    created_by: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    sequence: i64,
}

impl TryFrom<ChangeRow> for PlannedChange {
    type Error = anyhow::Error;
    fn try_from(r: ChangeRow) -> anyhow::Result<PlannedChange> {
        Ok(PlannedChange {
            id: r.id,
            number: ChangeNumber(r.number),
            kind: ChangeKind::parse(&r.kind).map_err(anyhow::Error::msg)?,
            title: r.title,
            services: serde_json::from_str(&r.services).context("changes.services is not a JSON list")?,
            starts_at: from_ms(r.starts_at),
            ends_at: from_ms(r.ends_at),
            owner: UserId::parse(&r.owner).map_err(anyhow::Error::msg)?,
            risk: Risk::parse(&r.risk).map_err(anyhow::Error::msg)?,
            customer_facing: r.customer_facing,
            vendor: r.vendor,
            link: r.link,
            override_reason: r.override_reason,
            state: ChangeState::parse(&r.state).map_err(anyhow::Error::msg)?,
            created_by: r.created_by,
            created_at: from_ms(r.created_at),
            started_at: r.started_at.map(from_ms),
            finished_at: r.finished_at.map(from_ms),
            sequence: r.sequence,
        })
    }
}

fn rows_to_changes(rows: Vec<ChangeRow>) -> anyhow::Result<Vec<PlannedChange>> {
    rows.into_iter().map(PlannedChange::try_from).collect()
}

/// `inner` (a query of [`CHANGE_COLUMNS`]) as one SQLite row holding a JSON array of its rows
/// (see [`Db::change_list`]), each row an array in [`CHANGE_COLUMNS`]' order (read into
/// [`ChangeRow`], whose fields are in that order): no keys to write and match, a third less
/// JSON than objects. The order of the rows is not kept.
fn as_json_array(inner: &str) -> String {
    let fields: Vec<&str> = CHANGE_COLUMNS
        .split(", ")
        .map(|c| match c {
            // SQLite stores booleans as 0/1; the row type wants JSON true/false.
            "customer_facing" => "json(CASE WHEN customer_facing THEN 'true' ELSE 'false' END)",
            c => c,
        })
        .collect();
    format!(
        "SELECT json_group_array(json_array({})) FROM ({inner}) j",
        fields.join(", ")
    )
}

fn changes_from_json(json: &str) -> anyhow::Result<Vec<PlannedChange>> {
    let rows: Vec<ChangeRow> = serde_json::from_str(json).context("a list of changes read as JSON")?;
    let mut changes = rows_to_changes(rows)?;
    changes.sort_by_key(|c| (c.starts_at, c.number));
    Ok(changes)
}

/// A change to store, with what its form found.
#[derive(Debug, Clone)]
pub struct ChangeToStore {
    pub change: NewChange,
    /// Idempotency key (the form's view id, or `import:<file hash>:<line>`).
    pub key: String,
    /// Names of the freezes it runs into (stored only with an override reason).
    pub freezes: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

/// A state move that was stored.
#[derive(Debug, Clone)]
pub struct Moved {
    pub change: PlannedChange,
    /// Incidents the change is linked to (told of a rollback): (id, number, private).
    pub linked: Vec<Linked>,
}

/// An incident a change is linked to: (id, number, private).
pub type Linked = (IncidentId, i64, bool);

/// Why a link or move was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarRefused {
    Rule(String),
    AlreadyHandled,
}

/// A claimed change job.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeJob {
    pub id: i64,
    pub change_id: Option<i64>,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub due_at: DateTime<Utc>,
    /// When it was enqueued: no attempt of it can have posted before.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    change_id: Option<i64>,
    kind: String,
    payload: String,
    attempts: i64,
    due_at: i64,
    created_at: i64,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    at: i64,
    actor: String,
    kind: String,
    details: String,
}

#[derive(sqlx::FromRow)]
struct FreezeRow {
    name: String,
    starts_at: i64,
    ends_at: i64,
    services: Option<String>,
}

/// Figures of the change calendar over a period, for reports.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChangeFigures {
    /// Changes that started (or were planned to start) in the period, by kind.
    pub by_kind: Vec<(String, i64)>,
    /// Per service line: (line, changes, finished = done or rolled back, failed = linked to an
    /// incident or rolled back among the finished).
    pub by_service: Vec<(String, i64, i64, i64)>,
    pub finished: i64,
    pub failed: i64,
    /// Changes planned inside a freeze with an override reason: (number, title, reason).
    pub overrides: Vec<(i64, String, String)>,
    /// Incidents declared in the period with at least one linked change, and without.
    pub incidents_with_change: i64,
    pub incidents_without_change: i64,
}

impl ChangeFigures {
    /// DORA's change failure rate: failed ÷ finished, when anything finished.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.failed as f64 / self.finished as f64)
    }
}

/// Appends a change timeline event inside `$tx`: (change id, at ms, actor, kind, details).
macro_rules! change_event {
    ($tx:ident, $change:expr, $at:expr, $actor:expr, $kind:expr, $details:expr) => {
        sqlx::query("INSERT INTO change_events (change_id, at, actor, kind, details) VALUES ($1, $2, $3, $4, $5)")
            .bind($change)
            .bind($at)
            .bind($actor)
            .bind($kind)
            .bind($details)
            .execute(&mut *$tx)
            .await
    };
}

/// Enqueues a change job inside `$tx`: (change id, kind, payload, due ms, now ms).
macro_rules! change_job {
    ($tx:ident, $change:expr, $kind:expr, $payload:expr, $due:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO change_jobs (change_id, kind, payload, due_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($change)
        .bind($kind)
        .bind($payload)
        .bind($due)
        .bind($now)
        .execute(&mut *$tx)
        .await
    };
}

/// (Re)writes a change's rows in the per-service index inside `$tx`.
macro_rules! index_change {
    ($tx:ident, $id:expr, $services:expr, $vendor:expr, $from:expr, $until:expr) => {{
        let mut result = sqlx::query("DELETE FROM change_services WHERE change_id = $1")
            .bind($id)
            .execute(&mut *$tx)
            .await
            .map(|_| ());
        if let Some(until) = $until {
            let mut lines: Vec<&str> = $services.iter().map(|s: &String| s.as_str()).collect();
            if $vendor {
                lines.push(VENDOR_LINE);
            }
            for line in lines {
                if result.is_err() {
                    break;
                }
                result = sqlx::query(
                    "INSERT INTO change_services (service, change_id, active_from, active_until) VALUES ($1, $2, $3, $4)",
                )
                .bind(line)
                .bind($id)
                .bind($from)
                .bind(until)
                .execute(&mut *$tx)
                .await
                .map(|_| ());
            }
        }
        result
    }};
}

fn until_ms(c: &PlannedChange) -> Option<i64> {
    c.active_until().map(|t| {
        if t == DateTime::<Utc>::MAX_UTC {
            FOREVER_MS
        } else {
            to_ms(t)
        }
    })
}

/// The `active_from` a change is indexed with (see [`MAX_SPAN_MS`]).
fn from_ms_indexed(c: &PlannedChange) -> i64 {
    let from = to_ms(c.active_from());
    match until_ms(c) {
        Some(until) if until != FOREVER_MS => from.max(until - MAX_SPAN_MS),
        _ => from,
    }
}

impl Db {
    /// Stores new changes, all or none, each numbered `CHG-<n>` from the shared counter (taken
    /// last, just before the commit, like incident numbers). A key seen before stores nothing
    /// for that change and returns the stored one. `announce`: post each to the changes channel.
    pub async fn create_changes(
        &self,
        items: &[ChangeToStore],
        actor: &str,
        now: DateTime<Utc>,
        announce: bool,
    ) -> anyhow::Result<Vec<PlannedChange>> {
        let at = to_ms(now);
        let ids: Result<Vec<i64>, sqlx::Error> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let mut ids = Vec::new();
                let mut fresh = Vec::new();
                for item in items {
                    let c = &item.change;
                    let provisional = -1 - (rand::random::<i64>() & (i64::MAX >> 1));
                    let inserted: Option<(i64,)> = sqlx::query_as(
                        "INSERT INTO changes (number, create_key, kind, title, services, starts_at, ends_at, owner, risk, \
                         customer_facing, vendor, link, override_reason, state, created_by, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'planned', $14, $15) \
                         ON CONFLICT (create_key) DO NOTHING RETURNING id",
                    )
                    .bind(provisional)
                    .bind(&item.key)
                    .bind(c.kind.as_str())
                    .bind(&c.title)
                    .bind(serde_json::to_string(&c.services).unwrap_or_else(|_| "[]".into()))
                    .bind(to_ms(c.starts_at))
                    .bind(to_ms(c.ends_at))
                    .bind(c.owner.as_str())
                    .bind(c.risk.as_str())
                    .bind(c.customer_facing)
                    .bind(c.vendor.as_deref())
                    .bind(c.link.as_deref())
                    .bind(c.override_reason.as_deref())
                    .bind(actor)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((id,)) = inserted else {
                        let (id,): (i64,) = sqlx::query_as("SELECT id FROM changes WHERE create_key = $1")
                            .bind(&item.key)
                            .fetch_one(&mut *tx)
                            .await?;
                        ids.push(id);
                        continue;
                    };
                    ids.push(id);
                    fresh.push(id);
                    index_change!(
                        tx,
                        id,
                        c.services,
                        c.kind == ChangeKind::VendorMaintenance,
                        to_ms(c.starts_at),
                        Some(to_ms(c.ends_at))
                    )?;
                    let details = json!({
                        "kind": c.kind.as_str(), "title": c.title, "services": c.services,
                        "starts_at": c.starts_at, "ends_at": c.ends_at, "owner": c.owner,
                        "risk": c.risk.as_str(), "freezes": item.freezes,
                        "override_reason": c.override_reason, "conflicts": item.conflicts,
                    });
                    change_event!(tx, id, at, actor, "planned", details.to_string())?;
                    if announce {
                        let payload = json!({ "event": "planned", "conflicts": item.conflicts }).to_string();
                        change_job!(tx, Some(id), "announce", payload, at, at)?;
                    }
                    let remind = to_ms(c.starts_at) - REMIND_BEFORE_MINUTES * 60_000;
                    if remind > at {
                        let payload = json!({ "starts_at": to_ms(c.starts_at) }).to_string();
                        change_job!(tx, Some(id), "remind_start", payload, remind, at)?;
                    }
                }
                for id in &fresh {
                    super::assign_next_number!(self, tx, "change_number", "changes", id);
                }
                tx.commit().await?;
                Ok(ids)
            }
            .await
        });
        let ids = ids.context("cannot store the changes")?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.change(id).await?.context("a stored change vanished")?);
        }
        Ok(out)
    }

    pub async fn change(&self, id: i64) -> anyhow::Result<Option<PlannedChange>> {
        let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE id = $1");
        let row: Option<ChangeRow> = with_pool!(self, |pool| sqlx::query_as::<_, ChangeRow>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        row.map(PlannedChange::try_from).transpose()
    }

    pub async fn change_by_number(&self, number: ChangeNumber) -> anyhow::Result<Option<PlannedChange>> {
        let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE number = $1");
        let row: Option<ChangeRow> = with_pool!(self, |pool| sqlx::query_as::<_, ChangeRow>(&sql)
            .bind(number.0)
            .fetch_optional(pool)
            .await)?;
        row.map(PlannedChange::try_from).transpose()
    }

    /// Changes whose window overlaps `[from, to)` (any state), in time order.
    ///
    /// On SQLite a long window (the calendar feed's 210 days) is read as two halves by start,
    /// side by side on two connections: building the rows' JSON is most of the read, and each
    /// connection builds on its own thread (measured: 10,240 changes, 61 → 40 ms).
    pub async fn changes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<Vec<PlannedChange>> {
        let inner =
            format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE starts_at >= $3 AND starts_at < $2 AND ends_at > $1");
        // A change lasts at most 30 days: the start's lower bound keeps this a range scan.
        let (lower, upper) = (to_ms(from) - MAX_SPAN_MS, to_ms(to));
        if self.is_postgres() || upper - lower < 2 * MAX_SPAN_MS {
            return self.change_list(&inner, &[to_ms(from), upper, lower], &[]).await;
        }
        let middle = lower + (upper - lower) / 2;
        let (first, second) = ([to_ms(from), middle, lower], [to_ms(from), upper, middle]);
        let (mut early, late) = tokio::try_join!(
            self.change_list(&inner, &first, &[]),
            self.change_list(&inner, &second, &[]),
        )?;
        // Every change of the first half starts before every change of the second.
        early.extend(late);
        Ok(early)
    }

    /// The changes the correlation considers for `services` at `reference`: indexed by service
    /// line (and vendor maintenance), begun by then, active within `lookback` before it. The
    /// pure [`crate::calendar::suspects`] makes the final choice.
    pub async fn suspect_candidates(
        &self,
        services: &[String],
        reference: DateTime<Utc>,
        lookback: chrono::Duration,
    ) -> anyhow::Result<Vec<PlannedChange>> {
        let mut lines: Vec<&str> = services.iter().map(String::as_str).collect();
        lines.push(VENDOR_LINE);
        let columns: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
        let lines_in = super::parameters(5, lines.len());
        // Finished (or planned) changes by when they began, bounded below by the longest span;
        // changes in progress by their open end.
        let inner = format!(
            "SELECT {} FROM changes c WHERE c.id IN (\
               SELECT s.change_id FROM change_services s WHERE s.service IN ({lines_in}) \
                 AND s.active_from >= $3 AND s.active_from <= $2 AND s.active_until >= $1 \
               UNION \
               SELECT s.change_id FROM change_services s WHERE s.service IN ({lines_in}) \
                 AND s.active_until = $4 AND s.active_from <= $2)",
            columns.join(", "),
        );
        let since = to_ms(reference - lookback);
        let binds = [since, to_ms(reference), since - MAX_SPAN_MS, FOREVER_MS];
        self.change_list(&inner, &binds, &lines).await
    }

    /// The changes with an event after event `after` (by id), in time order: what changed since
    /// a feed was rendered from the events up to `after`.
    pub async fn changes_touched_since(&self, after: i64) -> anyhow::Result<Vec<PlannedChange>> {
        let inner = format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE id IN (SELECT change_id FROM change_events WHERE id > $1)"
        );
        self.change_list(&inner, &[after], &[]).await
    }

    /// The newest change event's id: every write to a change records one, so the calendar feed
    /// is unchanged while this is (one index look-up).
    pub async fn calendar_version(&self) -> anyhow::Result<i64> {
        let (v,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT MAX(id) FROM change_events")
                .fetch_one(pool)
                .await
        })?;
        Ok(v.unwrap_or(0))
    }

    /// The changes `inner` (a query of [`CHANGE_COLUMNS`]) selects, bound to `ints` then `texts`,
    /// by start. On SQLite long lists (the calendar feed's 10,000 changes, a busy service
    /// line's candidates) are read as one row of JSON: its driver hands rows over one at a time
    /// between threads (tens of microseconds a row), so one row and a fast parse win (measured:
    /// 10,240 changes 400 → 68 ms). PostgreSQL's driver reads rows faster than it builds JSON.
    async fn change_list(&self, inner: &str, ints: &[i64], texts: &[&str]) -> anyhow::Result<Vec<PlannedChange>> {
        if self.is_postgres() {
            let rows: Vec<ChangeRow> = with_pool!(self, |pool| {
                let mut q = sqlx::query_as::<_, ChangeRow>(inner);
                for v in ints {
                    q = q.bind(*v);
                }
                for v in texts {
                    q = q.bind(*v);
                }
                q.fetch_all(pool).await
            })?;
            let mut changes = rows_to_changes(rows)?;
            changes.sort_by_key(|c| (c.starts_at, c.number));
            return Ok(changes);
        }
        let sql = as_json_array(inner);
        let (json,): (String,) = with_pool!(self, |pool| {
            let mut q = sqlx::query_as(&sql);
            for v in ints {
                q = q.bind(*v);
            }
            for v in texts {
                q = q.bind(*v);
            }
            q.fetch_one(pool).await
        })?;
        changes_from_json(&json)
    }

    /// Applies a state move by `actor` (once per `key`), with its timeline event, its
    /// announcement (when `announce`), the owner's "is it done?" question at the planned end
    /// (on start), and, on a rollback, a note on each linked incident's timeline and channel.
    #[allow(clippy::too_many_arguments)] // each is one fact of the move; a struct would only rename them
    pub async fn move_change(
        &self,
        number: ChangeNumber,
        m: Move,
        note: Option<&str>,
        actor: &str,
        key: &str,
        now: DateTime<Utc>,
        announce: bool,
    ) -> anyhow::Result<Result<Moved, CalendarRefused>> {
        let at = to_ms(now);
        let sql = format!("UPDATE changes SET sequence = sequence + 1 WHERE number = $1 RETURNING {CHANGE_COLUMNS}");
        let result: Result<Result<(i64, Vec<Linked>), CalendarRefused>, sqlx::Error> = with_pool!(self, |pool| {
            async {
                    let (_writer, mut tx) = begin_write!(self, pool);
                    // A write first takes the row's lock (and SQLite's write lock).
                    let row: Option<ChangeRow> = sqlx::query_as::<_, ChangeRow>(&sql)
                        .bind(number.0)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(row) = row else {
                        return Ok(Err(CalendarRefused::Rule(format!(
                            "There is no {number}. `/change list week` shows the coming changes."
                        ))));
                    };
                    let mut change = match PlannedChange::try_from(row) {
                        Ok(c) => c,
                        Err(e) => return Err(sqlx::Error::Decode(e.into())),
                    };
                    let next = match change.state.step(m, number) {
                        Ok(s) => s,
                        Err(why) => return Ok(Err(CalendarRefused::Rule(why))),
                    };
                    if !first_time_in!(tx, key, at)? {
                        return Ok(Err(CalendarRefused::AlreadyHandled));
                    }
                    change.state = next;
                    match m {
                        Move::Start => change.started_at = Some(now),
                        _ => change.finished_at = Some(now),
                    }
                    sqlx::query("UPDATE changes SET state = $1, started_at = $2, finished_at = $3 WHERE id = $4")
                        .bind(next.as_str())
                        .bind(change.started_at.map(to_ms))
                        .bind(change.finished_at.map(to_ms))
                        .bind(change.id)
                        .execute(&mut *tx)
                        .await?;
                    index_change!(
                        tx,
                        change.id,
                        change.services,
                        change.kind == ChangeKind::VendorMaintenance,
                        from_ms_indexed(&change),
                        until_ms(&change)
                    )?;
                    let details = json!({ "state": next.as_str(), "note": note }).to_string();
                    change_event!(tx, change.id, at, actor, m.as_str(), details)?;
                    if announce {
                        let payload = json!({ "event": m.as_str(), "actor": actor, "note": note }).to_string();
                        change_job!(tx, Some(change.id), "announce", payload, at, at)?;
                    }
                    if m == Move::Start {
                        let due = to_ms(change.ends_at).max(at);
                        change_job!(tx, Some(change.id), "ask_done", "{}".to_string(), due, at)?;
                    }
                    let mut linked = Vec::new();
                    if m == Move::Rollback {
                        let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
                            "SELECT i.id, i.number, i.is_private FROM change_links l JOIN incidents i ON i.id = l.incident_id \
                             WHERE l.change_id = $1 ORDER BY i.number",
                        )
                        .bind(change.id)
                        .fetch_all(&mut *tx)
                        .await?;
                        for (incident, inc_number, private) in rows {
                            let details = json!({ "change": change.number, "title": change.title, "note": note });
                            insert_event!(tx, incident, at, actor, "change_rolled_back", details.to_string())?;
                            let payload = json!({ "incident": incident, "event": "rolled_back", "actor": actor, "note": note });
                            change_job!(tx, Some(change.id), "incident_note", payload.to_string(), at, at)?;
                            change_event!(
                                tx,
                                change.id,
                                at,
                                actor,
                                "rollback_while_linked",
                                json!({ "incident": format!("INC-{inc_number}"), "private": private }).to_string()
                            )?;
                            linked.push((IncidentId(incident), inc_number, private));
                        }
                    }
                    tx.commit().await?;
                    Ok(Ok((change.id, linked)))
                }
                .await
        });
        match result.context("cannot store a change's move")? {
            Ok((id, linked)) => Ok(Ok(Moved {
                change: self.change(id).await?.context("a moved change vanished")?,
                linked,
            })),
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// Records linked change `number` as the cause of `incident`: an event on both timelines in
    /// one transaction. `false` when the change is not linked to it.
    pub async fn confirm_change_cause(
        &self,
        incident: IncidentId,
        number: ChangeNumber,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some(change) = self.change_by_number(number).await? else {
            return Ok(false);
        };
        let at = to_ms(now);
        let done: Result<bool, sqlx::Error> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                // A write first (see `declare`): the link's row, touched, proves it is linked.
                let n = sqlx::query(
                    "UPDATE change_links SET linked_at = linked_at WHERE change_id = $1 AND incident_id = $2",
                )
                .bind(change.id)
                .bind(incident.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let (incident_number, private): (i64, bool) =
                    sqlx::query_as("SELECT number, is_private FROM incidents WHERE id = $1")
                        .bind(incident.0)
                        .fetch_one(&mut *tx)
                        .await?;
                let details = json!({ "change": change.number, "title": change.title });
                insert_event!(tx, incident.0, at, actor, "change_caused", details.to_string())?;
                let details = json!({ "incident": format!("INC-{incident_number}"), "private": private });
                change_event!(tx, change.id, at, actor, "caused_incident", details.to_string())?;
                tx.commit().await?;
                Ok(true)
            }
            .await
        });
        done.context("cannot record a change as the cause")
    }

    /// Links change `number` to incident `incident` as a suspected cause: on both timelines,
    /// with the incident's card refreshed, in one transaction.
    pub async fn link_change(
        &self,
        incident: IncidentId,
        incident_number: i64,
        private: bool,
        number: ChangeNumber,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<PlannedChange, CalendarRefused>> {
        let Some(change) = self.change_by_number(number).await? else {
            return Ok(Err(CalendarRefused::Rule(format!(
                "There is no {number}. `/change list week` shows recent and coming changes."
            ))));
        };
        let at = to_ms(now);
        let result: Result<bool, sqlx::Error> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let n = sqlx::query(
                    "INSERT INTO change_links (change_id, incident_id, linked_by, linked_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (change_id, incident_id) DO NOTHING",
                )
                .bind(change.id)
                .bind(incident.0)
                .bind(actor)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                let details = json!({ "change": change.number, "title": change.title, "state": change.state.as_str() });
                insert_event!(tx, incident.0, at, actor, "change_linked", details.to_string())?;
                let details = json!({ "incident": format!("INC-{incident_number}"), "private": private });
                change_event!(tx, change.id, at, actor, "linked", details.to_string())?;
                sqlx::query(INSERT_JOB)
                    .bind(incident.0)
                    .bind(JobKind::RefreshCard.as_str())
                    .bind("{}")
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
            .await
        });
        if !result.context("cannot link a change")? {
            return Ok(Err(CalendarRefused::Rule(format!(
                "{number} is already linked to INC-{incident_number}."
            ))));
        }
        Ok(Ok(change))
    }

    /// The changes linked to an incident, newest first.
    pub async fn linked_changes(&self, incident: IncidentId) -> anyhow::Result<Vec<PlannedChange>> {
        let columns: Vec<String> = CHANGE_COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
        let sql = format!(
            "SELECT {} FROM changes c JOIN change_links l ON l.change_id = c.id WHERE l.incident_id = $1 \
             ORDER BY c.starts_at DESC",
            columns.join(", ")
        );
        let rows: Vec<ChangeRow> = with_pool!(self, |pool| sqlx::query_as::<_, ChangeRow>(&sql)
            .bind(incident.0)
            .fetch_all(pool)
            .await)?;
        rows_to_changes(rows)
    }

    /// For the summary card: (changes posted as possible causes, changes linked).
    pub async fn change_counts(&self, incident: IncidentId) -> anyhow::Result<(i64, i64)> {
        let (correlated, linked): (i64, i64) = with_pool!(self, |pool| sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM change_correlations WHERE incident_id = $1), \
                    (SELECT COUNT(*) FROM change_links WHERE incident_id = $1)"
        )
        .bind(incident.0)
        .fetch_one(pool)
        .await)?;
        Ok((correlated, linked))
    }

    /// Which of `changes` were already posted in the incident's channel.
    pub async fn correlated_ids(&self, incident: IncidentId) -> anyhow::Result<Vec<i64>> {
        let ids: Vec<i64> = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT change_id FROM change_correlations WHERE incident_id = $1"
        )
        .bind(incident.0)
        .fetch_all(pool)
        .await)?;
        Ok(ids)
    }

    /// Records that `changes` were posted in the incident's channel (job `job` done): on the
    /// incident's timeline and each change's, with the card refreshed to show the count.
    pub async fn record_correlation(
        &self,
        job: i64,
        incident: IncidentId,
        incident_number: i64,
        private: bool,
        changes: &[PlannedChange],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let at = to_ms(now);
        let numbers: Vec<String> = changes.iter().map(|c| c.number.to_string()).collect();
        with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                for c in changes {
                    sqlx::query(
                        "INSERT INTO change_correlations (incident_id, change_id, posted_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (incident_id, change_id) DO NOTHING",
                    )
                    .bind(incident.0)
                    .bind(c.id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    let details =
                        json!({ "incident": format!("INC-{incident_number}"), "private": private }).to_string();
                    change_event!(tx, c.id, at, "bot", "correlated", details)?;
                }
                let details = json!({ "changes": numbers }).to_string();
                insert_event!(tx, incident.0, at, "bot", "changes_correlated", details)?;
                sqlx::query(INSERT_JOB)
                    .bind(incident.0)
                    .bind(JobKind::RefreshCard.as_str())
                    .bind("{}")
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE change_jobs SET done_at = $1, locked_until = NULL WHERE id = $2")
                    .bind(at)
                    .bind(job)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            .await
        })?;
        Ok(())
    }

    /// A change's timeline, oldest first.
    pub async fn change_timeline(&self, id: i64) -> anyhow::Result<Vec<TimelineEvent>> {
        let rows: Vec<EventRow> = with_pool!(self, |pool| sqlx::query_as::<_, EventRow>(
            "SELECT at, actor, kind, details FROM change_events WHERE change_id = $1 ORDER BY id"
        )
        .bind(id)
        .fetch_all(pool)
        .await)?;
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

    /// Stores an ad-hoc freeze.
    pub async fn add_freeze(&self, freeze: &Freeze, actor: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let services = freeze
            .services
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_default());
        write_alone!(self, |pool| sqlx::query(
            "INSERT INTO change_freezes (name, starts_at, ends_at, services, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(&freeze.name)
        .bind(to_ms(freeze.starts_at))
        .bind(to_ms(freeze.ends_at))
        .bind(services)
        .bind(actor)
        .bind(to_ms(now))
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Ad-hoc freezes that end after `from` and start before `to`.
    pub async fn stored_freezes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<Vec<Freeze>> {
        let rows: Vec<FreezeRow> = with_pool!(self, |pool| sqlx::query_as::<_, FreezeRow>(
            "SELECT name, starts_at, ends_at, services FROM change_freezes WHERE ends_at > $1 AND starts_at < $2 \
             ORDER BY starts_at"
        )
        .bind(to_ms(from))
        .bind(to_ms(to))
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|r| {
                Ok(Freeze {
                    name: r.name,
                    starts_at: from_ms(r.starts_at),
                    ends_at: from_ms(r.ends_at),
                    services: r.services.map(|s| serde_json::from_str(&s)).transpose()?,
                })
            })
            .collect()
    }

    /// Enqueues a change job; with `dedupe`, at most one row ever has that key (a cron slot's
    /// digest, enqueued by every replica). `true` when a row was added.
    pub async fn enqueue_change_job(
        &self,
        change: Option<i64>,
        kind: &str,
        payload: serde_json::Value,
        due: DateTime<Utc>,
        dedupe: Option<&str>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let n = write_alone!(self, |pool| {
            sqlx::query(
            "INSERT INTO change_jobs (change_id, kind, payload, due_at, created_at, dedupe) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dedupe) DO NOTHING"
        )
        .bind(change)
        .bind(kind)
        .bind(payload.to_string())
        .bind(to_ms(due))
        .bind(to_ms(now))
        .bind(dedupe)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// Claims up to `limit` due change jobs for `lease` (other replicas skip locked rows on
    /// PostgreSQL; SQLite's single `UPDATE … RETURNING` is atomic).
    pub async fn claim_change_jobs(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> anyhow::Result<Vec<ChangeJob>> {
        let lock = skip_locked(self, "");
        let sql = format!(
            "UPDATE change_jobs SET locked_until = $1, attempts = attempts + 1 WHERE id IN (\
               SELECT id FROM change_jobs WHERE done_at IS NULL AND failed_at IS NULL AND due_at <= $2 \
               AND (locked_until IS NULL OR locked_until <= $2) ORDER BY due_at, id LIMIT $3 {lock}) \
             RETURNING id, change_id, kind, payload, attempts, due_at, created_at"
        );
        let until = to_ms(now) + lease.as_millis() as i64;
        let rows: Vec<JobRow> = write_alone!(self, |pool| sqlx::query_as::<_, JobRow>(&sql)
            .bind(until)
            .bind(to_ms(now))
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        let mut jobs: Vec<ChangeJob> = rows
            .into_iter()
            .map(|r| ChangeJob {
                id: r.id,
                change_id: r.change_id,
                kind: r.kind,
                payload: serde_json::from_str(&r.payload).unwrap_or_default(),
                attempts: r.attempts,
                due_at: from_ms(r.due_at),
                created_at: from_ms(r.created_at),
            })
            .collect();
        jobs.sort_by_key(|j| (j.due_at, j.id));
        Ok(jobs)
    }

    /// Marks a change job done.
    pub async fn finish_change_job(&self, id: i64, now: DateTime<Utc>) -> anyhow::Result<()> {
        write_alone!(self, |pool| sqlx::query(
            "UPDATE change_jobs SET done_at = $1, locked_until = NULL WHERE id = $2"
        )
        .bind(to_ms(now))
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Plans another attempt at `due`, or gives up for good when `due` is `None`.
    pub async fn retry_change_job(
        &self,
        id: i64,
        due: Option<DateTime<Utc>>,
        error: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let sql = match due {
            Some(_) => "UPDATE change_jobs SET due_at = $1, last_error = $2, locked_until = NULL WHERE id = $3",
            None => "UPDATE change_jobs SET failed_at = $1, last_error = $2, locked_until = NULL WHERE id = $3",
        };
        let at = to_ms(due.unwrap_or(now));
        write_alone!(self, |pool| sqlx::query(sql)
            .bind(at)
            .bind(error)
            .bind(id)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// When the next change job is due (or a lease runs out), if any.
    pub async fn next_change_job_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        // The first pending rows in due order (the partial index); a held one is due again when
        // its lease ends.
        let rows: Vec<(i64, Option<i64>)> = with_pool!(self, |pool| sqlx::query_as(
            "SELECT due_at, locked_until FROM change_jobs WHERE done_at IS NULL AND failed_at IS NULL \
             ORDER BY due_at LIMIT 64"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(due, locked)| locked.map_or(due, |l| l.max(due)))
            .min()
            .map(from_ms))
    }

    /// Change jobs of `kind` done so far (for tests and the demo).
    pub async fn change_jobs_done(&self, kind: &str) -> anyhow::Result<i64> {
        let n: i64 = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM change_jobs WHERE kind = $1 AND done_at IS NOT NULL"
        )
        .bind(kind)
        .fetch_one(pool)
        .await)?;
        Ok(n)
    }

    /// Change jobs still to do (for tests).
    pub async fn pending_change_jobs(&self, before: DateTime<Utc>) -> anyhow::Result<i64> {
        let n: i64 = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT COUNT(*) FROM change_jobs WHERE done_at IS NULL AND failed_at IS NULL AND due_at <= $1"
        )
        .bind(to_ms(before))
        .fetch_one(pool)
        .await)?;
        Ok(n)
    }

    /// Report figures over `[from, to)`, optionally for one service line. A change counts in the
    /// period it finished (done or rolled back), by DORA's definition of the failure rate.
    pub async fn change_figures(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
    ) -> anyhow::Result<ChangeFigures> {
        // Every change that started (planned or actual) or finished in the period.
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE (starts_at >= $1 AND starts_at < $2) \
             OR (finished_at >= $1 AND finished_at < $2) ORDER BY number"
        );
        let rows: Vec<ChangeRow> = with_pool!(self, |pool| sqlx::query_as::<_, ChangeRow>(&sql)
            .bind(to_ms(from))
            .bind(to_ms(to))
            .fetch_all(pool)
            .await)?;
        let changes: Vec<PlannedChange> = rows_to_changes(rows)?
            .into_iter()
            .filter(|c| service.is_none_or(|s| c.services.iter().any(|x| x == s)))
            .collect();
        let linked: Vec<i64> = with_pool!(self, |pool| sqlx::query_scalar(
            "SELECT DISTINCT change_id FROM change_links"
        )
        .fetch_all(pool)
        .await)?;
        let in_period = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= from && t < to);
        let mut figures = ChangeFigures::default();
        let mut kinds: std::collections::BTreeMap<String, i64> = Default::default();
        let mut lines: std::collections::BTreeMap<String, (i64, i64, i64)> = Default::default();
        for c in &changes {
            let started_here = c.starts_at >= from && c.starts_at < to;
            let finished_here =
                matches!(c.state, ChangeState::Done | ChangeState::RolledBack) && in_period(c.finished_at);
            let failed = finished_here && (c.state == ChangeState::RolledBack || linked.contains(&c.id));
            if started_here && c.state != ChangeState::Canceled {
                *kinds.entry(c.kind.as_str().to_string()).or_default() += 1;
                if let Some(reason) = &c.override_reason {
                    figures.overrides.push((c.number.0, c.title.clone(), reason.clone()));
                }
            }
            if finished_here {
                figures.finished += 1;
                figures.failed += i64::from(failed);
            }
            for s in &c.services {
                if service.is_some_and(|x| x != s) {
                    continue;
                }
                let e = lines.entry(s.clone()).or_default();
                if started_here && c.state != ChangeState::Canceled {
                    e.0 += 1;
                }
                if finished_here {
                    e.1 += 1;
                    e.2 += i64::from(failed);
                }
            }
        }
        figures.by_kind = kinds.into_iter().collect();
        figures.by_service = lines.into_iter().map(|(s, (n, f, x))| (s, n, f, x)).collect();
        let (with, all): (i64, i64) = with_pool!(self, |pool| {
            sqlx::query_as(
            "SELECT COUNT(DISTINCT l.incident_id), (SELECT COUNT(*) FROM incidents WHERE declared_at >= $1 AND declared_at < $2 \
               AND status <> 'canceled') \
             FROM change_links l JOIN incidents i ON i.id = l.incident_id \
             WHERE i.declared_at >= $1 AND i.declared_at < $2 AND i.status <> 'canceled'"
        )
        .bind(to_ms(from))
        .bind(to_ms(to))
        .fetch_one(pool)
        .await
        })?;
        figures.incidents_with_change = with;
        figures.incidents_without_change = all - with;
        Ok(figures)
    }
}
