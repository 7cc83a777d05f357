//! Vendor tickets in Slack: `/incident vendor …` and `/incident vendors [vendor]` parsed into
//! requests, the form, the buttons on chase reminders and on the resolve question, the
//! channel posts (outbox jobs of kind `vendor`) and the card's "Waiting on" line.

use super::blocks::{self, escape, slack_date};
use super::effects::SlackEffects;
use super::listener::{ephemeral, errors, Handler};
use super::text::{self, Entity, Lines};
use crate::db::JobUpdate;
use crate::incident::model::{Incident, UserId};
use crate::outbox::{Job, Outcome};
use crate::service::{Refusal, TicketChanged, TicketRequest};
use crate::vendor::{age, Catalogue, Contact, TicketAction, VendorTicket};
use serde_json::{json, Value};
use slack_morphism::prelude::*;

pub const VENDOR_CALLBACK: &str = "vendor_ticket";
/// The "what did the vendor say" form behind **Vendor replied**.
pub const REPLY_CALLBACK: &str = "vendor_reply";
pub const ACTION_REPLIED: &str = "vendor_replied";
pub const ACTION_ESCALATE: &str = "vendor_escalate";
pub const ACTION_SNOOZE: &str = "vendor_snooze";
pub const ACTION_CLOSE: &str = "vendor_close";

/// Buttons whose value is a vendor ticket's id.
pub fn is_vendor_action(action_id: &str) -> bool {
    [ACTION_REPLIED, ACTION_ESCALATE, ACTION_SNOOZE, ACTION_CLOSE].contains(&action_id)
}

pub const VENDOR_USAGE: &str =
    "`/incident vendor` (a form) · `/incident vendor <vendor> <ref> [link] [what we asked]` · \
`/incident vendor reply <V1|ref> <what they said>` · `/incident vendor escalate <V1|ref> [note]` · \
`/incident vendor close <V1|ref> [note]` · `/incident vendors [vendor]`";

/// What `/incident vendor …` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VendorCommand {
    /// No text: the form.
    Form,
    /// The quick path; the vendor and reference are checked against the catalogue later.
    Open {
        vendor: String,
        reference: String,
        link: Option<String>,
        asked: String,
    },
    /// `reply|escalate|close <ticket> [text]`.
    Act { ticket: String, action: TicketAction },
}

/// The raw text after `word` (one of `raw`'s words).
fn after<'a>(raw: &'a str, word: &str) -> &'a str {
    let start = word.as_ptr() as usize - raw.as_ptr() as usize + word.len();
    raw.get(start..).unwrap_or_default().trim()
}

/// A web URL as Slack sends it (`<https://…>`, `<https://…|label>`), or bare.
fn parse_link(word: &str) -> Option<String> {
    let url = match Entity::parse(word) {
        Some(Entity::Link { url, .. }) => url,
        Some(_) => return None,
        None => text::decode_entities(word),
    };
    ((url.starts_with("https://") || url.starts_with("http://")) && !url.contains(['<', '>'])).then_some(url)
}

/// Parses the text after `/incident vendor`.
pub fn parse_vendor(rest: &str) -> Result<VendorCommand, String> {
    let words = text::words(rest);
    let Some(first) = words.first() else {
        return Ok(VendorCommand::Form);
    };
    let lower = first.to_ascii_lowercase();
    if ["reply", "escalate", "close"].contains(&lower.as_str()) {
        let Some(ticket) = words.get(1) else {
            return Err(format!("Name the ticket, like `/incident vendor {lower} V1`."));
        };
        let note = text::plain(after(rest, ticket), Lines::Many).trim().to_string();
        let action = match lower.as_str() {
            "reply" if note.is_empty() => {
                return Err("Say what the vendor said: `/incident vendor reply V1 <what they said>`.".into())
            }
            "reply" => TicketAction::Reply(note),
            "escalate" => TicketAction::Escalate(note),
            _ => TicketAction::Close(note),
        };
        return Ok(VendorCommand::Act {
            ticket: text::plain(ticket, Lines::One),
            action,
        });
    }
    let vendor = text::plain(first, Lines::One);
    let reference = words.get(1).map(|w| text::plain(w, Lines::One)).unwrap_or_default();
    let (link, asked) = match words.get(2) {
        Some(w) => match parse_link(w) {
            Some(link) => (Some(link), after(rest, w)),
            None => (None, after(rest, words[1])),
        },
        None => (None, ""),
    };
    Ok(VendorCommand::Open {
        vendor,
        reference,
        link,
        asked: text::plain(asked, Lines::Many).trim().to_string(),
    })
}

