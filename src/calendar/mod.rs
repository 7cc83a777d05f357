//! The change calendar (issue 12), pure: planned changes (`CHG-<n>`: deployments, migrations,
//! configuration changes, maintenance, vendor maintenance, campaigns, promotions, market
//! events), their lifecycle, freeze windows, conflicts and which changes an incident may have
//! been caused by. No SQL, no Slack, no clock: callers pass `now`.
//!
//! - [`NewChange::validate`]: a form, a CSV row or a test becomes a checked change, or the
//!   first problem, naming its field.
//! - [`ChangeState::step`]: planned → in progress → done | rolled back | canceled.
//! - [`Freeze`], [`freezes_hit`], [`conflicts`]: what a planned change runs into.
//! - [`suspects`]: the changes on an incident's service lines that were in progress, or ended
//!   within the look-back, at its impact start (or declaration).
//! - [`ics`] and [`csv`]: the calendar feed and the bulk import / export.

pub mod csv;
pub mod ics;

use crate::incident::model::UserId;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest change: a longer one is a freeze or a programme, not a change.
pub const MAX_CHANGE_DAYS: i64 = 30;
/// Longest title (a calendar summary line and a Slack header both stay readable).
pub const MAX_TITLE_CHARS: usize = 150;
/// How long before its start the owner is reminded.
pub const REMIND_BEFORE_MINUTES: i64 = 15;

/// A change's number, shown as `CHG-12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChangeNumber(pub i64);

impl fmt::Display for ChangeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CHG-{}", self.0)
    }
}

impl ChangeNumber {
    /// `12`, `CHG-12`, `chg12`, `#12`.
    pub fn parse(raw: &str) -> Result<ChangeNumber, String> {
        let s = raw.trim().trim_start_matches('#');
        let lower = s.to_ascii_lowercase();
        let digits = lower
            .strip_prefix("chg-")
            .or_else(|| lower.strip_prefix("chg"))
            .unwrap_or(&lower);
        match digits.parse::<i64>() {
            Ok(n) if n > 0 => Ok(ChangeNumber(n)),
            _ => Err(format!(
                "`{}` is not a change number (write it like CHG-12 or 12).",
                crate::incident::model::truncate(raw, 30)
            )),
        }
    }
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $code:literal, $label:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The stored (and CSV, JSON) code.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),* }
            }
            /// In words.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),* }
            }
            /// The code, the label, or the label with `-`/`_` for spaces, any case.
            pub fn parse(raw: &str) -> Result<$name, String> {
                let s = raw.trim().to_ascii_lowercase().replace(['-', ' '], "_");
                $name::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str() == s || k.label().replace(' ', "_") == s)
                    .ok_or_else(|| {
                        format!(
                            "`{}` is not one of: {}.",
                            crate::incident::model::truncate(raw.trim(), 30),
                            $name::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

named_enum!(
    /// What kind of change.
    ChangeKind {
        Deployment => "deployment", "deployment";
        Migration => "migration", "migration";
        ConfigChange => "config_change", "config change";
        Maintenance => "maintenance", "maintenance";
        VendorMaintenance => "vendor_maintenance", "vendor maintenance";
        Campaign => "campaign", "campaign";
        Promotion => "promotion", "promotion";
        MarketEvent => "market_event", "market event";
    }
);

named_enum!(
    /// How risky the owner judges it.
    Risk {
        Low => "low", "low";
        Medium => "medium", "medium";
        High => "high", "high";
    }
);

named_enum!(
    /// Where a change is in its life.
    ChangeState {
        Planned => "planned", "planned";
        InProgress => "in_progress", "in progress";
        Done => "done", "done";
        RolledBack => "rolled_back", "rolled back";
        Canceled => "canceled", "canceled";
    }
);

/// What a person does to a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    Start,
    Done,
    Rollback,
    Cancel,
}

impl Move {
    pub fn as_str(self) -> &'static str {
        match self {
            Move::Start => "start",
            Move::Done => "done",
            Move::Rollback => "rollback",
            Move::Cancel => "cancel",
        }
    }
}

impl ChangeState {
    /// The state after `m`, or why it cannot happen (for the person who asked).
    pub fn step(self, m: Move, number: ChangeNumber) -> Result<ChangeState, String> {
        use ChangeState::*;
        match (self, m) {
            (Planned, Move::Start) => Ok(InProgress),
            (InProgress, Move::Done) => Ok(Done),
            // A change found bad after it was done is rolled back too (the common case in an incident).
            (InProgress | Done, Move::Rollback) => Ok(RolledBack),
            (Planned, Move::Cancel) => Ok(Canceled),
            (Planned, Move::Done) => Err(format!(
                "{number} has not started: `/change start {}` first (or `/change cancel {}`).",
                number.0, number.0
            )),
            (Planned, Move::Rollback) => Err(format!(
                "{number} has not started, so there is nothing to roll back: `/change cancel {}` cancels it.",
                number.0
            )),
            (InProgress, Move::Cancel) => Err(format!(
                "{number} is in progress: finish it with `/change done {}` or `/change rollback {} [note]`.",
                number.0, number.0
            )),
            (state, m) => Err(format!("{number} is {state}; it cannot be {}.", past(m))),
        }
    }

    /// Open: still to happen or happening.
    pub fn is_open(self) -> bool {
        matches!(self, ChangeState::Planned | ChangeState::InProgress)
    }
}

fn past(m: Move) -> &'static str {
    match m {
        Move::Start => "started",
        Move::Done => "marked done",
        Move::Rollback => "rolled back",
        Move::Cancel => "canceled",
    }
}

