//! Vendor escalations, the pure domain: the `[[vendors]]` catalogue (names, service lines,
//! support link, escalation contact, per-severity SLAs), vendor tickets `V<n>` of an incident,
//! their states (open → responded → escalated → closed) and the aging clock the reminder
//! scheduler drives (first-response SLA until the vendor answers, then the update SLA since
//! their last reply). No SQL, no Slack, no clock: callers pass `now`.

pub mod report;

use crate::incident::model::{IncidentId, IncidentNumber, Severity, Status, UserId};
use chrono::{DateTime, Duration, Utc};

/// The vendor name for a vendor outside the catalogue: allowed, never chased.
pub const OTHER: &str = "other";

/// Words that mean an action after `/incident vendor`, so no vendor may be called that.
pub const RESERVED: [&str; 5] = ["reply", "escalate", "close", "snooze", OTHER];

/// How long **Snooze** postpones a chase.
pub fn snooze_for() -> Duration {
    Duration::minutes(15)
}

/// A vendor's service level for one severity; a zero duration means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorSla {
    pub first_response: Duration,
    pub update: Duration,
}

/// Whom to escalate to: a Slack user group (mentioned) or a text (a phone number, a portal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Group(String),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    /// As configured (`Adyen`); matched without regard to case.
    pub name: String,
    pub services: Vec<String>,
    pub support_url: Option<String>,
    pub escalation: Option<Contact>,
    /// Per severity, in [`Severity::ALL`] order.
    pub slas: [Option<VendorSla>; 4],
}

impl Vendor {
    /// `Adyen (payments): SEV1 first response 15m, updates every 30m; escalation S0ADYEN`, as
    /// `check-config` prints it.
    pub fn describe(&self) -> String {
        let d = |d: Duration| crate::config::humanize(d.to_std().unwrap_or_default());
        let slas: Vec<String> = Severity::ALL
            .iter()
            .filter_map(|s| self.sla(*s).map(|sla| (s, sla)))
            .map(|(s, sla)| {
                format!(
                    "{s} first response {}, updates every {}",
                    d(sla.first_response),
                    d(sla.update)
                )
            })
            .collect();
        let services = if self.services.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.services.join(", "))
        };
        let slas = if slas.is_empty() {
            "no SLA: not chased".to_string()
        } else {
            slas.join("; ")
        };
        let contact = match &self.escalation {
            Some(Contact::Group(g)) => format!("; escalation user group {g}"),
            Some(Contact::Text(t)) => format!("; escalation: {t}"),
            None => "; no escalation contact".to_string(),
        };
        format!("{}{services}: {slas}{contact}", self.name)
    }

    pub fn sla(&self, severity: Severity) -> Option<VendorSla> {
        let i = Severity::ALL.iter().position(|s| *s == severity)?;
        self.slas[i]
    }
}

/// The configured vendors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalogue {
    pub vendors: Vec<Vendor>,
}

impl Catalogue {
    /// The vendor called `name` (any case); `None` for `other`. Unknown names are refused with
    /// the list of known ones.
    pub fn find(&self, name: &str) -> Result<Option<&Vendor>, String> {
        if name.eq_ignore_ascii_case(OTHER) {
            return Ok(None);
        }
        self.vendors
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(name))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "`{}` is not a vendor I know. Vendors: {}.",
                    crate::incident::model::truncate(name, 40),
                    self.names().join(", ")
                )
            })
    }

    /// The known names, then `other`.
    pub fn names(&self) -> Vec<String> {
        self.vendors
            .iter()
            .map(|v| v.name.clone())
            .chain(std::iter::once(OTHER.to_string()))
            .collect()
    }

    /// The SLA a ticket with `vendor` is aged against at `severity` (none for `other`).
    pub fn sla(&self, vendor: &str, severity: Severity) -> Option<VendorSla> {
        self.find(vendor).ok().flatten().and_then(|v| v.sla(severity))
    }

    pub fn contact(&self, vendor: &str) -> Option<&Contact> {
        self.find(vendor).ok().flatten().and_then(|v| v.escalation.as_ref())
    }

    /// The configured spelling of a known name (`adyen` → `Adyen`), `other` as is.
    pub fn canonical(&self, name: &str) -> Option<String> {
        match self.find(name) {
            Ok(Some(v)) => Some(v.name.clone()),
            Ok(None) => Some(OTHER.to_string()),
            Err(_) => None,
        }
    }
}

