//! The change calendar's use-cases (issue 12): plan a change (freezes, conflicts, the owner
//! checked), move it through its states, list and show changes, ad-hoc freezes, link a change
//! to an incident, the changes an incident may have been caused by, the iCalendar feed, CSV
//! import. Called by `/change`, `/incident change`, the CLI and `/calendar.ics`.

use super::{Refusal, Service};
use crate::calendar::{self, ChangeNumber, Conflict, Freeze, IncidentFacts, Move, NewChange, PlannedChange};
use crate::db::{CalendarRefused, ChangeToStore, Moved};
use crate::incident::model::{Incident, IncidentId, Severity, TimelineEvent, UserId};
use chrono::{DateTime, Utc};

/// Why a planned change was not stored: problems per form field (`(block id, message)`), or
/// the database.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanRefusal {
    Fields(Vec<(&'static str, String)>),
    Unavailable,
}

/// A stored change and what it ran into.
#[derive(Debug, Clone)]
pub struct Planned {
    pub change: PlannedChange,
    pub conflicts: Vec<Conflict>,
    pub freezes: Vec<String>,
}

/// A change as `/change show` presents it.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub change: PlannedChange,
    pub timeline: Vec<TimelineEvent>,
}

/// Stores a CSV file's changes (see [`calendar::csv::import`]): every row checked first, all
/// stored in one transaction or none; keys from the file's content make a second import of
/// the same file a no-op.
pub async fn import_changes(
    db: &crate::db::Db,
    policy: &crate::config::Policy,
    text: &str,
    actor: &str,
) -> Result<Vec<PlannedChange>, Vec<String>> {
    let changes = calendar::csv::import(text, &policy.services, policy.timezone)?;
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        h.finish()
    };
    let items: Vec<ChangeToStore> = changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| ChangeToStore {
            change,
            key: format!("import:{digest:016x}:{}", i + 2),
            freezes: Vec::new(),
            conflicts: Vec::new(),
        })
        .collect();
    db.create_changes(&items, actor, Utc::now(), false)
        .await
        .map_err(|e| vec![format!("cannot store the changes: {e:#}")])
}

/// How often the kept feed looks again at the latest change events even when the newest is
/// the one it saw (an event committed late, see [`LATE_EVENTS`]).
pub const FEED_KEPT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a body is kept at most while nothing changed: the window moves with time.
const BODY_KEPT: std::time::Duration = std::time::Duration::from_secs(60);
/// Change events re-read behind the newest one seen: on PostgreSQL ids are taken in insert
/// order but become visible in commit order, so an event may appear behind the newest a
/// look saw (by the few transactions in flight at that moment).
const LATE_EVENTS: i64 = 64;
/// How far past the window's end the kept events reach: the window moves a day before all
/// changes are read again.
const COVER_AHEAD: chrono::Duration = chrono::Duration::days(1);

/// The calendar feed as kept between requests: each change's rendered event, so a change
/// re-renders only itself, and the last body.
pub struct CachedFeed {
    /// The newest change event read.
    version: i64,
    /// When the database was last looked at.
    looked: std::time::Instant,
    /// Changes starting before this are all in `events`.
    covered_to: DateTime<Utc>,
    /// Change id → (start, end, number, sequence, rendered `VEVENT`).
    events: std::collections::HashMap<i64, KeptEvent>,
    freezes: Vec<Freeze>,
    /// Shared with every response that serves it (a poll copies no bytes).
    body: bytes::Bytes,
    assembled: std::time::Instant,
}

struct KeptEvent {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    number: i64,
    sequence: i64,
    text: String,
}

impl KeptEvent {
    fn of(changes: &[PlannedChange], stamp: DateTime<Utc>) -> Vec<(i64, KeptEvent)> {
        let texts = calendar::ics::change_events(changes, stamp);
        changes
            .iter()
            .zip(texts)
            .map(|(c, text)| {
                let kept = KeptEvent {
                    starts_at: c.starts_at,
                    ends_at: c.ends_at,
                    number: c.number.0,
                    sequence: c.sequence,
                    text,
                };
                (c.id, kept)
            })
            .collect()
    }
}

