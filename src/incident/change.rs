//! The lifecycle as a pure state machine: `Incident::apply(change, actor, now)` either refuses
//! with a message for the user, or returns the new incident, the timeline events to append and
//! the effects to perform in Slack. The store persists all three in one transaction; `slack/`
//! renders the notices.

use super::followup::{FollowUpState, NewFollowUp, MAX_FOLLOW_UPS_AT_ONCE};
use super::model::*;
use super::pir::PirRules;
use crate::reminder::plan::{self, Slas};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Longest note or update field: a section block holds 3,000 characters.
pub const MAX_TEXT_CHARS: usize = 2_900;

/// A stakeholder update, as the SPOC writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StakeholderUpdate {
    pub status: Status,
    pub known: String,
    pub impact: String,
    pub next: String,
}

/// Something a person does to an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Update(StakeholderUpdate),
    Severity(Severity),
    Spoc(UserId),
    Role {
        role: String,
        user: UserId,
    },
    Handover {
        to: UserId,
        note: String,
    },
    Acknowledge,
    Note {
        text: String,
        link: Option<String>,
    },
    Impact {
        services: Vec<String>,
        footprint: Footprint,
    },
    Resolve {
        summary: String,
        root_cause: String,
        mitigated_at: Option<DateTime<Utc>>,
        /// Follow-ups captured in the resolve form.
        follow_ups: Vec<NewFollowUp>,
    },
    /// Add follow-up actions (numbered on from [`Incident::follow_up_seq`]).
    AddFollowUps(Vec<NewFollowUp>),
    /// Mark the post-incident review done, with where it lives.
    PirDone {
        link: Option<String>,
    },
    Close,
    Reopen,
    Cancel,
    /// Postpone the next update reminder once (see [`crate::reminder::plan::snooze`]).
    Snooze,
}

/// What people are told about a change (rendered by `slack/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// `severity` as it was when the update was posted (the notice may be sent later).
    Update {
        update: StakeholderUpdate,
        severity: Severity,
    },
    Severity {
        from: Severity,
        to: Severity,
    },
    SpocAssigned {
        user: UserId,
    },
    Handover {
        from: UserId,
        to: UserId,
        note: String,
    },
    Role {
        role: String,
        user: UserId,
    },
    Acknowledged,
    Resolved {
        summary: String,
    },
    Closed,
    Reopened,
    Canceled,
    FollowUpsAdded {
        items: Vec<NumberedFollowUp>,
    },
    FollowUpClosed {
        seq: i64,
        text: String,
        state: FollowUpState,
    },
    PirDone {
        link: Option<String>,
    },
    /// Detection (issue 15): an alert was linked to the incident (by a person, a declaration
    /// from it, or an `[[alert_rules]]` entry).
    AlertLinked {
        title: String,
        source: String,
    },
    /// A linked alert fired again after it had resolved.
    AlertFired {
        title: String,
    },
    /// A linked alert resolved.
    AlertResolved {
        title: String,
    },
    /// Every linked alert has resolved: the SPOC is asked whether to resolve (said once).
    AllAlertsResolved {
        spoc: UserId,
    },
}

/// A new follow-up with the number it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberedFollowUp {
    pub seq: i64,
    #[serde(flatten)]
    pub follow_up: NewFollowUp,
}

/// A side effect of a change in Slack (performed later by the outbox).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Re-render the pinned card and the channel topic.
    RefreshCard,
    /// Post a notice in the incident channel, and in the announcement thread when
    /// `stakeholders` (never for private incidents).
    Post { notice: Notice, stakeholders: bool },
    /// Invite these users to the incident channel.
    Invite(Vec<UserId>),
}

/// The result of an accepted change.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub incident: Incident,
    pub events: Vec<(EventKind, Value)>,
    pub effects: Vec<Effect>,
    /// Follow-ups to store.
    pub follow_ups: Vec<NumberedFollowUp>,
}

/// The configured rules a change is applied under: update SLAs and post-incident reviews.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub slas: Slas,
    pub pir: PirRules,
    /// Local days: due dates of follow-ups, working days of review reminders.
    pub timezone: chrono_tz::Tz,
    /// How often the owner of an overdue follow-up is reminded; zero: never.
    pub follow_up_remind_every: chrono::Duration,
    /// The vendor catalogue: vendor tickets are aged against its SLAs.
    pub vendors: crate::vendor::Catalogue,
    /// The status page (issue 14): its customer-update cadence is reminded like updates.
    pub status_page: Option<crate::comms::StatusPage>,
}

