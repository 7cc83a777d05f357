//! Socket Mode: receives slash commands, interactions and events, answers them fast, and hands
//! slow Slack work to spawned tasks or the outbox.
//!
//! Envelopes arrive through our own transport ([`super::socket_mode`]), each in its own task;
//! its ack goes out when the handler returns. Handlers still only parse, maybe write once to
//! the database, and return within [`ACK_BUDGET`]: `views.open` (which must happen within 3 s
//! of the command) is spawned.

use super::blocks::{self, DECLARE_CALLBACK, FOLLOW_UP_CALLBACK, IMPACT_CALLBACK, RESOLVE_CALLBACK, UPDATE_CALLBACK};
use super::calendar::CHANGE_CALLBACK;
use super::commands::{self, Command};
use super::forms;
use super::socket_mode::{Envelope, EnvelopeHandler, SocketModeClient};
use super::web::{BotIdentity, SlackWeb};
use crate::config::Secret;
use crate::db::DeclareOutcome;
use crate::incident::change::{Applied, Change};
use crate::incident::followup::FollowUpState;
use crate::incident::model::{Incident, IncidentId, UserId};
use crate::metrics::METRICS;
use crate::service::{tag_span as tag, FollowUpClosed, FollowUpScope, Refusal, Service, TRY_AGAIN};
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::Instrument;

/// Everything an envelope's handling needs. It parses Slack's payloads into domain requests,
/// calls the use-cases of [`Service`], and renders their results as Slack answers.
pub struct Handler {
    pub service: Service,
    pub web: SlackWeb,
    pub identity: BotIdentity,
    /// Our app's id (from the app-level token), when the token says: envelopes naming another
    /// app are refused. Commands and form submissions do not carry it in slack-morphism's
    /// types; they are checked by workspace only.
    pub app_id: Option<String>,
}

pub use super::socket_mode::SocketOptions;

/// A running Socket Mode transport ([`super::socket_mode`]) feeding envelopes to a [`Handler`].
pub struct SocketMode {
    client: SocketModeClient,
}

/// Longest a callback may work before its ack goes out anyway, saying "try again": Slack's
/// deadline is 3 s from sending, and the envelope spends some of that on the wire. Only the
/// database can take this long (a held lock, an unreachable server); the unfinished work is
/// dropped, which rolls its transaction back, so nothing is half written.
const ACK_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

impl SocketMode {
    pub async fn start(handler: Arc<Handler>, app_token: &Secret, opts: &SocketOptions) -> anyhow::Result<SocketMode> {
        if !app_token.expose().starts_with("xapp-") {
            anyhow::bail!("the Socket Mode token must be an app-level token (xapp-…)");
        }
        let client = handler.web.client();
        let on_envelope: EnvelopeHandler = Arc::new(move |envelope| {
            let h = handler.clone();
            Box::pin(h.envelope(envelope))
        });
        Ok(SocketMode {
            client: SocketModeClient::start(client, app_token, opts.clone(), on_envelope),
        })
    }

    /// True while a connection is open and said hello; false from the first moment of
    /// [`SocketMode::shutdown`] on, for good.
    pub fn connected(&self) -> Arc<AtomicBool> {
        self.client.connected()
    }

    /// Marks the bot unready, stops reading envelopes and reconnecting, lets the envelopes
    /// being handled finish (up to Slack's 3 s ack deadline) so their acks go out, then closes
    /// the WebSocket connections.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
    }
}

/// An answer to a slash command only its author sees.
pub(super) fn ephemeral(text: &str) -> SlackCommandEventResponse {
    SlackCommandEventResponse::new(blocks::text(text)).with_response_type(SlackMessageResponseType::Ephemeral)
}

pub const HELP: &str = "*incident-bot* — run incidents in Slack.\n\
*Anywhere*\n\
• `/incident` or `/incident declare [title]` — declare an incident (opens a form)\n\
• `/incident list` — open incidents, worst first\n\
• `/incident report [weekly|monthly|YYYY-MM-DD..YYYY-MM-DD] [service:<name>] [public]` — incident report (default: last 7 days)\n\
• `/incident help` — this message\n\
*In an incident channel*\n\
• `/incident update` — post a stakeholder update (status, what we know, impact, next steps)\n\
• `/incident severity SEV2` — change severity (and the update cadence)\n\
• `/incident spoc @user` · `/incident role comms @user` · `/incident handover @user [note]`\n\
• `/incident ack` — acknowledge as SPOC\n\
• `/incident impact` — record the footprint (services, regions, customers, merchants, transactions)\n\
• `/incident note <text>` — add to the timeline\n\
• `/incident resolve` · `close` · `reopen` · `cancel`\n\
• `/incident status` · `/incident timeline [page]`\n\
*Follow-ups and reviews*\n\
• `/incident followup <text> [@owner] [due YYYY-MM-DD] [link]` — a post-incident action (no text: a form)\n\
• `/incident followup done N` · `/incident followup wontdo N` — close one (its owner or the SPOC)\n\
• `/incident followups` — this incident's; anywhere else: yours, then all open ones, overdue first\n\
• `/incident pir` — post-incident review draft (Markdown file) · `/incident pir done [link]` — mark it done\n\
*Vendor tickets*\n\
• `/incident vendor` (a form) or `/incident vendor <vendor> <ref> [link] [what we asked]` — raise a vendor ticket; it is chased at the vendor's SLA\n\
• `/incident vendor reply <V1|ref> <what they said>` · `escalate <V1|ref> [note]` · `close <V1|ref> [note]`\n\
• `/incident vendors [vendor]` (anywhere) — open vendor tickets across incidents, oldest first\n\
*Changes*\n\
• `/incident change CHG-N` — link a change as a suspected cause · `/change help` — the change calendar";