/// A change as typed (form, CSV row), before it is checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeDraft {
    pub kind: Option<String>,
    pub title: String,
    pub services: Vec<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub owner: Option<UserId>,
    pub risk: Option<String>,
    pub customer_facing: bool,
    pub vendor: Option<String>,
    pub link: Option<String>,
    pub override_reason: Option<String>,
}

/// A checked new change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewChange {
    pub kind: ChangeKind,
    pub title: String,
    pub services: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub owner: UserId,
    pub risk: Risk,
    pub customer_facing: bool,
    pub vendor: Option<String>,
    pub link: Option<String>,
    pub override_reason: Option<String>,
}

/// A problem with one field: `(field, message)`; the field is the form's block id and the
/// CSV column name.
pub type FieldError = (&'static str, String);

impl ChangeDraft {
    /// Checks every field against the service catalogue; the first problem per field.
    pub fn validate(self, catalogue: &[String]) -> Result<NewChange, Vec<FieldError>> {
        let mut errors: Vec<FieldError> = Vec::new();
        let kind = match self.kind.as_deref().map(ChangeKind::parse) {
            Some(Ok(k)) => Some(k),
            Some(Err(e)) => {
                errors.push(("kind", format!("Kind: {e}")));
                None
            }
            None => {
                errors.push(("kind", "Pick the kind of change.".into()));
                None
            }
        };
        let title = self.title.trim().to_string();
        if title.is_empty() {
            errors.push((
                "title",
                "Give the change a title (what changes, e.g. payments-api v42).".into(),
            ));
        } else if title.chars().count() > MAX_TITLE_CHARS {
            errors.push(("title", format!("Keep the title under {MAX_TITLE_CHARS} characters.")));
        }
        let mut services: Vec<String> = Vec::new();
        for s in self.services.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if !catalogue.iter().any(|c| c == s) {
                errors.push((
                    "services",
                    format!(
                        "`{}` is not a service line here. Service lines: {}.",
                        crate::incident::model::truncate(s, 40),
                        catalogue.join(", ")
                    ),
                ));
                break;
            }
            if !services.iter().any(|x| x == s) {
                services.push(s.to_string());
            }
        }
        if services.is_empty() && !errors.iter().any(|(f, _)| *f == "services") {
            errors.push(("services", "Pick the service lines this change touches.".into()));
        }
        match (self.starts_at, self.ends_at) {
            (None, _) => errors.push(("start", "Pick when the change starts.".into())),
            (_, None) => errors.push(("end", "Pick when the change ends.".into())),
            (Some(s), Some(e)) if e <= s => errors.push(("end", "The end must be after the start.".into())),
            (Some(s), Some(e)) if e - s > Duration::days(MAX_CHANGE_DAYS) => errors.push((
                "end",
                format!("A change lasts at most {MAX_CHANGE_DAYS} days; split it, or plan a freeze instead."),
            )),
            _ => {}
        }
        let risk = match self.risk.as_deref().map(Risk::parse) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                errors.push(("risk", format!("Risk: {e}")));
                None
            }
            None => {
                errors.push(("risk", "Pick the risk (low, medium, high).".into()));
                None
            }
        };
        if self.owner.is_none() {
            errors.push(("owner", "Pick the change's owner.".into()));
        }
        let vendor = self.vendor.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if kind == Some(ChangeKind::VendorMaintenance) && vendor.is_none() {
            errors.push(("vendor", "Vendor maintenance needs the vendor's name.".into()));
        }
        if vendor.as_ref().is_some_and(|v| v.chars().count() > 80) {
            errors.push(("vendor", "Keep the vendor's name under 80 characters.".into()));
        }
        let link = self.link.map(|l| l.trim().to_string()).filter(|l| !l.is_empty());
        if let Some(l) = &link {
            let ok = url::Url::parse(l).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok || l.len() > 500 {
                errors.push(("link", "The link must be an http(s) address (the ticket).".into()));
            }
        }
        let override_reason = self
            .override_reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if override_reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            errors.push(("override", "Keep the override reason under 500 characters.".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewChange {
            kind: kind.expect("checked"),
            title,
            services,
            starts_at: self.starts_at.expect("checked"),
            ends_at: self.ends_at.expect("checked"),
            owner: self.owner.expect("checked"),
            risk: risk.expect("checked"),
            customer_facing: self.customer_facing,
            vendor,
            link,
            override_reason,
        })
    }
}