impl CachedFeed {
    /// The feed for the window `[from, to)` from the kept events.
    fn assemble(&mut self, from: DateTime<Utc>, to: DateTime<Utc>, now: DateTime<Utc>) {
        let mut shown: Vec<&KeptEvent> = self
            .events
            .values()
            .filter(|e| e.ends_at > from && e.starts_at < to)
            .collect();
        shown.sort_by_key(|e| (e.starts_at, e.number));
        let body = calendar::ics::assemble(&self.freezes, shown.iter().map(|e| e.text.as_str()), now);
        self.body = bytes::Bytes::from(body);
        self.assembled = std::time::Instant::now();
    }
}

impl Service {
    /// Every freeze known between `from` and `to`: the configured ones and `/change freeze`'s.
    pub async fn freezes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<Vec<Freeze>> {
        let mut all: Vec<Freeze> = self
            .policy
            .changes
            .freezes
            .iter()
            .filter(|f| f.ends_at > from && f.starts_at < to)
            .cloned()
            .collect();
        all.extend(self.db.stored_freezes(from, to).await?);
        all.sort_by_key(|f| f.starts_at);
        Ok(all)
    }

    /// What `change` runs into: other open changes on its service lines in its window, and
    /// open SEV1/SEV2 incidents on them (a private one by its severity only).
    pub async fn change_conflicts(&self, change: &NewChange, except: Option<i64>) -> anyhow::Result<Vec<Conflict>> {
        let others = self.db.changes_between(change.starts_at, change.ends_at).await?;
        let mut found = calendar::conflicts(change, &others, except);
        for incident in self.db.active_incidents().await? {
            if !matches!(incident.severity, Severity::Sev1 | Severity::Sev2) {
                continue;
            }
            let common: Vec<String> = incident
                .services
                .iter()
                .filter(|s| change.services.contains(s))
                .cloned()
                .collect();
            if common.is_empty() {
                continue;
            }
            found.push(Conflict::Incident {
                number: if incident.is_private {
                    "a private incident".into()
                } else {
                    incident.number.to_string()
                },
                severity: incident.severity.to_string(),
                services: common,
            });
        }
        Ok(found)
    }

    /// Plans a change (once per `key`). A change inside a freeze needs an override reason; one
    /// with conflicts needs `go_ahead` (the form's "plan it anyway" box); the owner must be a
    /// person of this workspace.
    pub async fn plan_change(
        &self,
        change: NewChange,
        key: &str,
        actor: &UserId,
        go_ahead: bool,
    ) -> Result<Planned, PlanRefusal> {
        let unavailable = |e: anyhow::Error| {
            tracing::error!(error = %e, "database unavailable while planning a change");
            PlanRefusal::Unavailable
        };
        if change.owner != *actor {
            if let Err(why) = self.check_person(&change.owner).await {
                return Err(PlanRefusal::Fields(vec![("owner", why.to_string())]));
            }
        }
        let freezes = self
            .freezes(change.starts_at, change.ends_at)
            .await
            .map_err(unavailable)?;
        let hit: Vec<&Freeze> = calendar::freezes_hit(&freezes, &change);
        let mut errors = Vec::new();
        if !hit.is_empty() && change.override_reason.is_none() {
            let tz = self.policy.timezone;
            let names: Vec<String> = hit
                .iter()
                .map(|f| {
                    format!(
                        "“{}” ({}–{}, {})",
                        f.name,
                        f.starts_at.with_timezone(&tz).format("%a %d %b %H:%M"),
                        f.ends_at.with_timezone(&tz).format("%a %d %b %H:%M"),
                        f.scope()
                    )
                })
                .collect();
            errors.push((
                "override",
                format!(
                    "This change falls inside the freeze {}. Give an override reason to plan it anyway.",
                    names.join(" and ")
                ),
            ));
        }
        let conflicts = self.change_conflicts(&change, None).await.map_err(unavailable)?;
        if !conflicts.is_empty() && !go_ahead {
            errors.push((
                "go_ahead",
                format!(
                    "Conflicts: {}. Tick “Plan it anyway” to go ahead.",
                    crate::slack::calendar::conflicts_line(&conflicts)
                ),
            ));
        }
        if !errors.is_empty() {
            return Err(PlanRefusal::Fields(errors));
        }
        let item = ChangeToStore {
            change,
            key: key.to_string(),
            freezes: hit.iter().map(|f| f.name.clone()).collect(),
            conflicts: conflicts.clone(),
        };
        let stored = self
            .db
            .create_changes(
                std::slice::from_ref(&item),
                actor.as_str(),
                Utc::now(),
                self.policy.changes.channel.is_some(),
            )
            .await
            .map_err(unavailable)?;
        let change = stored.into_iter().next().ok_or(PlanRefusal::Unavailable)?;
        tracing::info!(change = %change.number, kind = change.kind.as_str(), "change planned");
        self.wake_changes();
        Ok(Planned {
            change,
            conflicts,
            freezes: item.freezes,
        })
    }

