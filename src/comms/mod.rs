//! Customer-facing communications (issue 14), pure: the `[status_page]` settings (public
//! components mapped to service lines, per-severity customer-update cadence, approval, the
//! templates the form pre-fills), customer updates and who may approve them, the public view
//! of an incident, and the figures reports show (time to first customer update, cadence
//! compliance, minutes per component status). No SQL, no Slack, no clock: callers pass `now`.
//!
//! A customer update is written as a *draft*; with `comms_approval` on, someone else (the comms
//! role, or the SPOC when nobody holds it) approves it and only then is it *published*. An edit
//! is a new draft that supersedes the old one, so only approved words are ever public.

pub mod config;
pub mod metrics;

use crate::incident::model::{Severity, UserId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A public component's status, best first (the order is the "worst of" order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Operational,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentStatus {
    pub const ALL: [ComponentStatus; 4] = [
        ComponentStatus::Operational,
        ComponentStatus::DegradedPerformance,
        ComponentStatus::PartialOutage,
        ComponentStatus::MajorOutage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
        }
    }

    /// As a person reads it: "Partial outage".
    pub fn label(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::DegradedPerformance => "Degraded performance",
            ComponentStatus::PartialOutage => "Partial outage",
            ComponentStatus::MajorOutage => "Major outage",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        ComponentStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == norm || (norm == "degraded" && *c == ComponentStatus::DegradedPerformance))
            .ok_or_else(|| {
                format!(
                    "\"{s}\" is not a component status; use one of {}",
                    ComponentStatus::ALL.map(|c| c.as_str()).join(", ")
                )
            })
    }

    /// The status the form suggests for an incident of `severity`.
    pub fn suggested_for(severity: Severity) -> Self {
        match severity {
            Severity::Sev1 => ComponentStatus::MajorOutage,
            Severity::Sev2 => ComponentStatus::PartialOutage,
            Severity::Sev3 | Severity::Sev4 => ComponentStatus::DegradedPerformance,
        }
    }
}

impl fmt::Display for ComponentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A component of the public status page: what customers see, backed by service lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Stable, URL-safe (`card-payments`): the form's option value and the JSON id.
    pub id: String,
    /// As customers read it (`Card payments`).
    pub name: String,
    /// The internal service lines behind it: an incident on one suggests this component.
    pub services: Vec<String>,
}

/// `[status_page]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPage {
    pub title: String,
    pub logo_url: Option<String>,
    /// Times on the page are shown in this zone and in UTC.
    pub timezone: chrono_tz::Tz,
    pub components: Vec<Component>,
    /// Per severity, in [`Severity::ALL`] order: how often customers hear from us; `None` = no
    /// customer cadence for that severity (updates may still be published).
    pub cadence: [Option<Duration>; 4],
    /// Drafts need someone's approval before they are published (default on).
    pub comms_approval: bool,
    /// The author may approve their own draft (default off).
    pub allow_self_approval: bool,
    /// Where published updates are also posted in Slack (optional).
    pub channel: Option<String>,
    /// Message templates per component status, pre-filled by the form; `{components}` is
    /// replaced by the affected components' names.
    pub templates: BTreeMap<ComponentStatus, String>,
}

impl StatusPage {
    pub fn component(&self, id: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.id == id)
    }

    pub fn cadence(&self, severity: Severity) -> Option<Duration> {
        self.cadence[Severity::ALL.iter().position(|s| *s == severity).unwrap_or(0)]
    }

    /// The components backed by any of `services`, in page order.
    pub fn components_for(&self, services: &[String]) -> Vec<&Component> {
        self.components
            .iter()
            .filter(|c| c.services.iter().any(|s| services.contains(s)))
            .collect()
    }

    /// The form's pre-filled message for `status` on `components`.
    pub fn template(&self, status: ComponentStatus, components: &[&Component]) -> String {
        let names = components
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let names = if names.is_empty() {
            "some of our services".to_string()
        } else {
            names
        };
        let text = self
            .templates
            .get(&status)
            .cloned()
            .unwrap_or_else(|| default_template(status).to_string());
        text.replace("{components}", &names)
    }

    /// One line per setting, as `check-config` prints it.
    pub fn describe(&self) -> String {
        let cadence: Vec<String> = Severity::ALL
            .iter()
            .filter_map(|s| {
                self.cadence(*s)
                    .map(|d| format!("{s} every {}", crate::config::humanize(d.to_std().unwrap_or_default())))
            })
            .collect();
        format!(
            "\"{}\": {} component(s) ({}); customer updates {}; {}{}",
            self.title,
            self.components.len(),
            self.components
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if cadence.is_empty() {
                "on no cadence".to_string()
            } else {
                cadence.join(", ")
            },
            match (self.comms_approval, self.allow_self_approval) {
                (false, _) => "published without approval",
                (true, false) => "approved by the comms role (or the SPOC), never by the author",
                (true, true) => "approved by the comms role (or the SPOC); authors may approve their own",
            },
            self.channel
                .as_deref()
                .map(|c| format!("; also posted to {c}"))
                .unwrap_or_default()
        )
    }
}

