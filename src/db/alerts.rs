//! Alert groups (issue 15): intake (deduplicated by source + fingerprint, stored before the
//! HTTP answer), the triage message's sync state (claimed with a lease like outbox jobs), the
//! triage actions, and links to incidents (with their timeline events and notices).

use super::{
    begin_write, first_time_in, from_ms, insert_event, skip_locked, to_ms, with_pool, write_alone, Db, INSERT_JOB,
};
use crate::alerts::{self, Alert, AlertRule, AlertStatus, GroupState, Intake, Link, StoredAlert};
use crate::incident::change::Notice;
use crate::incident::model::{EventKind, IncidentId, Status};
use crate::outbox::JobKind;
use crate::report::alerts::AlertRows;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const ALERT_COLUMNS: &str = "id, source, fingerprint, status, title, severity, raw_severity, service, labels, links, \
    description, starts_at, episode, first_seen, last_seen, resolved_at, fire_count, flaps, acked_by, acked_at, \
    silenced_until, silenced_by, incident_id, auto_rule, channel_id, message_ts, version, uncertain";

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    source: String,
    fingerprint: String,
    status: String,
    title: String,
    severity: Option<String>,
    raw_severity: Option<String>,
    service: Option<String>,
    labels: String,
    links: String,
    description: String,
    starts_at: Option<i64>,
    episode: i64,
    first_seen: i64,
    last_seen: i64,
    resolved_at: Option<i64>,
    fire_count: i64,
    flaps: i64,
    acked_by: Option<String>,
    acked_at: Option<i64>,
    silenced_until: Option<i64>,
    silenced_by: Option<String>,
    incident_id: Option<i64>,
    auto_rule: Option<i64>,
    channel_id: Option<String>,
    message_ts: Option<String>,
    version: i64,
    uncertain: bool,
}

impl From<AlertRow> for StoredAlert {
    fn from(r: AlertRow) -> StoredAlert {
        StoredAlert {
            id: r.id,
            source: r.source,
            fingerprint: r.fingerprint,
            status: AlertStatus::parse(&r.status).unwrap_or(AlertStatus::Firing),
            title: r.title,
            severity: r.severity.and_then(|s| s.parse().ok()),
            raw_severity: r.raw_severity,
            service: r.service,
            labels: serde_json::from_str(&r.labels).unwrap_or_default(),
            links: serde_json::from_str(&r.links).unwrap_or_default(),
            description: r.description,
            starts_at: r.starts_at.map(from_ms),
            episode: r.episode,
            first_seen: from_ms(r.first_seen),
            last_seen: from_ms(r.last_seen),
            resolved_at: r.resolved_at.map(from_ms),
            fire_count: r.fire_count,
            flaps: r.flaps,
            acked_by: r.acked_by,
            acked_at: r.acked_at.map(from_ms),
            silenced_until: r.silenced_until.map(from_ms),
            silenced_by: r.silenced_by,
            incident_id: r.incident_id,
            auto_rule: r.auto_rule,
            channel_id: r.channel_id,
            message_ts: r.message_ts,
            version: r.version,
            uncertain: r.uncertain,
        }
    }
}

/// An alert group written as given, for report tests and benches (times in epoch ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FixtureAlert {
    pub source: String,
    pub fingerprint: String,
    pub service: Option<String>,
    /// When it fired: the first is a new episode (`fired`), the rest repeats.
    pub fires: Vec<i64>,
    /// Linked to incident number `.0` at `.1`.
    pub linked: Option<(i64, i64)>,
}

/// The three result sets of `Db::report_alert_rows`, as read.
type ReportAlertRows = (
    Vec<(Option<String>, i64, i64)>,
    Vec<(Option<String>, i64)>,
    Vec<(String, i64)>,
);

/// What one accepted alert did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    pub group: i64,
    pub intake: Intake,
    /// The incident it is linked to, which heard about it (timeline, notice).
    pub incident: Option<IncidentId>,
    /// An `[[alert_rules]]` entry asks for an automatic declaration.
    pub auto_declare: bool,
}

/// How the triage message is kept up to date.
#[derive(Debug, Clone, Copy)]
pub struct SyncPolicy {
    /// Whether there is a triage channel at all (else nothing is scheduled).
    pub posting: bool,
    /// At most one `chat.update` per group per this long: repeats in between are coalesced.
    pub update_gap: Duration,
}

/// The `sync_due_at` of a change that updates the message: now, or one gap after the last
/// sync; an earlier pending sync is kept (`$2` now, `$3` gap in ms).
const SCHEDULE_UPDATE: &str =
    "COALESCE(sync_due_at, CASE WHEN last_synced_at IS NOT NULL AND last_synced_at + $3 > $2 \
    THEN last_synced_at + $3 ELSE $2 END)";