/// Parses the text after `/incident vendors`: at most one vendor name.
pub fn parse_vendors(rest: &str) -> Result<Option<String>, String> {
    let words = text::words(rest);
    match words.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(text::plain(one, Lines::One))),
        _ => Err("Name at most one vendor: `/incident vendors [vendor]`.".into()),
    }
}

/// `<link|#48213>` or `#48213`.
fn reference(t: &VendorTicket) -> String {
    match &t.link {
        Some(url) => format!("<{}|#{}>", url.replace(['<', '>', '|'], ""), escape(&t.reference)),
        None => format!("#{}", escape(&t.reference)),
    }
}

/// `*V1* Adyen <link|#48213>`.
fn named(t: &VendorTicket) -> String {
    format!("*{}* {} {}", t.label(), escape(&t.vendor), reference(t))
}

fn contact_text(contact: &Contact) -> String {
    match contact {
        Contact::Group(id) => format!("<!subteam^{id}>"),
        Contact::Text(text) => escape(text),
    }
}

fn sla_text(catalogue: &Catalogue, t: &VendorTicket) -> String {
    match catalogue.sla(&t.vendor, t.severity) {
        Some(sla) if sla.first_response > chrono::Duration::zero() || sla.update > chrono::Duration::zero() => {
            let d = |d: chrono::Duration| blocks::humanize(d.to_std().unwrap_or_default());
            format!(
                "{} SLA for {}: first response {}, updates every {}",
                escape(&t.vendor),
                t.severity,
                d(sla.first_response),
                d(sla.update)
            )
        }
        _ => format!("no {} SLA for {}: not chased", escape(&t.vendor), t.severity),
    }
}

/// The card's line about what the incident is waiting on (open tickets, oldest first).
pub fn waiting_on(tickets: &[VendorTicket], now: chrono::DateTime<chrono::Utc>) -> Option<Value> {
    let open: Vec<String> = tickets
        .iter()
        .filter(|t| t.is_open())
        .take(10)
        .map(|t| {
            let replied = match t.last_reply_at {
                Some(at) => format!("replied {} ago", age(at, now)),
                None => "no reply yet".into(),
            };
            format!(
                "{} #{} ({}), {} · {replied}",
                escape(&t.vendor),
                escape(&t.reference),
                t.label(),
                age(t.opened_at, now)
            )
        })
        .collect();
    if open.is_empty() {
        return None;
    }
    Some(json!({ "type": "context", "block_id": "card_vendors",
        "elements": [{ "type": "mrkdwn", "text": blocks::truncate(&format!("⏳ *Waiting on:* {}", open.join(" · ")), 3000) }] }))
}

/// Adds the "Waiting on" line to a card's blocks (after its fields); a database failure only
/// leaves it out.
pub async fn add_waiting_on(db: &crate::db::Db, incident: &Incident, card: &mut Value) {
    let tickets = match db.vendor_tickets_of(incident.id).await {
        Ok(t) => t,
        Err(e) => return tracing::warn!(error = %e, "cannot read vendor tickets for the card"),
    };
    if let (Some(line), Some(blocks)) = (waiting_on(&tickets, chrono::Utc::now()), card.as_array_mut()) {
        let at = blocks
            .iter()
            .position(|b| b["block_id"] == "card_fields")
            .map_or(blocks.len(), |i| i + 1);
        blocks.insert(at, line);
    }
}

