//! Customer updates in Slack (issue 14): `/incident customer` and the card's **Customer
//! update** button open the form; a draft is posted to the incident channel with **Approve** /
//! **Edit**; the outbox posts drafts, marks them published (and posts them to the external comms
//! channel), and reminds the comms role (or the SPOC) when the customer cadence is due.

use super::blocks::{self, escape, mrkdwn, plain, slack_date};
use super::effects::SlackEffects;
use super::listener::{ephemeral, errors, Handler};
use super::text::{self, Lines};
use crate::comms::{ComponentStatus, CustomerUpdate, StatusPage, UpdateState};
use crate::db::JobUpdate;
use crate::incident::model::{Incident, UserId};
use crate::outbox::{Job, Outcome};
use crate::service::{CustomerForm, CustomerUpdateRequest, Refusal, WriteRefusal};
use serde_json::{json, Value};
use slack_morphism::prelude::*;

pub const CUSTOMER_CALLBACK: &str = "customer_update";
/// On the card and on reminders: the value is the incident id.
pub const ACTION_CUSTOMER: &str = "customer_update_open";
/// On a draft: the value is the customer update's id.
pub const ACTION_APPROVE: &str = "customer_update_approve";
pub const ACTION_EDIT: &str = "customer_update_edit";

/// Buttons whose value is a customer update's id.
pub fn is_customer_update_action(action_id: &str) -> bool {
    [ACTION_APPROVE, ACTION_EDIT].contains(&action_id)
}

/// The customer-update form: public title, affected components and their status, the message,
/// "this is the last update".
pub fn customer_modal(incident: &Incident, page: &StatusPage, form: &CustomerForm) -> Value {
    let components: Vec<Value> = page
        .components
        .iter()
        .take(100)
        .map(|c| blocks::option(&c.name, &c.id))
        .collect();
    let mut picker = json!({ "type": "multi_static_select", "action_id": "components", "options": components,
                             "placeholder": plain("Components customers see", 150) });
    let initial: Vec<Value> = form
        .components
        .iter()
        .filter_map(|id| page.component(id))
        .map(|c| blocks::option(&c.name, &c.id))
        .collect();
    if !initial.is_empty() {
        picker["initial_options"] = json!(initial);
    }
    let statuses: Vec<Value> = ComponentStatus::ALL
        .iter()
        .map(|s| blocks::option(s.label(), s.as_str()))
        .collect();
    let mut title = json!({ "type": "plain_text_input", "action_id": "public_title", "max_length": crate::comms::MAX_TITLE,
                            "placeholder": plain("What customers see, e.g. Card payments delayed", 150) });
    if !form.public_title.is_empty() {
        title["initial_value"] = json!(form.public_title);
    }
    let mut message = json!({ "type": "plain_text_input", "action_id": "message", "multiline": true,
                              "max_length": crate::comms::MAX_MESSAGE });
    if !form.message.is_empty() {
        message["initial_value"] = json!(form.message);
    }
    let approval = if page.comms_approval {
        "It goes to the incident channel for approval by the comms role (or the SPOC) before it is published."
    } else {
        "It is published on the status page as soon as you send it."
    };
    blocks::modal_shell(
        CUSTOMER_CALLBACK,
        "Customer update",
        if page.comms_approval {
            "Send for approval"
        } else {
            "Publish"
        },
        incident,
        vec![
            json!({ "type": "context", "block_id": "about", "elements": [mrkdwn(&format!(
                "{}: public wording only — no internal names, people or channels. {approval}",
                incident.number
            ))] }),
            json!({ "type": "input", "block_id": "public_title", "label": plain("Public title", 2000), "element": title }),
            json!({ "type": "input", "block_id": "components", "label": plain("Affected components", 2000), "element": picker }),
            json!({ "type": "input", "block_id": "status", "label": plain("Their status", 2000),
                    "element": { "type": "static_select", "action_id": "status", "options": statuses,
                                 "initial_option": blocks::option(form.status.label(), form.status.as_str()) } }),
            json!({ "type": "input", "block_id": "message", "label": plain("Message to customers", 2000), "element": message }),
            json!({ "type": "input", "block_id": "last", "optional": true, "label": plain("Resolution", 2000),
                    "element": { "type": "checkboxes", "action_id": "last", "options": [
                        { "text": plain("This is the last update (the public incident is resolved)", 75), "value": "last" }
                    ] } }),
        ],
    )
}