/// A group's run of repeats (and flaps) within one batch: written as one row of one
/// statement ([`write_repeats`]) rather than a statement per alert.
struct Repeats {
    id: i64,
    fires: i64,
    flaps: i64,
    title: String,
    labels: String,
    links: String,
    /// Held back by a silence: the message does not change (no new version, no sync), so a
    /// sync already under way does not follow up with the repeats; the sync at the silence's
    /// end shows them.
    held: bool,
    /// Schedules the message's update (there is a triage channel and it is not held).
    posting: bool,
}

/// Groups' repeats per statement: 10 bound values a row, well under either database's limit.
const REPEAT_ROWS: usize = 500;

/// Applies `$runs` (an iterator of [`Repeats`]) inside `$tx` at `$at` (ms), with update gap
/// `$gap` (ms): one `UPDATE … FROM (VALUES …)` per [`REPEAT_ROWS`] groups. The rows are already
/// locked in id order (PostgreSQL), so the join's order cannot deadlock.
macro_rules! write_repeats {
    ($tx:ident, $runs:expr, $at:expr, $gap:expr) => {{
        let runs: Vec<Repeats> = $runs.collect();
        for chunk in runs.chunks(REPEAT_ROWS) {
            let mut q = sqlx::QueryBuilder::new(format!(
                "UPDATE alert_groups SET status = 'firing', last_seen = v.column2, fire_count = fire_count + v.column4, \
                 flaps = flaps + v.column5, resolved_at = NULL, title = v.column6, labels = v.column7, links = v.column8, \
                 version = version + CASE WHEN v.column9 THEN 0 ELSE 1 END, \
                 sync_due_at = CASE WHEN v.column10 THEN {} ELSE sync_due_at END FROM (",
                SCHEDULE_UPDATE.replace("$2", "v.column2").replace("$3", "v.column3")
            ));
            q.push_values(chunk, |mut row, r| {
                row.push_bind(r.id)
                    .push_bind($at)
                    .push_bind($gap)
                    .push_bind(r.fires)
                    .push_bind(r.flaps)
                    .push_bind(r.title.clone())
                    .push_bind(r.labels.clone())
                    .push_bind(r.links.clone())
                    .push_bind(r.held)
                    .push_bind(r.posting);
            });
            q.push(") AS v WHERE alert_groups.id = v.column1");
            q.build().execute(&mut *$tx).await?;
        }
    }};
}

/// Appends an `alert_events` row inside `$tx`: (group, at ms, kind, actor, details).
macro_rules! alert_event {
    ($tx:ident, $group:expr, $at:expr, $kind:expr, $actor:expr, $details:expr) => {
        sqlx::query("INSERT INTO alert_events (group_id, at, kind, actor, details) VALUES ($1, $2, $3, $4, $5)")
            .bind($group)
            .bind($at)
            .bind($kind)
            .bind($actor)
            .bind($details)
            .execute(&mut *$tx)
            .await
    };
}

/// Enqueues a notice in incident `$incident`'s channel inside `$tx`.
macro_rules! notice_job {
    ($tx:ident, $incident:expr, $notice:expr, $actor:expr, $at:expr) => {
        sqlx::query(INSERT_JOB)
            .bind($incident)
            .bind(JobKind::PostNotice.as_str())
            .bind(json!({ "notice": $notice, "actor": $actor, "to": "channel" }).to_string())
            .bind($at)
            .execute(&mut *$tx)
            .await
    };
}