fn default_template(status: ComponentStatus) -> &'static str {
    match status {
        ComponentStatus::Operational => "{components} are working normally again. We are monitoring closely.",
        ComponentStatus::DegradedPerformance => {
            "Some requests to {components} are slower than usual. We are investigating and will update you shortly."
        }
        ComponentStatus::PartialOutage => {
            "Some requests to {components} are failing. Our engineers are working on it and we will update you shortly."
        }
        ComponentStatus::MajorOutage => {
            "{components} are unavailable. Our engineers are working to restore service and we will update you shortly."
        }
    }
}

/// The most a public title or message may hold (the page stays readable; Slack's inputs are
/// bounded the same way).
pub const MAX_TITLE: usize = 150;
pub const MAX_MESSAGE: usize = 3_000;

/// Where a customer update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Written, waiting for approval: never public.
    Draft,
    /// Approved (or approval is off) and public.
    Published,
    /// Replaced by an edit before it was approved, or an edit of it was published: never
    /// publishable again.
    Superseded,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Draft => "draft",
            UpdateState::Published => "published",
            UpdateState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "draft" => Ok(UpdateState::Draft),
            "published" => Ok(UpdateState::Published),
            "superseded" => Ok(UpdateState::Superseded),
            other => Err(format!("unknown customer update state \"{other}\"")),
        }
    }
}

/// A component and the status an update gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentImpact {
    pub component: String,
    pub status: ComponentStatus,
}

/// What an author wrote, checked against the page's components: a form becomes this or the
/// first problem, naming its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomerUpdate {
    pub public_title: String,
    pub message: String,
    pub components: Vec<ComponentImpact>,
    /// "This is the last update": the public incident is resolved when it is published.
    pub last: bool,
}

/// A form field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