    /// `/change start|done|rollback|cancel N`.
    pub async fn move_change(
        &self,
        number: ChangeNumber,
        m: Move,
        note: Option<&str>,
        actor: &UserId,
        key: &str,
    ) -> Result<Option<Moved>, Refusal> {
        match self
            .db
            .move_change(
                number,
                m,
                note,
                actor.as_str(),
                key,
                Utc::now(),
                self.policy.changes.channel.is_some(),
            )
            .await
        {
            Ok(Ok(moved)) => {
                tracing::info!(change = %moved.change.number, state = moved.change.state.as_str(), "change moved");
                self.wake_changes();
                Ok(Some(moved))
            }
            Ok(Err(CalendarRefused::AlreadyHandled)) => Ok(None),
            Ok(Err(CalendarRefused::Rule(why))) => Err(Refusal::Rule(why)),
            Err(e) => Err(Refusal::unavailable("move a change", e)),
        }
    }

    /// The changes overlapping `[from, to)`, in time order, maybe on one service line.
    pub async fn list_changes(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
    ) -> Result<Vec<PlannedChange>, Refusal> {
        if let Some(s) = service {
            self.known_service(s)?;
        }
        let changes = self
            .db
            .changes_between(from, to)
            .await
            .map_err(|e| Refusal::unavailable("list changes", e))?;
        Ok(changes
            .into_iter()
            .filter(|c| service.is_none_or(|s| c.services.iter().any(|x| x == s)))
            .collect())
    }

    fn known_service(&self, s: &str) -> Result<(), Refusal> {
        if self.policy.services.iter().any(|known| known == s) {
            Ok(())
        } else {
            Err(Refusal::Rule(format!(
                "`{}` is not a service line here. Service lines: {}.",
                crate::incident::model::truncate(s, 40),
                self.policy.services.join(", ")
            )))
        }
    }