fn button(label: &str, action: &str, t: &VendorTicket, style: Option<&str>) -> Value {
    let mut b = json!({ "type": "button", "action_id": action, "value": t.id.to_string(),
        "text": { "type": "plain_text", "text": label, "emoji": true } });
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

/// The reminder to chase (or escalate) a vendor, with its buttons.
pub fn chase_reminder(
    t: &VendorTicket,
    incident: &Incident,
    catalogue: &Catalogue,
    missed: i64,
    escalate: bool,
    first_response: bool,
    late: bool,
) -> (String, Value) {
    let sla = catalogue.sla(&t.vendor, t.severity);
    let d = |d: Option<chrono::Duration>| {
        d.map(|d| blocks::humanize(d.to_std().unwrap_or_default()))
            .unwrap_or_default()
    };
    let which = if first_response {
        format!(
            "has not answered within its first-response SLA ({})",
            d(sla.map(|s| s.first_response))
        )
    } else {
        format!(
            "has sent no update within its update SLA ({})",
            d(sla.map(|s| s.update))
        )
    };
    let ticket = format!("*{}* {}", t.label(), reference(t));
    let mut text = if escalate {
        format!(
            "🚨 <@{}> {} {which} on {} ({missed} SLAs missed in a row, open {}): *escalate*.",
            incident.spoc,
            escape(&t.vendor),
            ticket,
            age(t.opened_at, chrono::Utc::now())
        )
    } else {
        format!(
            "⏰ <@{}> {} {which} on {} (open {}): chase them.",
            incident.spoc,
            escape(&t.vendor),
            ticket,
            age(t.opened_at, chrono::Utc::now())
        )
    };
    if escalate {
        match catalogue.contact(&t.vendor) {
            Some(c) => text.push_str(&format!(" Escalation contact: {}.", contact_text(c))),
            None => text.push_str(" No escalation contact is configured for this vendor."),
        }
    }
    if let Some(url) = catalogue
        .find(&t.vendor)
        .ok()
        .flatten()
        .and_then(|v| v.support_url.as_deref())
    {
        text.push_str(&format!(
            " Support: <{}|{}>.",
            url.replace(['<', '>', '|'], ""),
            escape(&t.vendor)
        ));
    }
    if late {
        text.push_str(" _(sent late: the bot was unavailable at the SLA time)_");
    }
    let blocks = json!([
        { "type": "section", "block_id": "vendor_chase", "text": { "type": "mrkdwn", "text": blocks::truncate(&text, 3000) } },
        { "type": "actions", "block_id": "vendor_chase_actions", "elements": [
            button("💬 Vendor replied", ACTION_REPLIED, t, Some("primary")),
            button("📣 Escalate", ACTION_ESCALATE, t, None),
            button("💤 Snooze 15 min", ACTION_SNOOZE, t, None),
        ] },
        { "type": "context", "block_id": "vendor_chase_context", "elements": [{ "type": "mrkdwn",
            "text": blocks::truncate(&format!("{} · `/incident vendor reply {} <what they said>` records their answer", sla_text(catalogue, t), t.label()), 3000) }] }
    ]);
    (text, blocks)
}

/// The channel post about a ticket change.
pub fn notice(t: &VendorTicket, what: &str, actor: &str, note: &str, catalogue: &Catalogue) -> String {
    let quoted = if note.is_empty() {
        String::new()
    } else {
        format!("\n>{}", escape(note).replace('\n', "\n>"))
    };
    match what {
        "opened" => format!(
            "🧾 <@{actor}> raised {} with the vendor ({}).{quoted}",
            named(t),
            sla_text(catalogue, t)
        ),
        "reply" => format!(
            "💬 {} replied on {} (recorded by <@{actor}>):{quoted}",
            escape(&t.vendor),
            named(t)
        ),
        "escalated" => {
            let contact = match catalogue.contact(&t.vendor) {
                Some(c) => format!(" Escalation contact: {}.", contact_text(c)),
                None => " No escalation contact is configured for this vendor.".into(),
            };
            format!("📣 <@{actor}> escalated {}.{contact}{quoted}", named(t))
        }
        "closed" => format!(
            "☑️ <@{actor}> closed {} (open {}).{quoted}",
            named(t),
            age(t.opened_at, t.closed_at.unwrap_or_else(chrono::Utc::now))
        ),
        other => format!("{} {other}{quoted}", named(t)),
    }
}

/// The question asked when an incident is resolved with vendor tickets still open.
pub fn resolve_question(incident: &Incident, open: &[VendorTicket]) -> (String, Value) {
    let text = format!(
        "✅ {} is resolved, and {} vendor ticket{} still open. Close the ones you no longer need; the others stay open (and listed in `/incident vendors`) until someone closes them.",
        incident.number,
        open.len(),
        if open.len() == 1 { " is" } else { "s are" }
    );
    let mut blocks =
        vec![json!({ "type": "section", "block_id": "vendor_resolve", "text": { "type": "mrkdwn", "text": text } })];
    for t in open.iter().take(20) {
        blocks.push(json!({
            "type": "section",
            "block_id": format!("vendor_resolve_{}", t.id),
            "text": { "type": "mrkdwn", "text": blocks::truncate(&format!("{} · {} · open {}", named(t), t.state, age(t.opened_at, chrono::Utc::now())), 3000) },
            "accessory": button(&format!("Close {}", t.label()), ACTION_CLOSE, t, None),
        }));
    }
    (text, Value::Array(blocks))
}

/// `/incident vendors [vendor]`.
pub fn list_blocks(
    vendor: Option<&str>,
    visible: &[VendorTicket],
    hidden: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> (String, Value) {
    let heading = match vendor {
        Some(v) => format!("*Open vendor tickets with {}* — oldest first", escape(v)),
        None => "*Open vendor tickets* — oldest first".to_string(),
    };
    let mut blocks = vec![
        json!({ "type": "section", "block_id": "vendors_heading", "text": { "type": "mrkdwn", "text": heading } }),
    ];
    const SHOWN: usize = 40;
    for t in visible.iter().take(SHOWN) {
        let replied = match t.last_reply_at {
            Some(at) => format!("vendor last replied {} ago", age(at, now)),
            None => "no reply from the vendor yet".into(),
        };
        let incident = if t.incident_status.is_open() {
            String::new()
        } else {
            format!(" · {} is {}", t.number, t.incident_status)
        };
        blocks.push(json!({ "type": "section", "block_id": format!("vendor_{}", t.id), "text": { "type": "mrkdwn",
            "text": blocks::truncate(&format!("*{}* {} · {}\nopen {} · {replied}{incident}", t.number, named(t), t.state, age(t.opened_at, now)), 3000) } }));
    }
    let mut notes = Vec::new();
    if visible.is_empty() {
        notes.push("No open vendor tickets you can see.".to_string());
    }
    if visible.len() > SHOWN {
        notes.push(format!("{} more not shown.", visible.len() - SHOWN));
    }
    if hidden > 0 {
        notes.push(format!(
            "{hidden} more on private incident{} you are not in.",
            if hidden == 1 { "" } else { "s" }
        ));
    }
    if !notes.is_empty() {
        blocks.push(json!({ "type": "context", "block_id": "vendors_notes", "elements": [{ "type": "mrkdwn", "text": notes.join(" ") }] }));
    }
    let text = format!(
        "{} open vendor tickets ({hidden} on private incidents not shown)",
        visible.len()
    );
    (text, Value::Array(blocks))
}

/// The vendor ticket form.
pub fn vendor_modal(incident: &Incident, catalogue: &Catalogue) -> Value {
    let options: Vec<Value> = catalogue
        .names()
        .into_iter()
        .take(100)
        .map(|n| json!({ "text": { "type": "plain_text", "text": blocks::truncate(&n, 75) }, "value": n }))
        .collect();
    let plain = |t: &str| json!({ "type": "plain_text", "text": t });
    json!({
        "type": "modal",
        "callback_id": VENDOR_CALLBACK,
        "title": plain("Vendor ticket"),
        "submit": plain("Raise"),
        "close": plain("Cancel"),
        "private_metadata": json!({ "incident": incident.id.0 }).to_string(),
        "blocks": [
            { "type": "section", "block_id": "about", "text": { "type": "mrkdwn",
                "text": blocks::truncate(&escape(&format!("{}: {}", incident.number, incident.title)), 3000) } },
            { "type": "input", "block_id": "vendor", "label": plain("Vendor"),
              "element": { "type": "static_select", "action_id": "vendor", "options": options } },
            { "type": "input", "block_id": "reference", "label": plain("Their ticket reference"),
              "element": { "type": "plain_text_input", "action_id": "reference", "max_length": 80 } },
            { "type": "input", "block_id": "link", "optional": true, "label": plain("Link to their ticket"),
              "element": { "type": "url_text_input", "action_id": "link" } },
            { "type": "input", "block_id": "asked", "optional": true, "label": plain("What we asked"),
              "element": { "type": "plain_text_input", "action_id": "asked", "multiline": true, "max_length": 2900 } },
        ],
    })
}

/// The form behind **Vendor replied**: what they said.
pub fn reply_modal(t: &VendorTicket) -> Value {
    let plain = |t: &str| json!({ "type": "plain_text", "text": t });
    json!({
        "type": "modal",
        "callback_id": REPLY_CALLBACK,
        "title": plain("Vendor replied"),
        "submit": plain("Record"),
        "close": plain("Cancel"),
        "private_metadata": json!({ "ticket": t.id }).to_string(),
        "blocks": [
            { "type": "section", "block_id": "about", "text": { "type": "mrkdwn",
                "text": blocks::truncate(&format!("{} on {}", named(t), t.number), 3000) } },
            { "type": "input", "block_id": "said", "label": plain("What they said"),
              "element": { "type": "plain_text_input", "action_id": "said", "multiline": true, "max_length": 2900 } },
        ],
    })
}

/// What the person who acted on a ticket is told.
fn changed_text(result: Result<TicketChanged, Refusal>) -> String {
    match result {
        Ok(TicketChanged { ticket: t, just_now }) => {
            let what = match (t.state, t.chase_at) {
                (crate::vendor::TicketState::Closed, _) => "closed".to_string(),
                (state, Some(at)) => format!("{state}; next chase {}", slack_date(at)),
                (state, None) => format!("{state}; not chased"),
            };
            format!(
                "{}{} on {} is {what}.",
                if just_now { "☑️ " } else { "" },
                named(&t),
                t.number
            )
        }
        Err(refusal) => refusal.to_string(),
    }
}

impl Handler {
    /// `/incident vendor …` in an incident's channel.
    pub(super) async fn vendor_command(
        &self,
        event: &SlackCommandEvent,
        user: &UserId,
        incident: Incident,
        command: VendorCommand,
    ) -> SlackCommandEventResponse {
        let key = format!("trigger:{}", event.trigger_id);
        match command {
            VendorCommand::Form => {
                if incident.was_canceled() {
                    return ephemeral(&format!(
                        "{} was canceled: it takes no vendor tickets.",
                        incident.number
                    ));
                }
                self.open_modal(event, vendor_modal(&incident, &self.service.policy.vendors));
                SlackCommandEventResponse::new(SlackMessageContent::new())
            }
            VendorCommand::Open {
                vendor,
                reference,
                link,
                asked,
            } => match self
                .service
                .open_vendor_ticket(
                    incident.id,
                    TicketRequest {
                        vendor,
                        reference,
                        link,
                        asked,
                    },
                    user,
                    &key,
                )
                .await
            {
                Ok(Some(t)) => ephemeral(&format!(
                    "🧾 Raised {} on {}. {}.",
                    named(&t),
                    t.number,
                    match t.chase_at {
                        Some(at) => format!(
                            "I'll remind the SPOC to chase it at {} if the vendor has not answered",
                            slack_date(at)
                        ),
                        None => "It has no SLA here, so it is not chased".into(),
                    }
                )),
                Ok(None) => ephemeral("That vendor ticket was already raised."),
                Err(refusal) => ephemeral(&format!("{refusal}\nUsage: {VENDOR_USAGE}")),
            },
            VendorCommand::Act { ticket, action } => ephemeral(&changed_text(
                self.service
                    .vendor_ticket_action(&incident, &ticket, &action, user, &key)
                    .await,
            )),
        }
    }

    /// `/incident vendors [vendor]` anywhere.
    pub(super) async fn vendors_list(
        &self,
        event: &SlackCommandEvent,
        user: &UserId,
        vendor: Option<String>,
    ) -> SlackCommandEventResponse {
        // An unknown vendor is answered at once, with the known ones.
        if let Some(name) = &vendor {
            if let Err(why) = self.service.policy.vendors.find(name) {
                return ephemeral(&why);
            }
        }
        let (service, user) = (self.service.clone(), user.clone());
        let work = async move {
            match service.open_vendor_tickets(&user, vendor.as_deref()).await {
                Ok(listing) => {
                    let shown = vendor.as_deref().and_then(|v| service.policy.vendors.canonical(v));
                    let (text, blocks) =
                        list_blocks(shown.as_deref(), &listing.visible, listing.hidden, chrono::Utc::now());
                    blocks::content(&text, blocks)
                }
                Err(refusal) => blocks::text(&refusal.to_string()),
            }
        };
        self.answer_within_budget(event, work).await
    }

    /// "What did the vendor say", submitted: the reply is recorded.
    pub(super) async fn submit_vendor_reply(&self, user: &str, view: &Value) -> SlackInteractionResponse {
        let Ok(actor) = UserId::parse(user) else {
            return errors([("said", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let Some(ticket) = serde_json::from_str::<Value>(view["private_metadata"].as_str().unwrap_or_default())
            .ok()
            .and_then(|m| m["ticket"].as_i64())
        else {
            return SlackInteractionResponse::Empty;
        };
        let said = text::input_value(
            view["state"]["values"]["said"]["said"]["value"]
                .as_str()
                .unwrap_or_default(),
            Lines::Many,
        );
        if said.trim().is_empty() {
            return errors([("said", "Say what the vendor said.".to_string())]);
        }
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self
            .service
            .vendor_ticket_action_by_id(ticket, &TicketAction::Reply(said.trim().to_string()), &actor, &key)
            .await
        {
            Ok(_) => SlackInteractionResponse::Empty,
            Err(refusal) => errors([("said", refusal.to_string())]),
        }
    }

    /// The vendor ticket form, submitted.
    pub(super) async fn submit_vendor(&self, user: &str, view: &Value) -> SlackInteractionResponse {
        let Ok(actor) = UserId::parse(user) else {
            return errors([("reference", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let Some(id) = super::forms::incident_of(view["private_metadata"].as_str().unwrap_or_default()) else {
            return SlackInteractionResponse::Empty;
        };
        let values = &view["state"]["values"];
        let vendor = values["vendor"]["vendor"]["selected_option"]["value"]
            .as_str()
            .unwrap_or_default();
        let field =
            |block: &str| text::input_value(values[block][block]["value"].as_str().unwrap_or_default(), Lines::One);
        let reference = field("reference");
        let link = Some(field("link")).filter(|l| !l.trim().is_empty());
        let asked = text::input_value(
            values["asked"]["asked"]["value"].as_str().unwrap_or_default(),
            Lines::Many,
        );
        // Field by field, so each problem shows under its input.
        if let Err(why) = self.service.policy.vendors.find(vendor) {
            return errors([("vendor", why)]);
        }
        if let Err(why) = crate::vendor::NewTicket::parse(&self.service.policy.vendors, vendor, &reference, None, "") {
            return errors([("reference", why)]);
        }
        if let Some(l) = &link {
            if !(l.starts_with("https://") || l.starts_with("http://")) {
                return errors([("link", "Give a web link (https://…).".to_string())]);
            }
        }
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self
            .service
            .open_vendor_ticket(
                id,
                TicketRequest {
                    vendor: vendor.to_string(),
                    reference,
                    link,
                    asked,
                },
                &actor,
                &key,
            )
            .await
        {
            Ok(_) => SlackInteractionResponse::Empty,
            Err(refusal) => errors([("reference", refusal.to_string())]),
        }
    }

    /// **Vendor replied**, **Escalate**, **Snooze 15 min** on a chase; **Close V1** on the
    /// resolve question. The answer goes to the clicker.
    pub(super) async fn vendor_button(
        &self,
        ev: &SlackInteractionBlockActionsEvent,
        action: &SlackInteractionActionInfo,
        user: &UserId,
        channel: &str,
    ) {
        let Some(ticket) = action.value.as_deref().and_then(|v| v.parse::<i64>().ok()) else {
            return;
        };
        if action.action_id.as_ref() == ACTION_REPLIED {
            // What they said is asked for in a form; the reply is recorded when it is submitted.
            let url = ev.response_url.as_ref().map(|u| u.0.to_string());
            return match self.service.db.vendor_ticket(ticket).await {
                Ok(Some(t)) if t.is_open() => self.spawn_open(
                    ev.trigger_id.to_string(),
                    channel.to_string(),
                    user.to_string(),
                    url,
                    reply_modal(&t),
                ),
                Ok(Some(t)) => self.tell_via(
                    url.as_deref(),
                    channel,
                    user,
                    &changed_text(Ok(TicketChanged {
                        ticket: t,
                        just_now: false,
                    })),
                ),
                Ok(None) => self.tell_via(url.as_deref(), channel, user, "That vendor ticket no longer exists."),
                Err(_) => self.tell_via(url.as_deref(), channel, user, crate::service::TRY_AGAIN),
            };
        }
        let change = match action.action_id.as_ref() {
            ACTION_ESCALATE => TicketAction::Escalate(String::new()),
            ACTION_SNOOZE => TicketAction::Snooze,
            _ => TicketAction::Close(String::new()),
        };
        let key = format!("trigger:{}", ev.trigger_id);
        let result = self
            .service
            .vendor_ticket_action_by_id(ticket, &change, user, &key)
            .await;
        let answer = match (&change, &result) {
            (TicketAction::Snooze, Ok(c)) => format!(
                "💤 Snoozed: I'll remind again about {} in 15 minutes unless the vendor answers.",
                named(&c.ticket)
            ),
            _ => changed_text(result),
        };
        let url = ev.response_url.as_ref().map(|u| u.0.to_string());
        self.tell_via(url.as_deref(), channel, user, &answer);
    }
}

/// Performs a `vendor` outbox job: a ticket's channel post, a chase reminder, or the resolve
/// question. A chase whose ticket was answered or closed since is dropped.
pub(super) async fn run_job(fx: &SlackEffects, job: &Job, incident: &Incident) -> Result<JobUpdate, Outcome> {
    let channel = incident.channel_id.clone().ok_or_else(|| Outcome::GiveUp {
        error: format!("{} has no channel yet", incident.number),
    })?;
    let db_error = |e: anyhow::Error| Outcome::Retry {
        error: format!("cannot read vendor tickets: {e}"),
        after: None,
    };
    let what = job.payload["what"].as_str().unwrap_or_default();
    if what == "resolve_ask" {
        let open: Vec<VendorTicket> = fx
            .db
            .vendor_tickets_of(incident.id)
            .await
            .map_err(db_error)?
            .into_iter()
            .filter(VendorTicket::is_open)
            .collect();
        if open.is_empty() {
            return Ok(JobUpdate::default());
        }
        let (text, blocks) = resolve_question(incident, &open);
        fx.post_once(job, &channel, blocks::content(&text, blocks), None)
            .await?;
        return Ok(JobUpdate::default());
    }
    let id = job.payload["ticket"].as_i64().unwrap_or_default();
    let Some(t) = fx.db.vendor_ticket(id).await.map_err(db_error)? else {
        return Ok(JobUpdate::default());
    };
    let catalogue = &fx.policy.vendors;
    if what == "chase" {
        let fired_at = job.payload["fired_at"].as_i64().unwrap_or_default();
        let answered = t.last_reply_at.is_some_and(|at| at.timestamp_millis() > fired_at);
        if !t.is_open() || answered || !incident.status.is_open() {
            return Ok(JobUpdate::default());
        }
        let p = &job.payload;
        let (text, blocks) = chase_reminder(
            &t,
            incident,
            catalogue,
            p["missed"].as_i64().unwrap_or(1),
            p["escalate"] == true,
            p["first_response"] == true,
            p["late"] == true,
        );
        fx.post_once(job, &channel, blocks::content(&text, blocks), None)
            .await?;
        crate::metrics::METRICS
            .follow_up_reminders
            .inc(&["vendor", if p["late"] == true { "true" } else { "false" }]);
        return Ok(JobUpdate::default());
    }
    let actor = job.payload["actor"].as_str().unwrap_or("someone");
    let note = job.payload["text"].as_str().unwrap_or_default();
    let text = notice(&t, what, actor, note, catalogue);
    fx.post_once(job, &channel, blocks::text(&text), None).await?;
    Ok(JobUpdate::default())
}

/// The report's vendor table (Block Kit), monospaced, within a section's 3,000 characters;
/// `None` when no vendor is configured or seen.
pub fn report_section(r: &crate::report::Report) -> Option<Value> {
    use crate::report::render::{change, value};
    if r.vendors.is_empty() {
        return None;
    }
    let mut table = format!(
        "{:<12} {:>9} {:>16} {:>10} {:>10} {:>9} {:>8}\n",
        "vendor", "tickets", "1st resp med/p90", "breaches", "escalated", "open >7d", "incid."
    );
    let mut shown = 0;
    for row in &r.vendors {
        let h = row.headlines();
        let with = |i: usize| format!("{} {}", value(h[i].value), change(&h[i]));
        let line = format!(
            "{:<12} {:>9} {:>16} {:>10} {:>10} {:>9} {:>8}\n",
            blocks::truncate(&row.vendor, 12),
            with(0),
            format!("{}/{}", value(h[1].value), value(h[2].value)),
            with(3),
            with(4),
            value(h[5].value),
            value(h[6].value)
        );
        if table.chars().count() + line.chars().count() > 2_800 {
            break;
        }
        table.push_str(&line);
        shown += 1;
    }
    let mut text = format!("*Vendors*\n```{table}```");
    if shown < r.vendors.len() {
        text.push_str(&format!("\n…and {} more", r.vendors.len() - shown));
    }
    Some(json!({ "type": "section", "block_id": "report_vendors", "text": { "type": "mrkdwn", "text": text } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_path_and_the_actions_parse() {
        assert_eq!(parse_vendor(""), Ok(VendorCommand::Form));
        assert_eq!(
            parse_vendor("Adyen #48213 <https://ca.adyen.example/t/48213?a=1&amp;b=2> card auth &lt;500s&gt;"),
            Ok(VendorCommand::Open {
                vendor: "Adyen".into(),
                reference: "#48213".into(),
                link: Some("https://ca.adyen.example/t/48213?a=1&b=2".into()),
                asked: "card auth <500s>".into(),
            })
        );
        assert_eq!(
            parse_vendor("aws 123 why are we throttled"),
            Ok(VendorCommand::Open {
                vendor: "aws".into(),
                reference: "123".into(),
                link: None,
                asked: "why are we throttled".into(),
            })
        );
        assert_eq!(
            parse_vendor("adyen"),
            Ok(VendorCommand::Open {
                vendor: "adyen".into(),
                reference: String::new(),
                link: None,
                asked: String::new(),
            }),
            "an empty reference is refused after the vendor is checked"
        );
        assert_eq!(
            parse_vendor("reply V1 they are looking at it"),
            Ok(VendorCommand::Act {
                ticket: "V1".into(),
                action: TicketAction::Reply("they are looking at it".into())
            })
        );
        assert_eq!(
            parse_vendor("ESCALATE #48213"),
            Ok(VendorCommand::Act {
                ticket: "#48213".into(),
                action: TicketAction::Escalate(String::new())
            })
        );
        assert!(parse_vendor("reply V1").unwrap_err().contains("what the vendor said"));
        assert!(parse_vendor("close").unwrap_err().contains("Name the ticket"));
        assert_eq!(parse_vendors(""), Ok(None));
        assert_eq!(parse_vendors(" Adyen "), Ok(Some("Adyen".into())));
        assert!(parse_vendors("a b").is_err());
    }
}
