//! Pure incident types and lifecycle rules. No I/O, no clock: callers pass `now`.
//!
//! Raw input (Slack text, modal fields, config) is parsed into these types at the edge, so
//! everything past the edge can rely on them being valid ("parse, don't validate").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest title we accept: keeps `INC-<n>: <title>` inside Slack's 150-char header limit.
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest description: a section block holds 3,000 characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_900;
/// Slack channel names are at most 80 characters.
pub const MAX_CHANNEL_NAME_CHARS: usize = 80;

/// Database id of an incident (internal; people see [`IncidentNumber`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IncidentId(pub i64);

/// The sequential number people use: `INC-42`. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IncidentNumber(pub i64);

impl fmt::Display for IncidentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

impl FromStr for IncidentNumber {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .trim()
            .strip_prefix("INC-")
            .or_else(|| s.trim().strip_prefix("inc-"))
            .unwrap_or(s.trim());
        match digits.parse::<i64>() {
            Ok(n) if n > 0 => Ok(IncidentNumber(n)),
            _ => Err(format!("`{s}` is not an incident number (write it like INC-42)")),
        }
    }
}

/// Severity, worst first. Names are fixed (SEV1–SEV4); their cadences come from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Sev1,
    Sev2,
    Sev3,
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Sev1, Severity::Sev2, Severity::Sev3, Severity::Sev4];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::Sev4 => "SEV4",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == upper)
            .ok_or_else(|| format!("`{s}` is not a severity (use SEV1, SEV2, SEV3 or SEV4)"))
    }
}

/// Lifecycle status. See [`Status::can_move_to`] for the allowed moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Investigating,
    Identified,
    Mitigated,
    Resolved,
    Closed,
    Canceled,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Investigating,
        Status::Identified,
        Status::Mitigated,
        Status::Resolved,
        Status::Closed,
        Status::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Investigating => "investigating",
            Status::Identified => "identified",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Canceled => "canceled",
        }
    }

    /// Open incidents are the ones people are still working and the SLA clock runs for.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Investigating | Status::Identified | Status::Mitigated)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == lower)
            .ok_or_else(|| format!("`{s}` is not a status"))
    }
}

/// A Slack user id (`U…` or `W…`), checked for shape only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserId(String);