/// Counts an envelope as received when created and, with its handling time, as acked when
/// dropped (the transport queues the ack right after).
struct EnvelopeTimer {
    kind: &'static str,
    started: std::time::Instant,
}

impl EnvelopeTimer {
    fn start(kind: &'static str) -> Self {
        METRICS.envelopes_received.inc(&[kind]);
        EnvelopeTimer {
            kind,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for EnvelopeTimer {
    fn drop(&mut self) {
        METRICS.envelopes_acked.inc(&[self.kind]);
        METRICS.ack_latency.observe(self.started.elapsed());
    }
}

/// A command's answer as an ack payload; nothing to show is an empty ack (`{"envelope_id": …}`
/// alone, as Slack documents it), not `"payload": {}`.
fn command_ack_payload(response: SlackCommandEventResponse) -> Option<serde_json::Value> {
    let payload = serde_json::to_value(response).ok()?;
    let shows = |key: &str| payload.get(key).is_some_and(|v| !v.is_null());
    (shows("text") || shows("blocks")).then_some(payload)
}

/// An envelope whose payload does not parse is acked (Slack would only redeliver it) and logged
/// by type and envelope id; the parse error may quote what people typed, so it is debug only.
fn unparsed(kind: &str, envelope_id: &str, error: &serde_json::Error) -> Option<serde_json::Value> {
    tracing::warn!(kind, envelope_id, "envelope payload does not parse; acked and ignored");
    tracing::debug!(kind, envelope_id, %error, "envelope parse error");
    None
}

impl Handler {
    /// One envelope from the transport, answered with its ack payload (`None`: empty ack).
    pub async fn envelope(self: Arc<Self>, envelope: Envelope) -> Option<serde_json::Value> {
        if envelope.retry_attempt > 0 {
            tracing::info!(
                envelope_id = %envelope.id,
                kind = %envelope.kind,
                retry_attempt = envelope.retry_attempt,
                retry_reason = envelope.retry_reason.as_deref().unwrap_or(""),
                "Slack redelivered an envelope"
            );
        }
        match envelope.kind.as_str() {
            "slash_commands" => {
                let _timer = EnvelopeTimer::start("command");
                match serde_json::from_value::<SlackCommandEvent>(envelope.payload) {
                    Ok(event) => command_ack_payload(self.on_command(event, &envelope.id).await),
                    Err(e) => unparsed("slash_commands", &envelope.id, &e),
                }
            }
            "interactive" => {
                let _timer = EnvelopeTimer::start("interaction");
                match serde_json::from_value::<SlackInteractionEvent>(envelope.payload) {
                    Ok(event) => match self.on_interaction(event, &envelope.id).await {
                        SlackInteractionResponse::Empty => None,
                        response => serde_json::to_value(response).ok(),
                    },
                    Err(e) => unparsed("interactive", &envelope.id, &e),
                }
            }
            "events_api" => {
                let _timer = EnvelopeTimer::start("push");
                match serde_json::from_value::<SlackPushEventCallback>(envelope.payload) {
                    Ok(event) => {
                        let _span = envelope_span("push", &envelope.id).entered();
                        self.on_push(event);
                        None
                    }
                    Err(e) => unparsed("events_api", &envelope.id, &e),
                }
            }
            other => {
                tracing::debug!(kind = other, envelope_id = %envelope.id, "envelope of a type we do not handle; acked");
                None
            }
        }
    }

    async fn on_command(&self, event: SlackCommandEvent, envelope_id: &str) -> SlackCommandEventResponse {
        let span = envelope_span("command", envelope_id);
        match tokio::time::timeout(ACK_BUDGET, self.command(event).instrument(span.clone()))
            .instrument(span)
            .await
        {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(
                    "a command was not handled within {ACK_BUDGET:?} (database unavailable?); answered \"try again\""
                );
                ephemeral(TRY_AGAIN)
            }
        }
    }

    async fn on_interaction(&self, event: SlackInteractionEvent, envelope_id: &str) -> SlackInteractionResponse {
        let fallback = TooSlow::of(&event);
        let span = envelope_span("interaction", envelope_id);
        match tokio::time::timeout(ACK_BUDGET, self.interaction(event).instrument(span.clone()))
            .instrument(span)
            .await
        {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(
                    "an interaction was not handled within {ACK_BUDGET:?} (database unavailable?); answered \"try again\""
                );
                fallback.answer(self)
            }
        }
    }

    /// Events API: a 📌 reaction copies the message onto the timeline. Slack redelivers events
    /// it saw no ack for (`retry_attempt`); the change's idempotency key
    /// (`pin:<channel>:<ts>:<user>`) makes a redelivered one apply once.
    fn on_push(self: &Arc<Self>, event: SlackPushEventCallback) {
        if self.foreign_app(event.team_id.as_ref(), event.api_app_id.as_ref()) {
            return;
        }
        if let SlackEventCallbackBody::ReactionAdded(reaction) = event.event {
            if reaction.reaction.0 == PIN_REACTION {
                if let SlackReactionsItem::Message(message) = reaction.item {
                    let channel = message.origin.channel.map(|c| c.to_string()).unwrap_or_default();
                    self.pin_to_timeline(reaction.user.to_string(), channel, message.origin.ts.to_string());
                }
            }
        }
    }
}

/// The span every envelope is handled in; `incident` is recorded once the handler knows it
/// (see [`tag`]), and work spawned from the handler stays in it.
fn envelope_span(kind: &'static str, envelope_id: &str) -> tracing::Span {
    tracing::info_span!("envelope", kind, envelope_id, incident = tracing::field::Empty)
}

/// Spawns work off the ack path, in the envelope's span.
fn spawn_here(work: impl std::future::Future<Output = ()> + Send + 'static) {
    tokio::spawn(work.in_current_span());
}

/// Where to say "try again" when an interaction runs out of [`ACK_BUDGET`].
enum TooSlow {
    /// Under this input block of the submitted form (which stays open).
    Field(&'static str),
    /// Ephemerally to the user who clicked, in the channel.
    Tell {
        channel: String,
        user: UserId,
    },
    Nothing,
}

impl TooSlow {
    fn of(event: &SlackInteractionEvent) -> TooSlow {
        match event {
            SlackInteractionEvent::ViewSubmission(ev) => {
                let view = serde_json::to_value(&ev.view).unwrap_or_default();
                match view["callback_id"].as_str().unwrap_or_default() {
                    DECLARE_CALLBACK => TooSlow::Field("title"),
                    super::alerts::LINK_CALLBACK => TooSlow::Field("incident"),
                    UPDATE_CALLBACK => TooSlow::Field("known"),
                    IMPACT_CALLBACK => TooSlow::Field("customers"),
                    RESOLVE_CALLBACK => TooSlow::Field("summary"),
                    CHANGE_CALLBACK => TooSlow::Field("title"),
                    _ => TooSlow::Nothing,
                }
            }
            SlackInteractionEvent::BlockActions(ev) => {
                match (
                    ev.channel.as_ref(),
                    ev.user.as_ref().and_then(|u| UserId::parse(u.id.as_ref()).ok()),
                ) {
                    (Some(channel), Some(user)) => TooSlow::Tell {
                        channel: channel.id.to_string(),
                        user,
                    },
                    _ => TooSlow::Nothing,
                }
            }
            _ => TooSlow::Nothing,
        }
    }