/// Reads `[[vendors]]` from the config file. Errors are `(key path, problem)`.
pub fn parse_catalogue(value: &toml::Value, services: &[String]) -> Result<Catalogue, (String, String)> {
    let err = |path: String, problem: String| Err((path, problem));
    let Some(list) = value.as_array() else {
        return err("vendors".into(), "expected [[vendors]] tables".into());
    };
    let mut vendors: Vec<Vendor> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let path = format!("vendors[{i}]");
        let Some(table) = entry.as_table() else {
            return err(path, "expected a table".into());
        };
        const KEYS: [&str; 5] = ["name", "services", "support_url", "escalation", "sla"];
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                return err(
                    format!("{path}.{key}"),
                    format!("unknown setting; known: {}", KEYS.join(", ")),
                );
            }
        }
        let text = |key: &str| -> Result<Option<String>, (String, String)> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(other) => Err((
                    format!("{path}.{key}"),
                    format!("expected a string, found {}", other.type_str()),
                )),
            }
        };
        let Some(name) = text("name")? else {
            return err(format!("{path}.name"), "missing; every vendor needs a name".into());
        };
        let name_ok = !name.is_empty()
            && name.chars().count() <= 40
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return err(
                format!("{path}.name"),
                format!("\"{name}\" must be 1–40 characters of letters, digits, - _ or . (one word: people type it)"),
            );
        }
        if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return err(
                format!("{path}.name"),
                format!("\"{name}\" is a command word; pick another name"),
            );
        }
        if vendors.iter().any(|v| v.name.eq_ignore_ascii_case(&name)) {
            return err(format!("{path}.name"), format!("\"{name}\" is listed twice"));
        }
        let mut vendor_services = Vec::new();
        if let Some(v) = table.get("services") {
            let Some(items) = v.as_array() else {
                return err(format!("{path}.services"), "expected a list of service lines".into());
            };
            for s in items {
                let Some(s) = s.as_str() else {
                    return err(format!("{path}.services"), "expected a list of strings".into());
                };
                if !services.iter().any(|known| known == s) {
                    return err(
                        format!("{path}.services"),
                        format!("\"{s}\" is not a service line (services: {})", services.join(", ")),
                    );
                }
                vendor_services.push(s.to_string());
            }
        }
        let support_url = text("support_url")?;
        if let Some(url) = &support_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.contains(char::is_whitespace) {
                return err(
                    format!("{path}.support_url"),
                    format!("\"{url}\" is not a web link (https://…)"),
                );
            }
        }
        let escalation = text("escalation")?.filter(|s| !s.is_empty()).map(|s| {
            let group =
                s.starts_with('S') && s.len() > 1 && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if group {
                Contact::Group(s)
            } else {
                Contact::Text(s)
            }
        });
        let mut slas = [None; 4];
        if let Some(v) = table.get("sla") {
            let Some(per) = v.as_table() else {
                return err(format!("{path}.sla"), "expected a table like [vendors.sla.SEV1]".into());
            };
            for (sev_name, sla) in per {
                let key = format!("{path}.sla.{sev_name}");
                let severity: Severity = sev_name.parse().map_err(|e: String| (key.clone(), e))?;
                let Some(sla) = sla.as_table() else {
                    return err(key, "expected a table with first_response and update".into());
                };
                let mut parsed = VendorSla {
                    first_response: Duration::zero(),
                    update: Duration::zero(),
                };
                for (k, d) in sla {
                    let leaf = format!("{key}.{k}");
                    let Some(d) = d.as_str() else {
                        return err(leaf, "expected a duration like \"15m\"".into());
                    };
                    let d = crate::config::parse_duration(d).map_err(|e| (leaf.clone(), e))?;
                    let d = Duration::from_std(d).unwrap_or(Duration::MAX);
                    match k.as_str() {
                        "first_response" => parsed.first_response = d,
                        "update" => parsed.update = d,
                        _ => return err(leaf, "unknown setting; known: first_response, update".into()),
                    }
                }
                let i = Severity::ALL.iter().position(|s| *s == severity).unwrap_or_default();
                slas[i] = Some(parsed);
            }
        }
        vendors.push(Vendor {
            name,
            services: vendor_services,
            support_url,
            escalation,
            slas,
        });
    }
    Ok(Catalogue { vendors })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Open,
    Responded,
    Escalated,
    Closed,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Open => "open",
            TicketState::Responded => "responded",
            TicketState::Escalated => "escalated",
            TicketState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<TicketState> {
        [
            TicketState::Open,
            TicketState::Responded,
            TicketState::Escalated,
            TicketState::Closed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for TicketState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vendor ticket as typed (form or quick path), before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub vendor: String,
    pub reference: String,
    pub link: Option<String>,
    pub asked: String,
}

/// Longest vendor reference kept.
pub const MAX_REF_CHARS: usize = 80;

impl NewTicket {
    /// Checks a typed ticket against the catalogue: a known vendor (or `other`), a reference.
    /// The vendor's name is stored as configured.
    pub fn parse(
        catalogue: &Catalogue,
        vendor: &str,
        reference: &str,
        link: Option<String>,
        asked: &str,
    ) -> Result<NewTicket, String> {
        let vendor = vendor.trim();
        if vendor.is_empty() {
            return Err(format!("Name the vendor. Vendors: {}.", catalogue.names().join(", ")));
        }
        catalogue.find(vendor)?;
        let reference = normalize_ref(reference);
        if reference.is_empty() {
            return Err("Give the vendor's ticket reference (their case number), like `48213`.".into());
        }
        if reference.chars().count() > MAX_REF_CHARS || reference.contains(char::is_whitespace) {
            return Err(format!(
                "`{}` is not a ticket reference: one word of at most {MAX_REF_CHARS} characters.",
                crate::incident::model::truncate(&reference, 40)
            ));
        }
        if let Some(l) = &link {
            if !(l.starts_with("https://") || l.starts_with("http://")) {
                return Err(format!(
                    "`{}` is not a link (https://…).",
                    crate::incident::model::truncate(l, 40)
                ));
            }
        }
        Ok(NewTicket {
            vendor: catalogue.canonical(vendor).unwrap_or_else(|| vendor.to_string()),
            reference,
            link,
            asked: asked.trim().to_string(),
        })
    }
}

/// A reference as stored and compared: trimmed, without a leading `#`.
pub fn normalize_ref(reference: &str) -> String {
    reference.trim().trim_start_matches('#').trim().to_string()
}

/// A stored vendor ticket, with what lists need of its incident.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorTicket {
    pub id: i64,
    pub incident_id: IncidentId,
    pub number: IncidentNumber,
    pub private: bool,
    pub incident_status: Status,
    pub severity: Severity,
    pub seq: i64,
    pub vendor: String,
    pub reference: String,
    pub link: Option<String>,
    pub asked: String,
    pub state: TicketState,
    pub opened_by: UserId,
    pub opened_at: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub last_reply_at: Option<DateTime<Utc>>,
    pub escalations: i64,
    pub missed: i64,
    pub breaches: i64,
    pub due_at: Option<DateTime<Utc>>,
    pub chase_at: Option<DateTime<Utc>>,
    pub closed_by: Option<UserId>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// What someone does to a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketAction {
    /// What the vendor said (the first reply is their first response).
    Reply(String),
    Escalate(String),
    Close(String),
    Snooze,
}