impl UserId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = s.len() >= 2
            && s.len() <= 32
            && (s.starts_with('U') || s.starts_with('W'))
            && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if ok {
            Ok(UserId(s.to_string()))
        } else {
            Err(format!("`{s}` is not a Slack user id"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated incident title: trimmed, non-empty, at most [`MAX_TITLE_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            Err("Give the incident a short title, e.g. \"Payments API 500s\".".into())
        } else if chars > MAX_TITLE_CHARS {
            Err(format!(
                "Keep the title to {MAX_TITLE_CHARS} characters (it has {chars}); put details in the description."
            ))
        } else if trimmed.chars().any(|c| c.is_control()) {
            Err("The title must be one line without control characters.".into())
        } else {
            Ok(Title(trimmed.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a responder gives when declaring (already validated).
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    pub title: Title,
    pub severity: Severity,
    pub services: Vec<String>,
    pub description: String,
    pub spoc: UserId,
    pub declared_by: UserId,
    pub is_private: bool,
    /// Where `/incident` was typed: the declarer's confirmation goes there.
    pub origin_channel: Option<String>,
}

/// An incident as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: IncidentId,
    pub number: IncidentNumber,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub status: Status,
    pub services: Vec<String>,
    pub is_private: bool,
    pub declared_by: UserId,
    pub spoc: UserId,
    pub origin_channel: Option<String>,
    pub channel_id: Option<String>,
    pub channel_name: Option<String>,
    pub card_ts: Option<String>,
    pub announce_ts: Option<String>,
    pub declared_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub identified_at: Option<DateTime<Utc>>,
    pub mitigated_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// Optional roles (comms, tech_lead, …) → who holds them. The SPOC is [`Incident::spoc`].
    pub roles: std::collections::BTreeMap<String, UserId>,
    pub footprint: Footprint,
    pub resolution: String,
    pub root_cause: String,
    /// The last stakeholder update: the SLA clock counts from here (or from declaration).
    pub last_update_at: Option<DateTime<Utc>>,
    /// When the next update is due and what the reminder scheduler does next.
    pub clock: Option<crate::reminder::plan::Clock>,
    /// How many follow-ups were ever added: the next one is `#follow_up_seq + 1`.
    pub follow_up_seq: i64,
    /// The post-incident review: the SPOC's next reminder, when it was marked done, and where
    /// it lives (see [`crate::incident::pir`]).
    pub pir_remind_at: Option<DateTime<Utc>>,
    pub pir_done_at: Option<DateTime<Utc>>,
    pub pir_link: Option<String>,
}

/// Quantified impact (the affected service lines are [`Incident::services`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    pub regions: Vec<String>,
    pub customers: Option<i64>,
    pub merchants: Option<i64>,
    pub transactions: Option<i64>,
    pub impact_start: Option<DateTime<Utc>>,
    pub impact_end: Option<DateTime<Utc>>,
}

impl Incident {
    /// Canceled (declared by mistake), even if closed since: such an incident takes no
    /// follow-ups and no review.
    pub fn was_canceled(&self) -> bool {
        self.status == Status::Canceled || self.canceled_at.is_some()
    }
}

/// Cuts `text` to at most `max` characters, marking the cut with an ellipsis.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
impl Incident {
    /// A typical open incident for unit tests: INC-42, SEV2, declared by alice at
    /// 2026-11-23 12:00 UTC, bob as SPOC, with a title that tries a mass mention.
    pub(crate) fn example() -> Incident {
        use chrono::TimeZone;
        let user = |id: &str| UserId::parse(id).expect("valid test user id");
        Incident {
            id: IncidentId(1),
            number: IncidentNumber(42),
            title: "Payments <!channel> & refunds".into(),
            description: "Card payments fail with 500 for ~30% of requests".into(),
            severity: Severity::Sev2,
            status: Status::Investigating,
            services: vec!["payments".into(), "checkout".into()],
            is_private: false,
            declared_by: user("U0ALICE"),
            spoc: user("U0BOB"),
            origin_channel: Some("C0GENERAL".into()),
            channel_id: Some("C0INC".into()),
            channel_name: Some("inc-42-payments".into()),
            card_ts: None,
            announce_ts: None,
            declared_at: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            acknowledged_at: None,
            identified_at: None,
            mitigated_at: None,
            resolved_at: None,
            closed_at: None,
            canceled_at: None,
            roles: Default::default(),
            footprint: Footprint::default(),
            resolution: String::new(),
            root_cause: String::new(),
            last_update_at: None,
            clock: None,
            follow_up_seq: 0,
            pir_remind_at: None,
            pir_done_at: None,
            pir_link: None,
        }
    }
}

/// Kinds of timeline events. Stored as their snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Declared,
    ChannelCreated,
    Announced,
    Status,
    Severity,
    Role,
    Handover,
    Acknowledged,
    Update,
    Note,
    Impact,
    Reminder,
    Breach,
    FollowUp,
    Pir,
    Snooze,
    SideEffectFailed,
    /// Something about a vendor ticket (see [`crate::vendor`]).
    Vendor,
    /// Detection (issue 15): an alert linked, fired again, resolved; all linked alerts resolved.
    Alert,
    /// Customer communications (issue 14): a draft written, approved and published, a reminder.
    Customer,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Declared => "declared",
            EventKind::ChannelCreated => "channel_created",
            EventKind::Announced => "announced",
            EventKind::Status => "status",
            EventKind::Severity => "severity",
            EventKind::Role => "role",
            EventKind::Handover => "handover",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Update => "update",
            EventKind::Note => "note",
            EventKind::Impact => "impact",
            EventKind::Reminder => "reminder",
            EventKind::Breach => "breach",
            EventKind::FollowUp => "follow_up",
            EventKind::Pir => "pir",
            EventKind::Snooze => "snooze",
            EventKind::SideEffectFailed => "side_effect_failed",
            EventKind::Vendor => "vendor",
            EventKind::Alert => "alert",
            EventKind::Customer => "customer",
        }
    }
}

