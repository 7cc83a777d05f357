//! Block Kit for what the bot posts: summary card, announcement, topic, declare modal.
//!
//! Builders return `serde_json::Value` shaped exactly like Slack's JSON (easy to read, and the
//! tests check them against Slack's limits); [`content`] and [`modal`] turn them into
//! slack-morphism types at the last moment.

use crate::config::Policy;
use crate::incident::change::Notice;
use crate::incident::model::*;
use serde_json::{json, Value};
use slack_morphism::prelude::*;

/// Escapes user text for mrkdwn, so `<!channel>` or `<@U…>` typed by a user stays text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Escaped text inside a mrkdwn quote, continuation lines included.
fn quote(text: &str) -> String {
    format!(">{}", escape(text).replace('\n', "\n>"))
}

pub use crate::config::humanize;
pub use crate::incident::model::truncate;

pub(super) fn plain(text: &str, max: usize) -> Value {
    json!({ "type": "plain_text", "text": truncate(text, max), "emoji": true })
}

pub(super) fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": truncate(text, 3000) })
}

/// `<!date^…>` renders in each reader's own time zone; the fallback is UTC.
pub fn slack_date(t: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        t.timestamp(),
        t.format("%Y-%m-%d %H:%M UTC")
    )
}

fn severity_emoji(s: Severity) -> &'static str {
    match s {
        Severity::Sev1 => "🔴",
        Severity::Sev2 => "🟠",
        Severity::Sev3 => "🟡",
        Severity::Sev4 => "🔵",
    }
}

fn services_text(services: &[String]) -> String {
    if services.is_empty() {
        "—".into()
    } else {
        services.join(", ")
    }
}

/// The pinned summary card in the incident channel.
pub fn summary_card(incident: &Incident, policy: &Policy) -> Value {
    let sev = policy.severity(incident.severity);
    let header = format!(
        "{} {}: {}",
        severity_emoji(incident.severity),
        incident.number,
        incident.title
    );
    let mut fields = vec![
        mrkdwn(&format!(
            "*Severity*\n{} — {}",
            incident.severity,
            escape(&sev.description)
        )),
        mrkdwn(&format!("*Status*\n{}", incident.status)),
        mrkdwn(&format!("*SPOC*\n<@{}>", incident.spoc)),
        mrkdwn(&format!("*Services*\n{}", escape(&services_text(&incident.services)))),
        mrkdwn(&format!(
            "*Declared*\n{} by <@{}>",
            slack_date(incident.declared_at),
            incident.declared_by
        )),
    ];
    if incident.is_private {
        fields.push(mrkdwn("*Visibility*\n🔒 private"));
    }
    let mut blocks = vec![
        json!({ "type": "header", "block_id": "card_header", "text": plain(&header, 150) }),
        json!({ "type": "section", "block_id": "card_fields", "fields": fields }),
    ];
    if !incident.description.trim().is_empty() {
        blocks.push(json!({
            "type": "section",
            "block_id": "card_description",
            "text": mrkdwn(&escape(&incident.description)),
        }));
    }
    if !incident.footprint.regions.is_empty()
        || incident.footprint.customers.is_some()
        || incident.footprint.impact_start.is_some()
    {
        blocks.push(
            json!({ "type": "section", "block_id": "card_footprint", "text": mrkdwn(&footprint_text(incident)) }),
        );
    }
    if !incident.roles.is_empty() {
        let roles: Vec<String> = incident.roles.iter().map(|(r, u)| format!("{r}: <@{u}>")).collect();
        blocks.push(json!({ "type": "context", "block_id": "card_roles", "elements": [mrkdwn(&roles.join(" · "))] }));
    }
    let mut buttons = Vec::new();
    if incident.status.is_open() {
        if incident.acknowledged_at.is_none() {
            buttons.push(button("👋 Acknowledge", ACTION_ACK, incident, Some("primary")));
        }
        buttons.push(button("📣 Post update", ACTION_UPDATE, incident, None));
        buttons.push(button("✅ Resolve", ACTION_RESOLVE, incident, None));
    }
    if !incident.was_canceled() {
        buttons.push(button("➕ Follow-up", ACTION_FOLLOW_UP, incident, None));
    }
    if policy.status_page.is_some() && !incident.is_private && !incident.was_canceled() {
        buttons.push(button(
            "📢 Customer update",
            super::comms::ACTION_CUSTOMER,
            incident,
            None,
        ));
    }
    if policy.pir.review_pending(incident) {
        buttons.push(button("📝 Draft review", ACTION_PIR_DRAFT, incident, None));
        buttons.push(button("✔️ Review done", ACTION_PIR_DONE, incident, None));
    }
    if !buttons.is_empty() {
        blocks.push(json!({ "type": "actions", "block_id": "card_actions", "elements": buttons }));
    }
    if let Some(done) = incident.pir_done_at {
        let link = incident
            .pir_link
            .as_deref()
            .map(|l| format!(": {}", escape(l)))
            .unwrap_or_default();
        blocks.push(json!({ "type": "context", "block_id": "card_pir",
            "elements": [mrkdwn(&format!("📝 Post-incident review done {}{link}", slack_date(done)))] }));
    }
    let cadence = match incident.clock {
        // Updates are for open incidents: once resolved or canceled, say since when they stopped.
        _ if !incident.status.is_open() => match incident.resolved_at.or(incident.canceled_at) {
            Some(at) => format!("stakeholder updates stopped {} ({})", slack_date(at), incident.status),
            None => format!("stakeholder updates stopped ({})", incident.status),
        },
        _ if sev.update_every.is_zero() => "no scheduled stakeholder updates".to_string(),
        Some(clock) => format!(
            "stakeholder updates every {}, next due {}",
            humanize(sev.update_every),
            slack_date(clock.due_at)
        ),
        None => format!("stakeholder updates every {}", humanize(sev.update_every)),
    };
    blocks.push(json!({
        "type": "context",
        "block_id": "card_context",
        "elements": [mrkdwn(&format!("{} · {cadence} · `/incident help` for commands", incident.severity))],
    }));
    Value::Array(blocks)
}