impl TicketAction {
    pub fn kind(&self) -> &'static str {
        match self {
            TicketAction::Reply(_) => "reply",
            TicketAction::Escalate(_) => "escalated",
            TicketAction::Close(_) => "closed",
            TicketAction::Snooze => "snoozed",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            TicketAction::Reply(t) | TicketAction::Escalate(t) | TicketAction::Close(t) => t,
            TicketAction::Snooze => "",
        }
    }
}

/// `later - earlier` as `42 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(earlier: DateTime<Utc>, later: DateTime<Utc>) -> String {
    let mins = (later - earlier).num_minutes().max(0);
    match mins {
        m if m < 60 => format!("{m} min"),
        m if m < 24 * 60 => match m % 60 {
            0 => format!("{} h", m / 60),
            r => format!("{} h {r} min", m / 60),
        },
        m => match (m / 60) % 24 {
            0 => format!("{} d", m / (24 * 60)),
            h => format!("{} d {h} h", m / (24 * 60)),
        },
    }
}

/// The time to wait for the vendor now: the first-response SLA until they answered, then
/// the update SLA; `None` when it is zero or there is none.
fn period(sla: Option<VendorSla>, responded: bool) -> Option<Duration> {
    let sla = sla?;
    let d = if responded { sla.update } else { sla.first_response };
    (d > Duration::zero()).then_some(d)
}