/// One append-only timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub details: serde_json::Value,
}

impl TimelineEvent {
    /// One line of plain text saying what happened (for the timeline command and the PIR).
    pub fn summary(&self) -> String {
        let d = &self.details;
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        match self.kind.as_str() {
            "declared" => format!("{} {}", s("severity"), s("title")),
            "status" | "severity" => {
                let mut line = format!("{} → {}", s("from"), s("to"));
                if !s("summary").is_empty() {
                    line.push_str(&format!(": {}", s("summary")));
                }
                line
            }
            "role" | "handover" => format!("{}: {} → {}", s("role"), s("from"), s("to")),
            "update" => s("known"),
            "note" => s("text"),
            "channel_created" => s("name"),
            "reminder" => format!(
                "update {} to {}",
                if s("stage") == "due" { "due" } else { "still overdue" },
                s("spoc")
            ),
            "breach" => format!(
                "no update {} min past due",
                d["overdue_ms"].as_i64().unwrap_or_default() / 60_000
            ),
            "follow_up" => {
                let seq = d["seq"].as_i64().unwrap_or_default();
                match s("action").as_str() {
                    "created" => format!("#{seq} added: {}", s("text")),
                    "reminder" => format!("#{seq} overdue, owner reminded"),
                    "wont_do" => format!("#{seq} won't do"),
                    action => format!("#{seq} {action}"),
                }
            }
            "pir" => match s("action").as_str() {
                "done" if !s("link").is_empty() => format!("review done: {}", s("link")),
                "done" => "review done".into(),
                "scheduled" => "review reminder scheduled".into(),
                "reminder" => "SPOC reminded of the review".into(),
                other => other.to_string(),
            },
            "vendor" => s("summary"),
            "alert" => match s("what").as_str() {
                "linked" => format!("alert linked: {} ({})", s("title"), s("source")),
                "fired" => format!("alert fired again: {}", s("title")),
                "resolved" => format!("alert resolved: {}", s("title")),
                "all_resolved" => "all linked alerts resolved".into(),
                "auto_declared" => format!("declared automatically by an alert rule: {}", s("title")),
                other => other.to_string(),
            },
            "customer" => match s("action").as_str() {
                "drafted" => format!("customer update drafted: {}", s("public_title")),
                "published" if d["last"] == true => format!("last customer update published: {}", s("public_title")),
                "published" => format!("customer update published: {}", s("public_title")),
                "reminder" => "customer update due; comms reminded".into(),
                other => other.to_string(),
            },
            _ => String::new(),
        }
    }
}