    fn answer(self, h: &Handler) -> SlackInteractionResponse {
        match self {
            TooSlow::Field(field) => errors([(field, TRY_AGAIN.to_string())]),
            TooSlow::Tell { channel, user } => {
                h.tell(&channel, &user, TRY_AGAIN);
                SlackInteractionResponse::Empty
            }
            TooSlow::Nothing => SlackInteractionResponse::Empty,
        }
    }
}

/// The reaction that copies a message onto the incident timeline.
pub const PIN_REACTION: &str = "pushpin";

impl Handler {
    /// Envelopes from another workspace are refused (and logged).
    fn foreign(&self, team_id: &str) -> bool {
        if team_id != self.identity.team_id {
            tracing::warn!(team_id, expected = %self.identity.team_id, "refused an envelope from another workspace");
            true
        } else {
            false
        }
    }

    /// Envelopes from another workspace, or for another app, are refused (and logged).
    fn foreign_app(&self, team_id: &str, app_id: &str) -> bool {
        if self.foreign(team_id) {
            return true;
        }
        match self.app_id.as_deref() {
            Some(ours) if ours != app_id => {
                tracing::warn!(app_id, expected = ours, "refused an envelope for another app");
                true
            }
            _ => false,
        }
    }

    pub async fn command(&self, event: SlackCommandEvent) -> SlackCommandEventResponse {
        if self.foreign(event.team_id.as_ref()) {
            return ephemeral("This bot serves another workspace.");
        }
        if event.command.0 == super::calendar::COMMAND {
            return self.change_command(&event).await;
        }
        let text = event.text.as_deref().unwrap_or_default();
        // What people type is only logged at debug level.
        tracing::debug!(text, "slash command");
        let command = match commands::parse(text) {
            Ok(c) => c,
            // The problem carries its own usage line (see `commands::parse`).
            Err(problem) => return ephemeral(&problem),
        };
        let Ok(user) = UserId::parse(event.user_id.as_ref()) else {
            return ephemeral("Slack sent an unexpected user id.");
        };
        match command {
            Command::Declare { title } => {
                let view =
                    blocks::declare_modal(&self.service.policy, &title, user.as_str(), event.channel_id.as_ref());
                self.open_modal(&event, view);
                SlackCommandEventResponse::new(SlackMessageContent::new())
            }
            Command::Help => ephemeral(HELP),
            Command::List => self.list(&event, &user).await,
            Command::FollowUps => self.follow_ups(&event, &user).await,
            Command::Vendors { vendor } => self.vendors_list(&event, &user, vendor).await,
            Command::Report {
                period,
                service,
                public,
            } => self.report(&event, &user, period, service, public).await,
            other => {
                let incident = match self.service.incident_in_channel(event.channel_id.as_ref()).await {
                    Ok(Some(i)) => {
                        tag(&i.number);
                        i
                    }
                    Ok(None) => {
                        return ephemeral(
                            "Run that in the incident's own channel (`/incident list` shows them); \
                             here you can `/incident declare`.",
                        )
                    }
                    Err(refusal) => return refused(refusal),
                };
                self.incident_command(&event, &user, incident, other).await
            }
        }
    }