/// What the scheduler does when a ticket's chase falls due.
#[derive(Debug, Clone, PartialEq)]
pub struct Chase {
    /// SLA deadlines newly missed by this firing (0 when it ends a snooze before the next one).
    pub newly_missed: i64,
    /// Deadlines missed since the last reply (or the opening), this firing included.
    pub missed: i64,
    /// Say to escalate and mention the contact: a second (or later) missed SLA.
    pub escalate: bool,
    /// Which SLA is missed.
    pub first_response: bool,
    pub late: bool,
    /// The next deadline and chase (`None`: the chase stops).
    pub next_due: Option<DateTime<Utc>>,
}

impl VendorTicket {
    /// `V3`.
    pub fn label(&self) -> String {
        format!("V{}", self.seq)
    }

    /// `Adyen #48213`.
    pub fn title(&self) -> String {
        format!("{} #{}", self.vendor, self.reference)
    }

    pub fn is_open(&self) -> bool {
        self.state != TicketState::Closed
    }

    /// Whether `word` (`V3`, `v3`, `48213`, `#48213`) names this ticket.
    pub fn matches(&self, word: &str) -> bool {
        let w = normalize_ref(word);
        let seq = w
            .strip_prefix(['V', 'v'])
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| n == self.seq);
        seq || w.eq_ignore_ascii_case(&self.reference)
    }

    /// The first deadline of a new ticket (its first-response SLA), if it has one.
    pub fn first_deadline(opened_at: DateTime<Utc>, sla: Option<VendorSla>) -> Option<DateTime<Utc>> {
        period(sla, false).map(|p| opened_at + p)
    }

    /// The next deadline of an open ticket when its incident's SLA changes at `now` (a new
    /// severity), or its incident is reopened (`restart`: the wait starts again from now). A
    /// new severity keeps the wait's start (the last reply, or the opening): a deadline already
    /// passed under the new SLA is chased now.
    pub fn replan(
        opened_at: DateTime<Utc>,
        first_response_at: Option<DateTime<Utc>>,
        last_reply_at: Option<DateTime<Utc>>,
        sla: Option<VendorSla>,
        now: DateTime<Utc>,
        restart: bool,
    ) -> Option<DateTime<Utc>> {
        let p = period(sla, first_response_at.is_some())?;
        if restart {
            return Some(now + p);
        }
        Some((last_reply_at.unwrap_or(opened_at) + p).max(now))
    }

    /// The ticket after `action` by `actor` at `now` under `sla`, or why not.
    pub fn apply(
        &self,
        action: &TicketAction,
        actor: &UserId,
        now: DateTime<Utc>,
        sla: Option<VendorSla>,
    ) -> Result<VendorTicket, String> {
        if self.state == TicketState::Closed {
            let by = self
                .closed_by
                .as_ref()
                .map(|u| format!(" by <@{u}>"))
                .unwrap_or_default();
            return Err(format!(
                "{} ({}) is already closed{by}; nothing was changed.",
                self.label(),
                self.title()
            ));
        }
        let mut t = self.clone();
        match action {
            TicketAction::Reply(_) => {
                t.first_response_at.get_or_insert(now);
                t.last_reply_at = Some(now);
                if t.state == TicketState::Open {
                    t.state = TicketState::Responded;
                }
                t.missed = 0;
                t.due_at = period(sla, true).map(|p| now + p);
                t.chase_at = t.due_at;
            }
            TicketAction::Escalate(_) => {
                t.state = TicketState::Escalated;
                t.escalations += 1;
                t.due_at = period(sla, t.first_response_at.is_some()).map(|p| now + p);
                t.chase_at = t.due_at;
            }
            TicketAction::Close(_) => {
                t.state = TicketState::Closed;
                t.closed_at = Some(now);
                t.closed_by = Some(actor.clone());
                t.due_at = None;
                t.chase_at = None;
            }
            TicketAction::Snooze => {
                if t.chase_at.is_none() {
                    return Err(format!(
                        "{} ({}) is not being chased; nothing to snooze.",
                        t.label(),
                        t.title()
                    ));
                }
                t.chase_at = Some(now + snooze_for());
            }
        }
        Ok(t)
    }

    /// Fires the chase due at `now`: counts the deadlines missed since the last firing and
    /// plans the next one. A ticket of an incident that is no longer open is not chased.
    pub fn fire(
        &self,
        now: DateTime<Utc>,
        sla: Option<VendorSla>,
        late_after: Duration,
    ) -> (Option<Chase>, VendorTicket) {
        let mut t = self.clone();
        let responded = t.first_response_at.is_some();
        let (Some(chase_at), Some(due), Some(p), true, true) = (
            t.chase_at,
            t.due_at,
            period(sla, responded),
            t.is_open(),
            t.incident_status.is_open(),
        ) else {
            t.chase_at = None;
            return (None, t);
        };
        let newly = if due <= now {
            1 + (now - due).num_milliseconds() / p.num_milliseconds().max(1)
        } else {
            0
        };
        let next_due = due + p * i32::try_from(newly).unwrap_or(i32::MAX);
        t.missed += newly;
        t.breaches += newly;
        t.due_at = Some(next_due);
        t.chase_at = Some(next_due);
        let chase = Chase {
            newly_missed: newly,
            missed: t.missed,
            escalate: t.missed >= 2,
            first_response: !responded,
            late: now - chase_at > late_after,
            next_due: Some(next_due),
        };
        (Some(chase), t)
    }
}

