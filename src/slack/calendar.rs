//! The change calendar in Slack (issue 12): the `/change` command and its form, what the bot
//! says about changes (lists, announcements, the digest, the owner's reminders, the possible
//! causes posted in an incident channel), and the loop that performs the calendar's scheduled
//! Slack work from `change_jobs` (due time indexed in the database, claimed with a lease, once
//! across replicas and restarts).

use super::blocks::{self, escape, slack_date, truncate};
use super::listener::{ephemeral, errors, Handler};
use super::text::{self, Lines};
use super::web::{Failure, MessageTag, SlackWeb, JOB_EVENT_TYPE};
use crate::calendar::{
    self, ChangeDraft, ChangeKind, ChangeNumber, ChangeState, Conflict, Freeze, Move, PlannedChange, Risk,
};
use crate::config::Policy;
use crate::db::{ChangeJob, Db};
use crate::incident::model::{IncidentId, UserId};
use crate::service::calendar::PlanRefusal;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use slack_morphism::prelude::*;
use std::sync::Arc;
use tokio::sync::Notify;

/// The `/change` form.
pub const CHANGE_CALLBACK: &str = "change_new";
/// The slash command (in `manifest.yml`).
pub const COMMAND: &str = "/change";

pub const USAGE: &str =
    "*Usage:* `/change [new <title>]` · `list [today|week|YYYY-MM-DD..YYYY-MM-DD] [service:<name>]` · \
`show N` · `start N` · `done N` · `rollback N [note]` · `cancel N` · \
`freeze YYYY-MM-DD[THH:MM]..YYYY-MM-DD[THH:MM] [service:<name>] <name>` · `help`";

pub const HELP: &str = "*Change calendar* — plan every change, see what changed when an incident starts.\n\
• `/change` or `/change new [title]` — plan a change (opens a form: kind, services, window, owner, risk…)\n\
• `/change list [today|week|YYYY-MM-DD..YYYY-MM-DD] [service:<name>]` — the changes in that window\n\
• `/change show N` — one change and its timeline\n\
• `/change start N` · `/change done N` · `/change rollback N [note]` · `/change cancel N`\n\
• `/change freeze FROM..TO [service:<name>] <name>` — an ad-hoc freeze (local times)\n\
• `/incident change CHG-N` (in an incident channel) — link a change as a suspected cause";

/// What `/change` was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeCommand {
    New {
        title: String,
    },
    List {
        window: String,
        service: Option<String>,
    },
    Show(ChangeNumber),
    Move {
        number: ChangeNumber,
        m: Move,
        note: Option<String>,
    },
    Freeze(FreezeRequest),
    Help,
}

/// `/change freeze` as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct FreezeRequest {
    pub from: String,
    pub to: String,
    pub services: Vec<String>,
    pub name: String,
}

/// Parses the text after `/change` (entity-encoded, as Slack sends it).
pub fn parse(raw: &str) -> Result<ChangeCommand, String> {
    if raw.chars().count() > 4000 {
        return Err("That is over 4000 characters.".into());
    }
    let cleaned = text::clean(raw, Lines::Many);
    let cleaned = cleaned.trim();
    let (word, rest) = match cleaned.split_once(char::is_whitespace) {
        Some((w, r)) => (w.to_ascii_lowercase(), r.trim()),
        None => (cleaned.to_ascii_lowercase(), ""),
    };
    let usage = |problem: String| format!("{problem}\n{USAGE}");
    let number = |rest: &str| -> Result<(ChangeNumber, String), String> {
        let (n, tail) = match rest.split_once(char::is_whitespace) {
            Some((n, t)) => (n, t.trim()),
            None => (rest, ""),
        };
        if n.is_empty() {
            return Err(usage(format!(
                "`/change {word}` needs a change number, like `/change {word} 12`."
            )));
        }
        Ok((ChangeNumber::parse(n).map_err(usage)?, text::plain(tail, Lines::Many)))
    };
    match word.as_str() {
        "" | "new" | "plan" => Ok(ChangeCommand::New {
            title: text::plain(rest, Lines::One),
        }),
        "help" => Ok(ChangeCommand::Help),
        "list" | "ls" => {
            let mut window = String::new();
            let mut service = None;
            for w in rest.split_whitespace() {
                if let Some(s) = w.strip_prefix("service:") {
                    service = Some(s.to_string());
                } else if window.is_empty() {
                    window = w.to_string();
                } else {
                    return Err(usage(format!("I did not understand `{}`.", truncate(w, 30))));
                }
            }
            Ok(ChangeCommand::List { window, service })
        }
        "show" => {
            let (n, tail) = number(rest)?;
            if !tail.is_empty() {
                return Err(usage("`/change show` takes only the number.".into()));
            }
            Ok(ChangeCommand::Show(n))
        }
        "start" | "done" | "cancel" | "rollback" | "roll-back" => {
            let m = match word.as_str() {
                "start" => Move::Start,
                "done" => Move::Done,
                "cancel" => Move::Cancel,
                _ => Move::Rollback,
            };
            let (n, tail) = number(rest)?;
            if !tail.is_empty() && m != Move::Rollback {
                return Err(usage(format!("`/change {word}` takes only the number.")));
            }
            Ok(ChangeCommand::Move {
                number: n,
                m,
                note: Some(tail).filter(|t| !t.is_empty()).map(|t| truncate(&t, 500)),
            })
        }
        "freeze" => {
            let mut words = rest.split_whitespace();
            let window = words.next().unwrap_or_default();
            let Some((from, to)) = window.split_once("..") else {
                return Err(usage(
                    "`/change freeze` needs a window first, like `2026-12-24..2026-12-26` or `2026-12-24T18:00..2026-12-27T06:00`."
                        .into(),
                ));
            };
            let mut services = Vec::new();
            let mut name = Vec::new();
            for w in words {
                match w.strip_prefix("service:") {
                    Some(s) => services.push(s.to_string()),
                    None => name.push(w),
                }
            }
            let name = text::plain(&name.join(" "), Lines::One);
            if name.is_empty() {
                return Err(usage("Give the freeze a name, e.g. `… peak weekend`.".into()));
            }
            Ok(ChangeCommand::Freeze(FreezeRequest {
                from: from.to_string(),
                to: to.to_string(),
                services,
                name: truncate(&name, 80),
            }))
        }
        other => Err(usage(format!("I do not know `/change {}`.", truncate(other, 30)))),
    }
}