    async fn incident_command(
        &self,
        event: &SlackCommandEvent,
        user: &UserId,
        incident: Incident,
        command: Command,
    ) -> SlackCommandEventResponse {
        let change = match command {
            Command::Update | Command::Impact | Command::Resolve => {
                use crate::incident::change::Form;
                let form = match command {
                    Command::Update => Form::Update,
                    Command::Impact => Form::Impact,
                    _ => Form::Resolve,
                };
                // An illegal move is refused here, before any form opens.
                if let Some(why) = incident.refuses_form(form) {
                    return ephemeral(&why);
                }
                let view = match command {
                    Command::Update => blocks::update_modal(&incident),
                    Command::Impact => blocks::impact_modal(&incident, &self.service.policy),
                    _ => blocks::resolve_modal(&incident, chrono::Utc::now(), &self.linked_changes(&incident).await),
                };
                self.open_modal(event, view);
                return SlackCommandEventResponse::new(SlackMessageContent::new());
            }
            Command::Status => {
                let mut status = blocks::status_blocks(&incident, &self.service.policy);
                super::vendors::add_waiting_on(&self.service.db, &incident, &mut status).await;
                return SlackCommandEventResponse::new(blocks::content(&blocks::summary_text(&incident), status))
                    .with_response_type(SlackMessageResponseType::Ephemeral);
            }
            Command::Timeline { page } => {
                return match self.service.timeline(incident.id).await {
                    Ok(events) => ephemeral(&blocks::timeline_text(&incident, &events, page)),
                    Err(refusal) => refused(refusal),
                }
            }
            Command::Role { role, .. } if !self.service.policy.roles.contains(&role) => {
                return ephemeral(&format!(
                    "`{}` is not a role here. Roles: spoc, {} (`/incident spoc @user` for the SPOC).",
                    blocks::truncate(&role, 40),
                    self.service.policy.roles.join(", ")
                ))
            }
            Command::Severity(s) => Change::Severity(s),
            Command::Spoc(u) => Change::Spoc(u),
            Command::Role { role, user } => Change::Role { role, user },
            Command::Handover { to, note } => Change::Handover { to, note },
            Command::Note(text) => Change::Note { text, link: None },
            Command::Ack => Change::Acknowledge,
            Command::Close => Change::Close,
            Command::Reopen => Change::Reopen,
            Command::Cancel => Change::Cancel,
            Command::FollowUp(None) => {
                if incident.was_canceled() {
                    return ephemeral(&format!("{} was canceled: it takes no follow-ups.", incident.number));
                }
                self.open_modal(event, blocks::follow_up_modal(&incident));
                return SlackCommandEventResponse::new(SlackMessageContent::new());
            }
            Command::FollowUp(Some(request)) => match self.service.new_follow_up(request).await {
                Ok(item) => Change::AddFollowUps(vec![item]),
                Err(refusal) => return ephemeral(&format!("{refusal}\nUsage: {}", commands::FOLLOW_UP_USAGE)),
            },
            Command::CloseFollowUp { seq, state } => {
                let key = format!("trigger:{}", event.trigger_id);
                return ephemeral(&closed_text(
                    self.service
                        .close_follow_up_seq(&incident, seq, state, user, &key)
                        .await,
                ));
            }
            Command::Pir => {
                if let Some(why) = crate::incident::pir::draft_refused(&incident) {
                    return ephemeral(&why);
                }
                self.spawn_review_draft(
                    incident.id,
                    event.channel_id.to_string(),
                    user.clone(),
                    Some(event.response_url.0.to_string()),
                );
                return ephemeral(&format!(
                    "📝 Drafting the post-incident review of {} from its timeline; it will be posted here as a file.",
                    incident.number
                ));
            }
            Command::PirDone { link } => Change::PirDone { link },
            Command::Vendor(command) => return self.vendor_command(event, user, incident, command).await,
            Command::Customer => return self.customer_command(event, incident).await,
            Command::LinkChange(number) => {
                return match self.service.link_change(&incident, number, user).await {
                    Ok(change) => ephemeral(&format!(
                        "🔗 Linked {} to {} as a suspected cause (on both timelines). Its state: {}.",
                        blocks::escape(&change.summary()),
                        incident.number,
                        change.state
                    )),
                    Err(refusal) => refused(refusal),
                }
            }
            Command::Declare { .. }
            | Command::Help
            | Command::List
            | Command::Report { .. }
            | Command::FollowUps
            | Command::Vendors { .. } => {
                unreachable!("handled by command()")
            }
        };
        // SPOCs, role holders and handover targets are checked with users.info like follow-up
        // owners: an unknown, deactivated or bot user is refused here, not at the invite.
        if let Change::Spoc(person) | Change::Role { user: person, .. } | Change::Handover { to: person, .. } = &change
        {
            if let Err(why) = self.service.check_person(person).await {
                return refused(why);
            }
        }
        let key = format!("trigger:{}", event.trigger_id);
        match self.change(incident.id, &change, user, &key).await {
            Ok(applied) => match confirmation(&change, &incident, applied.as_ref()) {
                Some(text) => ephemeral(&text),
                None => SlackCommandEventResponse::new(SlackMessageContent::new()),
            },
            Err(message) => ephemeral(&message),
        }
    }

    /// Applies a change through the service; `Ok(None)` when it was applied before (a
    /// redelivery), `Err` is what to tell the user.
    async fn change(
        &self,
        id: IncidentId,
        change: &Change,
        user: &UserId,
        key: &str,
    ) -> Result<Option<Applied>, String> {
        self.service
            .apply(id, change, user, key)
            .await
            .map_err(|r| r.to_string())
    }