    /// `/change show N`.
    pub async fn change_record(&self, number: ChangeNumber) -> Result<ChangeRecord, Refusal> {
        let unavailable = |e| Refusal::unavailable("read a change", e);
        let change = self
            .db
            .change_by_number(number)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Refusal::Rule(format!(
                    "There is no {number}. `/change list week` shows the coming changes."
                ))
            })?;
        let timeline = self.db.change_timeline(change.id).await.map_err(unavailable)?;
        Ok(ChangeRecord { change, timeline })
    }

    /// `/change freeze`: an ad-hoc freeze; one overlapping another on a common line is refused.
    pub async fn add_freeze(&self, freeze: Freeze, actor: &UserId) -> Result<(), Refusal> {
        if let Some(services) = &freeze.services {
            for s in services {
                self.known_service(s)?;
            }
        }
        if freeze.ends_at <= freeze.starts_at {
            return Err(Refusal::Rule("The freeze must end after it starts.".into()));
        }
        let unavailable = |e| Refusal::unavailable("store a freeze", e);
        let mut known = self
            .freezes(freeze.starts_at, freeze.ends_at)
            .await
            .map_err(unavailable)?;
        known.push(freeze.clone());
        if let Some((a, _)) = calendar::overlapping_freezes(&known) {
            return Err(Refusal::Rule(format!(
                "That overlaps the freeze “{}” on a common service line; nothing was stored.",
                known[a].name
            )));
        }
        self.db
            .add_freeze(&freeze, actor.as_str(), Utc::now())
            .await
            .map_err(unavailable)
    }

    /// `/incident change CHG-n`: links the change to the incident as a suspected cause.
    pub async fn link_change(
        &self,
        incident: &Incident,
        number: ChangeNumber,
        actor: &UserId,
    ) -> Result<PlannedChange, Refusal> {
        match self
            .db
            .link_change(
                incident.id,
                incident.number.0,
                incident.is_private,
                number,
                actor.as_str(),
                Utc::now(),
            )
            .await
        {
            Ok(Ok(change)) => {
                self.wake_outbox.notify_one();
                Ok(change)
            }
            Ok(Err(CalendarRefused::Rule(why))) => Err(Refusal::Rule(why)),
            Ok(Err(CalendarRefused::AlreadyHandled)) => Err(Refusal::Rule("Already linked.".into())),
            Err(e) => Err(Refusal::unavailable("link a change", e)),
        }
    }

    /// Records linked change `number` as the cause of resolved incident `incident` (the
    /// resolve form's "change / deploy"), on both timelines.
    pub async fn confirm_change_cause(
        &self,
        incident: IncidentId,
        number: ChangeNumber,
        actor: &UserId,
    ) -> Result<(), Refusal> {
        match self
            .db
            .confirm_change_cause(incident, number, actor.as_str(), Utc::now())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Refusal::Rule(format!("{number} is not linked to this incident."))),
            Err(e) => Err(Refusal::unavailable("record a change as the cause", e)),
        }
    }

    /// The changes linked to an incident.
    pub async fn linked_changes(&self, incident: IncidentId) -> Result<Vec<PlannedChange>, Refusal> {
        self.db
            .linked_changes(incident)
            .await
            .map_err(|e| Refusal::unavailable("read linked changes", e))
    }

    /// The `/calendar.ics` feed, from 30 days back to 180 ahead.
    ///
    /// Calendar clients poll the same feed over and over, and it changes only when a change
    /// does. Each change's event is kept rendered; a request looks at the newest change event
    /// (every write to a change records one, on any replica; one index look-up), and when it
    /// moved, or every [`FEED_KEPT`], reads and renders again only the changes written since. All changes are read again when
    /// the window's end passes what was read (daily) or after a restart. Concurrent requests
    /// wait for one look.
    pub async fn calendar_feed(&self, now: DateTime<Utc>) -> anyhow::Result<bytes::Bytes> {
        let (from, to) = calendar::ics::feed_window(now);
        let mut kept = self.feed_cache.lock().await;
        match kept.as_mut() {
            Some(feed) if feed.covered_to >= to => {
                let version = self.db.calendar_version().await?;
                if version != feed.version || feed.looked.elapsed() >= FEED_KEPT {
                    let freezes = self.freezes(from, to).await?;
                    let mut changed = freezes != feed.freezes;
                    // Also when the newest event is the one seen: an event committed late
                    // (see LATE_EVENTS) shows within FEED_KEPT.
                    let touched = self.db.changes_touched_since(feed.version - LATE_EVENTS).await?;
                    let fresh: Vec<PlannedChange> = touched
                        .into_iter()
                        .filter(|c| feed.events.get(&c.id).is_none_or(|e| e.sequence != c.sequence))
                        .collect();
                    changed |= !fresh.is_empty();
                    let events = if fresh.len() > 256 {
                        // A bulk import: render off the runtime's workers.
                        tokio::task::spawn_blocking(move || KeptEvent::of(&fresh, now)).await?
                    } else {
                        KeptEvent::of(&fresh, now)
                    };
                    feed.events.extend(events);
                    feed.version = version.max(feed.version);
                    feed.freezes = freezes;
                    feed.looked = std::time::Instant::now();
                    if changed || feed.assembled.elapsed() >= BODY_KEPT {
                        feed.assemble(from, to, now);
                    }
                }
                return Ok(feed.body.clone());
            }
            _ => {}
        }
        // Everything, read afresh: the version first, so a write meanwhile is read again.
        let version = self.db.calendar_version().await?;
        let covered_to = to + COVER_AHEAD;
        let changes = self.db.changes_between(from, covered_to).await?;
        let freezes = self.freezes(from, to).await?;
        // Tens of milliseconds of rendering: off the runtime's workers.
        let events = tokio::task::spawn_blocking(move || KeptEvent::of(&changes, now)).await?;
        let mut feed = CachedFeed {
            version,
            looked: std::time::Instant::now(),
            covered_to,
            events: events.into_iter().collect(),
            freezes,
            body: bytes::Bytes::new(),
            assembled: std::time::Instant::now(),
        };
        feed.assemble(from, to, now);
        let body = feed.body.clone();
        *kept = Some(feed);
        Ok(body)
    }

    /// `incident-bot changes import`: every row checked first; all stored in one transaction,
    /// or none. Keys from the file's content make a second import of the same file a no-op.
    pub async fn import_changes(&self, text: &str, actor: &str) -> Result<Vec<PlannedChange>, Vec<String>> {
        import_changes(&self.db, &self.policy, text, actor).await
    }

    /// The changes that may have caused `incident` (see [`calendar::suspects`]).
    pub async fn suspects_of(&self, incident: &Incident) -> anyhow::Result<Vec<PlannedChange>> {
        suspects_of(&self.db, &self.policy, incident).await
    }

    fn wake_changes(&self) {
        self.wake_changes.notify_one();
        self.wake_outbox.notify_one();
    }

    /// After the incident's service lines changed: look for (new) possible causes again. Best
    /// effort after the change's own commit (logged when the database refuses).
    pub(super) async fn correlate_again(&self, incident: &Incident) {
        let payload = serde_json::json!({ "incident": incident.id.0 });
        match self
            .db
            .enqueue_change_job(None, "correlate", payload, Utc::now(), None, Utc::now())
            .await
        {
            Ok(_) => self.wake_changes.notify_one(),
            Err(e) => tracing::warn!(error = %e, "cannot plan the change correlation after an impact change"),
        }
    }
}