/// One entry of a ticket's own timeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TicketEvent {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// opened · reply · escalated · closed · snoozed · chase
    pub kind: String,
    pub text: String,
    /// For a chase: the SLA deadlines it found newly missed.
    pub missed: i64,
}

/// A ticket with its own timeline: what the review draft and the export show.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketHistory {
    pub ticket: VendorTicket,
    pub events: Vec<TicketEvent>,
}

fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn event_line(e: &TicketEvent) -> String {
    let what = match e.kind.as_str() {
        "opened" => "raised with the vendor".to_string(),
        "reply" => "vendor replied".to_string(),
        "escalated" => "escalated".to_string(),
        "closed" => "closed".to_string(),
        "snoozed" => "chase snoozed 15 min".to_string(),
        "chase" if e.missed > 0 => format!(
            "SPOC reminded to chase ({} SLA deadline{} missed)",
            e.missed,
            if e.missed == 1 { "" } else { "s" }
        ),
        "chase" => "SPOC reminded to chase again".to_string(),
        other => other.to_string(),
    };
    if e.text.is_empty() {
        what
    } else {
        format!("{what}: {}", cell(&e.text))
    }
}

/// The review draft's "Vendor tickets" section (empty when there are none), times and people
/// rendered by the draft's own rules.
pub fn review_markdown(
    tickets: &[TicketHistory],
    time: &dyn Fn(DateTime<Utc>) -> String,
    who: &dyn Fn(&str) -> String,
) -> String {
    use std::fmt::Write;
    if tickets.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Vendor tickets\n\n| ticket | vendor | reference | state | opened | first response | escalations | SLA deadlines missed |\n|---|---|---|---|---|---|---:|---:|\n");
    for h in tickets {
        let t = &h.ticket;
        let reference = match &t.link {
            Some(link) => format!("[#{}]({})", cell(&t.reference), link.replace(['(', ')', ' '], "")),
            None => format!("#{}", cell(&t.reference)),
        };
        let first = t
            .first_response_at
            .map_or("none".to_string(), |at| format!("after {}", age(t.opened_at, at)));
        let _ = writeln!(
            md,
            "| {} | {} | {reference} | {} | {} | {first} | {} | {} |",
            t.label(),
            cell(&t.vendor),
            t.state,
            time(t.opened_at),
            t.escalations,
            t.breaches
        );
    }
    for h in tickets {
        let t = &h.ticket;
        let _ = writeln!(
            md,
            "\n**{} {}**{}\n",
            t.label(),
            cell(&t.title()),
            if t.asked.is_empty() {
                String::new()
            } else {
                format!(" — asked: {}", cell(&t.asked))
            }
        );
        for e in &h.events {
            let _ = writeln!(md, "- {} {} — {}", time(e.at), who(&e.actor), event_line(e));
        }
    }
    md
}