    /// `/incident list`: private incidents are shown only to their channel's members.
    async fn list(&self, event: &SlackCommandEvent, user: &UserId) -> SlackCommandEventResponse {
        let (service, user) = (self.service.clone(), user.clone());
        let work = async move {
            match service.active_incidents(&user).await {
                Ok(listing) => blocks::text(&blocks::list_text(&listing.visible, listing.hidden)),
                Err(refusal) => blocks::text(&refusal.to_string()),
            }
        };
        self.answer_within_budget(event, work).await
    }

    /// `/incident followups`: in an incident channel, that incident's follow-ups; elsewhere the
    /// open ones of every incident, the caller's first, then overdue first. Follow-ups of
    /// private incidents are shown only to their members (others see a count).
    async fn follow_ups(&self, event: &SlackCommandEvent, user: &UserId) -> SlackCommandEventResponse {
        let (service, channel, user) = (self.service.clone(), event.channel_id.to_string(), user.clone());
        let work = async move {
            let listing = match service.follow_ups(&channel, &user).await {
                Ok(listing) => listing,
                Err(refusal) => return blocks::text(&refusal.to_string()),
            };
            let heading = match &listing.scope {
                FollowUpScope::Incident(number) => format!("*Follow-ups of {number}*"),
                FollowUpScope::Open => "*Open follow-ups* — yours first, then overdue first".to_string(),
            };
            let (text, blocks) = blocks::follow_up_list(
                &heading,
                &listing.items.visible,
                listing.items.hidden,
                chrono::Utc::now(),
            );
            blocks::content(&text, blocks)
        };
        self.answer_within_budget(event, work).await
    }

    /// Answers a command in its ack when `work` is done within the ack budget; otherwise the
    /// ack says the answer is coming and `work`'s result goes through the command's
    /// `response_url` (it works in any channel, unlike `chat.postEphemeral`).
    pub(super) async fn answer_within_budget(
        &self,
        event: &SlackCommandEvent,
        work: impl std::future::Future<Output = SlackMessageContent> + Send + 'static,
    ) -> SlackCommandEventResponse {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<SlackMessageContent>();
        let (web, response_url, channel, user) = (
            self.web.clone(),
            event.response_url.0.to_string(),
            event.channel_id.to_string(),
            event.user_id.to_string(),
        );
        spawn_here(async move {
            let content = work.await;
            if let Err(late) = tx.send(content) {
                if let Err(e) = web.tell_person(Some(&response_url), &channel, &user, late).await {
                    tracing::warn!(error = %e, "cannot post a late answer");
                }
            }
        });
        let ready = match tokio::time::timeout(super::report::INLINE_BUDGET, &mut rx).await {
            Ok(Ok(content)) => Some(content),
            _ => {
                // Whatever was sent before closing is still ours; later results get posted.
                rx.close();
                rx.try_recv().ok()
            }
        };
        match ready {
            Some(content) => {
                SlackCommandEventResponse::new(content).with_response_type(SlackMessageResponseType::Ephemeral)
            }
            None => ephemeral("⏳ Checking which private incidents you can see; the answer follows here in a moment."),
        }
    }

    /// Drafts the post-incident review and shares it in `channel` as a Markdown file. Spawned:
    /// it reads the whole record and makes several Slack calls; failures are told to `user`.
    fn spawn_review_draft(&self, id: IncidentId, channel: String, user: UserId, response_url: Option<String>) {
        let (service, web) = (self.service.clone(), self.web.clone());
        spawn_here(async move {
            let result = async {
                let (record, markdown) = service.review_draft(id).await?;
                let number = record.incident.number;
                web.upload_file(
                    &channel,
                    &format!("{number}-post-incident-review.md"),
                    &format!("Post-incident review draft: {number}"),
                    &format!(
                        "📝 Draft post-incident review of {number} (asked by <@{user}>). Complete it, file it, then `/incident pir done [link]`."
                    ),
                    markdown.into_bytes(),
                    "text/markdown",
                )
                .await?;
                anyhow::Ok(number)
            }
            .await;
            match result {
                Ok(number) => tracing::info!(incident = %number, "review draft shared"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot share a review draft");
                    let text = format!("⚠️ I could not post the review draft ({e}). Please try `/incident pir` again.");
                    let told = web
                        .tell_person(response_url.as_deref(), &channel, user.as_str(), blocks::text(&text))
                        .await;
                    if let Err(e) = told {
                        tracing::warn!(error = %e, "cannot tell the user the draft failed");
                    }
                }
            }
        });
    }

    /// Spawned: the ack must not wait for `views.open`, and both must land within 3 s.
    pub(super) fn open_modal(&self, event: &SlackCommandEvent, view: serde_json::Value) {
        self.spawn_open(
            event.trigger_id.to_string(),
            event.channel_id.to_string(),
            event.user_id.to_string(),
            Some(event.response_url.0.to_string()),
            view,
        );
    }

    pub(crate) fn spawn_open(
        &self,
        trigger: String,
        channel: String,
        user: String,
        response_url: Option<String>,
        view: serde_json::Value,
    ) {
        let web = self.web.clone();
        spawn_here(async move {
            let result = match blocks::modal(view) {
                Ok(view) => web.open_view(&trigger, view).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("bug: the modal does not fit Slack's model: {e}")),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot open a modal");
                let text = format!("⚠️ I could not open the form ({e}). Please try again.");
                let told = web
                    .tell_person(response_url.as_deref(), &channel, &user, blocks::text(&text))
                    .await;
                if let Err(e) = told {
                    tracing::warn!(error = %e, "cannot tell the user the form did not open");
                }
            }
        });
    }