fn plain(text: &str, max: usize) -> Value {
    json!({ "type": "plain_text", "text": truncate(text, max), "emoji": true })
}

fn option(text: &str, value: &str) -> Value {
    json!({ "text": plain(text, 75), "value": value })
}

/// The `/change` form. Start and end default to the next full hour and an hour later.
pub fn change_modal(policy: &Policy, title: &str, owner: &str, origin: &str, now: DateTime<Utc>) -> Value {
    let kinds: Vec<Value> = ChangeKind::ALL.iter().map(|k| option(k.label(), k.as_str())).collect();
    let risks: Vec<Value> = Risk::ALL.iter().map(|r| option(r.label(), r.as_str())).collect();
    let services: Vec<Value> = policy.services.iter().take(100).map(|s| option(s, s)).collect();
    let start = (now.timestamp() / 3600 + 1) * 3600;
    let mut title_input = json!({
        "type": "plain_text_input", "action_id": "title", "max_length": calendar::MAX_TITLE_CHARS,
        "placeholder": plain("e.g. payments-api v42", 150),
    });
    let prefill = truncate(title.trim(), calendar::MAX_TITLE_CHARS);
    if !prefill.is_empty() {
        title_input["initial_value"] = json!(prefill);
    }
    let no = option("No", "no");
    json!({
        "type": "modal",
        "callback_id": CHANGE_CALLBACK,
        "title": plain("Plan a change", 24),
        "submit": plain("Plan", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json!({ "origin": origin }).to_string(),
        "blocks": [
            { "type": "input", "block_id": "kind", "label": plain("Kind", 2000),
              "element": { "type": "static_select", "action_id": "kind", "options": kinds,
                           "initial_option": option(ChangeKind::Deployment.label(), ChangeKind::Deployment.as_str()) } },
            { "type": "input", "block_id": "title", "label": plain("Title", 2000), "element": title_input },
            { "type": "input", "block_id": "services", "label": plain("Service lines", 2000),
              "element": { "type": "multi_static_select", "action_id": "services", "options": services,
                           "placeholder": plain("Which service lines does it touch?", 150) } },
            { "type": "input", "block_id": "start", "label": plain("Starts", 2000),
              "element": { "type": "datetimepicker", "action_id": "start", "initial_date_time": start } },
            { "type": "input", "block_id": "end", "label": plain("Ends", 2000),
              "element": { "type": "datetimepicker", "action_id": "end", "initial_date_time": start + 3600 } },
            { "type": "input", "block_id": "owner", "label": plain("Owner", 2000),
              "element": { "type": "users_select", "action_id": "owner", "initial_user": owner } },
            { "type": "input", "block_id": "risk", "label": plain("Risk", 2000),
              "element": { "type": "static_select", "action_id": "risk", "options": risks,
                           "initial_option": option(Risk::Low.label(), Risk::Low.as_str()) } },
            { "type": "input", "block_id": "customer_facing", "label": plain("Customer-facing?", 2000),
              "element": { "type": "radio_buttons", "action_id": "customer_facing",
                           "options": [option("Yes", "yes"), no.clone()], "initial_option": no } },
            { "type": "input", "block_id": "vendor", "optional": true, "label": plain("Vendor (for vendor maintenance)", 2000),
              "element": { "type": "plain_text_input", "action_id": "vendor", "max_length": 80 } },
            { "type": "input", "block_id": "link", "optional": true, "label": plain("Link (ticket)", 2000),
              "element": { "type": "url_text_input", "action_id": "link" } },
            { "type": "input", "block_id": "override", "optional": true,
              "label": plain("Override reason (only to plan inside a freeze)", 2000),
              "element": { "type": "plain_text_input", "action_id": "override", "multiline": true, "max_length": 500 } },
            { "type": "input", "block_id": "go_ahead", "optional": true, "label": plain("Conflicts", 2000),
              "element": { "type": "checkboxes", "action_id": "go_ahead", "options": [
                  option("Plan it anyway if it overlaps other changes or an open SEV1/SEV2", "yes") ] } }
        ]
    })
}

fn input<'a>(values: &'a Value, block: &str) -> &'a Value {
    &values[block][block]
}