impl NewCustomerUpdate {
    /// Checks a draft: a title and a message within bounds, at least one component, each one
    /// on the page. A last update puts every component back to operational.
    pub fn validate(
        page: &StatusPage,
        public_title: &str,
        message: &str,
        components: &[String],
        status: ComponentStatus,
        last: bool,
    ) -> Result<Self, FieldError> {
        let err = |field, problem: String| Err(FieldError { field, problem });
        let title = public_title.trim();
        if title.is_empty() {
            return err("public_title", "Give the public title customers will see.".into());
        }
        if title.chars().count() > MAX_TITLE {
            return err(
                "public_title",
                format!("Keep the public title within {MAX_TITLE} characters."),
            );
        }
        let message = message.trim();
        if message.is_empty() {
            return err("message", "Write the message customers will read.".into());
        }
        if message.chars().count() > MAX_MESSAGE {
            return err("message", format!("Keep the message within {MAX_MESSAGE} characters."));
        }
        if components.is_empty() {
            return err("components", "Pick at least one affected component.".into());
        }
        let mut impacts: Vec<ComponentImpact> = Vec::new();
        for id in components {
            let Some(c) = page.component(id) else {
                return err(
                    "components",
                    format!(
                        "\"{id}\" is not a component of the status page; known: {}",
                        page.components
                            .iter()
                            .map(|c| c.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            };
            if impacts.iter().any(|i| i.component == c.id) {
                continue;
            }
            impacts.push(ComponentImpact {
                component: c.id.clone(),
                status: if last { ComponentStatus::Operational } else { status },
            });
        }
        Ok(NewCustomerUpdate {
            public_title: title.to_string(),
            message: message.to_string(),
            components: impacts,
            last,
        })
    }
}

/// A stored customer update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerUpdate {
    pub id: i64,
    pub incident_id: crate::incident::model::IncidentId,
    /// A stable public identity (the feed entry's id).
    pub uuid: String,
    pub state: UpdateState,
    pub public_title: String,
    pub message: String,
    pub components: Vec<ComponentImpact>,
    pub last: bool,
    pub author: UserId,
    pub created_at: DateTime<Utc>,
    pub approved_by: Option<UserId>,
    pub published_at: Option<DateTime<Utc>>,
    /// The draft's message in the incident channel (its Approve / Edit buttons).
    pub draft_ts: Option<String>,
}

/// Why incident `number` takes no customer update, if it does not: a private incident never
/// goes on the public page, a canceled one has nothing to say.
pub fn refusal(number: crate::incident::model::IncidentNumber, is_private: bool, canceled: bool) -> Option<String> {
    if is_private {
        return Some(format!("{number} is private: it never goes on the public status page."));
    }
    canceled.then(|| format!("{number} was canceled: it takes no customer updates."))
}

/// Who approves drafts of an incident: the comms role, or the SPOC when nobody holds it.
pub fn approver<'a>(roles: &'a BTreeMap<String, UserId>, spoc: &'a UserId) -> &'a UserId {
    roles.get(COMMS_ROLE).unwrap_or(spoc)
}

/// The optional role that owns customer communications.
pub const COMMS_ROLE: &str = "comms";

/// Whether `actor` may approve `update`: only a draft, only the approver (comms, or the SPOC),
/// and not its own author unless the page allows it.
pub fn may_approve(
    update: &CustomerUpdate,
    actor: &UserId,
    approver: &UserId,
    allow_self_approval: bool,
) -> Result<(), String> {
    match update.state {
        UpdateState::Draft => {}
        UpdateState::Published => return Err("That customer update is already published.".into()),
        UpdateState::Superseded => {
            return Err(
                "That draft was replaced by an edit: approve the newest draft (only approved words are published)."
                    .into(),
            )
        }
    }
    if actor != approver {
        return Err(format!(
            "Only <@{approver}> (the comms role, or the SPOC when nobody holds it) can approve customer updates."
        ));
    }
    if actor == &update.author && !allow_self_approval {
        return Err(
            "You wrote this draft: someone else must approve it (the page does not allow self-approval).".into(),
        );
    }
    Ok(())
}

/// When the next customer update is due after one published at `at` (none after the last one,
/// or without a cadence for the severity).
pub fn next_due(page: &StatusPage, severity: Severity, at: DateTime<Utc>, last: bool) -> Option<DateTime<Utc>> {
    if last {
        return None;
    }
    page.cadence(severity).map(|every| at + every)
}

/// A published update, as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicUpdate {
    pub uuid: String,
    pub published_at: DateTime<Utc>,
    pub message: String,
    pub components: Vec<ComponentImpact>,
    pub last: bool,
}

/// An incident as the public sees it: its public id and title and its published updates, newest
/// first. Never its internal title, people, channel or severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicIncident {
    pub public_id: String,
    pub title: String,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub updates: Vec<PublicUpdate>,
}

impl PublicIncident {
    /// The statuses its newest update gives (operational once resolved).
    pub fn current(&self) -> Vec<ComponentImpact> {
        match (self.resolved_at, self.updates.first()) {
            (None, Some(u)) => u.components.clone(),
            _ => Vec::new(),
        }
    }
}

/// How long resolved incidents stay on the page.
pub fn recent_window() -> Duration {
    Duration::days(14)
}

/// The status page's content at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageView {
    pub title: String,
    /// The worst component status.
    pub overall: ComponentStatus,
    /// Every component, in page order, with its current status.
    pub components: Vec<(PublicComponent, ComponentStatus)>,
    /// Unresolved public incidents, newest first.
    pub active: Vec<PublicIncident>,
    /// Resolved within [`recent_window`], newest first.
    pub recent: Vec<PublicIncident>,
}

/// A component as the page shows it (id and name; its service lines are internal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicComponent {
    pub id: String,
    pub name: String,
}