/// Moves allowed by the lifecycle.
pub fn can_move(from: Status, to: Status) -> bool {
    use Status::*;
    match (from, to) {
        (a, b) if a == b => false,
        (Investigating | Identified | Mitigated, Investigating | Identified | Mitigated | Resolved | Canceled) => true,
        (Resolved, Closed | Investigating) => true,
        (Canceled, Closed) => true,
        _ => false,
    }
}

/// The forms `/incident` opens to make a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Update,
    Impact,
    Resolve,
}

impl Incident {
    /// Why the form for `form` must not open on this incident — the change it leads to would be
    /// refused by [`Incident::apply`] whatever is typed — or `None`. Checked at the command so
    /// nobody fills a form in vain (and Slack is never asked to show a select whose current value
    /// is not an option); `apply` still checks on submission.
    pub fn refuses_form(&self, form: Form) -> Option<String> {
        let n = self.number;
        match form {
            Form::Update if !self.status.is_open() => Some(format!(
                "{n} is {}: updates are for open incidents (`/incident reopen` first if it is back).",
                self.status
            )),
            Form::Impact if matches!(self.status, Status::Closed | Status::Canceled) => {
                Some(format!("{n} is {}; its footprint is final.", self.status))
            }
            Form::Resolve if self.status == Status::Resolved => Some(format!("{n} is already resolved.")),
            Form::Resolve if !can_move(self.status, Status::Resolved) => {
                Some(format!("{n} is {}; only open incidents can be resolved.", self.status))
            }
            _ => None,
        }
    }
}

fn check_text(label: &str, text: &str) -> Result<(), String> {
    let n = text.chars().count();
    if n > MAX_TEXT_CHARS {
        Err(format!("Keep {label} to {MAX_TEXT_CHARS} characters (it has {n})."))
    } else {
        Ok(())
    }
}

/// Collects what a change does, then builds [`Applied`].
struct Outcome {
    next: Incident,
    events: Vec<(EventKind, Value)>,
    effects: Vec<Effect>,
    follow_ups: Vec<NumberedFollowUp>,
}

impl Outcome {
    fn event(&mut self, kind: EventKind, details: Value) {
        self.events.push((kind, details));
    }
    /// Numbers `items` on from the incident's counter, with an event each and one notice.
    fn add_follow_ups(&mut self, items: &[NewFollowUp]) -> Result<(), String> {
        if items.len() > MAX_FOLLOW_UPS_AT_ONCE {
            return Err(format!(
                "Add at most {MAX_FOLLOW_UPS_AT_ONCE} follow-ups at once (there are {}).",
                items.len()
            ));
        }
        if items.is_empty() {
            return Ok(());
        }
        let mut numbered = Vec::new();
        for item in items {
            self.next.follow_up_seq += 1;
            let seq = self.next.follow_up_seq;
            self.event(
                EventKind::FollowUp,
                json!({ "action": "created", "seq": seq, "text": item.text, "owner": item.owner, "due": item.due, "link": item.link }),
            );
            numbered.push(NumberedFollowUp {
                seq,
                follow_up: item.clone(),
            });
        }
        self.tell(
            Notice::FollowUpsAdded {
                items: numbered.clone(),
            },
            false,
        );
        let mut owners: Vec<UserId> = numbered.iter().filter_map(|n| n.follow_up.owner.clone()).collect();
        owners.sort();
        owners.dedup();
        if !owners.is_empty() {
            // Owners join the channel, where the follow-up and its reminders are discussed.
            self.effects.push(Effect::Invite(owners));
        }
        self.follow_ups.extend(numbered);
        Ok(())
    }
    fn tell(&mut self, notice: Notice, stakeholders: bool) {
        self.effects.push(Effect::Post { notice, stakeholders });
    }
}