    pub async fn interaction(&self, event: SlackInteractionEvent) -> SlackInteractionResponse {
        match event {
            SlackInteractionEvent::ViewSubmission(ev) => {
                if self.foreign(ev.team.id.as_ref()) {
                    return SlackInteractionResponse::Empty;
                }
                let view = serde_json::to_value(&ev.view).unwrap_or_default();
                let user = ev.user.id.as_ref();
                match view["callback_id"].as_str().unwrap_or_default() {
                    DECLARE_CALLBACK => self.submit_declare(user, &view).await,
                    super::alerts::LINK_CALLBACK => self.submit_alert_link(user, &view).await,
                    CHANGE_CALLBACK => self.submit_change_form(user, &view).await,
                    UPDATE_CALLBACK | IMPACT_CALLBACK | RESOLVE_CALLBACK | FOLLOW_UP_CALLBACK => {
                        self.submit_change(user, &view).await
                    }
                    super::vendors::VENDOR_CALLBACK => self.submit_vendor(user, &view).await,
                    super::vendors::REPLY_CALLBACK => self.submit_vendor_reply(user, &view).await,
                    super::comms::CUSTOMER_CALLBACK => self.submit_customer_update(user, &view).await,
                    other => {
                        tracing::warn!(callback = other, "view submission for an unknown modal");
                        SlackInteractionResponse::Empty
                    }
                }
            }
            SlackInteractionEvent::BlockActions(ev) => {
                if !self.foreign_app(ev.team.id.as_ref(), ev.api_app_id.as_ref()) {
                    self.button(&ev).await;
                }
                SlackInteractionResponse::Empty
            }
            _ => SlackInteractionResponse::Empty,
        }
    }

    /// A click on the card: acknowledge now; update and resolve open their forms.
    async fn button(&self, ev: &SlackInteractionBlockActionsEvent) {
        let Some(action) = ev.actions.as_ref().and_then(|a| a.first()) else {
            return;
        };
        let Some(user) = ev.user.as_ref().and_then(|u| UserId::parse(u.id.as_ref()).ok()) else {
            return;
        };
        let channel = ev.channel.as_ref().map(|c| c.id.to_string()).unwrap_or_default();
        if action.action_id.as_ref() == blocks::ACTION_FOLLOW_UP_DONE {
            return self.follow_up_done_button(ev, action, &user, &channel).await;
        }
        if super::vendors::is_vendor_action(action.action_id.as_ref()) {
            return self.vendor_button(ev, action, &user, &channel).await;
        }
        if super::comms::is_customer_update_action(action.action_id.as_ref()) {
            return self.customer_update_button(ev, action, &user, &channel).await;
        }
        if action.action_id.as_ref().starts_with("alert_") {
            return self.alert_button(ev, action.action_id.as_ref(), &user).await;
        }
        let Some(id) = action
            .value
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .map(IncidentId)
        else {
            return;
        };
        let incident = match self.service.incident(id).await {
            Ok(i) => {
                tag(&i.number);
                i
            }
            Err(refusal) => return self.tell(&channel, &user, &refusal.to_string()),
        };
        let trigger = ev.trigger_id.to_string();
        let response_url = ev.response_url.as_ref().map(|u| u.0.to_string());
        let url = response_url.as_deref();
        match action.action_id.as_ref() {
            super::comms::ACTION_CUSTOMER => self.open_customer_form(ev, &incident, None, &user, &channel).await,
            blocks::ACTION_UPDATE if incident.status.is_open() => self.spawn_open(
                trigger,
                channel,
                user.to_string(),
                response_url,
                blocks::update_modal(&incident),
            ),
            blocks::ACTION_RESOLVE if incident.status.is_open() => {
                let linked = self.linked_changes(&incident).await;
                self.spawn_open(
                    trigger,
                    channel,
                    user.to_string(),
                    response_url,
                    blocks::resolve_modal(&incident, chrono::Utc::now(), &linked),
                )
            }
            blocks::ACTION_FOLLOW_UP if !incident.was_canceled() => self.spawn_open(
                trigger,
                channel,
                user.to_string(),
                response_url,
                blocks::follow_up_modal(&incident),
            ),
            blocks::ACTION_PIR_DRAFT if crate::incident::pir::draft_refused(&incident).is_none() => {
                let target = incident.channel_id.clone().unwrap_or(channel);
                self.spawn_review_draft(id, target, user, response_url)
            }
            blocks::ACTION_PIR_DONE => {
                let change = Change::PirDone { link: None };
                if let Err(message) = self.change(id, &change, &user, &format!("trigger:{trigger}")).await {
                    self.tell_via(url, &channel, &user, &message);
                }
            }
            blocks::ACTION_SNOOZE => match self
                .change(id, &Change::Snooze, &user, &format!("trigger:{trigger}"))
                .await
            {
                Ok(_) => self.tell_via(
                    url,
                    &channel,
                    &user,
                    &format!(
                        "💤 Snoozed: I'll remind again in 15 minutes unless {} gets an update.",
                        incident.number
                    ),
                ),
                Err(message) => self.tell_via(url, &channel, &user, &message),
            },
            blocks::ACTION_ACK => {
                if let Err(message) = self
                    .change(id, &Change::Acknowledge, &user, &format!("trigger:{trigger}"))
                    .await
                {
                    self.tell_via(url, &channel, &user, &message);
                }
            }
            _ => self.tell_via(
                url,
                &channel,
                &user,
                &format!(
                    "{} is {}; that button no longer applies.",
                    incident.number, incident.status
                ),
            ),
        }
    }