/// Builds the page from the public incidents that are active or resolved since
/// `now - recent_window()`: each component takes the worst status any active incident gives it.
pub fn page_view(page: &StatusPage, incidents: Vec<PublicIncident>, now: DateTime<Utc>) -> PageView {
    let since = now - recent_window();
    let (mut active, mut recent): (Vec<PublicIncident>, Vec<PublicIncident>) =
        incidents.into_iter().partition(|i| i.resolved_at.is_none());
    recent.retain(|i| i.resolved_at.is_some_and(|at| at >= since));
    active.sort_by_key(|i| std::cmp::Reverse(i.started_at));
    recent.sort_by_key(|i| std::cmp::Reverse(i.resolved_at));
    let mut status: BTreeMap<&str, ComponentStatus> = BTreeMap::new();
    for incident in &active {
        for impact in incident.current() {
            if let Some(c) = page.component(&impact.component) {
                let s = status.entry(c.id.as_str()).or_insert(ComponentStatus::Operational);
                *s = (*s).max(impact.status);
            }
        }
    }
    let components: Vec<(PublicComponent, ComponentStatus)> = page
        .components
        .iter()
        .map(|c| {
            (
                PublicComponent {
                    id: c.id.clone(),
                    name: c.name.clone(),
                },
                status
                    .get(c.id.as_str())
                    .copied()
                    .unwrap_or(ComponentStatus::Operational),
            )
        })
        .collect();
    let overall = components
        .iter()
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(ComponentStatus::Operational);
    PageView {
        title: page.title.clone(),
        overall,
        components,
        active,
        recent,
    }
}