pub const ACTION_ACK: &str = "incident_ack";
pub const ACTION_SNOOZE: &str = "incident_snooze";
pub const ACTION_UPDATE: &str = "incident_update";
pub const ACTION_RESOLVE: &str = "incident_resolve";
pub const ACTION_FOLLOW_UP: &str = "incident_follow_up";
pub const ACTION_PIR_DRAFT: &str = "incident_pir_draft";
pub const ACTION_PIR_DONE: &str = "incident_pir_done";
/// On a follow-up: its value is the follow-up's id, not the incident's.
pub const ACTION_FOLLOW_UP_DONE: &str = "follow_up_done";

/// A card button; its value is the incident id, so a click finds its incident anywhere.
fn button(label: &str, action: &str, incident: &Incident, style: Option<&str>) -> Value {
    let mut b =
        json!({ "type": "button", "action_id": action, "text": plain(label, 75), "value": incident.id.0.to_string() });
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

fn footprint_text(incident: &Incident) -> String {
    let f = &incident.footprint;
    let count = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "—".into());
    let mut text = format!(
        "*Footprint* · customers {} · merchants {} · transactions {}",
        count(f.customers),
        count(f.merchants),
        count(f.transactions)
    );
    if !f.regions.is_empty() {
        text.push_str(&format!(" · regions {}", escape(&f.regions.join(", "))));
    }
    if let Some(s) = f.impact_start {
        text.push_str(&format!(" · impact from {}", slack_date(s)));
    }
    if let Some(e) = f.impact_end {
        text.push_str(&format!(" to {}", slack_date(e)));
    }
    text
}

/// What a notice says, in mrkdwn.
pub fn notice_text(incident: &Incident, actor: &str, notice: &Notice) -> String {
    let n = incident.number;
    match notice {
        Notice::Update { update, severity } => {
            let mut text = format!(
                "📣 *Update on {n}* · {} · {} · by <@{actor}>\n*What we know:* {}",
                severity,
                update.status,
                escape(&update.known)
            );
            if !update.impact.trim().is_empty() {
                text.push_str(&format!("\n*Customer impact:* {}", escape(&update.impact)));
            }
            if !update.next.trim().is_empty() {
                text.push_str(&format!("\n*Next steps:* {}", escape(&update.next)));
            }
            text
        }
        Notice::Severity { from, to } => format!("⚠️ {n} severity changed {from} → *{to}* by <@{actor}>."),
        Notice::SpocAssigned { user } => format!("<@{user}> is now the SPOC of {n} (assigned by <@{actor}>)."),
        Notice::Handover { from, to, note } if note.trim().is_empty() => {
            format!("🔁 SPOC handover on {n}: <@{from}> → <@{to}>.")
        }
        Notice::Handover { from, to, note } => {
            format!("🔁 SPOC handover on {n}: <@{from}> → <@{to}>.\n{}", quote(note))
        }
        Notice::Role { role, user } => format!("<@{user}> is now {} on {n} (assigned by <@{actor}>).", escape(role)),
        Notice::Acknowledged => format!("👋 <@{actor}> acknowledged {n} as SPOC."),
        Notice::Resolved { summary } if summary.trim().is_empty() => format!("✅ *{n} resolved* by <@{actor}>."),
        Notice::Resolved { summary } => format!("✅ *{n} resolved* by <@{actor}>.\n{}", quote(summary)),
        Notice::Closed => format!("🗄️ {n} closed by <@{actor}>."),
        Notice::Reopened => format!("♻️ {n} *reopened* by <@{actor}>: back to investigating."),
        Notice::Canceled => {
            format!("🚫 {n} canceled by <@{actor}> (declared by mistake; kept, excluded from metrics).")
        }
        Notice::FollowUpsAdded { items } => {
            let mut text = format!("➕ <@{actor}> added follow-ups to {n}:");
            for item in items {
                text.push_str(&format!("\n• {}", follow_up_line(item.seq, &item.follow_up)));
            }
            text.push_str("\n_`/incident followups` lists them with Done buttons._");
            text
        }
        Notice::FollowUpClosed { seq, text, state } => {
            format!(
                "☑️ <@{actor}> marked follow-up #{seq} of {n} *{state}*: {}",
                escape(text)
            )
        }
        Notice::PirDone { link: Some(link) } => {
            format!(
                "📝 The post-incident review of {n} is done (marked by <@{actor}>): {}",
                escape(link)
            )
        }
        Notice::PirDone { link: None } => {
            format!("📝 The post-incident review of {n} is done (marked by <@{actor}>).")
        }
        Notice::AlertLinked { title, source } if actor == "bot" => {
            format!("🔔 Alert linked to {n}: *{}* ({})", escape(title), escape(source))
        }
        Notice::AlertLinked { title, source } => format!(
            "🔔 <@{actor}> linked an alert to {n}: *{}* ({})",
            escape(title),
            escape(source)
        ),
        Notice::AlertFired { title } => format!("🔥 A linked alert fired again: *{}*", escape(title)),
        Notice::AlertResolved { title } => format!("🟢 A linked alert resolved: *{}*", escape(title)),
        Notice::AllAlertsResolved { spoc } => {
            format!("🟢 <@{spoc}> all alerts linked to {n} have resolved — resolve the incident? (`/incident resolve`)")
        }
    }
}