impl Incident {
    /// Applies `change` by `actor` at `now`, or says why not. Pure: no I/O.
    pub fn apply(&self, change: &Change, actor: &UserId, now: DateTime<Utc>) -> Result<Applied, String> {
        let n = self.number;
        let finished = matches!(self.status, Status::Closed | Status::Canceled);
        let mut out = Outcome {
            next: self.clone(),
            events: Vec::new(),
            effects: vec![Effect::RefreshCard],
            follow_ups: Vec::new(),
        };
        match change {
            Change::Update(u) => {
                if !self.status.is_open() {
                    return Err(format!(
                        "{n} is {}: updates are for open incidents (`/incident reopen` first if it is back).",
                        self.status
                    ));
                }
                for (label, text) in [
                    ("what we know", &u.known),
                    ("customer impact", &u.impact),
                    ("next steps", &u.next),
                ] {
                    check_text(label, text)?;
                }
                if u.known.trim().is_empty() {
                    return Err("Say what we know, even if it is \"still investigating\".".into());
                }
                if u.status != self.status {
                    if !can_move(self.status, u.status) || u.status == Status::Canceled {
                        return Err(format!("{n} cannot go from {} to {}.", self.status, u.status));
                    }
                    out.next.enter(u.status, now);
                    out.event(
                        EventKind::Status,
                        json!({ "from": self.status.as_str(), "to": u.status.as_str() }),
                    );
                }
                out.next.last_update_at = Some(now);
                // On time when posted by its due time (or when no clock was running).
                let due = self.clock.map(|c| c.due_at);
                let mut details = serde_json::to_value(u).unwrap_or_default();
                details["on_time"] = json!(due.is_none_or(|d| now <= d));
                details["due_at"] = json!(due.map(|d| d.timestamp_millis()));
                out.event(EventKind::Update, details);
                out.tell(
                    Notice::Update {
                        update: u.clone(),
                        severity: self.severity,
                    },
                    true,
                );
            }
            Change::Severity(sev) => {
                if finished {
                    return Err(format!("{n} is {}; its severity is final.", self.status));
                }
                if *sev == self.severity {
                    return Err(format!("{n} is already {sev}."));
                }
                out.next.severity = *sev;
                out.event(
                    EventKind::Severity,
                    json!({ "from": self.severity.as_str(), "to": sev.as_str() }),
                );
                out.tell(
                    Notice::Severity {
                        from: self.severity,
                        to: *sev,
                    },
                    true,
                );
            }
            Change::Spoc(user) | Change::Handover { to: user, .. } => {
                if finished {
                    return Err(format!("{n} is {}; its roles are final.", self.status));
                }
                if *user == self.spoc {
                    return Err(format!("<@{user}> is already the SPOC of {n}."));
                }
                out.next.spoc = user.clone();
                out.effects.push(Effect::Invite(vec![user.clone()]));
                if let Change::Handover { note, .. } = change {
                    check_text("the handover note", note)?;
                    out.event(
                        EventKind::Handover,
                        json!({ "role": "spoc", "from": self.spoc.as_str(), "to": user.as_str(), "note": note }),
                    );
                    let notice = Notice::Handover {
                        from: self.spoc.clone(),
                        to: user.clone(),
                        note: note.clone(),
                    };
                    out.tell(notice, false);
                } else {
                    out.event(
                        EventKind::Role,
                        json!({ "role": "spoc", "from": self.spoc.as_str(), "to": user.as_str() }),
                    );
                    out.tell(Notice::SpocAssigned { user: user.clone() }, false);
                }
            }
            Change::Role { role, user } => {
                if finished {
                    return Err(format!("{n} is {}; its roles are final.", self.status));
                }
                if self.roles.get(role) == Some(user) {
                    return Err(format!("<@{user}> is already {role} on {n}."));
                }
                let from = out.next.roles.insert(role.clone(), user.clone());
                out.event(
                    EventKind::Role,
                    json!({ "role": role, "from": from.map(|u| u.to_string()), "to": user.as_str() }),
                );
                out.effects.push(Effect::Invite(vec![user.clone()]));
                out.tell(
                    Notice::Role {
                        role: role.clone(),
                        user: user.clone(),
                    },
                    false,
                );
            }
            Change::Acknowledge => {
                if *actor != self.spoc {
                    return Err(format!("Only the SPOC (<@{}>) acknowledges {n}.", self.spoc));
                }
                if self.acknowledged_at.is_some() {
                    return Err(format!("{n} is already acknowledged."));
                }
                if !self.status.is_open() {
                    return Err(format!("{n} is {}.", self.status));
                }
                out.next.acknowledged_at = Some(now);
                out.event(EventKind::Acknowledged, json!({ "by": actor.as_str() }));
                out.tell(Notice::Acknowledged, false);
                return Ok(out.finish());
            }
            Change::Note { text, link } => {
                if text.trim().is_empty() {
                    return Err("Write the note after the command: `/incident note <text>`.".into());
                }
                check_text("the note", text)?;
                out.event(EventKind::Note, json!({ "text": text, "link": link }));
                out.effects.clear(); // a note changes nothing on the card
            }
            Change::Impact { services, footprint } => {
                if finished {
                    return Err(format!("{n} is {}; its footprint is final.", self.status));
                }
                check_footprint(footprint, now)?;
                out.next.services = services.clone();
                out.next.footprint = footprint.clone();
                out.event(
                    EventKind::Impact,
                    json!({ "services": services, "footprint": serde_json::to_value(footprint).unwrap_or_default() }),
                );
            }
            Change::Resolve {
                summary,
                root_cause,
                mitigated_at,
                follow_ups,
            } => {
                if self.status == Status::Resolved {
                    return Err(format!("{n} is already resolved."));
                }
                if !can_move(self.status, Status::Resolved) {
                    return Err(format!("{n} is {}; only open incidents can be resolved.", self.status));
                }
                check_text("the resolution summary", summary)?;
                if let Some(m) = mitigated_at {
                    if *m > now {
                        return Err("The mitigation time cannot be in the future.".into());
                    }
                    let started = self
                        .footprint
                        .impact_start
                        .unwrap_or(self.declared_at)
                        .min(self.declared_at);
                    if *m < started {
                        return Err("The mitigation time cannot be before the impact started.".into());
                    }
                    out.next.mitigated_at.get_or_insert(*m);
                }
                out.next.enter(Status::Resolved, now);
                out.next.resolution = summary.clone();
                out.next.root_cause = root_cause.clone();
                out.event(
                    EventKind::Status,
                    json!({ "from": self.status.as_str(), "to": "resolved", "summary": summary, "root_cause": root_cause }),
                );
                out.tell(
                    Notice::Resolved {
                        summary: summary.clone(),
                    },
                    true,
                );
                out.add_follow_ups(follow_ups)?;
            }
            Change::AddFollowUps(items) => {
                if self.was_canceled() {
                    return Err(format!(
                        "{n} was canceled (declared by mistake): it takes no follow-ups."
                    ));
                }
                if items.is_empty() {
                    return Err("Say what needs doing: `/incident followup <text> [@owner] [due YYYY-MM-DD]`.".into());
                }
                out.effects.clear(); // the card does not list follow-ups
                out.add_follow_ups(items)?;
            }
            Change::PirDone { link } => {
                if self.was_canceled() {
                    return Err(format!("{n} was canceled (declared by mistake): it needs no review."));
                }
                if !matches!(self.status, Status::Resolved | Status::Closed) {
                    return Err(format!(
                        "{n} is {}: mark its review done once it is resolved.",
                        self.status
                    ));
                }
                if self.pir_done_at.is_some() {
                    return Err(format!("The review of {n} is already marked done."));
                }
                out.next.pir_done_at = Some(now);
                out.next.pir_link = link.clone();
                out.next.pir_remind_at = None;
                out.event(EventKind::Pir, json!({ "action": "done", "link": link }));
                out.tell(Notice::PirDone { link: link.clone() }, true);
            }
            Change::Close => {
                if self.status == Status::Closed {
                    return Err(format!("{n} is already closed."));
                }
                if !can_move(self.status, Status::Closed) {
                    return Err(format!(
                        "{n} is {}: resolve it first (`/incident resolve`), or cancel it if it was declared by mistake.",
                        self.status
                    ));
                }
                out.next.enter(Status::Closed, now);
                out.event(
                    EventKind::Status,
                    json!({ "from": self.status.as_str(), "to": "closed" }),
                );
                out.tell(Notice::Closed, false);
            }
            Change::Reopen => {
                if self.status != Status::Resolved {
                    return Err(format!(
                        "{n} is {}; only a resolved incident can be reopened.",
                        self.status
                    ));
                }
                out.next.status = Status::Investigating;
                out.next.resolved_at = None;
                // The update clock restarts from the reopening.
                out.next.last_update_at = Some(now);
                out.event(
                    EventKind::Status,
                    json!({ "from": "resolved", "to": "investigating", "reopened": true }),
                );
                out.tell(Notice::Reopened, true);
            }
            Change::Snooze => {
                let clock = crate::reminder::plan::snooze(self.clock, now)?;
                out.next.clock = Some(clock);
                out.event(EventKind::Snooze, json!({ "until": clock.next_at.timestamp_millis() }));
                out.effects.clear();
                return Ok(out.finish());
            }
            Change::Cancel => {
                if self.status == Status::Canceled {
                    return Err(format!("{n} is already canceled."));
                }
                if !can_move(self.status, Status::Canceled) {
                    return Err(format!("{n} is {}; only open incidents can be canceled.", self.status));
                }
                out.next.enter(Status::Canceled, now);
                out.event(
                    EventKind::Status,
                    json!({ "from": self.status.as_str(), "to": "canceled" }),
                );
                out.tell(Notice::Canceled, true);
            }
        }
        // The SPOC's first action on an open incident counts as their acknowledgement, whatever
        // the action (resolving included: it is judged on the state it acted on, not the
        // result); canceling one declared by mistake acknowledges nothing.
        if out.next.acknowledged_at.is_none()
            && *actor == out.next.spoc
            && self.status.is_open()
            && !matches!(change, Change::Cancel)
        {
            out.next.acknowledged_at = Some(now);
            out.event(
                EventKind::Acknowledged,
                json!({ "by": actor.as_str(), "implicit": true }),
            );
        }
        Ok(out.finish())
    }