/// A fresh public id: 10 lowercase letters and digits, unguessable (nothing about the
/// incident's number or time).
pub fn new_public_id() -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    raw[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn page() -> StatusPage {
        StatusPage {
            title: "Acme status".into(),
            logo_url: None,
            timezone: chrono_tz::Europe::Amsterdam,
            components: vec![
                Component {
                    id: "card-payments".into(),
                    name: "Card payments".into(),
                    services: vec!["payments".into()],
                },
                Component {
                    id: "payouts".into(),
                    name: "Payouts".into(),
                    services: vec!["payouts".into(), "ledger".into()],
                },
            ],
            cadence: [Some(Duration::minutes(30)), Some(Duration::hours(1)), None, None],
            comms_approval: true,
            allow_self_approval: false,
            channel: None,
            templates: BTreeMap::new(),
        }
    }

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn draft(author: &str) -> CustomerUpdate {
        CustomerUpdate {
            id: 1,
            incident_id: crate::incident::model::IncidentId(1),
            uuid: "u".into(),
            state: UpdateState::Draft,
            public_title: "Card payments failing".into(),
            message: "We are on it".into(),
            components: vec![],
            last: false,
            author: user(author),
            created_at: Utc.timestamp_opt(0, 0).unwrap(),
            approved_by: None,
            published_at: None,
            draft_ts: None,
        }
    }

    #[test]
    fn statuses_parse_in_the_words_people_use_and_order_worst_last() {
        assert_eq!(
            ComponentStatus::parse("Partial outage"),
            Ok(ComponentStatus::PartialOutage)
        );
        assert_eq!(
            ComponentStatus::parse("degraded"),
            Ok(ComponentStatus::DegradedPerformance)
        );
        assert!(ComponentStatus::parse("on fire").unwrap_err().contains("major_outage"));
        assert!(ComponentStatus::MajorOutage > ComponentStatus::PartialOutage);
    }

    #[test]
    fn a_draft_names_the_field_that_is_wrong() {
        let p = page();
        let ok = NewCustomerUpdate::validate(
            &p,
            " Card payments ",
            "Failing",
            &["card-payments".into(), "card-payments".into()],
            ComponentStatus::PartialOutage,
            false,
        )
        .unwrap();
        assert_eq!(ok.public_title, "Card payments");
        assert_eq!(ok.components.len(), 1, "a component listed twice counts once");
        let e = |t: &str, m: &str, c: &[&str]| {
            let c: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            NewCustomerUpdate::validate(&p, t, m, &c, ComponentStatus::MajorOutage, false)
                .unwrap_err()
                .field
        };
        assert_eq!(e("", "m", &["payouts"]), "public_title");
        assert_eq!(e("t", " ", &["payouts"]), "message");
        assert_eq!(e("t", "m", &[]), "components");
        assert_eq!(e("t", "m", &["crypto"]), "components");
        assert_eq!(e(&"x".repeat(151), "m", &["payouts"]), "public_title");
        let last = NewCustomerUpdate::validate(
            &p,
            "t",
            "fixed",
            &["payouts".into()],
            ComponentStatus::MajorOutage,
            true,
        )
        .unwrap();
        assert_eq!(
            last.components[0].status,
            ComponentStatus::Operational,
            "the last update restores"
        );
    }

    #[test]
    fn only_the_approver_approves_and_never_their_own_draft_unless_allowed() {
        let comms = user("U0COMMS");
        let d = draft("U0AUTHOR");
        assert_eq!(may_approve(&d, &comms, &comms, false), Ok(()));
        assert!(may_approve(&d, &user("U0OTHER"), &comms, false)
            .unwrap_err()
            .contains("<@U0COMMS>"));
        let own = draft("U0COMMS");
        assert!(may_approve(&own, &comms, &comms, false)
            .unwrap_err()
            .contains("someone else"));
        assert_eq!(may_approve(&own, &comms, &comms, true), Ok(()));
        let mut old = draft("U0AUTHOR");
        old.state = UpdateState::Superseded;
        assert!(may_approve(&old, &comms, &comms, true)
            .unwrap_err()
            .contains("replaced by an edit"));
        old.state = UpdateState::Published;
        assert!(may_approve(&old, &comms, &comms, true)
            .unwrap_err()
            .contains("already published"));
    }

    #[test]
    fn the_comms_role_approves_or_else_the_spoc() {
        let spoc = user("U0SPOC");
        let mut roles = BTreeMap::new();
        assert_eq!(approver(&roles, &spoc), &spoc);
        roles.insert("comms".to_string(), user("U0COMMS"));
        assert_eq!(approver(&roles, &spoc).as_str(), "U0COMMS");
    }

    #[test]
    fn templates_name_the_components_and_cadence_follows_severity() {
        let p = page();
        let comps = p.components_for(&["ledger".to_string()]);
        assert_eq!(comps.len(), 1);
        assert!(p
            .template(ComponentStatus::MajorOutage, &comps)
            .starts_with("Payouts are unavailable"));
        let at = Utc.timestamp_opt(1_000, 0).unwrap();
        assert_eq!(
            next_due(&p, Severity::Sev1, at, false),
            Some(at + Duration::minutes(30))
        );
        assert_eq!(next_due(&p, Severity::Sev1, at, true), None);
        assert_eq!(next_due(&p, Severity::Sev3, at, false), None);
    }

    #[test]
    fn the_page_shows_the_worst_status_of_active_incidents_and_recent_resolved_ones() {
        let p = page();
        let now = Utc.timestamp_opt(100 * 86_400, 0).unwrap();
        let update = |components: Vec<(&str, ComponentStatus)>| PublicUpdate {
            uuid: "x".into(),
            published_at: now,
            message: "m".into(),
            components: components
                .into_iter()
                .map(|(c, status)| ComponentImpact {
                    component: c.into(),
                    status,
                })
                .collect(),
            last: false,
        };
        let incident = |id: &str, resolved: Option<DateTime<Utc>>, u: PublicUpdate| PublicIncident {
            public_id: id.into(),
            title: id.into(),
            started_at: now - Duration::hours(1),
            resolved_at: resolved,
            updates: vec![u],
        };
        let view = page_view(
            &p,
            vec![
                incident(
                    "a",
                    None,
                    update(vec![("card-payments", ComponentStatus::DegradedPerformance)]),
                ),
                incident("b", None, update(vec![("card-payments", ComponentStatus::MajorOutage)])),
                incident(
                    "c",
                    Some(now - Duration::days(2)),
                    update(vec![("payouts", ComponentStatus::MajorOutage)]),
                ),
                incident("old", Some(now - Duration::days(20)), update(vec![])),
            ],
            now,
        );
        assert_eq!(view.overall, ComponentStatus::MajorOutage);
        assert_eq!(
            view.components[0].1,
            ComponentStatus::MajorOutage,
            "worst of two incidents"
        );
        assert_eq!(
            view.components[1].1,
            ComponentStatus::Operational,
            "resolved incidents restore"
        );
        assert_eq!(view.active.len(), 2);
        assert_eq!(
            view.recent.iter().map(|i| i.public_id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
    }

    #[test]
    fn public_ids_are_short_and_unrelated() {
        let (a, b) = (new_public_id(), new_public_id());
        assert_eq!(a.len(), 10);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
