//! Detection (issue 15), the pure part: alert sources and rules as configured, the three
//! payload shapes read into one [`Alert`] ([`payload`]), and what an incoming alert does to its
//! group ([`plan`]): a new group, a repeat, a flap, a new episode or a resolve.
//!
//! No SQL, no Slack, no clock: callers pass `now`.

pub mod config;
pub mod payload;

use crate::config::Secret;
use crate::incident::model::Severity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A resolved alert that fires again within this window is flapping: it stays in its episode
/// (same message, updated) instead of posting again.
pub const FLAP_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// How long "Silence 1 h" silences a fingerprint.
pub const SILENCE_FOR: chrono::Duration = chrono::Duration::hours(1);

/// How the description of an incident an `[[alert_rules]]` entry declared begins (the
/// announcement says so too).
pub const AUTO_DECLARED: &str = "🤖 Declared automatically by an alert rule.";

/// The largest body an intake endpoint reads (bigger: 413).
pub const MAX_BODY: usize = 1024 * 1024;

/// A group that fired this many times in a report's period without becoming an incident is noisy.
pub const NOISY_FIRES: i64 = 10;

/// Which payload shape a source sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Alertmanager,
    Grafana,
    Generic,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Grafana => "grafana",
            SourceKind::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        [SourceKind::Alertmanager, SourceKind::Grafana, SourceKind::Generic]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One `[[alert_sources]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSource {
    /// Unique; alerts are deduplicated per source name + fingerprint.
    pub name: String,
    pub kind: SourceKind,
    /// The bearer token the source sends (`Authorization: Bearer …`). Never logged.
    pub token: Secret,
    /// The service line when the labels name none.
    pub service: Option<String>,
    /// Which label holds the severity (default `severity`).
    pub severity_label: String,
    /// Label value (lowercase) → severity; on top of the built-in defaults.
    pub severity_map: BTreeMap<String, Severity>,
    /// Which label holds the service (default `service`).
    pub service_label: String,
    /// Label value → configured service line.
    pub service_map: BTreeMap<String, String>,
}

/// Where an `[[alert_rules]]` entry takes the SPOC of an automatic declaration from.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub source: Option<String>,
    /// Matches the alert's mapped severity.
    pub severity: Option<Severity>,
    pub service: Option<String>,
    /// Every one of these labels must have this value.
    pub labels: BTreeMap<String, String>,
    /// `declare`: declare an incident at once; `post`: only post in the triage channel.
    pub declare: bool,
    /// The declared incident's severity (default: the alert's, else SEV3).
    pub declare_severity: Option<Severity>,
    /// The on-call user group whose first member becomes SPOC.
    pub oncall_group: Option<String>,
    /// The SPOC when there is no on-call group or it is empty.
    pub spoc: Option<String>,
}

impl AlertRule {
    pub fn matches(&self, alert: &Alert) -> bool {
        self.source
            .as_ref()
            .is_none_or(|s| alert.source == *s || alert.source.starts_with(&format!("{s}/")))
            && self.severity.is_none_or(|s| alert.severity == Some(s))
            && self.service.as_ref().is_none_or(|s| alert.service.as_ref() == Some(s))
            && self.labels.iter().all(|(k, v)| alert.labels.get(k) == Some(v))
    }
}

/// The first rule that matches `alert` (rules are tried in the order written).
pub fn first_rule<'a>(rules: &'a [AlertRule], alert: &Alert) -> Option<(usize, &'a AlertRule)> {
    rules.iter().enumerate().find(|(_, r)| r.matches(alert))
}

/// Alerting settings: the triage channel, the sources, the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Where alert groups are posted; unset = alerts are stored and counted, not posted.
    pub channel: Option<String>,
    pub sources: Vec<AlertSource>,
    pub rules: Vec<AlertRule>,
    /// At most one `chat.update` of a group's message per this long (repeats in between are
    /// coalesced into the next one); new groups are posted at once.
    pub update_gap: std::time::Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            channel: None,
            sources: Vec::new(),
            rules: Vec::new(),
            update_gap: std::time::Duration::from_secs(10),
        }
    }
}

impl AlertsConfig {
    /// The source of `kind` whose token is `token` (compared in constant time per source).
    pub fn authenticate(&self, kind: SourceKind, token: &str) -> Option<&AlertSource> {
        self.sources
            .iter()
            .filter(|s| s.kind == kind)
            .find(|s| constant_time_eq(s.token.expose().as_bytes(), token.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<AlertStatus> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// A link shown with the alert (runbook, dashboard, source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    pub title: String,
}

/// One alert, read from any of the payload shapes, labels mapped to severity and service.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The source's name (`name/<payload source>` for generic sources).
    pub source: String,
    pub fingerprint: String,
    pub status: AlertStatus,
    pub title: String,
    pub severity: Option<Severity>,
    /// The severity as the source said it (`critical`), for display.
    pub raw_severity: Option<String>,
    pub service: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub links: Vec<Link>,
    pub description: String,
    pub starts_at: Option<DateTime<Utc>>,
}

/// What is stored of a group, as far as deciding about the next alert goes.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupState {
    pub status: AlertStatus,
    pub resolved_at: Option<DateTime<Utc>>,
    pub silenced_until: Option<DateTime<Utc>>,
}

/// What an incoming alert does to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// First time this source + fingerprint is seen: a new group, posted.
    New,
    /// Firing again while firing: count and last seen go up, the message is updated.
    Repeat,
    /// Fired again within [`FLAP_WINDOW`] of its resolve: back to firing in the same episode
    /// and message (updated, not posted again).
    Flap,
    /// Fired again long after its resolve: a new episode, posted as a new message.
    Reopen,
    /// Resolved now.
    Resolve,
    /// A resolve for a group already resolved: nothing changes but last seen.
    ResolvedAgain,
}

impl Intake {
    /// The `alert_events` kind it is recorded as.
    pub fn event(self) -> &'static str {
        match self {
            Intake::New | Intake::Reopen => "fired",
            Intake::Repeat => "repeated",
            Intake::Flap => "flapped",
            Intake::Resolve => "resolved",
            Intake::ResolvedAgain => "resolved_again",
        }
    }

    /// Whether the alert fired (counts toward noisy alerts).
    pub fn fired(self) -> bool {
        matches!(self, Intake::New | Intake::Repeat | Intake::Flap | Intake::Reopen)
    }
}

/// Decides what `status` arriving `now` does to the group (`None`: never seen).
pub fn plan(existing: Option<&GroupState>, status: AlertStatus, now: DateTime<Utc>) -> Intake {
    match (existing, status) {
        (None, _) => Intake::New,
        (Some(g), AlertStatus::Firing) => match g.status {
            AlertStatus::Firing => Intake::Repeat,
            AlertStatus::Resolved => match g.resolved_at {
                Some(at) if now - at < FLAP_WINDOW => Intake::Flap,
                _ => Intake::Reopen,
            },
        },
        (Some(g), AlertStatus::Resolved) => match g.status {
            AlertStatus::Firing => Intake::Resolve,
            AlertStatus::Resolved => Intake::ResolvedAgain,
        },
    }
}

impl GroupState {
    /// The state once `intake` (decided by [`plan`] on this state) is applied `now`: what the
    /// next alert of the same group in one batch is decided on.
    pub fn after(&self, intake: Intake, now: DateTime<Utc>) -> GroupState {
        let (status, resolved_at) = match intake {
            Intake::New | Intake::Repeat | Intake::Flap | Intake::Reopen => (AlertStatus::Firing, None),
            Intake::Resolve => (AlertStatus::Resolved, Some(now)),
            Intake::ResolvedAgain => (self.status, self.resolved_at),
        };
        GroupState {
            status,
            resolved_at,
            silenced_until: self.silenced_until,
        }
    }
}

/// Whether the group's message is posted / updated now (not while silenced).
pub fn silenced(g: &GroupState, now: DateTime<Utc>) -> bool {
    g.silenced_until.is_some_and(|until| until > now)
}

/// The severity a label value means: the source's map first, then the usual words.
pub fn map_severity(source: &AlertSource, raw: &str) -> Option<Severity> {
    let key = raw.trim().to_ascii_lowercase();
    if let Some(s) = source.severity_map.get(&key) {
        return Some(*s);
    }
    if let Ok(s) = raw.trim().to_ascii_uppercase().parse::<Severity>() {
        return Some(s);
    }
    match key.as_str() {
        "critical" | "crit" | "page" | "p1" | "disaster" => Some(Severity::Sev1),
        "high" | "error" | "major" | "p2" => Some(Severity::Sev2),
        "warning" | "warn" | "minor" | "average" | "p3" => Some(Severity::Sev3),
        "info" | "low" | "information" | "none" | "p4" => Some(Severity::Sev4),
        _ => None,
    }
}

/// The service line the labels name (through the source's map), else the source's default.
pub fn map_service(source: &AlertSource, labels: &BTreeMap<String, String>, services: &[String]) -> Option<String> {
    if let Some(v) = labels.get(&source.service_label) {
        if let Some(s) = source.service_map.get(v) {
            return Some(s.clone());
        }
        if services.iter().any(|s| s == v) {
            return Some(v.clone());
        }
    }
    source.service.clone()
}

/// A stable fingerprint of a label set (FNV-1a 64 over the sorted `k=v` pairs), for payloads
/// that carry none.
pub fn fingerprint_of(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0u8]).chain(v.bytes()).chain([0xffu8]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The description a declaration from this alert is pre-filled with: what fired, since when,
/// its labels and its links.
pub fn declare_description(alert: &StoredAlert) -> String {
    let mut out = String::new();
    if !alert.description.trim().is_empty() {
        out.push_str(alert.description.trim());
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "Alert from {} ({} × since {} UTC): {}",
        alert.source,
        alert.fire_count,
        alert.starts_at.unwrap_or(alert.first_seen).format("%Y-%m-%d %H:%M"),
        alert.title
    ));
    let labels: Vec<String> = alert.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !labels.is_empty() {
        out.push_str(&format!("\nLabels: {}", labels.join(", ")));
    }
    for link in &alert.links {
        out.push_str(&format!("\n{}: {}", link.title, link.url));
    }
    out
}

/// An alert group as stored (what the triage message shows).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    pub id: i64,
    pub source: String,
    pub fingerprint: String,
    pub status: AlertStatus,
    pub title: String,
    pub severity: Option<Severity>,
    pub raw_severity: Option<String>,
    pub service: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub links: Vec<Link>,
    pub description: String,
    pub starts_at: Option<DateTime<Utc>>,
    pub episode: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub fire_count: i64,
    pub flaps: i64,
    pub acked_by: Option<String>,
    pub acked_at: Option<DateTime<Utc>>,
    pub silenced_until: Option<DateTime<Utc>>,
    pub silenced_by: Option<String>,
    pub incident_id: Option<i64>,
    pub auto_rule: Option<i64>,
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    pub version: i64,
    pub uncertain: bool,
}

impl StoredAlert {
    /// When the problem began: the source's start time, else when we first heard of it.
    pub fn detected_at(&self) -> DateTime<Utc> {
        self.starts_at.unwrap_or(self.first_seen).min(self.first_seen)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_batch_decides_each_alert_on_the_state_its_predecessors_left() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let fresh = GroupState {
            status: AlertStatus::Firing,
            resolved_at: None,
            silenced_until: Some(t0 + chrono::Duration::hours(1)),
        };
        // firing → resolved → firing again a minute later (a flap) → resolved twice.
        let mut state = fresh.clone();
        let mut seen = Vec::new();
        for (status, secs) in [
            (AlertStatus::Resolved, 0),
            (AlertStatus::Firing, 60),
            (AlertStatus::Resolved, 120),
            (AlertStatus::Resolved, 180),
        ] {
            let now = t0 + chrono::Duration::seconds(secs);
            let intake = plan(Some(&state), status, now);
            state = state.after(intake, now);
            seen.push(intake);
        }
        assert_eq!(
            seen,
            [Intake::Resolve, Intake::Flap, Intake::Resolve, Intake::ResolvedAgain]
        );
        // The last resolve that changed something dates the state; the silence holds throughout.
        assert_eq!(state.resolved_at, Some(t0 + chrono::Duration::seconds(120)));
        assert_eq!(state.silenced_until, fresh.silenced_until);
        // Long after the resolve, a fire is a new episode.
        let later = t0 + chrono::Duration::hours(2);
        assert_eq!(plan(Some(&state), AlertStatus::Firing, later), Intake::Reopen);
    }

    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 8, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn state(status: AlertStatus, resolved_at: Option<DateTime<Utc>>) -> GroupState {
        GroupState {
            status,
            resolved_at,
            silenced_until: None,
        }
    }

    #[test]
    fn plan_new_repeat_resolve() {
        assert_eq!(plan(None, AlertStatus::Firing, t(0)), Intake::New);
        let firing = state(AlertStatus::Firing, None);
        assert_eq!(plan(Some(&firing), AlertStatus::Firing, t(1)), Intake::Repeat);
        assert_eq!(plan(Some(&firing), AlertStatus::Resolved, t(1)), Intake::Resolve);
        let resolved = state(AlertStatus::Resolved, Some(t(10)));
        assert_eq!(
            plan(Some(&resolved), AlertStatus::Resolved, t(11)),
            Intake::ResolvedAgain
        );
    }

    #[test]
    fn flapping_within_five_minutes_stays_in_the_episode() {
        let resolved = state(AlertStatus::Resolved, Some(t(10)));
        assert_eq!(plan(Some(&resolved), AlertStatus::Firing, t(14)), Intake::Flap);
        assert_eq!(plan(Some(&resolved), AlertStatus::Firing, t(15)), Intake::Reopen);
        assert_eq!(plan(Some(&resolved), AlertStatus::Firing, t(60)), Intake::Reopen);
    }

    fn source() -> AlertSource {
        AlertSource {
            name: "prom".into(),
            kind: SourceKind::Alertmanager,
            token: Secret::new("t0ken"),
            service: Some("app".into()),
            severity_label: "severity".into(),
            severity_map: BTreeMap::from([("warning".to_string(), Severity::Sev4)]),
            service_label: "service".into(),
            service_map: BTreeMap::from([("payments-api".to_string(), "payments".to_string())]),
        }
    }

    #[test]
    fn labels_map_to_severity_and_service() {
        let s = source();
        assert_eq!(map_severity(&s, "critical"), Some(Severity::Sev1));
        assert_eq!(
            map_severity(&s, "Warning"),
            Some(Severity::Sev4),
            "the source's map wins"
        );
        assert_eq!(map_severity(&s, "sev2"), Some(Severity::Sev2));
        assert_eq!(map_severity(&s, "whatever"), None);
        let services: Vec<String> = vec!["payments".into(), "checkout".into()];
        let labels = |v: &str| BTreeMap::from([("service".to_string(), v.to_string())]);
        assert_eq!(
            map_service(&s, &labels("payments-api"), &services).as_deref(),
            Some("payments")
        );
        assert_eq!(
            map_service(&s, &labels("checkout"), &services).as_deref(),
            Some("checkout")
        );
        assert_eq!(map_service(&s, &labels("unknown"), &services).as_deref(), Some("app"));
    }

    #[test]
    fn tokens_authenticate_per_kind() {
        let cfg = AlertsConfig {
            sources: vec![source()],
            ..AlertsConfig::default()
        };
        assert!(cfg.authenticate(SourceKind::Alertmanager, "t0ken").is_some());
        assert!(cfg.authenticate(SourceKind::Alertmanager, "t0keN").is_none());
        assert!(cfg.authenticate(SourceKind::Grafana, "t0ken").is_none());
        assert!(cfg.authenticate(SourceKind::Alertmanager, "").is_none());
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = BTreeMap::from([("alertname".to_string(), "A".to_string())]);
        let b = BTreeMap::from([("alertname".to_string(), "B".to_string())]);
        assert_eq!(fingerprint_of(&a), fingerprint_of(&a.clone()));
        assert_ne!(fingerprint_of(&a), fingerprint_of(&b));
    }

    #[test]
    fn rules_match_on_every_condition() {
        let alert = Alert {
            source: "prom".into(),
            fingerprint: "f".into(),
            status: AlertStatus::Firing,
            title: "t".into(),
            severity: Some(Severity::Sev1),
            raw_severity: Some("critical".into()),
            service: Some("payments".into()),
            labels: BTreeMap::from([("team".to_string(), "pay".to_string())]),
            links: vec![],
            description: String::new(),
            starts_at: None,
        };
        let rule = AlertRule {
            source: Some("prom".into()),
            severity: Some(Severity::Sev1),
            service: Some("payments".into()),
            labels: BTreeMap::from([("team".to_string(), "pay".to_string())]),
            declare: true,
            declare_severity: Some(Severity::Sev2),
            oncall_group: None,
            spoc: None,
        };
        assert!(rule.matches(&alert));
        let other = AlertRule {
            service: Some("checkout".into()),
            ..rule.clone()
        };
        assert!(!other.matches(&alert));
        assert_eq!(first_rule(&[other, rule], &alert).map(|(i, _)| i), Some(1));
    }
}