/// A stored change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedChange {
    pub id: i64,
    pub number: ChangeNumber,
    pub kind: ChangeKind,
    pub title: String,
    pub services: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub owner: UserId,
    pub risk: Risk,
    pub customer_facing: bool,
    pub vendor: Option<String>,
    pub link: Option<String>,
    pub override_reason: Option<String>,
    pub state: ChangeState,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    /// When it was done, rolled back or canceled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Bumped on every edit (the calendar feed's `SEQUENCE`).
    pub sequence: i64,
}

impl PlannedChange {
    /// "CHG-12 deployment: payments-api v42"
    pub fn summary(&self) -> String {
        format!("{} {}: {}", self.number, self.kind, self.title)
    }

    /// When it stopped affecting anything: never while in progress; the actual end once done or
    /// rolled back; the planned end while planned; canceled changes affect nothing.
    pub fn active_until(&self) -> Option<DateTime<Utc>> {
        match self.state {
            ChangeState::InProgress => Some(DateTime::<Utc>::MAX_UTC),
            ChangeState::Planned => Some(self.ends_at),
            ChangeState::Done | ChangeState::RolledBack => Some(self.finished_at.unwrap_or(self.ends_at)),
            ChangeState::Canceled => None,
        }
    }

    /// When it began affecting things: the actual start once started, else the planned one.
    pub fn active_from(&self) -> DateTime<Utc> {
        self.started_at.unwrap_or(self.starts_at).min(self.starts_at)
    }
}

/// The change calendar's settings (`changes_channel`, `change_lookback`, `change_digest_cron`,
/// `calendar_token`, `[[freezes]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSettings {
    /// Where new changes, state moves and the digest are posted; unset = nowhere.
    pub channel: Option<String>,
    /// How long after a change ended it is still a suspect for a new incident.
    pub lookback: Duration,
    /// When the digest is posted (cron, local time); default 08:00 on working days.
    pub digest_cron: String,
    /// `?token=` of `/calendar.ics`; unset = the feed is off (401).
    pub calendar_token: Option<crate::config::Secret>,
    pub freezes: Vec<Freeze>,
}

impl Default for ChangeSettings {
    fn default() -> Self {
        ChangeSettings {
            channel: None,
            lookback: Duration::hours(24),
            digest_cron: "0 0 8 * * Mon-Fri".into(),
            calendar_token: None,
            freezes: Vec::new(),
        }
    }
}

/// A window in which changes are refused without an override reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Freeze {
    pub name: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `None`: every service line.
    pub services: Option<Vec<String>>,
}

impl Freeze {
    /// Whether a change on `services` from `start` to `end` falls (partly) inside it.
    pub fn hits(&self, services: &[String], start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let overlaps = start < self.ends_at && end > self.starts_at;
        let covers = match &self.services {
            None => true,
            Some(list) => services.iter().any(|s| list.contains(s)),
        };
        overlaps && covers
    }

    pub fn scope(&self) -> String {
        match &self.services {
            None => "all service lines".into(),
            Some(list) => list.join(", "),
        }
    }
}

/// The freezes a change runs into.
pub fn freezes_hit<'a>(freezes: &'a [Freeze], change: &NewChange) -> Vec<&'a Freeze> {
    freezes
        .iter()
        .filter(|f| f.hits(&change.services, change.starts_at, change.ends_at))
        .collect()
}