/// Turns a title into the slug part of a channel name: lowercase `a-z 0-9 -`, no runs of `-`.
pub fn slugify(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    for c in title.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// `inc-<number>-<slug>` (prefix configurable), always a valid Slack channel name.
/// `attempt` 1 is the plain name; 2, 3, … append `-2`, `-3` after Slack answered `name_taken`.
pub fn channel_name(prefix: &str, number: IncidentNumber, title: &str, attempt: u32) -> String {
    let prefix = slugify(prefix);
    let head = if prefix.is_empty() {
        number.0.to_string()
    } else {
        format!("{prefix}-{}", number.0)
    };
    let suffix = if attempt > 1 {
        format!("-{attempt}")
    } else {
        String::new()
    };
    let slug = slugify(title);
    let mut name = head;
    if !slug.is_empty() {
        let room = MAX_CHANNEL_NAME_CHARS.saturating_sub(name.len() + 1 + suffix.len());
        let cut: String = slug.chars().take(room).collect();
        let cut = cut.trim_end_matches('-');
        if !cut.is_empty() {
            name.push('-');
            name.push_str(cut);
        }
    }
    name.push_str(&suffix);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_numbers_print_and_parse() {
        assert_eq!(IncidentNumber(42).to_string(), "INC-42");
        assert_eq!("INC-42".parse::<IncidentNumber>(), Ok(IncidentNumber(42)));
        assert_eq!("42".parse::<IncidentNumber>(), Ok(IncidentNumber(42)));
        assert!("INC-0".parse::<IncidentNumber>().is_err());
        assert!("INC-x".parse::<IncidentNumber>().is_err());
    }

    #[test]
    fn severities_parse_case_insensitively_and_reject_unknown() {
        assert_eq!("sev2".parse::<Severity>(), Ok(Severity::Sev2));
        assert_eq!(" SEV1 ".parse::<Severity>(), Ok(Severity::Sev1));
        let err = "SEV9".parse::<Severity>().unwrap_err();
        assert!(err.contains("SEV9") && err.contains("SEV1"), "{err}");
        assert!(Severity::Sev1 < Severity::Sev4, "worst sorts first");
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  Payments down ").unwrap().as_str(), "Payments down");
        assert!(Title::parse("   ").unwrap_err().contains("title"));
        let long = "x".repeat(MAX_TITLE_CHARS + 1);
        assert!(Title::parse(&long).unwrap_err().contains("121"));
        assert!(
            Title::parse(&"é".repeat(MAX_TITLE_CHARS)).is_ok(),
            "counts chars, not bytes"
        );
        assert!(Title::parse("a\u{0}b").is_err());
    }

    #[test]
    fn serialized_names_match_the_displayed_ones() {
        for sev in Severity::ALL {
            assert_eq!(serde_json::to_value(sev).unwrap(), sev.as_str());
        }
        for st in Status::ALL {
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
    }

    #[test]
    fn user_ids_are_checked_for_shape() {
        assert!(UserId::parse("U0ALICE").is_ok());
        assert!(UserId::parse("W123").is_ok());
        assert!(UserId::parse("u123").is_err());
        assert!(UserId::parse("C123").is_err());
        assert!(UserId::parse("U").is_err());
    }

    #[test]
    fn slugs_keep_only_slack_safe_characters() {
        assert_eq!(slugify("Payments API 500s!"), "payments-api-500s");
        assert_eq!(slugify("  --Über   café__ "), "ber-caf");
        assert_eq!(slugify("🔥🔥"), "");
    }

    #[test]
    fn channel_names_are_valid_and_suffixed_on_retry() {
        let n = IncidentNumber(42);
        assert_eq!(
            channel_name("inc", n, "Payments API 500s", 1),
            "inc-42-payments-api-500s"
        );
        assert_eq!(
            channel_name("inc", n, "Payments API 500s", 3),
            "inc-42-payments-api-500s-3"
        );
        assert_eq!(channel_name("inc", n, "🔥", 1), "inc-42");
        assert_eq!(channel_name("", n, "x", 1), "42-x");
        let long = channel_name("inc", IncidentNumber(123_456), &"word ".repeat(40), 12);
        assert!(long.len() <= MAX_CHANNEL_NAME_CHARS, "{long}");
        assert!(long.ends_with("-12"), "{long}");
        assert!(!long.contains("--"), "{long}");
    }

    #[test]
    fn channel_names_always_satisfy_slack_rules() {
        let samples = ["", "A", "x y z", "--", "Ünïcödé only", "a_b", &"ab-".repeat(60)];
        for (i, title) in samples.iter().enumerate() {
            for attempt in 1..5 {
                let name = channel_name("INC", IncidentNumber(i as i64 + 1), title, attempt);
                assert!(!name.is_empty() && name.len() <= MAX_CHANNEL_NAME_CHARS, "{name}");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
                    "{name}"
                );
            }
        }
    }
}