    /// "Done" on a follow-up (in a list, or on its reminder, maybe in a DM): its value is the
    /// follow-up's id. The answer goes where the click was; in a DM, as a message.
    async fn follow_up_done_button(
        &self,
        ev: &SlackInteractionBlockActionsEvent,
        action: &SlackInteractionActionInfo,
        user: &UserId,
        channel: &str,
    ) {
        let Some(follow_up) = action.value.as_deref().and_then(|v| v.parse::<i64>().ok()) else {
            return;
        };
        let key = format!("trigger:{}", ev.trigger_id);
        let answer = closed_text(
            self.service
                .close_follow_up_by_id(follow_up, FollowUpState::Done, user, &key)
                .await,
        );
        // The click's response_url answers anywhere (a list in a channel the bot is not in, a
        // reminder in a DM); without one, a DM message or an ephemeral where the bot is.
        if let Some(url) = ev.response_url.as_ref() {
            self.tell_via(Some(url.0.as_str()), channel, user, &answer);
        } else if channel.starts_with('D') || channel.is_empty() {
            let (web, user, answer) = (self.web.clone(), user.to_string(), answer);
            spawn_here(async move {
                if let Err(e) = web.post(&user, blocks::text(&answer), None).await {
                    tracing::warn!(error = %e, "cannot answer a follow-up click in a DM");
                }
            });
        } else {
            self.tell(channel, user, &answer);
        }
    }

    /// 📌 on a message in an incident channel: the message (text and link) becomes a timeline
    /// note. Spawned: it needs two Slack calls, and the ack must not wait for them.
    fn pin_to_timeline(self: &Arc<Self>, user: String, channel: String, ts: String) {
        let h = self.clone();
        spawn_here(async move {
            let Ok(actor) = UserId::parse(&user) else { return };
            let incident = match h.service.incident_in_channel(&channel).await {
                Ok(Some(i)) => i,
                Ok(None) => return, // not an incident channel
                Err(refusal) => return h.tell(&channel, &actor, &refusal.to_string()),
            };
            let (text, link) = match h.web.message(&channel, &ts).await {
                Ok(found) => found,
                Err(e) => return tracing::warn!(error = %e, "cannot read a pinned message"),
            };
            // Message text comes entity-encoded, with `<@U…>` mentions without names: the
            // timeline keeps plain text, mentions as `@handle` (the id when a lookup fails).
            use crate::slack::text;
            let mut names = text::Names::new();
            for id in text::unnamed_mentions(&text).into_iter().take(10) {
                if let Ok(Ok(name)) = h.web.check_person(&id).await {
                    names.insert(id, name);
                }
            }
            let text = text::plain_with(&text, text::Lines::Many, &names);
            let text = if text.trim().is_empty() {
                "(message without text)".to_string()
            } else {
                text
            };
            let key = format!("pin:{channel}:{ts}:{user}");
            if let Err(message) = h.change(incident.id, &Change::Note { text, link }, &actor, &key).await {
                h.tell(&channel, &actor, &message);
            }
        });
    }

    /// An ephemeral note to one person, off the ack path.
    fn tell(&self, channel: &str, user: &UserId, text: &str) {
        self.tell_via(None, channel, user, text)
    }

    /// A note to one person, off the ack path: through the interaction's `response_url` when
    /// there is one, else an ephemeral where the bot is a member (see [`SlackWeb::tell_person`]).
    pub(crate) fn tell_via(&self, response_url: Option<&str>, channel: &str, user: &UserId, text: &str) {
        let (web, url, channel, user, text) = (
            self.web.clone(),
            response_url.map(str::to_string),
            channel.to_string(),
            user.to_string(),
            text.to_string(),
        );
        spawn_here(async move {
            if let Err(e) = web
                .tell_person(url.as_deref(), &channel, &user, blocks::text(&text))
                .await
            {
                tracing::warn!(error = %e, "cannot post an ephemeral message");
            }
        });
    }