/// `#3 Add an alert · owner @dave · due 2026-12-05`, escaped.
fn follow_up_line(seq: i64, f: &crate::incident::followup::NewFollowUp) -> String {
    let mut line = format!("*#{seq}* {}", escape(&f.text));
    if let Some(owner) = &f.owner {
        line.push_str(&format!(" · owner <@{owner}>"));
    }
    if let Some(due) = f.due {
        line.push_str(&format!(" · due {due}"));
    }
    if let Some(link) = &f.link {
        line.push_str(&format!(" · <{}|link>", escape(link)));
    }
    line
}

/// Follow-ups shown in one message: one block each, inside Slack's 50-block limit.
pub const FOLLOW_UPS_SHOWN: usize = 40;

/// `/incident followups`: one section per follow-up, with a Done button on the open ones.
/// `heading` says which list this is; `hidden` counts follow-ups of private incidents the
/// reader is not in.
pub fn follow_up_list(
    heading: &str,
    items: &[crate::incident::followup::FollowUp],
    hidden: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> (String, Value) {
    use crate::incident::followup::FollowUpState;
    let mut blocks = vec![json!({ "type": "section", "block_id": "follow_ups_heading", "text": mrkdwn(heading) })];
    for f in items.iter().take(FOLLOW_UPS_SHOWN) {
        let mut line = format!("*{} #{}* {}", f.number, f.seq, escape(&truncate(&f.text, 300)));
        line.push_str(&match &f.owner {
            Some(owner) => format!("\nowner <@{owner}>"),
            None => "\nno owner".to_string(),
        });
        if let Some(due) = f.due {
            line.push_str(&format!(" · due {due}"));
        }
        if let Some(link) = &f.link {
            line.push_str(&format!(" · <{}|link>", escape(link)));
        }
        line.push_str(&match (f.state, &f.closed_by) {
            (FollowUpState::Open, _) if f.is_overdue(now) => " · 🔴 *overdue*".to_string(),
            (FollowUpState::Open, _) => " · open".to_string(),
            (state, Some(by)) => format!(" · {} by <@{by}>", state),
            (state, None) => format!(" · {state}"),
        });
        let mut block = json!({ "type": "section", "block_id": format!("follow_up_{}", f.id), "text": mrkdwn(&line) });
        if f.state == FollowUpState::Open {
            block["accessory"] = json!({ "type": "button", "action_id": ACTION_FOLLOW_UP_DONE,
                "text": plain("Done", 75), "value": f.id.to_string(), "style": "primary" });
        }
        blocks.push(block);
    }
    let mut footer = Vec::new();
    if items.len() > FOLLOW_UPS_SHOWN {
        footer.push(format!("…and {} more.", items.len() - FOLLOW_UPS_SHOWN));
    }
    if hidden > 0 {
        footer.push(format!(
            "🔒 {hidden} follow-up(s) of private incidents you are not a member of."
        ));
    }
    if items.is_empty() && hidden == 0 {
        footer.push("No follow-ups. Add one with `/incident followup <text> [@owner] [due YYYY-MM-DD]`.".into());
    }
    footer.push("Won't do? `/incident followup wontdo N` in the incident's channel.".into());
    blocks.push(json!({ "type": "context", "block_id": "follow_ups_footer", "elements": [mrkdwn(&footer.join(" "))] }));
    let text = format!("{} ({} shown)", heading, items.len().min(FOLLOW_UPS_SHOWN));
    (text, Value::Array(blocks))
}

/// The reminder to the owner of an overdue follow-up, with a Done button.
pub fn follow_up_reminder(f: &crate::incident::followup::FollowUp, late: bool) -> (String, Value) {
    let owner = f.owner.as_ref().map(|o| format!("<@{o}> ")).unwrap_or_default();
    let text = format!(
        "⏰ {owner}follow-up #{} of {} is overdue{}: {}{}",
        f.seq,
        f.number,
        f.due.map(|d| format!(" (due {d})")).unwrap_or_default(),
        escape(&truncate(&f.text, 300)),
        if late {
            " _(sent late: the bot was unavailable)_"
        } else {
            ""
        }
    );
    let blocks = json!([
        { "type": "section", "block_id": "follow_up_reminder", "text": mrkdwn(&text),
          "accessory": { "type": "button", "action_id": ACTION_FOLLOW_UP_DONE, "text": plain("Done", 75),
                         "value": f.id.to_string(), "style": "primary" } },
        { "type": "context", "block_id": "follow_up_reminder_help", "elements": [mrkdwn(
            "Dropping it? `/incident followup wontdo N` in the incident's channel.")] }
    ]);
    (text, blocks)
}

/// The reminder to the SPOC that the post-incident review is due.
pub fn pir_reminder(incident: &Incident, late: bool) -> (String, Value) {
    let text = format!(
        "📝 <@{}> the post-incident review of {} ({}) is due: `/incident pir` drafts it from the timeline; \
         `/incident pir done [link]` marks it done and stops these reminders.{}",
        incident.spoc,
        incident.number,
        incident.severity,
        if late {
            " _(sent late: the bot was unavailable)_"
        } else {
            ""
        }
    );
    let blocks = json!([
        { "type": "section", "block_id": "pir_reminder", "text": mrkdwn(&text) },
        { "type": "actions", "block_id": "pir_reminder_actions", "elements": [
            button("📝 Draft review", ACTION_PIR_DRAFT, incident, Some("primary")),
            button("✔️ Review done", ACTION_PIR_DONE, incident, None),
        ] }
    ]);
    (text, blocks)
}

/// The reminder to the SPOC that a stakeholder update is due, with Post update and Snooze.
pub fn reminder(incident: &Incident, policy: &Policy, repeat: bool, late: bool) -> (String, Value) {
    let every = humanize(policy.severity(incident.severity).update_every);
    let since = incident
        .last_update_at
        .map(|t| format!("last update {}", slack_date(t)))
        .unwrap_or_else(|| "no update yet since the declaration".into());
    let text = format!(
        "⏰ <@{}> {} stakeholder update on {} is {} ({} updates every {every}; {since}).{}",
        incident.spoc,
        if repeat { "the" } else { "a" },
        incident.number,
        if repeat { "still overdue" } else { "due now" },
        incident.severity,
        if late {
            " _(sent late: the bot was unavailable at the due time)_"
        } else {
            ""
        }
    );
    let blocks = json!([
        { "type": "section", "block_id": "reminder", "text": mrkdwn(&text) },
        { "type": "actions", "block_id": "reminder_actions", "elements": [
            button("📣 Post update", ACTION_UPDATE, incident, Some("primary")),
            button("💤 Snooze 15 min", ACTION_SNOOZE, incident, None),
        ] }
    ]);
    (text, blocks)
}

/// The escalation of an overdue update (a breach of the update SLA).
pub fn escalation(incident: &Incident, policy: &Policy, overdue: chrono::Duration) -> String {
    let managers = policy
        .managers_group
        .as_deref()
        .map(|g| format!(" <!subteam^{g}>"))
        .unwrap_or_default();
    format!(
        "🚨{managers} {} ({}) has had no stakeholder update for {} past its due time. SPOC: <@{}>.",
        incident.number,
        incident.severity,
        humanize(overdue.to_std().unwrap_or_default()),
        incident.spoc
    )
}

/// `/incident status`: the card without its buttons.
pub fn status_blocks(incident: &Incident, policy: &Policy) -> Value {
    let mut card = summary_card(incident, policy);
    if let Some(blocks) = card.as_array_mut() {
        blocks.retain(|b| b["type"] != "actions");
    }
    card
}

/// Timeline lines per page: keeps an ephemeral message well inside Slack's limits.
pub const TIMELINE_PAGE: usize = 25;

/// `/incident timeline [page]`.
pub fn timeline_text(incident: &Incident, events: &[TimelineEvent], page: usize) -> String {
    let pages = events.len().div_ceil(TIMELINE_PAGE).max(1);
    let page = page.min(pages);
    let mut text = format!("*Timeline of {}* (page {page} of {pages})", incident.number);
    for e in events.iter().skip((page - 1) * TIMELINE_PAGE).take(TIMELINE_PAGE) {
        let who = if e.actor.starts_with('U') || e.actor.starts_with('W') {
            format!("<@{}>", e.actor)
        } else {
            e.actor.clone()
        };
        text.push_str(&format!(
            "\n• {} *{}* {who} {}",
            slack_date(e.at),
            e.kind,
            escape(&truncate(&e.summary(), 100))
        ));
    }
    if page < pages {
        text.push_str(&format!("\n_More: `/incident timeline {}`_", page + 1));
    }
    truncate(&text, 3000)
}

/// `/incident list`: one line per incident the caller may see; others are only counted.
pub fn list_text(visible: &[Incident], hidden: usize) -> String {
    if visible.is_empty() && hidden == 0 {
        return "No open incidents. 🎉".into();
    }
    let mut text = format!("*Open incidents* ({})", visible.len() + hidden);
    for i in visible {
        let channel = i
            .channel_id
            .as_deref()
            .map(|c| format!("<#{c}>"))
            .unwrap_or_else(|| "(channel pending)".into());
        text.push_str(&format!(
            "\n{} *{}* {} · {} · {} · SPOC <@{}> · {}",
            severity_emoji(i.severity),
            i.number,
            i.severity,
            i.status,
            escape(&truncate(&i.title, 80)),
            i.spoc,
            channel
        ));
    }
    if hidden > 0 {
        text.push_str(&format!("\n🔒 {hidden} private incident(s) you are not a member of."));
    }
    truncate(&text, 3000)
}

pub const UPDATE_CALLBACK: &str = "update";
pub const IMPACT_CALLBACK: &str = "impact";
pub const RESOLVE_CALLBACK: &str = "resolve";
pub const FOLLOW_UP_CALLBACK: &str = "follow_up";

/// Root cause categories offered when resolving.
pub const ROOT_CAUSES: [&str; 8] = [
    "change / deploy",
    "infrastructure",
    "third party",
    "capacity",
    "configuration",
    "data",
    "security",
    "unknown",
];

pub(super) fn option(text: &str, value: &str) -> Value {
    json!({ "text": plain(text, 75), "value": value })
}

pub(super) fn modal_shell(callback: &str, title: &str, submit: &str, incident: &Incident, blocks: Vec<Value>) -> Value {
    json!({
        "type": "modal",
        "callback_id": callback,
        "title": plain(title, 24),
        "submit": plain(submit, 24),
        "close": plain("Cancel", 24),
        "private_metadata": json!({ "incident": incident.id.0 }).to_string(),
        "blocks": blocks,
    })
}

pub(super) fn text_input(block: &str, label: &str, multiline: bool, optional: bool, initial: &str) -> Value {
    let mut element =
        json!({ "type": "plain_text_input", "action_id": block, "multiline": multiline, "max_length": 2900 });
    if !initial.is_empty() {
        element["initial_value"] = json!(initial);
    }
    json!({ "type": "input", "block_id": block, "optional": optional, "label": plain(label, 2000), "element": element })
}

/// The stakeholder update form.
pub fn update_modal(incident: &Incident) -> Value {
    let statuses: Vec<Value> = [
        Status::Investigating,
        Status::Identified,
        Status::Mitigated,
        Status::Resolved,
    ]
    .iter()
    .map(|s| option(s.as_str(), s.as_str()))
    .collect();
    let current = option(incident.status.as_str(), incident.status.as_str());
    let header = format!("{}: {}", incident.number, incident.title);
    modal_shell(
        UPDATE_CALLBACK,
        "Post an update",
        "Post",
        incident,
        vec![
            json!({ "type": "section", "block_id": "about", "text": mrkdwn(&escape(&header)) }),
            json!({ "type": "input", "block_id": "status", "label": plain("Status", 2000),
                    "element": { "type": "static_select", "action_id": "status", "options": statuses, "initial_option": current } }),
            text_input("known", "What we know", true, false, ""),
            text_input("impact", "Customer impact", true, true, ""),
            text_input("next", "Next steps", true, true, ""),
        ],
    )
}

fn datetime_input(block: &str, label: &str, initial: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    let mut element = json!({ "type": "datetimepicker", "action_id": block });
    if let Some(t) = initial {
        element["initial_date_time"] = json!(t.timestamp());
    }
    json!({ "type": "input", "block_id": block, "optional": true, "label": plain(label, 2000), "element": element })
}

/// The footprint form.
pub fn impact_modal(incident: &Incident, policy: &Policy) -> Value {
    let options: Vec<Value> = policy.services.iter().take(100).map(|s| option(s, s)).collect();
    let mut services = json!({ "type": "multi_static_select", "action_id": "services", "options": options });
    let initial: Vec<Value> = incident
        .services
        .iter()
        .filter(|s| policy.services.contains(s))
        .map(|s| option(s, s))
        .collect();
    if !initial.is_empty() {
        services["initial_options"] = json!(initial);
    }
    let f = &incident.footprint;
    let count = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    modal_shell(
        IMPACT_CALLBACK,
        "Footprint",
        "Save",
        incident,
        vec![
            json!({ "type": "input", "block_id": "services", "optional": true, "label": plain("Affected service lines", 2000), "element": services }),
            text_input(
                "regions",
                "Regions (comma separated)",
                false,
                true,
                &f.regions.join(", "),
            ),
            text_input("customers", "Customers affected", false, true, &count(f.customers)),
            text_input("merchants", "Merchants affected", false, true, &count(f.merchants)),
            text_input(
                "transactions",
                "Transactions affected",
                false,
                true,
                &count(f.transactions),
            ),
            datetime_input(
                "impact_start",
                "Impact start",
                f.impact_start.or(Some(incident.declared_at)),
            ),
            datetime_input("impact_end", "Impact end", f.impact_end),
        ],
    )
}

/// The resolve form.
/// The resolve form; with changes linked to the incident (issue 12), the root cause
/// "change / deploy" offers them: which one caused it.
pub fn resolve_modal(
    incident: &Incident,
    now: chrono::DateTime<chrono::Utc>,
    linked: &[crate::calendar::PlannedChange],
) -> Value {
    let causes: Vec<Value> = ROOT_CAUSES.iter().map(|c| option(c, c)).collect();
    let mut cause_blocks = vec![
        json!({ "type": "input", "block_id": "root_cause", "label": plain("Root cause category", 2000),
            "element": { "type": "static_select", "action_id": "root_cause", "options": causes } }),
    ];
    if !linked.is_empty() {
        let options: Vec<Value> = linked
            .iter()
            .take(100)
            .map(|c| option(&format!("{} {}", c.number, c.title), &c.number.to_string()))
            .collect();
        cause_blocks.push(json!({ "type": "input", "block_id": "caused_by", "optional": true,
            "label": plain("Which linked change caused it? (root cause change / deploy)", 2000),
            "element": { "type": "static_select", "action_id": "caused_by", "options": options } }));
    }
    let mut fields = vec![text_input("summary", "Resolution summary", true, false, "")];
    fields.extend(cause_blocks);
    modal_shell(
        RESOLVE_CALLBACK,
        "Resolve incident",
        "Resolve",
        incident,
        [
            fields,
            vec![
            datetime_input(
                "mitigated_at",
                "Service restored at",
                incident.mitigated_at.or(Some(now)),
            ),
            text_input("follow_ups", "Follow-up actions (one per line)", true, true, ""),
            json!({ "type": "input", "block_id": "follow_ups_owner", "optional": true, "label": plain("Owner of these follow-ups", 2000),
                    "element": { "type": "users_select", "action_id": "follow_ups_owner" } }),
            json!({ "type": "input", "block_id": "follow_ups_due", "optional": true, "label": plain("Follow-ups due by", 2000),
                    "element": { "type": "datepicker", "action_id": "follow_ups_due" } }),
            ],
        ]
        .concat(),
    )
}

/// The follow-up form (card button, or `/incident followup` without text).
pub fn follow_up_modal(incident: &Incident) -> Value {
    let header = format!("{}: {}", incident.number, incident.title);
    modal_shell(
        FOLLOW_UP_CALLBACK,
        "Add a follow-up",
        "Add",
        incident,
        vec![
            json!({ "type": "section", "block_id": "about", "text": mrkdwn(&escape(&header)) }),
            text_input("text", "What needs doing", false, false, ""),
            json!({ "type": "input", "block_id": "owner", "optional": true, "label": plain("Owner", 2000),
                    "element": { "type": "users_select", "action_id": "owner" } }),
            json!({ "type": "input", "block_id": "due", "optional": true, "label": plain("Due", 2000),
                    "element": { "type": "datepicker", "action_id": "due" } }),
            json!({ "type": "input", "block_id": "link", "optional": true, "label": plain("Link (ticket, doc)", 2000),
                    "element": { "type": "url_text_input", "action_id": "link" } }),
        ],
    )
}

/// Fallback text for notifications and screen readers. Slack parses a message's `text` as
/// mrkdwn (mentions included), so the title is escaped here too.
pub fn summary_text(incident: &Incident) -> String {
    format!(
        "{} {} ({}, {}): {}",
        severity_emoji(incident.severity),
        incident.number,
        incident.severity,
        incident.status,
        escape(&incident.title)
    )
}

/// The announcement-channel post (public incidents only).
pub fn announcement(incident: &Incident, channel_id: &str) -> Value {
    json!([
        {
            "type": "section",
            "block_id": "announce",
            "text": mrkdwn(&format!(
                "{} *{}* declared · *{}* · <#{}>\n*{}*\nSPOC <@{}> · services: {}",
                severity_emoji(incident.severity),
                incident.number,
                incident.severity,
                channel_id,
                escape(&incident.title),
                incident.spoc,
                escape(&services_text(&incident.services)),
            )),
        },
        {
            "type": "context",
            "block_id": "announce_context",
            "elements": [mrkdwn(&format!("Declared {} {} · follow updates in this thread", slack_date(incident.declared_at),
                if incident.description.starts_with(crate::alerts::AUTO_DECLARED) {
                    format!("automatically by an alert rule (SPOC <@{}>)", incident.spoc)
                } else {
                    format!("by <@{}>", incident.declared_by)
                }))],
        }
    ])
}

/// The channel topic: severity · status · SPOC · title (Slack allows 250 characters). Slack
/// formats topics like messages, so the title is escaped.
pub fn topic(incident: &Incident) -> String {
    truncate(
        &format!(
            "{} · {} · SPOC <@{}> · {}",
            incident.severity,
            incident.status,
            incident.spoc,
            escape(&incident.title)
        ),
        250,
    )
}

pub const DECLARE_CALLBACK: &str = "declare";

/// The declare modal. `origin` (where `/incident` was typed) travels in `private_metadata`.
pub fn declare_modal(policy: &Policy, title: &str, declarer: &str, origin: &str) -> Value {
    let severity_options: Vec<Value> = policy
        .severities
        .iter()
        .map(|p| {
            json!({
                "text": plain(p.severity.as_str(), 75),
                "value": p.severity.as_str(),
                "description": plain(&p.description, 75),
            })
        })
        .collect();
    let service_options: Vec<Value> = policy
        .services
        .iter()
        .take(100)
        .map(|s| json!({ "text": plain(s, 75), "value": s }))
        .collect();
    let mut title_input = json!({
        "type": "plain_text_input",
        "action_id": "title",
        "max_length": MAX_TITLE_CHARS,
        "placeholder": plain("e.g. Payments API returning 500s", 150),
    });
    let prefill: String = title.trim().chars().take(MAX_TITLE_CHARS).collect();
    if !prefill.is_empty() {
        title_input["initial_value"] = json!(prefill);
    }
    json!({
        "type": "modal",
        "callback_id": DECLARE_CALLBACK,
        "title": plain("Declare an incident", 24),
        "submit": plain("Declare", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json!({ "origin": origin }).to_string(),
        "blocks": [
            { "type": "input", "block_id": "title", "label": plain("Title", 2000), "element": title_input },
            {
                "type": "input", "block_id": "severity", "label": plain("Severity", 2000),
                "element": { "type": "static_select", "action_id": "severity", "options": severity_options,
                             "placeholder": plain("How bad is it?", 150) }
            },
            {
                "type": "input", "block_id": "services", "optional": true, "label": plain("Affected service lines", 2000),
                "element": { "type": "multi_static_select", "action_id": "services", "options": service_options,
                             "placeholder": plain("Pick the affected services", 150) }
            },
            {
                "type": "input", "block_id": "description", "optional": true,
                "label": plain("What is happening? Customer impact?", 2000),
                "element": { "type": "plain_text_input", "action_id": "description", "multiline": true,
                             "max_length": MAX_DESCRIPTION_CHARS }
            },
            {
                "type": "input", "block_id": "spoc", "label": plain("SPOC (single point of contact)", 2000),
                "element": { "type": "users_select", "action_id": "spoc", "initial_user": declarer }
            },
            {
                "type": "input", "block_id": "private", "optional": true, "label": plain("Visibility", 2000),
                "element": { "type": "checkboxes", "action_id": "private", "options": [
                    { "text": plain("Private incident: private channel, never announced", 75), "value": "private" }
                ] }
            }
        ]
    })
}

/// Converts text + blocks JSON into a message.
pub fn content(text: &str, blocks: Value) -> SlackMessageContent {
    let blocks: Option<Vec<SlackBlock>> = serde_json::from_value(blocks)
        .map_err(|e| tracing::error!(error = %e, "bug: blocks do not fit slack-morphism's model"))
        .ok();
    SlackMessageContent::new().with_text(text.into()).opt_blocks(blocks)
}

/// A text-only message.
pub fn text(text: &str) -> SlackMessageContent {
    SlackMessageContent::new().with_text(text.into())
}

/// Who Slack would not add to the incident channel, and why, in words a person can act on.
pub fn invite_refusals(refused: &[(String, String)]) -> String {
    let mut text = String::from("⚠️ I could not add everyone to this channel:");
    for (user, code) in refused {
        let why = match code.as_str() {
            "user_is_restricted" => "they are a guest; a workspace admin can add them",
            "ura_max_channels" => "they are a single-channel guest already in their one channel",
            "org_user_not_in_team" => "they belong to another workspace of the organization",
            "no_external_invite_permission" => "they are outside this organization (Slack Connect)",
            "cant_invite" | "user_is_deactivated" => "their account cannot be invited (deactivated?)",
            "user_not_found" => "Slack does not know this user",
            "invitee_cant_see_channel" => "they cannot see this channel",
            _ => "Slack refused",
        };
        text.push_str(&format!("\n• <@{user}>: {why} (`{code}`)."));
    }
    text
}

/// Converts a modal's JSON into slack-morphism's view.
pub fn modal(view: Value) -> anyhow::Result<SlackView> {
    Ok(serde_json::from_value(view)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_incident() -> Incident {
        Incident::example()
    }

    #[test]
    fn a_resolved_card_offers_follow_ups_and_the_review_while_one_is_pending() {
        let policy = Policy::default();
        let actions = |i: &Incident| -> Vec<String> {
            let card = summary_card(i, &policy);
            card.as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "actions")
                .flat_map(|b| b["elements"].as_array().unwrap().clone())
                .map(|e| e["action_id"].as_str().unwrap().to_string())
                .collect()
        };
        let mut i = sample_incident();
        assert_eq!(
            actions(&i),
            [ACTION_ACK, ACTION_UPDATE, ACTION_RESOLVE, ACTION_FOLLOW_UP]
        );
        i.status = Status::Resolved;
        assert_eq!(actions(&i), [ACTION_FOLLOW_UP, ACTION_PIR_DRAFT, ACTION_PIR_DONE]);
        i.severity = Severity::Sev3;
        assert_eq!(actions(&i), [ACTION_FOLLOW_UP], "SEV3 needs no review");
        i.severity = Severity::Sev2;
        i.pir_done_at = Some(i.declared_at);
        i.pir_link = Some("https://wiki/pir".into());
        assert_eq!(actions(&i), [ACTION_FOLLOW_UP]);
        assert!(summary_card(&i, &policy).to_string().contains("review done"));
        i.status = Status::Canceled;
        assert!(actions(&i).is_empty());
    }

    /// Every mrkdwn text in `v` (plain_text is never parsed for mentions, so it is safe as is).
    fn mrkdwn_texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if map.get("type") == Some(&json!("mrkdwn")) {
                    out.push(map["text"].as_str().unwrap_or_default().to_string());
                }
                map.values().for_each(|v| mrkdwn_texts(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| mrkdwn_texts(v, out)),
            _ => {}
        }
    }

    #[test]
    fn user_text_is_escaped_in_mrkdwn() {
        let mut inc = sample_incident();
        inc.description = "<!here> see <https://evil|click>".into();
        let mut texts = Vec::new();
        mrkdwn_texts(&summary_card(&inc, &Policy::default()), &mut texts);
        mrkdwn_texts(&announcement(&inc, "C0INC"), &mut texts);
        for t in &texts {
            assert!(
                !t.contains("<!channel>") && !t.contains("<!here>") && !t.contains("<https"),
                "{t}"
            );
        }
        let ann = announcement(&sample_incident(), "C0INC").to_string();
        assert!(ann.contains("&lt;!channel&gt; &amp; refunds"), "{ann}");
    }

    #[test]
    fn blocks_convert_to_slack_morphism_types() {
        let policy = Policy::default();
        let inc = sample_incident();
        for blocks in [summary_card(&inc, &policy), announcement(&inc, "C1")] {
            let parsed: Vec<SlackBlock> = serde_json::from_value(blocks.clone()).expect("valid blocks");
            assert_eq!(parsed.len(), blocks.as_array().unwrap().len());
        }
        for view in [
            update_modal(&inc),
            impact_modal(&inc, &policy),
            resolve_modal(&inc, inc.declared_at, &[]),
        ] {
            modal(view).expect("modal fits slack-morphism's model");
        }
        let view = modal(declare_modal(&policy, "Checkout down", "U0ALICE", "C0GENERAL")).unwrap();
        let back = serde_json::to_value(view).unwrap();
        assert_eq!(back["callback_id"], DECLARE_CALLBACK);
        assert_eq!(back["blocks"][0]["element"]["initial_value"], "Checkout down");
    }

    #[test]
    fn long_titles_fit_the_header_limit() {
        let mut inc = sample_incident();
        inc.title = "x".repeat(MAX_TITLE_CHARS);
        inc.number = IncidentNumber(9_999_999);
        let card = summary_card(&inc, &Policy::default());
        assert!(card[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        assert!(topic(&inc).chars().count() <= 250);
    }

    #[test]
    fn durations_read_like_config() {
        assert_eq!(humanize(std::time::Duration::from_secs(1800)), "30m");
        assert_eq!(humanize(std::time::Duration::from_secs(5400)), "1h30m");
        assert_eq!(humanize(std::time::Duration::ZERO), "0s");
    }
}
