//! The triage channel (issue 15): one message per alert group, posted when the group (or a new
//! episode of it) appears and updated as it repeats, resolves, is acknowledged, silenced or
//! linked, with the buttons **Declare incident**, **Link to incident**, **Acknowledge** and
//! **Silence 1 h**.
//!
//! The message is the group row's outbox: every change bumps the row's `version` and plans a
//! sync in the same transaction; [`run_poster`] claims due rows with a lease (once across
//! replicas), posts or `chat.update`s the current state, and records the version it showed.
//! Repeats between two syncs are coalesced (one update per group per `update_gap`), and calls
//! are paced to stay inside Slack's tiers. A post whose outcome is unknown (timeout, 5xx, a
//! crash before its ts was stored) is looked for by its metadata tag before it is repeated.

use super::blocks::{self, escape};
use super::listener::Handler;
use super::web::{Failure, MessageTag, SlackWeb, JOB_EVENT_TYPE};
use crate::alerts::{AlertStatus, StoredAlert};
use crate::db::Db;
use crate::incident::model::{IncidentId, IncidentNumber, Severity, UserId};
use crate::service::{AlertTriage, Service};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use slack_morphism::prelude::{SlackInteractionBlockActionsEvent, SlackMessageContent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const ACTION_DECLARE: &str = "alert_declare";
pub const ACTION_LINK: &str = "alert_link";
pub const ACTION_ACK: &str = "alert_ack";
pub const ACTION_SILENCE: &str = "alert_silence";
pub const LINK_CALLBACK: &str = "alert_link";

/// Tuning of the poster; tests shorten these.
#[derive(Debug, Clone)]
pub struct PosterOptions {
    pub lease: Duration,
    pub batch: i64,
    /// Pause after each Slack call: `chat.update` is Tier 3 (~50 a minute), `chat.postMessage`
    /// about one a second per channel.
    pub pace: Duration,
    pub max_idle_sleep: Duration,
    pub base_backoff: Duration,
}

impl Default for PosterOptions {
    fn default() -> Self {
        PosterOptions {
            lease: Duration::from_secs(30),
            batch: 20,
            pace: Duration::from_millis(1200),
            max_idle_sleep: Duration::from_secs(5),
            base_backoff: Duration::from_secs(1),
        }
    }
}

/// The tag a group's message carries, per episode (each episode is its own message).
pub fn tag(alert: &StoredAlert) -> MessageTag {
    MessageTag {
        event_type: JOB_EVENT_TYPE,
        key: "job",
        value: format!("alert:{}:{}", alert.id, alert.episode),
    }
}

fn severity_emoji(s: Option<Severity>) -> &'static str {
    match s {
        Some(Severity::Sev1) => "🔴",
        Some(Severity::Sev2) => "🟠",
        Some(Severity::Sev3) => "🟡",
        Some(Severity::Sev4) => "🔵",
        None => "⚪",
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn button(text: &str, action: &str, value: i64, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": { "type": "plain_text", "text": text, "emoji": true },
        "action_id": action,
        "value": value.to_string(),
    });
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

/// What the message says about the incident it is linked to (private ones stay private).
#[derive(Debug, Clone)]
pub struct LinkedIncident {
    pub number: IncidentNumber,
    pub channel: Option<String>,
    pub private: bool,
}

/// The triage message of a group at `now`: text (notifications, search) and blocks. A silence
/// shows while it lasts (the message is synced again when it ends).
pub fn message(alert: &StoredAlert, linked: Option<&LinkedIncident>, now: DateTime<Utc>) -> (String, Value) {
    let resolved = alert.status == AlertStatus::Resolved;
    let emoji = if resolved {
        "✅"
    } else {
        severity_emoji(alert.severity)
    };
    let state = if resolved { "resolved" } else { "firing" };
    let text = format!("{emoji} Alert {state}: {}", cut(&alert.title, 200));
    let severity = match (&alert.severity, &alert.raw_severity) {
        (Some(s), Some(raw)) if !raw.eq_ignore_ascii_case(s.as_str()) => format!("{s} ({})", escape(&cut(raw, 40))),
        (Some(s), _) => s.to_string(),
        (None, Some(raw)) => escape(&cut(raw, 40)),
        (None, None) => "unknown".into(),
    };
    let mut fields = vec![
        format!("*Severity*\n{severity}"),
        format!(
            "*Service*\n{}",
            alert.service.as_deref().map(escape).unwrap_or_else(|| "none".into())
        ),
        format!("*Source*\n{}", escape(&cut(&alert.source, 100))),
        format!(
            "*Fired*\n{}×{}",
            alert.fire_count,
            if alert.flaps > 0 {
                format!(" (flapping: {} times)", alert.flaps)
            } else {
                String::new()
            }
        ),
        format!("*First seen*\n{}", blocks::slack_date(alert.first_seen)),
        format!("*Last seen*\n{}", blocks::slack_date(alert.last_seen)),
    ];
    if let Some(at) = alert.resolved_at {
        fields.push(format!("*Resolved*\n{}", blocks::slack_date(at)));
    }
    let mut out = vec![json!({
        "type": "section",
        "block_id": "alert",
        "text": { "type": "mrkdwn", "text": format!("{emoji} *{}* · {state}", escape(&cut(&alert.title, 2500))) },
        "fields": fields.into_iter().map(|f| json!({ "type": "mrkdwn", "text": f })).collect::<Vec<_>>(),
    })];
    if !alert.description.trim().is_empty() {
        out.push(json!({
            "type": "section",
            "block_id": "alert_description",
            "text": { "type": "mrkdwn", "text": escape(&cut(alert.description.trim(), 2900)) },
        }));
    }
    let mut context = Vec::new();
    if !alert.labels.is_empty() {
        let labels: Vec<String> = alert
            .labels
            .iter()
            .map(|(k, v)| format!("`{}={}`", escape(&cut(k, 60)), escape(&cut(v, 120))))
            .collect();
        context.push(cut(&labels.join(" "), 2900));
    }
    if !alert.links.is_empty() {
        let links: Vec<String> = alert
            .links
            .iter()
            .take(10)
            .map(|l| format!("<{}|{}>", escape(&l.url), escape(&cut(&l.title, 75))))
            .collect();
        context.push(cut(&links.join(" · "), 2900));
    }
    let mut status = Vec::new();
    if let Some(user) = &alert.acked_by {
        status.push(format!("👀 Acknowledged by <@{user}>"));
    }
    if let (Some(until), Some(by)) = (alert.silenced_until.filter(|u| *u > now), &alert.silenced_by) {
        status.push(format!("🔕 Silenced until {} by <@{by}>", blocks::slack_date(until)));
    }
    match linked {
        Some(l) if l.private => status.push("🔗 Linked to a private incident".into()),
        Some(l) => match &l.channel {
            Some(c) => status.push(format!("🔗 Linked to {} <#{c}>", l.number)),
            None => status.push(format!("🔗 Linked to {}", l.number)),
        },
        None => {}
    }
    if !status.is_empty() {
        context.push(status.join(" · "));
    }
    if !context.is_empty() {
        out.push(json!({
            "type": "context",
            "block_id": "alert_context",
            "elements": context.into_iter().map(|t| json!({ "type": "mrkdwn", "text": t })).collect::<Vec<_>>(),
        }));
    }
    let mut actions = Vec::new();
    if linked.is_none() {
        actions.push(button("Declare incident", ACTION_DECLARE, alert.id, Some("danger")));
        actions.push(button("Link to incident", ACTION_LINK, alert.id, None));
    }
    if alert.acked_by.is_none() && !resolved {
        actions.push(button("Acknowledge", ACTION_ACK, alert.id, None));
    }
    if !resolved {
        actions.push(button("Silence 1 h", ACTION_SILENCE, alert.id, None));
    }
    if !actions.is_empty() {
        out.push(json!({ "type": "actions", "block_id": "alert_actions", "elements": actions }));
    }
    (text, Value::Array(out))
}

/// The declare form, pre-filled from the alert: title, severity (from its labels), service
/// line, description with the alert and its links; submitting it links the alert.
pub fn declare_modal(service: &Service, alert: &StoredAlert, declarer: &str, origin: &str) -> Value {
    let policy = &service.policy;
    let mut view = blocks::declare_modal(policy, &alert.title, declarer, origin);
    view["private_metadata"] = json!({ "origin": origin, "alert": alert.id }).to_string().into();
    let Some(items) = view["blocks"].as_array_mut() else {
        return view;
    };
    for block in items.iter_mut() {
        match block["block_id"].as_str() {
            Some("severity") => {
                let wanted = alert.severity.unwrap_or(Severity::Sev3).as_str();
                let option = block["element"]["options"]
                    .as_array()
                    .and_then(|opts| opts.iter().find(|o| o["value"] == wanted).cloned());
                if let Some(option) = option {
                    block["element"]["initial_option"] = option;
                }
            }
            Some("services") => {
                let option = alert.service.as_ref().and_then(|s| {
                    block["element"]["options"]
                        .as_array()
                        .and_then(|opts| opts.iter().find(|o| o["value"] == s.as_str()).cloned())
                });
                if let Some(option) = option {
                    block["element"]["initial_options"] = json!([option]);
                }
            }
            Some("description") => {
                let max = block["element"]["max_length"].as_u64().unwrap_or(3000) as usize;
                let text = cut(&crate::alerts::declare_description(alert), max);
                block["element"]["initial_value"] = json!(text);
            }
            _ => {}
        }
    }
    view
}

/// The "Link to incident" form: pick one of the open incidents the person can see.
pub fn link_modal(alert: &StoredAlert, incidents: &[crate::incident::model::Incident]) -> Value {
    let options: Vec<Value> = incidents
        .iter()
        .take(100)
        .map(|i| {
            json!({
                "text": { "type": "plain_text", "text": cut(&format!("{} {} · {}", i.number, i.severity, i.title), 75) },
                "value": i.id.0.to_string(),
            })
        })
        .collect();
    let mut blocks = vec![json!({
        "type": "section",
        "block_id": "alert",
        "text": { "type": "mrkdwn", "text": format!("Link *{}* to an open incident: it goes on the incident's timeline.", escape(&cut(&alert.title, 2000))) },
    })];
    if options.is_empty() {
        blocks.push(json!({
            "type": "section",
            "block_id": "none",
            "text": { "type": "mrkdwn", "text": "There is no open incident you can see. Use *Declare incident* instead." },
        }));
        return json!({
            "type": "modal",
            "callback_id": LINK_CALLBACK,
            "title": { "type": "plain_text", "text": "Link to incident" },
            "close": { "type": "plain_text", "text": "Close" },
            "private_metadata": json!({ "alert": alert.id }).to_string(),
            "blocks": blocks,
        });
    }
    blocks.push(json!({
        "type": "input",
        "block_id": "incident",
        "label": { "type": "plain_text", "text": "Incident" },
        "element": { "type": "static_select", "action_id": "incident", "options": options,
                     "placeholder": { "type": "plain_text", "text": "Pick an open incident" } },
    }));
    json!({
        "type": "modal",
        "callback_id": LINK_CALLBACK,
        "title": { "type": "plain_text", "text": "Link to incident" },
        "submit": { "type": "plain_text", "text": "Link" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "private_metadata": json!({ "alert": alert.id }).to_string(),
        "blocks": blocks,
    })
}

/// The alert group named in a form's `private_metadata`.
pub fn alert_of(private_metadata: &str) -> Option<i64> {
    serde_json::from_str::<Value>(private_metadata).ok()?["alert"].as_i64()
}

fn tagged(content: SlackMessageContent, alert: &StoredAlert) -> SlackMessageContent {
    tag(alert).apply(content, &[])
}

/// Keeps the triage channel in step with the alert groups until `shutdown`, and declares the
/// incidents `[[alert_rules]]` asked for.
pub async fn run_poster(
    service: Service,
    web: SlackWeb,
    bot_user: String,
    wake: Arc<Notify>,
    shutdown: Arc<Notify>,
    opts: PosterOptions,
) {
    let db = service.db.clone();
    loop {
        let now = chrono::Utc::now();
        let claimed = match db.claim_alert_syncs(now, opts.lease, opts.batch).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot claim triage messages; retrying");
                Vec::new()
            }
        };
        let busy = !claimed.is_empty();
        for alert in claimed {
            sync_one(&service, &web, &bot_user, alert, &opts).await;
            if !opts.pace.is_zero() {
                tokio::time::sleep(opts.pace).await;
            }
        }
        crate::slack::alerts::auto_declare_due(&service, &web).await;
        if busy {
            continue;
        }
        let sleep = match db.next_alert_sync().await {
            Ok(Some(due)) => (due - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(opts.max_idle_sleep),
            _ => opts.max_idle_sleep,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = shutdown.notified() => break,
        }
    }
}

async fn linked(db: &Db, alert: &StoredAlert) -> Option<LinkedIncident> {
    let id = alert.incident_id?;
    match db.incident(IncidentId(id)).await {
        Ok(i) => Some(LinkedIncident {
            number: i.number,
            channel: i.channel_id,
            private: i.is_private,
        }),
        Err(_) => None,
    }
}

/// Posts or updates one group's message and records the version it shows.
async fn sync_one(service: &Service, web: &SlackWeb, bot_user: &str, alert: StoredAlert, opts: &PosterOptions) {
    let db = &service.db;
    let gap = service.policy.alerts.update_gap;
    let Some(channel) = service.policy.alerts.channel.clone() else {
        let _ = db.alert_sync_failed(alert.id, None, "no alerts_channel", false).await;
        return;
    };
    let link = linked(db, &alert).await;
    let now = Utc::now();
    let (text, blocks) = message(&alert, link.as_ref(), now);
    let content = blocks::content(&text, blocks);
    let result = match alert.message_ts.as_deref() {
        Some(ts) => {
            let where_ = alert.channel_id.clone().unwrap_or_else(|| channel.clone());
            match web.update(&where_, ts, content.clone()).await {
                Ok(()) => Ok((where_, ts.to_string())),
                // Someone deleted it: post it again so the group keeps a live message.
                Err(e) if matches!(e.code(), Some("message_not_found" | "cant_update_message")) => web
                    .post(&channel, tagged(content, &alert), None)
                    .await
                    .map(|ts| (channel.clone(), ts)),
                Err(e) => Err(e),
            }
        }
        None => {
            let mut found = None;
            if alert.uncertain {
                match web
                    .find_tagged_message(&channel, None, &tag(&alert), alert.first_seen, bot_user)
                    .await
                {
                    Ok(Some(ts)) => {
                        tracing::info!(alert = alert.id, %ts, "reconciled: the triage message was posted; adopting it");
                        found = Some(ts);
                    }
                    Ok(None) => {}
                    Err(e) if e.failure() == Failure::Permanent => {
                        tracing::warn!(alert = alert.id, error = %e, "cannot look for an earlier post; posting again")
                    }
                    Err(e) => {
                        let due = now + chrono::Duration::from_std(opts.base_backoff).unwrap_or_default();
                        let _ = db.alert_sync_failed(alert.id, Some(due), &e.to_string(), true).await;
                        return;
                    }
                }
            }
            match found {
                Some(ts) => Ok((channel.clone(), ts)),
                None => web
                    .post(&channel, tagged(content, &alert), None)
                    .await
                    .map(|ts| (channel.clone(), ts)),
            }
        }
    };
    match result {
        Ok((channel, ts)) => {
            if let Err(e) = db.alert_synced(alert.id, alert.version, &channel, &ts, now, gap).await {
                tracing::error!(alert = alert.id, error = %e, "alerts: cannot record the triage message");
            }
        }
        Err(e) => {
            let attempt = 1;
            let (due, uncertain) = match e.failure() {
                Failure::Permanent => {
                    tracing::error!(alert = alert.id, error = %e, "alerts: the triage message failed for good");
                    (None, false)
                }
                Failure::Temporary { retry_after } => {
                    let d = retry_after.unwrap_or(crate::outbox::backoff(opts.base_backoff, attempt));
                    (
                        Some(now + chrono::Duration::from_std(d).unwrap_or_default()),
                        alert.uncertain,
                    )
                }
                Failure::Uncertain => (
                    Some(now + chrono::Duration::from_std(opts.base_backoff).unwrap_or_default()),
                    alert.message_ts.is_none(),
                ),
            };
            tracing::warn!(alert = alert.id, error = %e, "alerts: triage message not synced; will retry");
            if let Err(e) = db.alert_sync_failed(alert.id, due, &e.to_string(), uncertain).await {
                tracing::error!(alert = alert.id, error = %e, "alerts: cannot record a failed sync");
            }
        }
    }
}

/// Declares the incidents `[[alert_rules]]` entries asked for (SPOC: the on-call group's first
/// member, else the rule's SPOC).
pub async fn auto_declare_due(service: &Service, web: &SlackWeb) {
    let due = match service.db.alerts_to_declare(10).await {
        Ok(d) => d,
        Err(e) => return tracing::warn!(error = %e, "alerts: cannot read pending automatic declarations"),
    };
    for alert in due {
        let Some(rule) = alert
            .auto_rule
            .and_then(|i| service.policy.alerts.rules.get(i as usize))
            .filter(|r| r.declare)
        else {
            let _ = service.db.clear_auto_rule(alert.id).await;
            continue;
        };
        let mut spoc = None;
        if let Some(group) = &rule.oncall_group {
            match web.usergroup_members(group).await {
                Ok(members) => spoc = members.into_iter().next(),
                Err(e) => {
                    tracing::warn!(group, error = %e, "alerts: cannot read the on-call group; using the rule's SPOC")
                }
            }
        }
        let Some(spoc) = spoc.or_else(|| rule.spoc.clone()).and_then(|u| UserId::parse(&u).ok()) else {
            tracing::warn!(
                alert = alert.id,
                "alerts: a rule matched but names no SPOC; posting only"
            );
            let _ = service.db.clear_auto_rule(alert.id).await;
            continue;
        };
        let Ok(title) = crate::incident::model::Title::parse(&alert.title) else {
            let _ = service.db.clear_auto_rule(alert.id).await;
            continue;
        };
        let new = crate::incident::model::NewIncident {
            title,
            severity: rule.declare_severity.or(alert.severity).unwrap_or(Severity::Sev3),
            services: alert.service.iter().cloned().collect(),
            description: format!(
                "{}\n{}",
                crate::alerts::AUTO_DECLARED,
                crate::alerts::declare_description(&alert)
            ),
            spoc: spoc.clone(),
            declared_by: spoc,
            is_private: false,
            origin_channel: None,
        };
        match service.auto_declare(&alert, &new).await {
            Ok(incident) => tracing::info!(alert = alert.id, incident = %incident.number, "declared by an alert rule"),
            Err(e) => tracing::warn!(alert = alert.id, error = %e, "alerts: automatic declaration failed; will retry"),
        }
    }
}

impl Handler {
    /// A click on a triage message's buttons (`alert_*` action ids; the value is the group).
    pub(crate) async fn alert_button(&self, ev: &SlackInteractionBlockActionsEvent, action: &str, user: &UserId) {
        let channel = ev.channel.as_ref().map(|c| c.id.to_string()).unwrap_or_default();
        let Some(group) = ev
            .actions
            .as_ref()
            .and_then(|a| a.first())
            .and_then(|a| a.value.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return;
        };
        let trigger = ev.trigger_id.to_string();
        let response_url = ev.response_url.as_ref().map(|u| u.0.to_string());
        let url = response_url.as_deref();
        let key = format!("trigger:{trigger}");
        let alert = match self.service.alert(group).await {
            Ok(a) => a,
            Err(refusal) => return self.tell_via(url, &channel, user, &refusal.to_string()),
        };
        match action {
            ACTION_DECLARE => {
                if let Some(id) = alert.incident_id {
                    let number = self
                        .service
                        .incident(IncidentId(id))
                        .await
                        .map(|i| i.number.to_string());
                    return self.tell_via(
                        url,
                        &channel,
                        user,
                        &format!(
                            "This alert is already linked to {}.",
                            number.unwrap_or_else(|_| "an incident".into())
                        ),
                    );
                }
                let view = declare_modal(&self.service, &alert, user.as_str(), &channel);
                self.spawn_open(trigger, channel, user.to_string(), response_url, view);
            }
            ACTION_LINK => match self.service.active_incidents(user).await {
                Ok(listing) => {
                    let view = link_modal(&alert, &listing.visible);
                    self.spawn_open(trigger, channel, user.to_string(), response_url, view);
                }
                Err(refusal) => self.tell_via(url, &channel, user, &refusal.to_string()),
            },
            ACTION_ACK => match self.service.acknowledge_alert(group, user, &key).await {
                Ok(AlertTriage::Done(_)) | Ok(AlertTriage::AlreadyDone) => {}
                Err(refusal) => self.tell_via(url, &channel, user, &refusal.to_string()),
            },
            ACTION_SILENCE => match self.service.silence_alert(group, user, &key).await {
                Ok(AlertTriage::Done(_)) => self.tell_via(
                    url,
                    &channel,
                    user,
                    "🔕 Silenced for 1 hour: this alert's message is not posted or updated until then.",
                ),
                Ok(AlertTriage::AlreadyDone) => {}
                Err(refusal) => self.tell_via(url, &channel, user, &refusal.to_string()),
            },
            _ => {}
        }
    }

    /// The "Link to incident" form's submission.
    pub(crate) async fn submit_alert_link(
        &self,
        user: &str,
        view: &Value,
    ) -> slack_morphism::prelude::SlackInteractionResponse {
        use slack_morphism::prelude::*;
        let field_error = |message: String| {
            SlackInteractionResponse::ViewSubmission(SlackViewSubmissionResponse::Errors(
                SlackViewSubmissionErrorsResponse::new(std::collections::HashMap::from([(
                    "incident".to_string(),
                    message,
                )])),
            ))
        };
        let Ok(actor) = UserId::parse(user) else {
            return field_error(format!("Slack sent an unexpected user id `{user}`."));
        };
        let Some(group) = alert_of(view["private_metadata"].as_str().unwrap_or_default()) else {
            return SlackInteractionResponse::Empty;
        };
        let picked = view["state"]["values"]["incident"]["incident"]["selected_option"]["value"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok());
        let Some(incident) = picked else {
            return field_error("Pick an incident.".into());
        };
        match self.service.link_alert(group, IncidentId(incident), &actor).await {
            Ok(_) => SlackInteractionResponse::Empty,
            Err(refusal) => field_error(refusal.to_string()),
        }
    }
}