    /// [`Incident::apply`] under the configured rules: closing waits for a pending review,
    /// and the SLA clock and the review reminder are re-planned for the new state.
    pub fn apply_under(
        &self,
        change: &Change,
        actor: &UserId,
        now: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<Applied, String> {
        if *change == Change::Close {
            if let Some(reason) = rules.pir.blocks_close(self) {
                return Err(reason);
            }
        }
        let mut applied = self.apply(change, actor, now)?;
        if plan::needs_replan(self, &applied.incident) {
            applied.incident.clock = plan::plan(&applied.incident, rules.slas.of(applied.incident.severity));
        }
        let pir_at = rules.pir.replan(self, &applied.incident, now, rules.timezone);
        if pir_at.is_some() && pir_at != self.pir_remind_at {
            applied.events.push((
                EventKind::Pir,
                json!({ "action": "scheduled", "remind_at": pir_at.map(|t| t.timestamp_millis()) }),
            ));
        }
        applied.incident.pir_remind_at = pir_at;
        Ok(applied)
    }

    /// Enters `status`, stamping the first entry.
    fn enter(&mut self, status: Status, now: DateTime<Utc>) {
        self.status = status;
        let stamp = match status {
            Status::Identified => &mut self.identified_at,
            Status::Mitigated => &mut self.mitigated_at,
            Status::Resolved => &mut self.resolved_at,
            Status::Closed => &mut self.closed_at,
            Status::Canceled => &mut self.canceled_at,
            Status::Investigating => return,
        };
        stamp.get_or_insert(now);
        // A resolved incident has had its service restored.
        if status == Status::Resolved {
            self.mitigated_at.get_or_insert(now);
        }
    }
}

impl Outcome {
    fn finish(self) -> Applied {
        Applied {
            incident: self.next,
            events: self.events,
            effects: self.effects,
            follow_ups: self.follow_ups,
        }
    }
}

/// Footprint rules: counts ≥ 0, impact start and end not in the future, end not before start.
pub fn check_footprint(f: &Footprint, now: DateTime<Utc>) -> Result<(), String> {
    for (label, v) in [
        ("customers", f.customers),
        ("merchants", f.merchants),
        ("transactions", f.transactions),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(format!("The number of {label} cannot be negative."));
        }
    }
    if f.impact_start.is_some_and(|s| s > now) {
        return Err("Impact start cannot be in the future.".into());
    }
    if f.impact_end.is_some_and(|e| e > now) {
        return Err("Impact end cannot be in the future.".into());
    }
    if let (Some(s), Some(e)) = (f.impact_start, f.impact_end) {
        if e < s {
            return Err("Impact end cannot be before impact start.".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }
    fn u(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }
    fn incident() -> Incident {
        Incident::example()
    }
    fn update(status: Status) -> Change {
        Change::Update(StakeholderUpdate {
            status,
            known: "db failover".into(),
            impact: String::new(),
            next: String::new(),
        })
    }

    #[test]
    fn the_lifecycle_moves_and_stamps_first_entries() {
        let alice = u("U0ALICE");
        let a = incident()
            .apply(&update(Status::Identified), &alice, t(5))
            .unwrap()
            .incident;
        assert_eq!(
            (a.status, a.identified_at, a.last_update_at),
            (Status::Identified, Some(t(5)), Some(t(5)))
        );
        let b = a.apply(&update(Status::Mitigated), &alice, t(10)).unwrap().incident;
        let c = b.apply(&update(Status::Investigating), &alice, t(12)).unwrap().incident;
        let d = c.apply(&update(Status::Mitigated), &alice, t(15)).unwrap().incident;
        assert_eq!(d.mitigated_at, Some(t(10)), "first entry is kept");
        let resolve = Change::Resolve {
            summary: "rolled back".into(),
            root_cause: "deploy".into(),
            mitigated_at: None,
            follow_ups: vec![],
        };
        let e = d.apply(&resolve, &alice, t(20)).unwrap().incident;
        assert_eq!((e.status, e.resolved_at), (Status::Resolved, Some(t(20))));
        assert!(e
            .apply(&resolve, &alice, t(21))
            .unwrap_err()
            .contains("already resolved"));
        let f = e.apply(&Change::Reopen, &alice, t(30)).unwrap().incident;
        assert_eq!(
            (f.status, f.resolved_at, f.last_update_at),
            (Status::Investigating, None, Some(t(30)))
        );
        let g = f
            .apply(&resolve, &alice, t(40))
            .unwrap()
            .incident
            .apply(&Change::Close, &alice, t(50))
            .unwrap()
            .incident;
        assert_eq!((g.status, g.closed_at), (Status::Closed, Some(t(50))));
        assert!(g
            .apply(&update(Status::Investigating), &alice, t(51))
            .unwrap_err()
            .contains("closed"));
        assert!(g.apply(&Change::Reopen, &alice, t(51)).is_err());
    }

    #[test]
    fn illegal_moves_are_refused_with_a_reason() {
        let alice = u("U0ALICE");
        assert!(incident()
            .apply(&Change::Close, &alice, t(1))
            .unwrap_err()
            .contains("resolve it first"));
        assert!(incident()
            .apply(&Change::Reopen, &alice, t(1))
            .unwrap_err()
            .contains("only a resolved"));
        let canceled = incident().apply(&Change::Cancel, &alice, t(1)).unwrap().incident;
        assert_eq!(canceled.canceled_at, Some(t(1)));
        assert!(canceled
            .apply(&Change::Cancel, &alice, t(2))
            .unwrap_err()
            .contains("already canceled"));
        assert!(canceled.apply(&Change::Severity(Severity::Sev1), &alice, t(2)).is_err());
        assert_eq!(
            canceled.apply(&Change::Close, &alice, t(3)).unwrap().incident.status,
            Status::Closed,
            "canceled may close"
        );
        assert!(incident()
            .apply(&Change::Severity(Severity::Sev2), &alice, t(1))
            .unwrap_err()
            .contains("already SEV2"));
    }

    #[test]
    fn acknowledgement_is_the_spocs_first_action() {
        let (alice, bob) = (u("U0ALICE"), u("U0BOB"));
        assert!(incident()
            .apply(&Change::Acknowledge, &alice, t(1))
            .unwrap_err()
            .contains("Only the SPOC"));
        let noted = incident()
            .apply(
                &Change::Note {
                    text: "x".into(),
                    link: None,
                },
                &alice,
                t(1),
            )
            .unwrap();
        assert_eq!(
            noted.incident.acknowledged_at, None,
            "someone else acting does not acknowledge"
        );
        assert!(noted.effects.is_empty(), "notes do not touch the card");
        let acted = incident().apply(&Change::Severity(Severity::Sev1), &bob, t(2)).unwrap();
        assert_eq!(acted.incident.acknowledged_at, Some(t(2)));
        assert!(acted.events.iter().any(|(k, _)| *k == EventKind::Acknowledged));
        let explicit = incident().apply(&Change::Acknowledge, &bob, t(3)).unwrap().incident;
        assert_eq!(explicit.acknowledged_at, Some(t(3)));
        assert!(explicit
            .apply(&Change::Acknowledge, &bob, t(4))
            .unwrap_err()
            .contains("already"));
    }

    #[test]
    fn every_first_action_of_the_spoc_acknowledges_resolving_included_canceling_not() {
        let bob = u("U0BOB");
        let resolve = Change::Resolve {
            summary: "rolled back".into(),
            root_cause: "change / deploy".into(),
            mitigated_at: None,
            follow_ups: vec![],
        };
        let resolved = incident().apply(&resolve, &bob, t(7)).unwrap();
        assert_eq!(resolved.incident.acknowledged_at, Some(t(7)));
        assert!(resolved.events.iter().any(|(k, _)| *k == EventKind::Acknowledged));
        let followed = incident()
            .apply(&Change::AddFollowUps(vec![follow_up("a", None)]), &bob, t(8))
            .unwrap();
        assert_eq!(followed.incident.acknowledged_at, Some(t(8)), "the same rule");
        let canceled = incident().apply(&Change::Cancel, &bob, t(9)).unwrap();
        assert_eq!(canceled.incident.acknowledged_at, None, "a mistake is not acknowledged");
        // Acting on a resolved incident is not a first response to it.
        let mut later = resolved.incident.clone();
        later.acknowledged_at = None;
        let noted = later
            .apply(&Change::AddFollowUps(vec![follow_up("b", None)]), &bob, t(10))
            .unwrap();
        assert_eq!(noted.incident.acknowledged_at, None);
    }

    #[test]
    fn a_canceled_incident_takes_no_follow_ups_or_review_even_once_closed() {
        let bob = u("U0BOB");
        let canceled = incident().apply(&Change::Cancel, &bob, t(1)).unwrap().incident;
        let closed = canceled.apply(&Change::Close, &bob, t(2)).unwrap().incident;
        assert_eq!(closed.status, Status::Closed);
        for i in [&canceled, &closed] {
            let err = i
                .apply(&Change::AddFollowUps(vec![follow_up("a", None)]), &bob, t(3))
                .unwrap_err();
            assert!(err.contains("canceled"), "{err}");
            let err = i.apply(&Change::PirDone { link: None }, &bob, t(3)).unwrap_err();
            assert!(err.contains("canceled"), "{err}");
            assert!(crate::incident::pir::draft_refused(i).is_some());
        }
        assert!(crate::incident::pir::draft_refused(&incident()).is_none());
    }

    #[test]
    fn handover_moves_the_spoc_and_invites_them() {
        let alice = u("U0ALICE");
        let change = Change::Handover {
            to: u("U0CAROL"),
            note: "db is failing over".into(),
        };
        let applied = incident().apply(&change, &alice, t(1)).unwrap();
        assert_eq!(applied.incident.spoc, u("U0CAROL"));
        assert!(applied.effects.contains(&Effect::Invite(vec![u("U0CAROL")])));
        assert_eq!(applied.events[0].0, EventKind::Handover);
        assert!(incident()
            .apply(&Change::Spoc(u("U0BOB")), &alice, t(1))
            .unwrap_err()
            .contains("already the SPOC"));
    }

    #[test]
    fn updates_know_whether_they_were_on_time() {
        let bob = u("U0BOB");
        let mut inc = incident();
        inc.clock = crate::reminder::plan::plan(
            &inc,
            crate::reminder::plan::Sla {
                update_every: chrono::Duration::minutes(30),
                escalate_after: chrono::Duration::minutes(10),
                customer_every: chrono::Duration::zero(),
            },
        );
        let on_time = inc.apply(&update(Status::Identified), &bob, t(30)).unwrap();
        assert_eq!(
            on_time.events.iter().find(|(k, _)| *k == EventKind::Update).unwrap().1["on_time"],
            true
        );
        let late = inc.apply(&update(Status::Identified), &bob, t(31)).unwrap();
        assert_eq!(
            late.events.iter().find(|(k, _)| *k == EventKind::Update).unwrap().1["on_time"],
            false
        );
        let snoozed = inc.apply(&Change::Snooze, &bob, t(31)).unwrap().incident;
        assert!(snoozed.clock.unwrap().snoozed);
        assert!(snoozed.apply(&Change::Snooze, &bob, t(32)).is_err());
    }

    #[test]
    fn footprint_rules() {
        let mut f = Footprint {
            customers: Some(-1),
            ..Footprint::default()
        };
        assert!(check_footprint(&f, t(0)).unwrap_err().contains("customers"));
        f.customers = Some(10);
        f.impact_start = Some(t(5));
        assert!(check_footprint(&f, t(0)).unwrap_err().contains("future"));
        f.impact_start = Some(t(-30));
        f.impact_end = Some(t(-40));
        assert!(check_footprint(&f, t(0)).unwrap_err().contains("before impact start"));
        f.impact_end = Some(t(-10));
        assert!(check_footprint(&f, t(0)).is_ok());
    }

    #[test]
    fn every_accepted_change_records_an_event() {
        let bob = u("U0BOB");
        let changes = [
            update(Status::Identified),
            Change::Severity(Severity::Sev1),
            Change::Spoc(u("U0CAROL")),
            Change::Role {
                role: "comms".into(),
                user: u("U0DAVE"),
            },
            Change::Acknowledge,
            Change::Note {
                text: "n".into(),
                link: None,
            },
            Change::Impact {
                services: vec!["payments".into()],
                footprint: Footprint::default(),
            },
            Change::Resolve {
                summary: String::new(),
                root_cause: String::new(),
                mitigated_at: Some(t(1)),
                follow_ups: vec![],
            },
            Change::Cancel,
        ];
        for c in changes {
            let applied = incident().apply(&c, &bob, t(2)).unwrap();
            assert!(!applied.events.is_empty(), "{c:?}");
        }
    }

    fn follow_up(text: &str, owner: Option<&str>) -> NewFollowUp {
        NewFollowUp {
            text: text.into(),
            owner: owner.map(u),
            due: None,
            link: None,
        }
    }

    #[test]
    fn follow_ups_are_numbered_on_with_an_event_each() {
        let alice = u("U0ALICE");
        let first = incident()
            .apply(
                &Change::AddFollowUps(vec![follow_up("a", Some("U0DAVE")), follow_up("b", None)]),
                &alice,
                t(1),
            )
            .unwrap();
        assert_eq!(first.incident.follow_up_seq, 2);
        assert_eq!(first.follow_ups.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(first.events.len(), 2);
        assert_eq!(first.events[1].1["seq"], 2);
        assert!(first.effects.contains(&Effect::Invite(vec![u("U0DAVE")])));
        assert!(!first.effects.contains(&Effect::RefreshCard));
        let resolve = Change::Resolve {
            summary: "rolled back".into(),
            root_cause: "data".into(),
            mitigated_at: None,
            follow_ups: vec![follow_up("c", None)],
        };
        let resolved = first.incident.apply(&resolve, &alice, t(2)).unwrap();
        assert_eq!(resolved.follow_ups[0].seq, 3, "numbering goes on");
        assert!(incident()
            .apply(&Change::AddFollowUps(vec![]), &alice, t(1))
            .unwrap_err()
            .contains("/incident followup"));
        let too_many = vec![follow_up("x", None); MAX_FOLLOW_UPS_AT_ONCE + 1];
        assert!(incident().apply(&Change::AddFollowUps(too_many), &alice, t(1)).is_err());
        let canceled = incident().apply(&Change::Cancel, &alice, t(1)).unwrap().incident;
        assert!(canceled
            .apply(&Change::AddFollowUps(vec![follow_up("a", None)]), &alice, t(2))
            .unwrap_err()
            .contains("canceled"));
    }

    fn rules() -> Rules {
        crate::config::Policy::default().rules()
    }

    #[test]
    fn a_major_incident_closes_only_after_its_review() {
        let bob = u("U0BOB");
        let resolve = Change::Resolve {
            summary: "rolled back".into(),
            root_cause: "data".into(),
            mitigated_at: None,
            follow_ups: vec![],
        };
        // Monday 2026-11-23 12:10 UTC: the first reminder is two working days later.
        let resolved = incident().apply_under(&resolve, &bob, t(10), &rules()).unwrap();
        assert_eq!(resolved.incident.pir_remind_at, Some(t(10) + chrono::Duration::days(2)));
        assert!(resolved
            .events
            .iter()
            .any(|(k, d)| *k == EventKind::Pir && d["action"] == "scheduled"));
        let refused = resolved
            .incident
            .apply_under(&Change::Close, &bob, t(20), &rules())
            .unwrap_err();
        assert!(refused.contains("post-incident review"), "{refused}");
        let done = resolved
            .incident
            .apply_under(
                &Change::PirDone {
                    link: Some("https://wiki/pir-42".into()),
                },
                &bob,
                t(30),
                &rules(),
            )
            .unwrap()
            .incident;
        assert_eq!((done.pir_done_at, done.pir_remind_at), (Some(t(30)), None));
        assert!(
            resolved
                .incident
                .apply_under(&Change::PirDone { link: None }, &bob, t(30), &rules())
                .unwrap()
                .effects
                .contains(&Effect::RefreshCard),
            "the card drops its review buttons"
        );
        assert_eq!(done.pir_link.as_deref(), Some("https://wiki/pir-42"));
        assert!(done
            .apply_under(&Change::PirDone { link: None }, &bob, t(31), &rules())
            .unwrap_err()
            .contains("already"));
        let closed = done
            .apply_under(&Change::Close, &bob, t(40), &rules())
            .unwrap()
            .incident;
        assert_eq!(closed.status, Status::Closed);
        assert!(incident()
            .apply_under(&Change::PirDone { link: None }, &bob, t(1), &rules())
            .unwrap_err()
            .contains("once it is resolved"));
        // A minor incident needs no review.
        let mut minor = incident();
        minor.severity = Severity::Sev3;
        let minor = minor.apply_under(&resolve, &bob, t(10), &rules()).unwrap().incident;
        assert_eq!(minor.pir_remind_at, None);
        assert!(minor.apply_under(&Change::Close, &bob, t(11), &rules()).is_ok());
        // Reopening drops the reminder.
        let reopened = resolved
            .incident
            .apply_under(&Change::Reopen, &bob, t(15), &rules())
            .unwrap()
            .incident;
        assert_eq!(reopened.pir_remind_at, None);
    }
}