/// After a linked alert resolved inside `$tx`: when none of incident `$incident`'s alerts still
/// fires, the SPOC is asked (once per incident) whether to resolve it.
macro_rules! all_resolved {
    ($tx:ident, $incident:expr, $at:expr) => {{
        let incident: i64 = $incident;
        let (firing,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM alert_groups WHERE incident_id = $1 AND status = 'firing'")
                .bind(incident)
                .fetch_one(&mut *$tx)
                .await?;
        if firing == 0 && first_time_in!($tx, format!("alerts-all-resolved:{incident}"), $at)? {
            let (spoc,): (String,) = sqlx::query_as("SELECT spoc FROM incidents WHERE id = $1")
                .bind(incident)
                .fetch_one(&mut *$tx)
                .await?;
            if let Ok(spoc) = crate::incident::model::UserId::parse(&spoc) {
                let d = json!({ "what": "all_resolved" }).to_string();
                insert_event!($tx, incident, $at, "bot", EventKind::Alert.as_str(), d)?;
                notice_job!($tx, incident, &Notice::AllAlertsResolved { spoc }, "bot", $at)?;
            }
        }
    }};
}

fn details(a: &Alert) -> String {
    json!({ "status": a.status.as_str(), "title": a.title, "severity": a.raw_severity }).to_string()
}

fn links_json(links: &[Link]) -> String {
    serde_json::to_string(links).unwrap_or_else(|_| "[]".into())
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

/// Rows per multi-row statement of an intake batch (PostgreSQL takes at most 65,535
/// parameters a statement, SQLite 32,766; a new group's row has 18).
const INSERT_ROWS: usize = 500;

/// Keys per locked read of an intake batch: an OR of this many terms stays well inside
/// SQLite's expression depth (1,000).
const LOOKUP_KEYS: usize = 200;

/// One group of an intake batch.
struct BatchKey {
    /// Index of its first alert in the batch.
    first: usize,
    /// How many of the batch's alerts are of this group.
    alerts: usize,
    /// Its id, when the batch created it.
    created: Option<i64>,
}

/// A group's stored state as intake reads it: (id, source, fingerprint, status, resolved at,
/// silenced until, incident, the incident's status).
type GroupRow = (
    i64,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// A group as intake holds it while applying a batch.
struct Group {
    id: i64,
    state: GroupState,
    /// The incident it is linked to, while that is open (only an open incident hears of its
    /// alerts; a new episode drops the link to a closed one).
    open_incident: Option<i64>,
}

impl Db {
    /// Stores the alerts of one request or batch (all or none, in one transaction), deduplicated
    /// by source + fingerprint, with their `alert_events` rows, the triage message's next sync,
    /// and for groups linked to an open incident, its timeline events and notices.
    ///
    /// Set-based where it can be: the batch's new groups are one insert, the state of all its
    /// groups one locked read, their repeats one update, its events one insert; only an alert
    /// that changes an existing group otherwise (resolves, reopens) costs a statement of its own. Groups are inserted and locked in one order (by
    /// key, then by id), so concurrent batches on PostgreSQL queue rather than deadlock.
    pub async fn ingest_alerts(
        &self,
        batch: &[Alert],
        rules: &[AlertRule],
        now: DateTime<Utc>,
        sync: SyncPolicy,
    ) -> anyhow::Result<Vec<Ingested>> {
        let at = to_ms(now);
        let gap = sync.update_gap.as_millis() as i64;
        let autos: Vec<Option<i64>> = batch
            .iter()
            .map(|a| {
                alerts::first_rule(rules, a)
                    .filter(|(_, r)| r.declare && a.status == AlertStatus::Firing)
                    .map(|(i, _)| i as i64)
            })
            .collect();
        // The batch's groups: where each first appears (what a new group is created from) and
        // how many of its alerts the batch holds; `index` keeps them in key order.
        let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut slots: Vec<BatchKey> = Vec::new();
        let mut slot_of: Vec<usize> = Vec::with_capacity(batch.len());
        for (i, a) in batch.iter().enumerate() {
            let next = slots.len();
            let slot = *index.entry((a.source.clone(), a.fingerprint.clone())).or_insert(next);
            if slot == next {
                slots.push(BatchKey {
                    first: i,
                    alerts: 0,
                    created: None,
                });
            }
            slots[slot].alerts += 1;
            slot_of.push(slot);
        }
        let firsts: Vec<usize> = index.values().map(|&slot| slots[slot].first).collect();
        let lock = if self.is_postgres() { "FOR UPDATE OF g" } else { "" };
        let result: anyhow::Result<Vec<Ingested>> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                // 1. New groups (a write first: SQLite takes its write lock before reading).
                for chunk in firsts.chunks(INSERT_ROWS) {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO alert_groups (source, fingerprint, status, title, severity, raw_severity, service, \
                         labels, links, description, starts_at, first_seen, last_seen, resolved_at, fire_count, auto_rule, \
                         version, sync_due_at) ",
                    );
                    q.push_values(chunk, |mut row, &i| {
                        let a = &batch[i];
                        let firing = a.status == AlertStatus::Firing;
                        row.push_bind(a.source.clone())
                            .push_bind(a.fingerprint.clone())
                            .push_bind(a.status.as_str())
                            .push_bind(a.title.clone())
                            .push_bind(a.severity.map(|s| s.as_str()))
                            .push_bind(a.raw_severity.clone())
                            .push_bind(a.service.clone())
                            .push_bind(labels_json(&a.labels))
                            .push_bind(links_json(&a.links))
                            .push_bind(a.description.clone())
                            .push_bind(a.starts_at.map(to_ms))
                            .push_bind(at)
                            .push_bind(at)
                            .push_bind((!firing).then_some(at))
                            .push_bind(i64::from(firing))
                            .push_bind(autos[i])
                            .push_bind(1i64)
                            .push_bind(sync.posting.then_some(at));
                    });
                    q.push(" ON CONFLICT (source, fingerprint) DO NOTHING RETURNING id, source, fingerprint");
                    let rows: Vec<(i64, String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    for (id, source, fingerprint) in rows {
                        if let Some(&slot) = index.get(&(source, fingerprint)) {
                            slots[slot].created = Some(id);
                        }
                    }
                }
                // 2. The state of every other group the batch touches, locked, in id order.
                // (A group created above needs reading only for its later alerts.)
                let wanted: Vec<usize> = index
                    .values()
                    .map(|&slot| &slots[slot])
                    .filter(|k| k.created.is_none() || k.alerts > 1)
                    .map(|k| k.first)
                    .collect();
                let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
                for chunk in wanted.chunks(LOOKUP_KEYS) {
                    let mut q = sqlx::QueryBuilder::new(
                        "SELECT g.id, g.source, g.fingerprint, g.status, g.resolved_at, g.silenced_until, g.incident_id, \
                         i.status FROM alert_groups g LEFT JOIN incidents i ON i.id = g.incident_id \
                         WHERE ",
                    );
                    // An OR of key look-ups: each an index search on both databases (SQLite
                    // scans the table for a row-value `IN (VALUES …)`).
                    let mut keys = q.separated(" OR ");
                    for &i in chunk {
                        keys.push("(g.source = ");
                        keys.push_bind_unseparated(batch[i].source.clone());
                        keys.push_unseparated(" AND g.fingerprint = ");
                        keys.push_bind_unseparated(batch[i].fingerprint.clone());
                        keys.push_unseparated(")");
                    }
                    q.push(" ORDER BY g.id ");
                    q.push(lock);
                    let rows: Vec<GroupRow> = q.build_query_as().fetch_all(&mut *tx).await?;
                    for (id, source, fingerprint, status, resolved_at, silenced_until, incident, incident_status) in rows {
                        let state = GroupState {
                            status: AlertStatus::parse(&status).unwrap_or(AlertStatus::Firing),
                            resolved_at: resolved_at.map(from_ms),
                            silenced_until: silenced_until.map(from_ms),
                        };
                        let open = incident_status.as_deref().and_then(|s| s.parse::<Status>().ok()).is_some_and(|s| s.is_open());
                        let open_incident = incident.filter(|_| open);
                        let Some(&slot) = index.get(&(source, fingerprint)) else { continue };
                        groups.insert(slot, Group { id, state, open_incident });
                    }
                }
                // 3. Each alert in order, on the state its group's earlier alerts left.
                let mut events: Vec<(i64, &'static str, String)> = Vec::with_capacity(batch.len());
                let mut out = Vec::with_capacity(batch.len());
                // Each group's repeats since its last other change, written together.
                let mut repeats: BTreeMap<usize, Repeats> = BTreeMap::new();
                for (i, a) in batch.iter().enumerate() {
                    let auto = autos[i];
                    let key = &slots[slot_of[i]];
                    if let Some(id) = key.created.filter(|_| key.first == i) {
                        events.push((id, Intake::New.event(), details(a)));
                        out.push(Ingested { group: id, intake: Intake::New, incident: None, auto_declare: auto.is_some() });
                        continue;
                    }
                    let Some(group) = groups.get_mut(&slot_of[i]) else {
                        anyhow::bail!("alert group {}/{} vanished during its intake", a.source, a.fingerprint);
                    };
                    let intake = alerts::plan(Some(&group.state), a.status, now);
                    let held = alerts::silenced(&group.state, now);
                    let posting = sync.posting && !held;
                    let open_incident = group.open_incident;
                    let id = group.id;
                    if !matches!(intake, Intake::Repeat | Intake::Flap) {
                        // Another kind of change comes after the group's repeats so far.
                        if let Some(run) = repeats.remove(&slot_of[i]) {
                            write_repeats!(tx, std::iter::once(run), at, gap);
                        }
                    }
                    match intake {
                        Intake::New => unreachable!("an existing group is never new"),
                        Intake::Repeat | Intake::Flap => {
                            let run = repeats.entry(slot_of[i]).or_insert_with(|| Repeats {
                                id,
                                fires: 0,
                                flaps: 0,
                                title: String::new(),
                                labels: String::new(),
                                links: String::new(),
                                held,
                                posting,
                            });
                            run.fires += 1;
                            run.flaps += i64::from(intake == Intake::Flap);
                            a.title.clone_into(&mut run.title);
                            run.labels = labels_json(&a.labels);
                            run.links = links_json(&a.links);
                        }
                        Intake::Reopen => {
                            // A new episode: a new message, counts from one, acknowledgement
                            // starts over (a silence holds, and the message waits for its end);
                            // the incident link stays while the incident is open.
                            let due = if posting {
                                Some(at)
                            } else {
                                group.state.silenced_until.filter(|_| sync.posting).map(to_ms)
                            };
                            sqlx::query(
                                "UPDATE alert_groups SET status = 'firing', episode = episode + 1, first_seen = $2, \
                                 last_seen = $2, resolved_at = NULL, fire_count = 1, flaps = 0, acked_by = NULL, \
                                 acked_at = NULL, title = $3, severity = $4, raw_severity = $5, service = $6, labels = $7, \
                                 links = $8, description = $9, starts_at = $10, incident_id = $11, auto_rule = $12, \
                                 message_ts = NULL, channel_id = NULL, uncertain = FALSE, version = version + 1, \
                                 sync_due_at = $13 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(at)
                            .bind(&a.title)
                            .bind(a.severity.map(|s| s.as_str()))
                            .bind(a.raw_severity.as_deref())
                            .bind(a.service.as_deref())
                            .bind(labels_json(&a.labels))
                            .bind(links_json(&a.links))
                            .bind(&a.description)
                            .bind(a.starts_at.map(to_ms))
                            .bind(open_incident)
                            .bind(if open_incident.is_some() { None } else { auto })
                            .bind(due)
                            .execute(&mut *tx)
                            .await?;
                        }
                        Intake::Resolve => {
                            sqlx::query(&format!(
                                "UPDATE alert_groups SET status = 'resolved', last_seen = $2, resolved_at = $2, \
                                 auto_rule = NULL, version = version + CASE WHEN $5 THEN 0 ELSE 1 END, \
                                 sync_due_at = CASE WHEN $4 THEN {SCHEDULE_UPDATE} ELSE sync_due_at END WHERE id = $1"
                            ))
                            .bind(id)
                            .bind(at)
                            .bind(gap)
                            .bind(posting)
                            .bind(held)
                            .execute(&mut *tx)
                            .await?;
                        }
                        Intake::ResolvedAgain => {
                            sqlx::query("UPDATE alert_groups SET last_seen = $2 WHERE id = $1")
                                .bind(id)
                                .bind(at)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    group.state = group.state.after(intake, now);
                    events.push((id, intake.event(), details(a)));
                    // The incident it is linked to hears of fires after a resolve and of resolves.
                    let mut told = None;
                    if let Some(incident) = open_incident {
                        let notice = match intake {
                            Intake::Flap | Intake::Reopen => Some(Notice::AlertFired { title: a.title.clone() }),
                            Intake::Resolve => Some(Notice::AlertResolved { title: a.title.clone() }),
                            _ => None,
                        };
                        if let Some(notice) = notice {
                            let what = if intake == Intake::Resolve { "resolved" } else { "fired" };
                            let d = json!({ "what": what, "alert": id, "title": a.title, "source": a.source });
                            insert_event!(tx, incident, at, "bot", EventKind::Alert.as_str(), d.to_string())?;
                            notice_job!(tx, incident, &notice, "bot", at)?;
                            told = Some(IncidentId(incident));
                        }
                        if intake == Intake::Resolve {
                            all_resolved!(tx, incident, at);
                        }
                    }
                    out.push(Ingested {
                        group: id,
                        intake,
                        incident: told,
                        auto_declare: intake == Intake::Reopen && open_incident.is_none() && auto.is_some(),
                    });
                }
                // 4. The repeats not yet written: one statement for all their groups.
                write_repeats!(tx, std::mem::take(&mut repeats).into_values(), at, gap);
                // 5. Every alert's event, in order.
                for chunk in events.chunks(INSERT_ROWS) {
                    let mut q = sqlx::QueryBuilder::new("INSERT INTO alert_events (group_id, at, kind, actor, details) ");
                    q.push_values(chunk, |mut row, (group, kind, d)| {
                        row.push_bind(*group).push_bind(at).push_bind(*kind).push_bind("source").push_bind(d.clone());
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(out)
            }
            .await
        });
        result
    }

    /// One alert group.
    pub async fn alert(&self, id: i64) -> anyhow::Result<Option<StoredAlert>> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alert_groups WHERE id = $1");
        let row: Option<AlertRow> = with_pool!(self, |pool| sqlx::query_as::<_, AlertRow>(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(StoredAlert::from))
    }

    /// An alert group by its source and fingerprint.
    pub async fn alert_by_fingerprint(&self, source: &str, fingerprint: &str) -> anyhow::Result<Option<StoredAlert>> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alert_groups WHERE source = $1 AND fingerprint = $2");
        let row: Option<AlertRow> = with_pool!(self, |pool| {
            sqlx::query_as::<_, AlertRow>(&sql)
                .bind(source)
                .bind(fingerprint)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(StoredAlert::from))
    }

    /// The alert groups linked to an incident, oldest first.
    pub async fn alerts_of_incident(&self, incident: IncidentId) -> anyhow::Result<Vec<StoredAlert>> {
        let sql = format!("SELECT {ALERT_COLUMNS} FROM alert_groups WHERE incident_id = $1 ORDER BY id");
        let rows: Vec<AlertRow> = with_pool!(self, |pool| sqlx::query_as::<_, AlertRow>(&sql)
            .bind(incident.0)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(StoredAlert::from).collect())
    }

    /// The `alert_events` kinds of a group, oldest first (for tests and the audit trail).
    pub async fn alert_event_kinds(&self, group: i64) -> anyhow::Result<Vec<String>> {
        let kinds: Vec<String> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT kind FROM alert_events WHERE group_id = $1 ORDER BY id")
                .bind(group)
                .fetch_all(pool)
                .await
        })?;
        Ok(kinds)
    }

    /// Claims up to `limit` groups whose triage message is due a post or an update, for
    /// `lease`: new messages first (a new alert matters more than a repeat's count), then by
    /// due time. Rows another replica holds are skipped (PostgreSQL); a lease that ran out while
    /// held makes the claim uncertain (the post may have happened: look before posting again).
    pub async fn claim_alert_syncs(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> anyhow::Result<Vec<StoredAlert>> {
        let lock = skip_locked(self, "");
        let sql = format!(
            "UPDATE alert_groups SET locked_until = $1, sync_attempts = sync_attempts + 1, \
               uncertain = CASE WHEN locked_until IS NOT NULL THEN TRUE ELSE uncertain END \
             WHERE id IN (SELECT id FROM alert_groups WHERE sync_due_at <= $2 \
               AND (locked_until IS NULL OR locked_until <= $2) \
               ORDER BY CASE WHEN message_ts IS NULL THEN 0 ELSE 1 END, sync_due_at, id LIMIT $3 {lock}) \
             RETURNING {ALERT_COLUMNS}"
        );
        let until = to_ms(now) + lease.as_millis() as i64;
        let mut rows: Vec<AlertRow> = write_alone!(self, |pool| {
            sqlx::query_as::<_, AlertRow>(&sql)
                .bind(until)
                .bind(to_ms(now))
                .bind(limit)
                .fetch_all(pool)
                .await
        })?;
        rows.sort_by_key(|r| r.id);
        Ok(rows.into_iter().map(StoredAlert::from).collect())
    }

    /// When the next triage message sync is due (or a held one's lease runs out).
    pub async fn next_alert_sync(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (due,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT MIN(CASE WHEN locked_until IS NOT NULL AND locked_until > sync_due_at THEN locked_until ELSE sync_due_at END) \
                 FROM alert_groups WHERE sync_due_at IS NOT NULL",
            )
            .fetch_one(pool)
            .await
        })?;
        Ok(due.map(from_ms))
    }

    /// The message of `group` now shows `version`: records where it is, and plans the next
    /// sync one gap later if the group changed meanwhile, else at the end of its silence (the
    /// message then drops "silenced" and shows the repeats it held back).
    pub async fn alert_synced(
        &self,
        group: i64,
        version: i64,
        channel: &str,
        ts: &str,
        now: DateTime<Utc>,
        gap: Duration,
    ) -> anyhow::Result<()> {
        let at = to_ms(now);
        write_alone!(self, |pool| {
            sqlx::query(
                "UPDATE alert_groups SET channel_id = $2, message_ts = $3, synced_version = $4, last_synced_at = $5, \
                 locked_until = NULL, uncertain = FALSE, sync_attempts = 0, last_error = NULL, \
                 sync_due_at = CASE WHEN version > $4 THEN $5 + $6 WHEN silenced_until > $5 THEN silenced_until ELSE NULL END \
                 WHERE id = $1",
            )
            .bind(group)
            .bind(channel)
            .bind(ts)
            .bind(version)
            .bind(at)
            .bind(gap.as_millis() as i64)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// The sync of `group` failed: try again at `due` (`uncertain`: it may have happened).
    pub async fn alert_sync_failed(
        &self,
        group: i64,
        due: Option<DateTime<Utc>>,
        error: &str,
        uncertain: bool,
    ) -> anyhow::Result<()> {
        write_alone!(self, |pool| {
            sqlx::query(
                "UPDATE alert_groups SET locked_until = NULL, sync_due_at = $2, last_error = $3, uncertain = $4 WHERE id = $1",
            )
            .bind(group)
            .bind(due.map(to_ms))
            .bind(error)
            .bind(uncertain)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// Groups an `[[alert_rules]]` entry asked to declare and nobody has yet.
    pub async fn alerts_to_declare(&self, limit: i64) -> anyhow::Result<Vec<StoredAlert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alert_groups WHERE auto_rule IS NOT NULL AND incident_id IS NULL \
             AND status = 'firing' ORDER BY id LIMIT $1"
        );
        let rows: Vec<AlertRow> = with_pool!(self, |pool| sqlx::query_as::<_, AlertRow>(&sql)
            .bind(limit)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(StoredAlert::from).collect())
    }

    /// Drops a group's pending automatic declaration (it cannot be done: said in the log).
    pub async fn clear_auto_rule(&self, group: i64) -> anyhow::Result<()> {
        write_alone!(self, |pool| {
            sqlx::query("UPDATE alert_groups SET auto_rule = NULL WHERE id = $1")
                .bind(group)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Acknowledge (`silence_until: None`) or silence a group as `actor`, once per `key`.
    /// `Ok(None)`: the group does not exist; `Ok(Some(false))`: the click was handled before.
    pub async fn triage_alert(
        &self,
        group: i64,
        actor: &str,
        silence_until: Option<DateTime<Utc>>,
        key: &str,
        now: DateTime<Utc>,
        sync: SyncPolicy,
    ) -> anyhow::Result<Option<bool>> {
        let at = to_ms(now);
        let gap = sync.update_gap.as_millis() as i64;
        let (sql, kind) = match silence_until {
            None => (
                format!(
                    "UPDATE alert_groups SET acked_by = COALESCE(acked_by, $4), acked_at = COALESCE(acked_at, $2), \
                     version = version + 1, sync_due_at = CASE WHEN $5 THEN {SCHEDULE_UPDATE} ELSE NULL END WHERE id = $1"
                ),
                "acknowledged",
            ),
            Some(_) => (
                format!(
                    "UPDATE alert_groups SET silenced_until = $6, silenced_by = $4, version = version + 1, \
                     sync_due_at = CASE WHEN $5 THEN {SCHEDULE_UPDATE} ELSE NULL END WHERE id = $1"
                ),
                "silenced",
            ),
        };
        let result: anyhow::Result<Option<bool>> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let found = sqlx::query(&sql)
                    .bind(group)
                    .bind(at)
                    .bind(gap)
                    .bind(actor)
                    .bind(sync.posting)
                    .bind(silence_until.map(to_ms))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if found == 0 {
                    return Ok(None);
                }
                if !first_time_in!(tx, key, at)? {
                    return Ok(Some(false));
                }
                let d = json!({ "until": silence_until.map(|t| t.to_rfc3339()) }).to_string();
                alert_event!(tx, group, at, kind, actor, d)?;
                tx.commit().await?;
                Ok(Some(true))
            }
            .await
        });
        result
    }

    /// Links `group` to `incident` as `actor` (a person, or `bot` for a declaration by rule):
    /// the incident's timeline gets the alert, its channel a notice; when `detected`, the
    /// incident's detection time (and impact start, if none) become the alert's start.
    /// `Ok(false)`: the group was already linked to this incident.
    pub async fn link_alert(
        &self,
        group: &StoredAlert,
        incident: IncidentId,
        actor: &str,
        detected: bool,
        now: DateTime<Utc>,
        sync: SyncPolicy,
    ) -> anyhow::Result<bool> {
        let at = to_ms(now);
        let gap = sync.update_gap.as_millis() as i64;
        let detected_at = to_ms(group.detected_at());
        let result: anyhow::Result<bool> =
            with_pool!(self, |pool| {
                async {
                let (_writer, mut tx) = begin_write!(self, pool);
                let changed = sqlx::query(&format!(
                    "UPDATE alert_groups SET incident_id = $4, auto_rule = NULL, version = version + 1, \
                     sync_due_at = CASE WHEN $5 AND message_ts IS NOT NULL THEN {SCHEDULE_UPDATE} ELSE sync_due_at END \
                     WHERE id = $1 AND (incident_id IS NULL OR incident_id <> $4)"
                ))
                .bind(group.id)
                .bind(at)
                .bind(gap)
                .bind(incident.0)
                // Whether the message is posted is read from the row, not from `group`: the
                // poster may have posted it since `group` was read (then its sync already ran,
                // and only this update shows the link).
                .bind(sync.posting)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(false);
                }
                alert_event!(tx, group.id, at, "linked", actor, json!({ "incident": incident.0 }).to_string())?;
                if detected {
                    sqlx::query(
                        "UPDATE incidents SET detected_at = COALESCE(detected_at, $2), \
                         impact_start = COALESCE(impact_start, $2) WHERE id = $1",
                    )
                    .bind(incident.0)
                    .bind(detected_at)
                    .execute(&mut *tx)
                    .await?;
                }
                let d = json!({
                    "what": "linked", "alert": group.id, "title": group.title, "source": group.source,
                    "status": group.status.as_str(), "detected_at": detected.then(|| group.detected_at().to_rfc3339()),
                    "links": group.links,
                });
                insert_event!(tx, incident.0, at, actor, EventKind::Alert.as_str(), d.to_string())?;
                let notice = Notice::AlertLinked {
                    title: group.title.clone(),
                    source: group.source.clone(),
                };
                notice_job!(tx, incident.0, &notice, actor, at)?;
                tx.commit().await?;
                Ok(true)
            }
            .await
            });
        result
    }

    /// Records on incident `incident`'s timeline (once) that an `[[alert_rules]]` entry
    /// declared it from `alert`.
    pub async fn note_auto_declared(
        &self,
        incident: IncidentId,
        alert: &StoredAlert,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let at = to_ms(now);
        let d = json!({ "what": "auto_declared", "alert": alert.id, "title": alert.title, "source": alert.source })
            .to_string();
        let result: anyhow::Result<()> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                if first_time_in!(tx, format!("alert-auto-declared:{}", incident.0), at)? {
                    insert_event!(tx, incident.0, at, "bot", EventKind::Alert.as_str(), d)?;
                    tx.commit().await?;
                }
                Ok(())
            }
            .await
        });
        result
    }

    /// The detection rows of a report's period (see [`crate::report::alerts`]): alerts that
    /// fired (new episodes) and of them those linked to an incident, noisy groups, and the
    /// scope's incidents declared from an alert with their time to declare.
    pub async fn report_alert_rows(&self, scope: &super::ReportScope) -> anyhow::Result<AlertRows> {
        let fired_sql = "SELECT g.service, CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(CASE WHEN EXISTS (\
               SELECT 1 FROM alert_events l WHERE l.group_id = e.group_id AND l.kind = 'linked' AND l.at >= e.at \
               AND NOT EXISTS (SELECT 1 FROM alert_events n WHERE n.group_id = e.group_id AND n.kind = 'fired' \
                 AND n.at > e.at AND n.at <= l.at)) THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM alert_events e JOIN alert_groups g ON g.id = e.group_id \
             WHERE e.kind = 'fired' AND e.at >= $1 AND e.at < $2 GROUP BY g.service";
        let noisy_sql = "SELECT g.service, CAST(COUNT(*) AS BIGINT) FROM alert_groups g \
             WHERE (SELECT COUNT(*) FROM alert_events e WHERE e.group_id = g.id \
               AND e.kind IN ('fired', 'repeated', 'flapped') AND e.at >= $1 AND e.at < $2) >= $3 \
             AND NOT EXISTS (SELECT 1 FROM alert_events l WHERE l.group_id = g.id AND l.kind = 'linked' AND l.at < $2) \
             GROUP BY g.service";
        let declared_sql = "SELECT services, declared_at - detected_at FROM incidents \
             WHERE declared_at >= $1 AND declared_at < $2 AND services LIKE $3 ESCAPE '!' \
             AND status <> 'canceled' AND canceled_at IS NULL AND detected_at IS NOT NULL";
        let (from, to) = (scope.from_ms, scope.to_ms);
        let (fired, noisy, declared): ReportAlertRows = with_pool!(self, |pool| {
            async {
                let fired = sqlx::query_as(fired_sql).bind(from).bind(to).fetch_all(pool).await?;
                let noisy = sqlx::query_as(noisy_sql)
                    .bind(from)
                    .bind(to)
                    .bind(alerts::NOISY_FIRES)
                    .fetch_all(pool)
                    .await?;
                let declared = sqlx::query_as(declared_sql)
                    .bind(from)
                    .bind(to)
                    .bind(scope.service_pattern())
                    .fetch_all(pool)
                    .await?;
                Ok::<_, sqlx::Error>((fired, noisy, declared))
            }
            .await
        })?;
        Ok(AlertRows {
            fired,
            noisy,
            declared: declared
                .into_iter()
                .map(|(services, ms)| (serde_json::from_str(&services).unwrap_or_default(), ms))
                .collect(),
        })
    }

    /// Test and bench fixtures: alert groups written as given (fire times, an optional link to
    /// incident number `n` at a time), and incidents' detection times (by number).
    pub async fn insert_alert_fixtures(&self, groups: &[FixtureAlert], detected: &[(i64, i64)]) -> anyhow::Result<()> {
        let result: anyhow::Result<()> = with_pool!(self, |pool| {
            async {
                let (_writer, mut tx) = begin_write!(self, pool);
                for g in groups {
                    let first = g.fires.first().copied().unwrap_or_default();
                    let last = g.fires.last().copied().unwrap_or_default();
                    let incident: Option<i64> = match g.linked {
                        Some((number, _)) => Some(
                            sqlx::query_scalar("SELECT id FROM incidents WHERE number = $1")
                                .bind(number)
                                .fetch_one(&mut *tx)
                                .await?,
                        ),
                        None => None,
                    };
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO alert_groups (source, fingerprint, status, title, service, first_seen, last_seen, \
                         fire_count, incident_id) VALUES ($1, $2, 'firing', $3, $4, $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(&g.source)
                    .bind(&g.fingerprint)
                    .bind(&g.fingerprint)
                    .bind(g.service.as_deref())
                    .bind(first)
                    .bind(last)
                    .bind(g.fires.len() as i64)
                    .bind(incident)
                    .fetch_one(&mut *tx)
                    .await?;
                    for (i, at) in g.fires.iter().enumerate() {
                        let kind = if i == 0 { "fired" } else { "repeated" };
                        alert_event!(tx, id, *at, kind, "source", "{}".to_string())?;
                    }
                    if let (Some((_, at)), Some(incident)) = (g.linked, incident) {
                        alert_event!(
                            tx,
                            id,
                            at,
                            "linked",
                            "fixture",
                            json!({ "incident": incident }).to_string()
                        )?;
                    }
                }
                for (number, at) in detected {
                    sqlx::query("UPDATE incidents SET detected_at = $2 WHERE number = $1")
                        .bind(number)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
            .await
        });
        result
    }

    /// The incident's detection time, when it came from an alert.
    pub async fn detected_at(&self, incident: IncidentId) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (at,): (Option<i64>,) = with_pool!(self, |pool| {
            sqlx::query_as("SELECT detected_at FROM incidents WHERE id = $1")
                .bind(incident.0)
                .fetch_one(pool)
                .await
        })?;
        Ok(at.map(from_ms))
    }
}