/// Reads the submitted form into a draft and the "plan it anyway" box.
pub fn parse_form(values: &Value) -> (ChangeDraft, bool) {
    let line = |b: &str| text::input_value(input(values, b)["value"].as_str().unwrap_or_default(), Lines::One);
    let selected = |b: &str| {
        input(values, b)["selected_option"]["value"]
            .as_str()
            .map(str::to_string)
    };
    let when = |b: &str| {
        input(values, b)["selected_date_time"]
            .as_i64()
            .and_then(|s| DateTime::from_timestamp(s, 0))
    };
    let services = input(values, "services")["selected_options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["value"].as_str().map(str::to_string))
        .collect();
    let go_ahead = input(values, "go_ahead")["selected_options"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let draft = ChangeDraft {
        kind: selected("kind"),
        title: line("title"),
        services,
        starts_at: when("start"),
        ends_at: when("end"),
        owner: input(values, "owner")["selected_user"]
            .as_str()
            .and_then(|u| UserId::parse(u).ok()),
        risk: selected("risk"),
        customer_facing: selected("customer_facing").as_deref() == Some("yes"),
        vendor: Some(line("vendor")),
        link: Some(line("link")),
        override_reason: Some(text::input_value(
            input(values, "override")["value"].as_str().unwrap_or_default(),
            Lines::Many,
        )),
    };
    (draft, go_ahead)
}

fn state_emoji(s: ChangeState) -> &'static str {
    match s {
        ChangeState::Planned => "🗓️",
        ChangeState::InProgress => "🚧",
        ChangeState::Done => "✅",
        ChangeState::RolledBack => "↩️",
        ChangeState::Canceled => "✖️",
    }
}

/// One line about a change: number, kind, title, window, lines, owner, risk, state.
pub fn change_line(c: &PlannedChange) -> String {
    let mut line = format!(
        "{} *{}* {}: {} — {} → {} · {} · owner <@{}> · {} risk · _{}_",
        state_emoji(c.state),
        c.number,
        c.kind,
        escape(&c.title),
        slack_date(c.starts_at),
        slack_date(c.ends_at),
        escape(&c.services.join(", ")),
        c.owner,
        c.risk,
        c.state
    );
    if c.customer_facing {
        line.push_str(" · customer-facing");
    }
    if let Some(v) = &c.vendor {
        line.push_str(&format!(" · vendor {}", escape(v)));
    }
    if let Some(l) = &c.link {
        line.push_str(&format!(" · <{}|ticket>", l.replace(['<', '>', '|'], "")));
    }
    line
}

/// Conflicts in words (form errors, announcements).
pub fn conflicts_line(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(|c| match c {
            Conflict::Change {
                number,
                title,
                services,
                starts_at,
                ends_at,
            } => format!(
                "{number} {} ({}, {}–{})",
                truncate(title, 60),
                services.join(", "),
                starts_at.format("%d %b %H:%M"),
                ends_at.format("%H:%M UTC")
            ),
            Conflict::Incident {
                number,
                severity,
                services,
            } => format!("open {severity} {number} on {}", services.join(", ")),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `/change list`: the changes in time order (at most 40 lines, then a count).
pub fn list_text(heading: &str, changes: &[PlannedChange]) -> String {
    if changes.is_empty() {
        return format!("{heading}\nNo changes.");
    }
    let mut out = heading.to_string();
    for c in changes.iter().take(40) {
        out.push('\n');
        out.push_str(&change_line(c));
    }
    if changes.len() > 40 {
        out.push_str(&format!(
            "\n… and {} more (`incident-bot changes` exports them all).",
            changes.len() - 40
        ));
    }
    truncate(&out, 2900)
}

/// `/change show`.
pub fn show_text(record: &crate::service::calendar::ChangeRecord) -> String {
    let c = &record.change;
    let mut out = format!("{}\n", change_line(c));
    if let Some(r) = &c.override_reason {
        out.push_str(&format!("Freeze override: {}\n", escape(r)));
    }
    out.push_str("*Timeline*");
    for e in record.timeline.iter().rev().take(20).rev() {
        // Private incidents are never named here: whoever asks may not be in them.
        let incident = if e.details["private"] == true {
            "a private incident"
        } else {
            e.details["incident"].as_str().unwrap_or("an incident")
        };
        let what = match e.kind.as_str() {
            "planned" => "planned".to_string(),
            "linked" => format!("linked to {incident}"),
            "correlated" => format!("posted as a possible cause in {incident}"),
            "rollback_while_linked" => format!("rolled back while linked to {incident}"),
            other => match e.details["note"].as_str() {
                Some(note) => format!("{other}: {}", escape(note)),
                None => other.to_string(),
            },
        };
        let actor = if e.actor == "bot" {
            "bot".to_string()
        } else {
            format!("<@{}>", e.actor)
        };
        out.push_str(&format!("\n• {} {actor} {what}", slack_date(e.at)));
    }
    truncate(&out, 2900)
}

/// What the changes channel is told of a new change or a state move.
pub fn announcement(c: &PlannedChange, payload: &Value) -> String {
    let event = payload["event"].as_str().unwrap_or("planned");
    let actor = payload["actor"]
        .as_str()
        .map(|a| format!(" by <@{a}>"))
        .unwrap_or_default();
    let mut out = match event {
        "planned" => format!("🗓️ New change planned{actor}:\n{}", change_line(c)),
        "start" => format!("🚧 {} started{actor}: {}", c.number, escape(&c.title)),
        "done" => format!("✅ {} done{actor}: {}", c.number, escape(&c.title)),
        "rollback" => format!("↩️ {} rolled back{actor}: {}", c.number, escape(&c.title)),
        "cancel" => format!("✖️ {} canceled{actor}: {}", c.number, escape(&c.title)),
        other => format!("{} {other}{actor}", c.number),
    };
    if let Some(note) = payload["note"].as_str() {
        out.push_str(&format!("\n>{}", escape(note)));
    }
    if let Ok(conflicts) = serde_json::from_value::<Vec<Conflict>>(payload["conflicts"].clone()) {
        if !conflicts.is_empty() {
            out.push_str(&format!("\n⚠️ Conflicts: {}", escape(&conflicts_line(&conflicts))));
        }
    }
    if event == "planned" {
        if let Some(r) = &c.override_reason {
            out.push_str(&format!("\n❄️ Planned inside a freeze. Override reason: {}", escape(r)));
        }
    }
    truncate(&out, 2900)
}

/// The digest: today's changes (on Mondays, the week's).
pub fn digest_text(week: bool, changes: &[PlannedChange], freezes: &[Freeze]) -> String {
    let heading = if week { "*Changes this week*" } else { "*Changes today*" };
    let mut out = list_text(heading, changes);
    for f in freezes {
        out.push_str(&format!(
            "\n❄️ Freeze “{}”: {} → {} ({})",
            escape(&f.name),
            slack_date(f.starts_at),
            slack_date(f.ends_at),
            escape(&f.scope())
        ));
    }
    truncate(&out, 2900)
}

/// What is posted in an incident channel: the changes that may have caused it.
pub fn suspects_text(changes: &[PlannedChange], lookback: Duration) -> String {
    let mut out = format!(
        "🔎 *What changed?* {} on this incident's service lines in progress or ended within {} before it started (newest first). \
         `/incident change CHG-N` links one as a suspected cause.",
        if changes.len() == 1 { "1 change".to_string() } else { format!("{} changes", changes.len()) },
        blocks::humanize(lookback.to_std().unwrap_or_default())
    );
    for c in changes.iter().take(20) {
        out.push('\n');
        out.push_str(&change_line(c));
    }
    truncate(&out, 2900)
}

/// The card's line about changes (none when there is nothing to say).
pub fn card_block(correlated: i64, linked: i64) -> Option<Value> {
    if correlated == 0 && linked == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if correlated > 0 {
        parts.push(format!(
            "🔎 {correlated} recent change{} on these service lines",
            if correlated == 1 { "" } else { "s" }
        ));
    }
    if linked > 0 {
        parts.push(format!(
            "🔗 {linked} linked as suspected cause{}",
            if linked == 1 { "" } else { "s" }
        ));
    }
    Some(json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": parts.join(" · ") } ] }))
}

impl Handler {
    /// `/change …`.
    pub async fn change_command(&self, event: &SlackCommandEvent) -> SlackCommandEventResponse {
        let Ok(user) = UserId::parse(event.user_id.as_ref()) else {
            return ephemeral("Slack sent an unexpected user id.");
        };
        let command = match parse(event.text.as_deref().unwrap_or_default()) {
            Ok(c) => c,
            Err(problem) => return ephemeral(&problem),
        };
        let policy = &self.service.policy;
        match command {
            ChangeCommand::Help => ephemeral(HELP),
            ChangeCommand::New { title } => {
                let view = change_modal(policy, &title, user.as_str(), event.channel_id.as_ref(), Utc::now());
                self.open_form(event, view);
                SlackCommandEventResponse::new(SlackMessageContent::new())
            }
            ChangeCommand::List { window, service } => {
                let (from, to) = match calendar::window(&window, policy.timezone, Utc::now()) {
                    Ok(w) => w,
                    Err(e) => return ephemeral(&format!("{e}\n{USAGE}")),
                };
                match self.service.list_changes(from, to, service.as_deref()).await {
                    Ok(changes) => {
                        let label = if window.is_empty() { "today" } else { window.as_str() };
                        let heading = match &service {
                            Some(s) => format!("*Changes {label}* on {}", escape(s)),
                            None => format!("*Changes {label}*"),
                        };
                        ephemeral(&list_text(&heading, &changes))
                    }
                    Err(refusal) => ephemeral(&refusal.to_string()),
                }
            }
            ChangeCommand::Show(number) => match self.service.change_record(number).await {
                Ok(record) => ephemeral(&show_text(&record)),
                Err(refusal) => ephemeral(&refusal.to_string()),
            },
            ChangeCommand::Move { number, m, note } => {
                let key = format!("trigger:{}", event.trigger_id);
                match self.service.move_change(number, m, note.as_deref(), &user, &key).await {
                    Ok(Some(moved)) => {
                        let mut text = format!(
                            "{} {} is {}.",
                            state_emoji(moved.change.state),
                            moved.change.number,
                            moved.change.state
                        );
                        if !moved.linked.is_empty() {
                            // A private incident is not named to someone who may not be in it.
                            let numbers: Vec<String> = moved
                                .linked
                                .iter()
                                .map(|(_, n, private)| {
                                    if *private {
                                        "a private incident".to_string()
                                    } else {
                                        format!("INC-{n}")
                                    }
                                })
                                .collect();
                            text.push_str(&format!(
                                " It is linked to {}: recorded on their timelines.",
                                numbers.join(", ")
                            ));
                        }
                        ephemeral(&text)
                    }
                    Ok(None) => ephemeral("That was already done."),
                    Err(refusal) => ephemeral(&refusal.to_string()),
                }
            }
            ChangeCommand::Freeze(request) => {
                let tz = policy.timezone;
                let window = calendar::parse_local(&request.from, tz, false)
                    .and_then(|from| calendar::parse_local(&request.to, tz, true).map(|to| (from, to)));
                let (from, to) = match window {
                    Ok(w) => w,
                    Err(e) => return ephemeral(&format!("{e}\n{USAGE}")),
                };
                let freeze = Freeze {
                    name: request.name,
                    starts_at: from,
                    ends_at: to,
                    services: (!request.services.is_empty()).then_some(request.services),
                };
                match self.service.add_freeze(freeze.clone(), &user).await {
                    Ok(()) => ephemeral(&format!(
                        "❄️ Freeze “{}” from {} to {} on {}: changes planned inside it need an override reason.",
                        escape(&freeze.name),
                        slack_date(freeze.starts_at),
                        slack_date(freeze.ends_at),
                        escape(&freeze.scope())
                    )),
                    Err(refusal) => ephemeral(&refusal.to_string()),
                }
            }
        }
    }

    /// The `/change` form was submitted.
    pub async fn submit_change_form(&self, user: &str, view: &Value) -> SlackInteractionResponse {
        let Ok(actor) = UserId::parse(user) else {
            return errors([("title", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let (draft, go_ahead) = parse_form(&view["state"]["values"]);
        let change = match draft.validate(&self.service.policy.services) {
            Ok(c) => c,
            Err(problems) => return errors(problems),
        };
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self.service.plan_change(change, &key, &actor, go_ahead).await {
            Ok(planned) => {
                let origin = super::forms::origin_of(view["private_metadata"].as_str().unwrap_or_default());
                let mut text = format!("🗓️ Planned {}.", planned.change.summary());
                if !planned.conflicts.is_empty() {
                    text.push_str(&format!(" ⚠️ Conflicts: {}.", conflicts_line(&planned.conflicts)));
                }
                if !planned.freezes.is_empty() {
                    text.push_str(&format!(
                        " ❄️ Inside the freeze {} (override recorded).",
                        planned.freezes.join(", ")
                    ));
                }
                let (web, user) = (self.web.clone(), user.to_string());
                tokio::spawn(async move {
                    let channel = origin.unwrap_or_else(|| user.clone());
                    if let Err(e) = web
                        .tell_person(None, &channel, &user, blocks::text(&escape(&text)))
                        .await
                    {
                        tracing::warn!(error = %e, "cannot confirm a planned change");
                    }
                });
                SlackInteractionResponse::Empty
            }
            Err(PlanRefusal::Fields(problems)) => errors(problems),
            Err(PlanRefusal::Unavailable) => errors([(
                "title",
                "I could not save the change: the database is unavailable. Press Plan again in a moment.".to_string(),
            )]),
        }
    }

    fn open_form(&self, event: &SlackCommandEvent, view: Value) {
        let (web, trigger, channel, user, url) = (
            self.web.clone(),
            event.trigger_id.to_string(),
            event.channel_id.to_string(),
            event.user_id.to_string(),
            event.response_url.0.to_string(),
        );
        tokio::spawn(async move {
            let result = match blocks::modal(view) {
                Ok(view) => web.open_view(&trigger, view).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("bug: the modal does not fit Slack's model: {e}")),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot open the change form");
                let text = format!("⚠️ I could not open the form ({e}). Please try again.");
                let _ = web.tell_person(Some(&url), &channel, &user, blocks::text(&text)).await;
            }
        });
    }
}

/// Tuning of the change calendar's loop; tests shorten these.
#[derive(Debug, Clone)]
pub struct CalendarOptions {
    pub max_sleep: std::time::Duration,
    pub lease: std::time::Duration,
    pub max_attempts: i64,
    pub base_backoff: std::time::Duration,
}

impl Default for CalendarOptions {
    fn default() -> Self {
        CalendarOptions {
            max_sleep: std::time::Duration::from_secs(30),
            lease: std::time::Duration::from_secs(30),
            max_attempts: 12,
            base_backoff: std::time::Duration::from_secs(1),
        }
    }
}

/// Performs the change calendar's scheduled Slack work until `shutdown`: it keeps the next
/// digest slot enqueued (one row per slot, however many replicas), claims due jobs, runs them,
/// and sleeps until the next one is due (or it is woken).
#[allow(clippy::too_many_arguments)] // the loop's collaborators, each used on its own
pub async fn run(
    db: Db,
    web: SlackWeb,
    bot_user: String,
    policy: Policy,
    wake: Arc<Notify>,
    wake_outbox: Arc<Notify>,
    shutdown: Arc<Notify>,
    opts: CalendarOptions,
) {
    use crate::report::schedule::{next_slot, resume_after, slot_key};
    use std::str::FromStr;
    let tz = policy.timezone;
    let digest = policy
        .changes
        .channel
        .as_ref()
        .and_then(|_| cron::Schedule::from_str(&policy.changes.digest_cron).ok());
    let mut after = digest.as_ref().map(|cron| resume_after(cron, tz, Utc::now()));
    loop {
        let now = Utc::now();
        if let (Some(cron), Some(a)) = (&digest, after) {
            if let Some((slot, at)) = next_slot(cron, tz, a) {
                let key = format!("digest:{}", slot_key(slot));
                let week = slot.format("%a").to_string() == "Mon";
                let payload = json!({ "slot": slot_key(slot), "week": week, "at": at });
                match db
                    .enqueue_change_job(None, "digest", payload, at, Some(&key), now)
                    .await
                {
                    Ok(_) if at <= now => after = Some(slot),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "change calendar: cannot enqueue the digest"),
                }
            }
        }
        let jobs = match db.claim_change_jobs(now, opts.lease, 32).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "change calendar: cannot claim jobs; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = shutdown.notified() => return,
                }
            }
        };
        let any = !jobs.is_empty();
        for job in jobs {
            let outcome = perform(&db, &web, &bot_user, &policy, &job).await;
            let now = Utc::now();
            let result = match outcome {
                Ok(Done::Finished) => db.finish_change_job(job.id, now).await,
                Ok(Done::Recorded) => {
                    wake_outbox.notify_one();
                    Ok(())
                }
                Err((error, retry)) if retry && job.attempts < opts.max_attempts => {
                    let factor = 1u32 << (job.attempts.clamp(1, 10) - 1);
                    let delay = (opts.base_backoff * factor).min(std::time::Duration::from_secs(300));
                    tracing::warn!(job = job.id, kind = %job.kind, %error, "change calendar job failed; will retry");
                    db.retry_change_job(
                        job.id,
                        Some(now + Duration::from_std(delay).unwrap_or_default()),
                        &error,
                        now,
                    )
                    .await
                }
                Err((error, _)) => {
                    tracing::error!(job = job.id, kind = %job.kind, %error, "change calendar job failed for good");
                    db.retry_change_job(job.id, None, &error, now).await
                }
            };
            if let Err(e) = result {
                tracing::error!(job = job.id, error = %e, "change calendar: cannot record a job's result");
            }
        }
        if any {
            continue;
        }
        let mut sleep = match db.next_change_job_due().await {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default(),
            Ok(None) => opts.max_sleep,
            Err(_) => std::time::Duration::from_secs(1),
        };
        if let (Some(cron), Some(a)) = (&digest, after) {
            if let Some((_, at)) = next_slot(cron, tz, a) {
                sleep = sleep.min((at - Utc::now()).to_std().unwrap_or_default());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep.min(opts.max_sleep)) => {}
            _ = wake.notified() => {}
            _ = shutdown.notified() => return,
        }
    }
}

enum Done {
    /// Mark the job done.
    Finished,
    /// Already marked done with what it stored.
    Recorded,
}

type JobResult = Result<Done, (String, bool)>;

fn slack_failure(e: super::web::SlackCallError) -> (String, bool) {
    let retry = e.failure() != Failure::Permanent;
    (e.to_string(), retry)
}

fn db_failure(e: anyhow::Error) -> (String, bool) {
    (format!("database: {e:#}"), true)
}

/// Posts a job's message once: tagged with the job's id, and on a retry (an earlier attempt may
/// have posted before its answer was lost) looked for first. Direct messages (to a user id)
/// are posted again instead: their conversation id is known only from the post's answer.
async fn post_once(
    web: &SlackWeb,
    bot_user: &str,
    job: &ChangeJob,
    channel: &str,
    content: SlackMessageContent,
) -> Result<(), (String, bool)> {
    let tag = MessageTag {
        event_type: JOB_EVENT_TYPE,
        key: "change_job",
        value: job.id.to_string(),
    };
    let is_conversation = !channel.starts_with('U') && !channel.starts_with('W');
    if job.attempts > 1 && is_conversation {
        match web
            .find_tagged_message(channel, None, &tag, job.created_at, bot_user)
            .await
        {
            Ok(Some(ts)) => {
                tracing::info!(job = job.id, %ts, "change calendar: the message was posted before; not again");
                return Ok(());
            }
            Ok(None) => {}
            Err(e) if e.failure() == Failure::Permanent => {
                tracing::warn!(job = job.id, error = %e, "change calendar: cannot look for an earlier post; posting")
            }
            Err(e) => return Err(slack_failure(e)),
        }
    }
    web.post(channel, tag.apply(content, &[]), None)
        .await
        .map(|_| ())
        .map_err(slack_failure)
}

async fn perform(db: &Db, web: &SlackWeb, bot_user: &str, policy: &Policy, job: &ChangeJob) -> JobResult {
    let change = match job.change_id {
        Some(id) => db.change(id).await.map_err(db_failure)?,
        None => None,
    };
    match job.kind.as_str() {
        "announce" => {
            let (Some(channel), Some(c)) = (policy.changes.channel.as_deref(), change) else {
                return Ok(Done::Finished);
            };
            post_once(
                web,
                bot_user,
                job,
                channel,
                blocks::text(&announcement(&c, &job.payload)),
            )
            .await?;
            Ok(Done::Finished)
        }
        "remind_start" => {
            let Some(c) = change else { return Ok(Done::Finished) };
            // Moved, started or canceled since: nothing to remind of.
            if c.state != ChangeState::Planned
                || job.payload["starts_at"].as_i64() != Some(c.starts_at.timestamp_millis())
            {
                return Ok(Done::Finished);
            }
            let text = format!(
                "⏰ Your change starts {}: {}\nWhen it begins: `/change start {}` (or `/change cancel {}`).",
                slack_date(c.starts_at),
                change_line(&c),
                c.number.0,
                c.number.0
            );
            post_once(web, bot_user, job, c.owner.as_str(), blocks::text(&text)).await?;
            Ok(Done::Finished)
        }
        "ask_done" => {
            let Some(c) = change else { return Ok(Done::Finished) };
            if c.state != ChangeState::InProgress {
                return Ok(Done::Finished);
            }
            let text = format!(
                "❓ {} was planned to end {}. Is it done? `/change done {}` · `/change rollback {} [note]`",
                c.summary(),
                slack_date(c.ends_at),
                c.number.0,
                c.number.0
            );
            post_once(web, bot_user, job, c.owner.as_str(), blocks::text(&escape(&text))).await?;
            Ok(Done::Finished)
        }
        "digest" => {
            let Some(channel) = policy.changes.channel.as_deref() else {
                return Ok(Done::Finished);
            };
            let at = job.due_at;
            let week = job.payload["week"] == true;
            let day = at.with_timezone(&policy.timezone).date_naive();
            let days = if week { 7 } else { 1 };
            let (from, to) = (
                calendar::parse_local(&day.to_string(), policy.timezone, false).map_err(|e| (e, false))?,
                calendar::parse_local(&(day + Duration::days(days - 1)).to_string(), policy.timezone, true)
                    .map_err(|e| (e, false))?,
            );
            let changes: Vec<PlannedChange> = db
                .changes_between(from, to)
                .await
                .map_err(db_failure)?
                .into_iter()
                .filter(|c| c.state != ChangeState::Canceled)
                .collect();
            let mut freezes: Vec<Freeze> = policy
                .changes
                .freezes
                .iter()
                .filter(|f| f.ends_at > from && f.starts_at < to)
                .cloned()
                .collect();
            freezes.extend(db.stored_freezes(from, to).await.map_err(db_failure)?);
            post_once(
                web,
                bot_user,
                job,
                channel,
                blocks::text(&digest_text(week, &changes, &freezes)),
            )
            .await?;
            Ok(Done::Finished)
        }
        "correlate" => {
            let id = IncidentId(job.payload["incident"].as_i64().unwrap_or_default());
            let incident = db.incident(id).await.map_err(db_failure)?;
            if incident.was_canceled() {
                return Ok(Done::Finished);
            }
            // After the card, so the channel reads in order; the outbox is still setting up.
            let Some(channel) = incident.channel_id.clone().filter(|_| incident.card_ts.is_some()) else {
                return Err(("the incident's card is not posted yet".into(), true));
            };
            let seen = db.correlated_ids(id).await.map_err(db_failure)?;
            let found: Vec<PlannedChange> = crate::service::calendar::suspects_of(db, policy, &incident)
                .await
                .map_err(db_failure)?
                .into_iter()
                .filter(|c| !seen.contains(&c.id))
                .collect();
            if found.is_empty() {
                return Ok(Done::Finished);
            }
            let text = suspects_text(&found, policy.changes.lookback);
            post_once(web, bot_user, job, &channel, blocks::text(&text)).await?;
            db.record_correlation(job.id, id, incident.number.0, incident.is_private, &found, Utc::now())
                .await
                .map_err(db_failure)?;
            Ok(Done::Recorded)
        }
        "incident_note" => {
            let (Some(c), Some(id)) = (change, job.payload["incident"].as_i64()) else {
                return Ok(Done::Finished);
            };
            let incident = db.incident(IncidentId(id)).await.map_err(db_failure)?;
            let Some(channel) = incident.channel_id else {
                return Ok(Done::Finished);
            };
            let actor = job.payload["actor"].as_str().unwrap_or("someone");
            let mut text = format!(
                "↩️ {} (linked to this incident as a suspected cause) was rolled back by <@{actor}>.",
                escape(&c.summary())
            );
            if let Some(note) = job.payload["note"].as_str() {
                text.push_str(&format!("\n>{}", escape(note)));
            }
            post_once(web, bot_user, job, &channel, blocks::text(&text)).await?;
            Ok(Done::Finished)
        }
        other => Err((format!("unknown change job kind {other}"), false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("").unwrap(), ChangeCommand::New { title: String::new() });
        assert_eq!(
            parse("new payments-api v42").unwrap(),
            ChangeCommand::New {
                title: "payments-api v42".into()
            }
        );
        assert_eq!(
            parse("rollback CHG-3 errors &amp; timeouts").unwrap(),
            ChangeCommand::Move {
                number: ChangeNumber(3),
                m: Move::Rollback,
                note: Some("errors & timeouts".into())
            }
        );
        assert_eq!(
            parse("list week service:payments").unwrap(),
            ChangeCommand::List {
                window: "week".into(),
                service: Some("payments".into())
            }
        );
        assert!(parse("start").unwrap_err().contains("needs a change number"));
        assert!(parse("start x").unwrap_err().contains("not a change number"));
        assert!(parse("done 3 extra").is_err());
        assert!(parse("explode").unwrap_err().contains("Usage"));
        assert!(matches!(
            parse("freeze 2026-12-24..2026-12-26 service:payments peak weekend").unwrap(),
            ChangeCommand::Freeze(FreezeRequest { ref name, .. }) if name == "peak weekend"
        ));
        assert!(parse("freeze peak").is_err());
    }
}