/// The first two freezes of a list that overlap on a common service line, by index.
pub fn overlapping_freezes(freezes: &[Freeze]) -> Option<(usize, usize)> {
    for (i, a) in freezes.iter().enumerate() {
        for (j, b) in freezes.iter().enumerate().skip(i + 1) {
            let services = b.services.clone().unwrap_or_default();
            let shares = a.services.is_none() || b.services.is_none() || a.hits(&services, b.starts_at, b.ends_at);
            if shares && a.starts_at < b.ends_at && b.starts_at < a.ends_at {
                return Some((i, j));
            }
        }
    }
    None
}

/// Reads a local date or date-time (`2026-12-24`, `2026-12-24T18:00`, `2026-12-24 18:00`) in
/// `tz`; a bare date is its start of day (or, as an end, `end_of_day`: the next midnight).
pub fn parse_local(raw: &str, tz: chrono_tz::Tz, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    let fail = || {
        format!(
            "cannot read `{}` as a date or time (write it like 2026-12-24 or 2026-12-24T18:00, local time)",
            crate::incident::model::truncate(s, 40)
        )
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end_of_day { d.succ_opt().ok_or_else(fail)? } else { d };
        d.and_hms_opt(0, 0, 0).ok_or_else(fail)?
    } else {
        [
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S",
        ]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .ok_or_else(fail)?
    };
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(naive + Duration::hours(1))).earliest())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(fail)
}

/// Something a planned change runs into (said in the form and in the announcement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Conflict {
    /// Another open change on a common service line, overlapping in time.
    Change {
        number: ChangeNumber,
        title: String,
        services: Vec<String>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    /// An open SEV1/SEV2 incident on a common service line (private ones by number only).
    Incident {
        number: String,
        severity: String,
        services: Vec<String>,
    },
}

/// The open changes among `others` that share a service line with `change` and overlap it.
pub fn conflicts(change: &NewChange, others: &[PlannedChange], except: Option<i64>) -> Vec<Conflict> {
    others
        .iter()
        .filter(|o| Some(o.id) != except && o.state.is_open())
        .filter(|o| o.starts_at < change.ends_at && change.starts_at < o.ends_at)
        .filter_map(|o| {
            let common: Vec<String> = o
                .services
                .iter()
                .filter(|s| change.services.contains(s))
                .cloned()
                .collect();
            (!common.is_empty()).then(|| Conflict::Change {
                number: o.number,
                title: o.title.clone(),
                services: common,
                starts_at: o.starts_at,
                ends_at: o.ends_at,
            })
        })
        .collect()
}

/// What an incident's correlation looks at: its service lines, when its impact started (or
/// when it was declared), the text that may name a vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentFacts {
    pub services: Vec<String>,
    pub reference: DateTime<Utc>,
    pub text: String,
}

/// Whether `change` may have caused an incident with `facts`: it shares a service line (or is
/// maintenance of a vendor the incident names), it had begun by the reference time, and it was
/// in progress then or ended within `lookback` before it.
pub fn is_suspect(change: &PlannedChange, facts: &IncidentFacts, lookback: Duration) -> bool {
    let Some(until) = change.active_until() else {
        return false;
    };
    let on_service = change.services.iter().any(|s| facts.services.contains(s));
    let vendor_named =
        change.kind == ChangeKind::VendorMaintenance && change.vendor.as_deref().is_some_and(|v| names(&facts.text, v));
    (on_service || vendor_named) && change.active_from() <= facts.reference && until >= facts.reference - lookback
}

/// The suspects among `candidates`, newest (latest start) first.
pub fn suspects(candidates: Vec<PlannedChange>, facts: &IncidentFacts, lookback: Duration) -> Vec<PlannedChange> {
    let mut found: Vec<PlannedChange> = candidates
        .into_iter()
        .filter(|c| is_suspect(c, facts, lookback))
        .collect();
    found.sort_by(|a, b| b.active_from().cmp(&a.active_from()).then(b.number.cmp(&a.number)));
    found.dedup_by_key(|c| c.id);
    found
}

/// Whether `text` names `vendor` as a whole word (any case).
fn names(text: &str, vendor: &str) -> bool {
    let vendor = vendor.trim().to_lowercase();
    if vendor.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    text.match_indices(&vendor).any(|(i, m)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        let after = text[i + m.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric());
        before && after
    })
}