/// The export's `vendor_tickets`: every ticket with its timeline.
pub fn review_json(tickets: &[TicketHistory]) -> serde_json::Value {
    tickets
        .iter()
        .map(|h| {
            let t = &h.ticket;
            serde_json::json!({
                "ticket": t.label(), "vendor": t.vendor, "reference": t.reference, "link": t.link,
                "asked": t.asked, "state": t.state, "opened_by": t.opened_by, "opened_at": t.opened_at,
                "first_response_at": t.first_response_at, "last_reply_at": t.last_reply_at,
                "escalations": t.escalations, "sla_deadlines_missed": t.breaches,
                "closed_by": t.closed_by, "closed_at": t.closed_at, "timeline": h.events,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Catalogue {
        let text = r#"
            [[vendors]]
            name = "Adyen"
            services = ["payments"]
            support_url = "https://support.adyen.example"
            escalation = "S0ADYEN"
            [vendors.sla.SEV1]
            first_response = "15m"
            update = "30m"

            [[vendors]]
            name = "AWS"
            escalation = "Call the TAM on +44 20 0000 0000"
        "#;
        let table: toml::Table = text.parse().unwrap();
        parse_catalogue(&table["vendors"], &["payments".to_string()]).unwrap()
    }

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(min)
    }

    fn ticket(sla: Option<VendorSla>) -> VendorTicket {
        VendorTicket {
            id: 1,
            incident_id: IncidentId(1),
            number: IncidentNumber(1),
            private: false,
            incident_status: Status::Investigating,
            severity: Severity::Sev1,
            seq: 1,
            vendor: "Adyen".into(),
            reference: "48213".into(),
            link: None,
            asked: String::new(),
            state: TicketState::Open,
            opened_by: UserId::parse("U0ALICE").unwrap(),
            opened_at: t(0),
            first_response_at: None,
            last_reply_at: None,
            escalations: 0,
            missed: 0,
            breaches: 0,
            due_at: VendorTicket::first_deadline(t(0), sla),
            chase_at: VendorTicket::first_deadline(t(0), sla),
            closed_by: None,
            closed_at: None,
        }
    }

    #[test]
    fn the_catalogue_reads_slas_contacts_and_refuses_bad_entries() {
        let c = catalogue();
        let adyen = c.find("adyen").unwrap().unwrap();
        assert_eq!(
            adyen.sla(Severity::Sev1),
            Some(VendorSla {
                first_response: Duration::minutes(15),
                update: Duration::minutes(30)
            })
        );
        assert_eq!(adyen.sla(Severity::Sev2), None);
        assert_eq!(adyen.escalation, Some(Contact::Group("S0ADYEN".into())));
        assert_eq!(
            adyen.describe(),
            "Adyen (payments): SEV1 first response 15m, updates every 30m; escalation user group S0ADYEN"
        );
        assert!(matches!(c.contact("AWS"), Some(Contact::Text(_))));
        assert_eq!(c.find("other"), Ok(None));
        let err = c.find("Stripe").unwrap_err();
        assert!(err.contains("Stripe") && err.contains("Adyen, AWS, other"), "{err}");
        for (text, key, problem) in [
            ("[[vendors]]\nservices = []", "vendors[0].name", "missing"),
            ("[[vendors]]\nname = \"two words\"", "vendors[0].name", "one word"),
            ("[[vendors]]\nname = \"reply\"", "vendors[0].name", "command word"),
            (
                "[[vendors]]\nname = \"A\"\n[[vendors]]\nname = \"a\"",
                "vendors[1].name",
                "twice",
            ),
            (
                "[[vendors]]\nname = \"A\"\nservices = [\"x\"]",
                "vendors[0].services",
                "not a service line",
            ),
            (
                "[[vendors]]\nname = \"A\"\nsupport = \"x\"",
                "vendors[0].support",
                "unknown setting",
            ),
            (
                "[[vendors]]\nname = \"A\"\nsupport_url = \"ftp://x\"",
                "vendors[0].support_url",
                "web link",
            ),
            (
                "[[vendors]]\nname = \"A\"\n[vendors.sla.SEV9]\nupdate = \"1m\"",
                "vendors[0].sla.SEV9",
                "SEV9",
            ),
            (
                "[[vendors]]\nname = \"A\"\n[vendors.sla.SEV1]\nupdate = \"soon\"",
                "vendors[0].sla.SEV1.update",
                "soon",
            ),
            (
                "[[vendors]]\nname = \"A\"\n[vendors.sla.SEV1]\nfirst = \"1m\"",
                "vendors[0].sla.SEV1.first",
                "unknown",
            ),
        ] {
            let table: toml::Table = text.parse().unwrap();
            let (k, p) = parse_catalogue(&table["vendors"], &["payments".to_string()]).unwrap_err();
            assert_eq!(k, key, "{text}");
            assert!(p.contains(problem), "{text}: {p}");
        }
    }

    #[test]
    fn the_config_file_takes_vendors_and_names_the_whole_path_of_a_mistake() {
        let env = std::collections::BTreeMap::<String, String>::new();
        let text = "services = [\"payments\", \"kyc\"]\n\n[[vendors]]\nname = \"Onfido\"\nservices = [\"kyc\"]\n\
                    [vendors.sla.SEV2]\nfirst_response = \"1h\"\nupdate = \"4h\"\n";
        let (policy, _) = crate::config::policy_from_toml(text, &env).unwrap();
        let onfido = policy.vendors.find("onfido").unwrap().unwrap();
        assert_eq!(onfido.services, ["kyc"]);
        assert_eq!(onfido.sla(Severity::Sev2).unwrap().update, Duration::hours(4));
        assert_eq!(policy.rules().vendors, policy.vendors);
        let bad = "[[vendors]]\nname = \"Onfido\"\nservices = [\"kyc\"]\n";
        let err = crate::config::policy_from_toml(bad, &env).unwrap_err().to_string();
        assert!(
            err.contains("vendors[0].services") && err.contains("not a service line"),
            "{err}"
        );
        assert!(crate::config::policy_from_toml("vendors = 3", &env)
            .unwrap_err()
            .to_string()
            .contains("vendors"));
    }

    #[test]
    fn new_tickets_need_a_known_vendor_and_a_reference() {
        let c = catalogue();
        let ok = NewTicket::parse(&c, "adyen", "#48213", None, " card auth 500s ").unwrap();
        assert_eq!(
            (ok.vendor.as_str(), ok.reference.as_str(), ok.asked.as_str()),
            ("Adyen", "48213", "card auth 500s")
        );
        assert!(NewTicket::parse(&c, "Stripe", "1", None, "")
            .unwrap_err()
            .contains("Vendors: Adyen"));
        assert!(NewTicket::parse(&c, "Adyen", " # ", None, "")
            .unwrap_err()
            .contains("reference"));
        assert!(NewTicket::parse(&c, "", "1", None, "")
            .unwrap_err()
            .contains("Name the vendor"));
        assert!(NewTicket::parse(&c, "other", "1", Some("x".into()), "")
            .unwrap_err()
            .contains("link"));
        assert_eq!(NewTicket::parse(&c, "OTHER", "1", None, "").unwrap().vendor, "other");
    }

    #[test]
    fn the_chase_counts_missed_slas_and_a_reply_restarts_it_on_the_update_sla() {
        let c = catalogue();
        let sla = c.sla("Adyen", Severity::Sev1);
        let alice = UserId::parse("U0ALICE").unwrap();
        let late = Duration::minutes(1);
        let v = ticket(sla);
        assert_eq!(v.chase_at, Some(t(15)), "the first-response SLA");
        // At 15 min: first miss, no escalation yet; next deadline 15 min later.
        let (chase, v) = v.fire(t(15), sla, late);
        let chase = chase.unwrap();
        assert_eq!(
            (chase.newly_missed, chase.missed, chase.escalate, chase.first_response),
            (1, 1, false, true)
        );
        assert_eq!(v.chase_at, Some(t(30)));
        // Snoozed for 15 min from 20: the snooze ends at 35, after the deadline at 30, so it
        // counts that deadline too: the second miss says escalate.
        let v = v.apply(&TicketAction::Snooze, &alice, t(20), sla).unwrap();
        assert_eq!(v.chase_at, Some(t(35)));
        let (chase, v) = v.fire(t(35), sla, late);
        let chase = chase.unwrap();
        assert_eq!(
            (chase.newly_missed, chase.missed, chase.escalate, chase.late),
            (1, 2, true, false)
        );
        assert_eq!(v.chase_at, Some(t(45)));
        // A reply: responded, the update SLA from now, misses forgotten (breaches kept).
        let v = v
            .apply(&TicketAction::Reply("looking".into()), &alice, t(40), sla)
            .unwrap();
        assert_eq!(
            (v.state, v.first_response_at, v.missed, v.breaches),
            (TicketState::Responded, Some(t(40)), 0, 2)
        );
        assert_eq!(v.chase_at, Some(t(70)));
        // Down for an hour: one late firing counts both missed update deadlines.
        let (chase, v) = v.fire(t(105), sla, late);
        let chase = chase.unwrap();
        assert_eq!(
            (chase.newly_missed, chase.missed, chase.late, chase.first_response),
            (2, 2, true, false)
        );
        assert_eq!(v.chase_at, Some(t(130)));
        // Escalated, then closed: closing twice is refused, and a closed ticket is not chased.
        let v = v
            .apply(&TicketAction::Escalate("TAM".into()), &alice, t(110), sla)
            .unwrap();
        assert_eq!(
            (v.state, v.escalations, v.chase_at),
            (TicketState::Escalated, 1, Some(t(140)))
        );
        let v = v
            .apply(&TicketAction::Close(String::new()), &alice, t(120), sla)
            .unwrap();
        assert_eq!((v.state, v.chase_at), (TicketState::Closed, None));
        assert!(v
            .apply(&TicketAction::Close(String::new()), &alice, t(121), sla)
            .unwrap_err()
            .contains("already closed"));
        assert_eq!(v.fire(t(200), sla, late).0, None);
    }

    #[test]
    fn no_sla_no_chase_and_resolved_incidents_are_not_chased() {
        let alice = UserId::parse("U0ALICE").unwrap();
        let v = ticket(None);
        assert_eq!(v.chase_at, None);
        assert!(v
            .apply(&TicketAction::Snooze, &alice, t(1), None)
            .unwrap_err()
            .contains("not being chased"));
        let sla = catalogue().sla("Adyen", Severity::Sev1);
        let mut v = ticket(sla);
        v.incident_status = Status::Resolved;
        let (chase, after) = v.fire(t(15), sla, Duration::minutes(1));
        assert_eq!((chase, after.chase_at), (None, None));
    }

    #[test]
    fn a_new_severity_or_a_reopen_replans_the_wait() {
        let sla = catalogue().sla("Adyen", Severity::Sev1);
        // Opened at 0 with no SLA; SEV1 (15 min) from 5 min: due at 15; from 40: due now.
        assert_eq!(VendorTicket::replan(t(0), None, None, sla, t(5), false), Some(t(15)));
        assert_eq!(VendorTicket::replan(t(0), None, None, sla, t(40), false), Some(t(40)));
        // Answered at 10: the update SLA (30 min) from the last reply at 20.
        assert_eq!(
            VendorTicket::replan(t(0), Some(t(10)), Some(t(20)), sla, t(25), false),
            Some(t(50))
        );
        // Reopened at 100: the wait starts again.
        assert_eq!(VendorTicket::replan(t(0), None, None, sla, t(100), true), Some(t(115)));
        assert_eq!(VendorTicket::replan(t(0), None, None, None, t(100), true), None);
    }

    #[test]
    fn tickets_are_named_by_label_or_reference() {
        let v = ticket(None);
        assert!(v.matches("V1") && v.matches("v1") && v.matches("#48213") && v.matches("48213"));
        assert!(!v.matches("V2") && !v.matches("4821"));
        assert_eq!(v.title(), "Adyen #48213");
        assert_eq!(age(t(0), t(42)), "42 min");
        assert_eq!(age(t(0), t(185)), "3 h 5 min");
        assert_eq!(age(t(0), t(60 * 50)), "2 d 2 h");
    }
}