fn statuses_line(page: &StatusPage, update: &CustomerUpdate) -> String {
    update
        .components
        .iter()
        .map(|c| {
            let name = page
                .component(&c.component)
                .map_or(c.component.as_str(), |c| c.name.as_str());
            format!("{}: {}", escape(name), c.status.label())
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The draft as posted for approval, or (once published) as a record of what went out.
pub fn draft_message(incident: &Incident, page: &StatusPage, update: &CustomerUpdate) -> (String, Value) {
    let approver = crate::comms::approver(&incident.roles, &incident.spoc);
    let head = match update.state {
        UpdateState::Draft => format!(
            "📝 *Customer update draft* by <@{}> for {} — <@{approver}>, please approve it or edit it.",
            update.author, incident.number
        ),
        UpdateState::Published => format!(
            "📢 *Customer update published* on the status page{} — written by <@{}>{}.",
            if update.last { " (last update: resolved)" } else { "" },
            update.author,
            update
                .approved_by
                .as_ref()
                .filter(|a| *a != &update.author || page.comms_approval)
                .map(|a| format!(", approved by <@{a}>"))
                .unwrap_or_default()
        ),
        UpdateState::Superseded => "~Customer update draft~ — replaced by a newer draft.".to_string(),
    };
    let mut out = vec![
        json!({ "type": "section", "text": mrkdwn(&head) }),
        json!({ "type": "section", "text": mrkdwn(&format!(
            "*{}*\n{}", escape(&update.public_title), escape(&update.message)
        )) }),
        json!({ "type": "context", "elements": [mrkdwn(&statuses_line(page, update))] }),
    ];
    let mut buttons = Vec::new();
    if update.state == UpdateState::Draft {
        buttons.push(
            json!({ "type": "button", "action_id": ACTION_APPROVE, "style": "primary",
                             "text": plain("✅ Approve and publish", 75), "value": update.id.to_string() }),
        );
    }
    if update.state != UpdateState::Superseded {
        buttons.push(json!({ "type": "button", "action_id": ACTION_EDIT,
                             "text": plain("✏️ Edit", 75), "value": update.id.to_string() }));
    }
    if !buttons.is_empty() {
        out.push(json!({ "type": "actions", "block_id": "customer_actions", "elements": buttons }));
    }
    let text = format!("Customer update for {}: {}", incident.number, update.public_title);
    (text, Value::Array(out))
}

/// The external comms channel's post of a published update (public words only).
fn external_message(page: &StatusPage, update: &CustomerUpdate) -> (String, Value) {
    let text = format!("{}: {}", update.public_title, update.message);
    let blocks = json!([
        { "type": "section", "text": mrkdwn(&format!(
            "📢 *{}*{}\n{}", escape(&update.public_title),
            if update.last { " — resolved" } else { "" },
            escape(&update.message)
        )) },
        { "type": "context", "elements": [mrkdwn(&statuses_line(page, update))] },
    ]);
    (text, blocks)
}

/// The cadence reminder: who approves, when it was due, a button to write one.
pub fn reminder_message(
    incident: &Incident,
    due: chrono::DateTime<chrono::Utc>,
    overdue: bool,
    late: bool,
) -> (String, Value) {
    let who = crate::comms::approver(&incident.roles, &incident.spoc);
    let text = format!(
        "📣 <@{who}>, {} customer update for {} {} {}{}.",
        if overdue { "the" } else { "a" },
        incident.number,
        if overdue { "is still overdue since" } else { "is due" },
        slack_date(due),
        if late {
            " (this reminder is late: the bot was down)"
        } else {
            ""
        }
    );
    let blocks = json!([
        { "type": "section", "text": mrkdwn(&text) },
        { "type": "actions", "block_id": "customer_reminder", "elements": [
            { "type": "button", "action_id": ACTION_CUSTOMER, "style": "primary",
              "text": plain("📢 Customer update", 75), "value": incident.id.0.to_string() }
        ] },
    ]);
    (text, blocks)
}

impl Handler {
    /// `/incident customer` in an incident's channel: the form, or why not.
    pub(super) async fn customer_command(
        &self,
        event: &SlackCommandEvent,
        incident: Incident,
    ) -> SlackCommandEventResponse {
        if let Some(refusal) = self.service.customer_refusal(&incident) {
            return ephemeral(&refusal.to_string());
        }
        match self.customer_view(&incident, None).await {
            Ok(view) => {
                self.open_modal(event, view);
                SlackCommandEventResponse::new(SlackMessageContent::new())
            }
            Err(refusal) => ephemeral(&refusal.to_string()),
        }
    }

    async fn customer_view(&self, incident: &Incident, edit: Option<i64>) -> Result<Value, Refusal> {
        let page = self.service.status_page()?;
        let form = self.service.customer_form(incident, edit).await?;
        Ok(customer_modal(incident, page, &form))
    }

    /// Opens the customer-update form from a click (the card's or a reminder's **Customer
    /// update**: a new update; **Edit** on a draft: `edit`), or says why not to the clicker.
    pub(super) async fn open_customer_form(
        &self,
        ev: &SlackInteractionBlockActionsEvent,
        incident: &Incident,
        edit: Option<i64>,
        user: &UserId,
        channel: &str,
    ) {
        let url = ev.response_url.as_ref().map(|u| u.0.to_string());
        if let Some(refusal) = self.service.customer_refusal(incident) {
            return self.tell_via(url.as_deref(), channel, user, &refusal.to_string());
        }
        match self.customer_view(incident, edit).await {
            Ok(view) => self.spawn_open(
                ev.trigger_id.to_string(),
                channel.to_string(),
                user.to_string(),
                url,
                view,
            ),
            Err(refusal) => self.tell_via(url.as_deref(), channel, user, &refusal.to_string()),
        }
    }

    /// **Approve and publish** or **Edit** on a draft.
    pub(super) async fn customer_update_button(
        &self,
        ev: &SlackInteractionBlockActionsEvent,
        action: &SlackInteractionActionInfo,
        user: &UserId,
        channel: &str,
    ) {
        let url = ev.response_url.as_ref().map(|u| u.0.to_string());
        let Some(id) = action.value.as_deref().and_then(|v| v.parse::<i64>().ok()) else {
            return;
        };
        let update = match self.service.db.customer_update(id).await {
            Ok(Some(u)) => u,
            Ok(None) => return self.tell_via(url.as_deref(), channel, user, "That customer update no longer exists."),
            Err(_) => return self.tell_via(url.as_deref(), channel, user, crate::service::TRY_AGAIN),
        };
        if action.action_id.as_ref() == ACTION_EDIT {
            let incident = match self.service.incident(update.incident_id).await {
                Ok(i) => i,
                Err(refusal) => return self.tell_via(url.as_deref(), channel, user, &refusal.to_string()),
            };
            return self
                .open_customer_form(ev, &incident, Some(update.id), user, channel)
                .await;
        }
        let key = format!("trigger:{}", ev.trigger_id);
        let answer = match self.service.approve_customer_update(id, user, &key).await {
            Ok(Some(u)) => format!(
                "📢 Published on the status page: *{}*{}.",
                escape(&u.public_title),
                if u.last {
                    " (the public incident is resolved)"
                } else {
                    ""
                }
            ),
            Ok(None) => "That approval was already recorded.".to_string(),
            Err(refusal) => refusal.to_string(),
        };
        self.tell_via(url.as_deref(), channel, user, &answer);
    }

    /// The customer-update form, submitted.
    pub(super) async fn submit_customer_update(&self, user: &str, view: &Value) -> SlackInteractionResponse {
        let Ok(actor) = UserId::parse(user) else {
            return errors([("message", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let Some(id) = super::forms::incident_of(view["private_metadata"].as_str().unwrap_or_default()) else {
            return SlackInteractionResponse::Empty;
        };
        let values = &view["state"]["values"];
        let input =
            |block: &str, lines| text::input_value(values[block][block]["value"].as_str().unwrap_or_default(), lines);
        let components: Vec<String> = values["components"]["components"]["selected_options"]
            .as_array()
            .map(|a| a.iter().filter_map(|o| o["value"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        let status = match ComponentStatus::parse(
            values["status"]["status"]["selected_option"]["value"]
                .as_str()
                .unwrap_or_default(),
        ) {
            Ok(s) => s,
            Err(why) => return errors([("status", why)]),
        };
        let last = values["last"]["last"]["selected_options"]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o["value"] == "last"));
        let request = CustomerUpdateRequest {
            public_title: input("public_title", Lines::One),
            message: input("message", Lines::Many),
            components,
            status,
            last,
        };
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self.service.write_customer_update(id, &request, &actor, &key).await {
            Ok(_) => SlackInteractionResponse::Empty,
            Err(WriteRefusal::Field(e)) => errors([(e.field, e.problem)]),
            Err(WriteRefusal::Refused(refusal)) => errors([("message", refusal.to_string())]),
        }
    }
}

/// Performs a `customer` outbox job: post a draft for approval, mark one published (and post it
/// to the external comms channel), or remind the approver that an update is due.
pub(super) async fn run_job(fx: &SlackEffects, job: &Job, incident: &Incident) -> Result<JobUpdate, Outcome> {
    let Some(page) = fx.policy.status_page.as_ref() else {
        return Err(Outcome::GiveUp {
            error: "the status page is no longer configured".into(),
        });
    };
    let channel = incident.channel_id.clone().ok_or_else(|| Outcome::GiveUp {
        error: format!("{} has no channel yet", incident.number),
    })?;
    let db_error = |e: anyhow::Error| Outcome::Retry {
        error: format!("cannot read customer updates: {e}"),
        after: None,
    };
    let what = job.payload["what"].as_str().unwrap_or_default();
    if what == "reminder" {
        let planned = job.payload["due_at"].as_i64().unwrap_or_default();
        // Published since it fired: the clock moved on, nothing to say.
        let due = fx.db.customer_update_due(incident.id).await.map_err(db_error)?;
        if due.map(|d| d.timestamp_millis()) != Some(planned) || !incident.status.is_open() {
            return Ok(JobUpdate::default());
        }
        let (text, blocks) = reminder_message(
            incident,
            chrono::DateTime::from_timestamp_millis(planned).unwrap_or_default(),
            job.payload["overdue"] == true,
            job.payload["late"] == true,
        );
        fx.post_once(job, &channel, blocks::content(&text, blocks), None)
            .await?;
        crate::metrics::METRICS
            .follow_up_reminders
            .inc(&["customer", if job.payload["late"] == true { "true" } else { "false" }]);
        return Ok(JobUpdate::default());
    }
    let id = job.payload["update"].as_i64().unwrap_or_default();
    let Some(update) = fx.db.customer_update(id).await.map_err(db_error)? else {
        return Ok(JobUpdate::default());
    };
    match what {
        "draft" => {
            if update.state == UpdateState::Superseded {
                return Ok(JobUpdate::default());
            }
            // Already posted by an earlier run of this job, which recorded where.
            if update.draft_ts.is_none() {
                post_and_record(fx, job, &channel, incident, page, &update).await?;
            }
            retire_superseded(fx, incident, page, &channel, update.id)
                .await
                .map_err(db_error)?;
        }
        "published" => {
            match &update.draft_ts {
                // Editing the draft in place is idempotent: a repeat after a lost answer is harmless.
                Some(ts) => {
                    let (text, blocks) = draft_message(incident, page, &update);
                    fx.web
                        .update(&channel, ts, blocks::content(&text, blocks))
                        .await
                        .map_err(super::effects::outcome_of)?
                }
                // Published as written (approval off): like a draft, it replaced any draft
                // left from before.
                None => {
                    post_and_record(fx, job, &channel, incident, page, &update).await?;
                    retire_superseded(fx, incident, page, &channel, update.id)
                        .await
                        .map_err(db_error)?;
                }
            }
            if let Some(external) = &page.channel {
                let (text, blocks) = external_message(page, &update);
                fx.post_once(job, external, blocks::content(&text, blocks), None)
                    .await?;
            }
        }
        _ => {}
    }
    Ok(JobUpdate::default())
}

/// Posts `update`'s message in the incident channel (once, after a lost answer too) and records
/// where it is, for the approval that edits it later.
async fn post_and_record(
    fx: &SlackEffects,
    job: &Job,
    channel: &str,
    incident: &Incident,
    page: &StatusPage,
    update: &CustomerUpdate,
) -> Result<(), Outcome> {
    let (text, blocks) = draft_message(incident, page, update);
    let ts = fx.post_once(job, channel, blocks::content(&text, blocks), None).await?;
    fx.db
        .set_customer_draft_ts(update.id, &ts)
        .await
        .map_err(|e| Outcome::Retry {
            error: format!("cannot record a customer update's message: {e}"),
            after: None,
        })
}

/// The draft that update `written` replaced loses its buttons (best effort: approving it is
/// refused anyway, by the database). A write supersedes every draft then waiting, and only the
/// one before it can be waiting: older ones were replaced, and retired, by earlier writes.
async fn retire_superseded(
    fx: &SlackEffects,
    incident: &Incident,
    page: &StatusPage,
    channel: &str,
    written: i64,
) -> anyhow::Result<()> {
    let updates = fx.db.customer_updates_of(incident.id).await?;
    let Some(previous) = updates.iter().filter(|u| u.id < written).max_by_key(|u| u.id) else {
        return Ok(());
    };
    if let (UpdateState::Superseded, Some(ts)) = (previous.state, &previous.draft_ts) {
        let (text, blocks) = draft_message(incident, page, previous);
        if let Err(e) = fx.web.update(channel, ts, blocks::content(&text, blocks)).await {
            tracing::debug!(error = %e, "could not mark a replaced customer draft");
        }
    }
    Ok(())
}