/// A window of changes to list: `today`, `week`, `YYYY-MM-DD..YYYY-MM-DD` (local days).
pub fn window(spec: &str, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let today = now.with_timezone(&tz).date_naive();
    let day_start = |d: NaiveDate| parse_local(&d.to_string(), tz, false);
    match spec.trim().to_ascii_lowercase().as_str() {
        "" | "today" => Ok((day_start(today)?, day_start(today + Duration::days(1))?)),
        "week" => Ok((day_start(today)?, day_start(today + Duration::days(7))?)),
        other => {
            let (a, b) = other.split_once("..").ok_or_else(|| {
                format!(
                    "`{}` is not a window (write today, week or 2026-12-01..2026-12-07).",
                    crate::incident::model::truncate(spec, 30)
                )
            })?;
            let first = NaiveDate::parse_from_str(a.trim(), "%Y-%m-%d")
                .map_err(|_| format!("`{a}` is not a date (write it like 2026-12-01)."))?;
            let last = NaiveDate::parse_from_str(b.trim(), "%Y-%m-%d")
                .map_err(|_| format!("`{b}` is not a date (write it like 2026-12-07)."))?;
            if last < first {
                return Err("The window ends before it starts.".into());
            }
            if last - first > Duration::days(366) {
                return Err("A window spans at most a year.".into());
            }
            Ok((day_start(first)?, day_start(last + Duration::days(1))?))
        }
    }
}