/// The changes that may have caused `incident`: on its service lines (or maintenance of a
/// vendor its title or description names), in progress or ended within `change_lookback` of
/// its impact start (else its declaration), newest first.
pub async fn suspects_of(
    db: &crate::db::Db,
    policy: &crate::config::Policy,
    incident: &Incident,
) -> anyhow::Result<Vec<PlannedChange>> {
    let facts = IncidentFacts {
        services: incident.services.clone(),
        reference: incident.footprint.impact_start.unwrap_or(incident.declared_at),
        text: format!("{} {}", incident.title, incident.description),
    };
    let lookback = policy.changes.lookback;
    let candidates = db
        .suspect_candidates(&facts.services, facts.reference, lookback)
        .await?;
    Ok(calendar::suspects(candidates, &facts, lookback))
}

/// How `incident-bot changes` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Markdown,
    Csv,
    Json,
    Ics,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<ExportFormat, String> {
        match s {
            "markdown" | "md" => Ok(ExportFormat::Markdown),
            "csv" => Ok(ExportFormat::Csv),
            "json" => Ok(ExportFormat::Json),
            "ics" | "ical" => Ok(ExportFormat::Ics),
            other => Err(format!("--format \"{other}\" is not markdown, csv, json or ics")),
        }
    }
}

/// `incident-bot changes`: the changes overlapping `[from, to)` (and, for ics, the freezes).
pub async fn export_changes(
    db: &crate::db::Db,
    policy: &crate::config::Policy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    format: ExportFormat,
) -> anyhow::Result<String> {
    let changes = db.changes_between(from, to).await?;
    Ok(match format {
        ExportFormat::Csv => calendar::csv::export(&changes),
        ExportFormat::Json => {
            serde_json::to_string_pretty(&serde_json::json!({
                "from": from, "to": to, "changes": changes,
            }))? + "\n"
        }
        ExportFormat::Ics => {
            let mut freezes: Vec<Freeze> = policy
                .changes
                .freezes
                .iter()
                .filter(|f| f.ends_at > from && f.starts_at < to)
                .cloned()
                .collect();
            freezes.extend(db.stored_freezes(from, to).await?);
            calendar::ics::feed(&changes, &freezes, Utc::now())
        }
        ExportFormat::Markdown => {
            let tz = policy.timezone;
            let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            let mut out = format!(
                "# Changes {} – {} ({tz})\n\n| change | kind | title | services | start | end | owner | risk | state |\n|---|---|---|---|---|---|---|---|---|\n",
                fmt(from),
                fmt(to)
            );
            for c in &changes {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    c.number,
                    c.kind,
                    cell(&c.title),
                    cell(&c.services.join(", ")),
                    fmt(c.starts_at),
                    fmt(c.ends_at),
                    c.owner,
                    c.risk,
                    c.state
                ));
            }
            if changes.is_empty() {
                out.push_str("\nNo changes in this window.\n");
            }
            out
        }
    })
}