    /// Update, impact and resolve forms.
    async fn submit_change(&self, user: &str, view: &serde_json::Value) -> SlackInteractionResponse {
        let callback = view["callback_id"].as_str().unwrap_or_default();
        let values = &view["state"]["values"];
        let Ok(actor) = UserId::parse(user) else {
            return errors([("known", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let Some(id) = forms::incident_of(view["private_metadata"].as_str().unwrap_or_default()) else {
            return SlackInteractionResponse::Empty;
        };
        let (change, field) = match callback {
            UPDATE_CALLBACK => (forms::parse_update(values).map(Change::Update), "known"),
            IMPACT_CALLBACK => (
                forms::parse_impact(values, &self.service.policy)
                    .map(|(services, footprint)| Change::Impact { services, footprint }),
                "customers",
            ),
            FOLLOW_UP_CALLBACK => (
                forms::parse_follow_up(values, self.service.today()).map(|f| Change::AddFollowUps(vec![f])),
                "text",
            ),
            _ => (forms::parse_resolve(values, self.service.today()), "summary"),
        };
        let change = match change {
            Ok(c) => c,
            Err(field_errors) => return errors(field_errors),
        };
        // The resolve form is checked against the incident (one read): the linked change named
        // as the cause (issue 12) must be one of its own, and "Service restored at" is checked
        // here so its errors (and the clamp to the declaration) concern that field; if the read
        // fails, `apply` still checks the time.
        let mut caused_by = None;
        let change = match change {
            Change::Resolve { .. } => {
                let incident = self.service.incident(id).await;
                match forms::parse_caused_by(values) {
                    Ok(Some(number)) => {
                        let incident = match &incident {
                            Ok(i) => i,
                            Err(refusal) => return errors([("caused_by", refusal.to_string())]),
                        };
                        if !self.linked_changes(incident).await.iter().any(|c| c.number == number) {
                            return errors([("caused_by", format!("{number} is not linked to {}.", incident.number))]);
                        }
                        caused_by = Some(number);
                    }
                    Ok(None) => {}
                    Err(field_errors) => return errors(field_errors),
                }
                match &incident {
                    Ok(incident) => match forms::check_restored_at(change, incident, chrono::Utc::now()) {
                        Ok(c) => c,
                        Err(field_errors) => return errors(field_errors),
                    },
                    Err(_) => change,
                }
            }
            other => other,
        };
        // Owners must be people of this workspace (one users.info call; forms pick one owner).
        let owner = match &change {
            Change::AddFollowUps(items) => items.first().and_then(|f| f.owner.clone()).map(|o| (o, "owner")),
            Change::Resolve { follow_ups, .. } => follow_ups
                .first()
                .and_then(|f| f.owner.clone())
                .map(|o| (o, "follow_ups_owner")),
            _ => None,
        };
        if let Some((owner, block)) = owner {
            if let Err(why) = self.service.check_person(&owner).await {
                return errors([(block, why.to_string())]);
            }
        }
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self.change(id, &change, &actor, &key).await {
            Ok(_) => {
                if let Some(number) = caused_by {
                    // Its own transaction after the resolution's: logged if the database refuses.
                    if let Err(refusal) = self.service.confirm_change_cause(id, number, &actor).await {
                        tracing::warn!(%number, error = %refusal, "could not record the change as the cause");
                    }
                }
                SlackInteractionResponse::Empty
            }
            Err(message) => errors([(field, message)]),
        }
    }

    /// The changes linked to `incident` (none when the database does not answer: the resolve
    /// form then simply does not offer them).
    async fn linked_changes(&self, incident: &Incident) -> Vec<crate::calendar::PlannedChange> {
        self.service.linked_changes(incident.id).await.unwrap_or_default()
    }

    async fn submit_declare(&self, user: &str, view: &serde_json::Value) -> SlackInteractionResponse {
        let Ok(declarer) = UserId::parse(user) else {
            return errors([("title", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let metadata = view["private_metadata"].as_str().unwrap_or_default();
        let new = match forms::parse_declare(&view["state"]["values"], metadata, &declarer, &self.service.policy) {
            Ok(new) => new,
            Err(field_errors) => return errors(field_errors),
        };
        // The SPOC must be a person of this workspace (the declarer clicked the form, so they are).
        if new.spoc != declarer {
            if let Err(why) = self.service.check_person(&new.spoc).await {
                return errors([("spoc", why.to_string())]);
            }
        }
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self.service.declare(&new, &key).await {
            Ok(DeclareOutcome::Created(incident) | DeclareOutcome::Duplicate(incident)) => {
                tag(&incident.number);
                // Declared from an alert's "Declare incident" (issue 15): link it.
                if let Some(group) = super::alerts::alert_of(metadata) {
                    if let Err(e) = self.service.declared_from_alert(group, &incident, user).await {
                        tracing::warn!(incident = %incident.number, error = %e, "cannot link the alert it was declared from");
                    }
                }
                SlackInteractionResponse::Empty
            }
            Err(_) => errors([(
                "title",
                "I could not save the incident: the database is unavailable. Press Declare again in a moment."
                    .to_string(),
            )]),
        }
    }
}

/// A refusal as an ephemeral answer to a command.
fn refused(refusal: Refusal) -> SlackCommandEventResponse {
    ephemeral(&refusal.to_string())
}

/// What the person who closed a follow-up (or tried to) is told.
fn closed_text(result: Result<FollowUpClosed, Refusal>) -> String {
    match result {
        Ok(c) if c.just_now => format!("☑️ {} follow-up #{} is {}.", c.number, c.seq, c.state),
        Ok(c) => format!("{} follow-up #{} is {}.", c.number, c.seq, c.state),
        Err(refusal) => refusal.to_string(),
    }
}

/// What the person who typed a command is told after it was applied (most changes show
/// themselves in the channel; these would otherwise pass silently).
fn confirmation(change: &Change, incident: &Incident, applied: Option<&Applied>) -> Option<String> {
    match change {
        Change::Note { .. } => Some(format!("📝 Noted on the {} timeline.", incident.number)),
        Change::AddFollowUps(_) => Some(match applied.and_then(|a| a.follow_ups.first()) {
            // Follow-ups after close are normal (the review finds more work); say it was taken.
            Some(f) if incident.status == crate::incident::model::Status::Closed => format!(
                "➕ Added follow-up #{} to {}, which is closed: follow-ups after close are tracked and \
                 reminded like any other. `/incident followups` lists them.",
                f.seq, incident.number
            ),
            Some(f) => format!(
                "➕ Added follow-up #{} to {}. `/incident followups` lists them.",
                f.seq, incident.number
            ),
            None => format!("That follow-up was already added to {}.", incident.number),
        }),
        _ => None,
    }
}

/// A form submission refused, each problem under its field.
pub(super) fn errors<K: Into<String>>(fields: impl IntoIterator<Item = (K, String)>) -> SlackInteractionResponse {
    let map: HashMap<String, String> = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
    SlackInteractionResponse::ViewSubmission(SlackViewSubmissionResponse::Errors(
        SlackViewSubmissionErrorsResponse::new(map),
    ))
}