/// The review draft's section on the changes linked to the incident (empty when none).
pub fn review_section(changes: &[PlannedChange], tz: chrono_tz::Tz) -> String {
    if changes.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Linked changes\n\nChanges linked to this incident as suspected causes:\n\n");
    for c in changes {
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
        out.push_str(&format!(
            "- **{}** {}: {} ({}; {} → {}; owner {}; {} risk; {})",
            c.number,
            c.kind,
            c.title,
            c.services.join(", "),
            local(c.starts_at),
            local(c.ends_at),
            c.owner,
            c.risk,
            c.state
        ));
        if let Some(l) = &c.link {
            out.push_str(&format!(" <{l}>"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn catalogue() -> Vec<String> {
        ["payments", "checkout"].map(String::from).to_vec()
    }

    fn draft() -> ChangeDraft {
        ChangeDraft {
            kind: Some("deployment".into()),
            title: "payments-api v42".into(),
            services: vec!["payments".into()],
            starts_at: Some(t(0)),
            ends_at: Some(t(1)),
            owner: Some(UserId::parse("U0CAROL").unwrap()),
            risk: Some("medium".into()),
            ..ChangeDraft::default()
        }
    }

    fn stored(number: i64, services: &[&str], state: ChangeState, start: i64, end: i64) -> PlannedChange {
        let c = draft().validate(&catalogue()).unwrap();
        PlannedChange {
            id: number,
            number: ChangeNumber(number),
            kind: c.kind,
            title: c.title,
            services: services.iter().map(|s| s.to_string()).collect(),
            starts_at: t(start),
            ends_at: t(end),
            owner: c.owner,
            risk: c.risk,
            customer_facing: false,
            vendor: None,
            link: None,
            override_reason: None,
            state,
            created_by: "U0CAROL".into(),
            created_at: t(-100),
            started_at: (state != ChangeState::Planned).then(|| t(start)),
            finished_at: matches!(state, ChangeState::Done | ChangeState::RolledBack).then(|| t(end)),
            sequence: 0,
        }
    }

    #[test]
    fn a_good_draft_validates() {
        let c = draft().validate(&catalogue()).unwrap();
        assert_eq!(c.kind, ChangeKind::Deployment);
        assert_eq!(c.risk, Risk::Medium);
    }

    #[test]
    fn refusals_name_their_field() {
        let field = |d: ChangeDraft| d.validate(&catalogue()).unwrap_err()[0].0;
        let mut d = draft();
        d.ends_at = Some(t(-1));
        assert_eq!(field(d), "end");
        let mut d = draft();
        d.ends_at = Some(t(31 * 24));
        assert_eq!(field(d), "end");
        let mut d = draft();
        d.services = vec!["billing".into()];
        assert_eq!(field(d), "services");
        let mut d = draft();
        d.kind = Some("vendor maintenance".into());
        assert_eq!(field(d), "vendor");
        let mut d = draft();
        d.link = Some("javascript:alert(1)".into());
        assert_eq!(field(d), "link");
        let mut d = draft();
        d.owner = None;
        assert_eq!(field(d), "owner");
    }

    #[test]
    fn kinds_parse_by_code_or_label() {
        assert_eq!(ChangeKind::parse("Config change"), Ok(ChangeKind::ConfigChange));
        assert_eq!(
            ChangeKind::parse("vendor-maintenance"),
            Ok(ChangeKind::VendorMaintenance)
        );
        assert!(ChangeKind::parse("party").is_err());
        assert_eq!(ChangeNumber::parse("CHG-12"), Ok(ChangeNumber(12)));
        assert_eq!(ChangeNumber::parse("7"), Ok(ChangeNumber(7)));
        assert!(ChangeNumber::parse("CHG-x").is_err());
    }

    #[test]
    fn lifecycle() {
        use ChangeState::*;
        let n = ChangeNumber(1);
        assert_eq!(Planned.step(Move::Start, n), Ok(InProgress));
        assert_eq!(InProgress.step(Move::Done, n), Ok(Done));
        assert_eq!(Done.step(Move::Rollback, n), Ok(RolledBack));
        assert_eq!(Planned.step(Move::Cancel, n), Ok(Canceled));
        assert!(Planned.step(Move::Done, n).is_err());
        assert!(Canceled.step(Move::Start, n).is_err());
        assert!(RolledBack.step(Move::Rollback, n).is_err());
    }

    #[test]
    fn freezes_and_conflicts() {
        let change = draft().validate(&catalogue()).unwrap();
        let all = Freeze {
            name: "peak".into(),
            starts_at: t(-2),
            ends_at: t(0) + Duration::minutes(30),
            services: None,
        };
        let checkout_only = Freeze {
            services: Some(vec!["checkout".into()]),
            ..all.clone()
        };
        assert_eq!(freezes_hit(&[all.clone(), checkout_only.clone()], &change).len(), 1);
        assert_eq!(overlapping_freezes(&[all.clone(), checkout_only]), Some((0, 1)));
        let later = Freeze {
            starts_at: t(10),
            ends_at: t(11),
            ..all.clone()
        };
        assert_eq!(overlapping_freezes(&[all, later]), None);

        let others = vec![
            stored(1, &["payments"], ChangeState::Planned, 0, 2), // overlaps, same service
            stored(2, &["checkout"], ChangeState::Planned, 0, 2), // other service
            stored(3, &["payments"], ChangeState::Done, 0, 2),    // closed
            stored(4, &["payments"], ChangeState::Planned, 1, 2), // starts when ours ends
        ];
        let found = conflicts(&change, &others, None);
        assert_eq!(found.len(), 1);
        assert!(matches!(&found[0], Conflict::Change { number, .. } if number.0 == 1));
    }

    #[test]
    fn suspects_are_in_progress_or_recently_ended_on_the_same_lines() {
        let facts = IncidentFacts {
            services: vec!["payments".into()],
            reference: t(0),
            text: "Acquirer Globex timeouts".into(),
        };
        let mut vendor = stored(6, &["checkout"], ChangeState::Done, -3, -2);
        vendor.kind = ChangeKind::VendorMaintenance;
        vendor.vendor = Some("Globex".into());
        let candidates = vec![
            stored(1, &["payments"], ChangeState::InProgress, -48, -47), // still in progress
            stored(2, &["payments"], ChangeState::Done, -5, -4),         // ended 4 h before
            stored(3, &["payments"], ChangeState::Done, -40, -30),       // ended 30 h before
            stored(4, &["checkout"], ChangeState::Done, -2, -1),         // other line
            stored(5, &["payments"], ChangeState::Planned, 2, 3),        // not begun
            vendor,                                                      // named vendor
            stored(7, &["payments"], ChangeState::Canceled, -2, -1),     // canceled
        ];
        let found: Vec<i64> = suspects(candidates, &facts, Duration::hours(24))
            .iter()
            .map(|c| c.number.0)
            .collect();
        assert_eq!(found, vec![6, 2, 1]);
    }

    #[test]
    fn windows_and_local_times() {
        let tz: chrono_tz::Tz = "Europe/London".parse().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-07-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (a, b) = window("today", tz, now).unwrap();
        assert_eq!(a.to_rfc3339(), "2026-06-30T23:00:00+00:00");
        assert_eq!(b - a, Duration::hours(24));
        assert!(window("2026-07-05..2026-07-01", tz, now).is_err());
        assert_eq!(
            parse_local("2026-07-01T09:30", tz, false).unwrap().to_rfc3339(),
            "2026-07-01T08:30:00+00:00"
        );
        assert!(parse_local("31/12/2026", tz, false).is_err());
    }
}
