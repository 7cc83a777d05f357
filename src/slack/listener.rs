//! Socket Mode: receives slash commands and interactions, answers them fast, and hands slow
//! Slack work to spawned tasks or the outbox.
//!
//! slack-morphism sends the ack when a callback's future resolves, and one connection handles
//! its envelopes one at a time; so callbacks only parse, maybe write once to the database, and
//! return. `views.open` (which must happen within 3 s of the command) is spawned.

use super::blocks::{self, DECLARE_CALLBACK, FOLLOW_UP_CALLBACK, IMPACT_CALLBACK, RESOLVE_CALLBACK, UPDATE_CALLBACK};
use super::commands::{self, Command, FollowUpRequest};
use super::forms;
use super::web::{BotIdentity, Connector, SlackWeb};
use crate::config::{Policy, Secret};
use crate::db::{Db, DeclareOutcome, Refused};
use crate::incident::change::{Applied, Change};
use crate::incident::followup::{FollowUp, FollowUpState, NewFollowUp};
use crate::incident::model::{Incident, IncidentId, UserId};
use crate::metrics::METRICS;
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tracing::Instrument;

/// Everything a callback needs; registered as slack-morphism user state.
pub struct Handler {
    pub db: Db,
    pub web: SlackWeb,
    pub policy: Policy,
    pub identity: BotIdentity,
    /// Our app's id (from the app-level token), when the token says: envelopes naming another
    /// app are refused. Commands and form submissions do not carry it in slack-morphism's
    /// types; they are checked by workspace only.
    pub app_id: Option<String>,
    /// Notified after a flow enqueues outbox jobs.
    pub wake_outbox: Arc<Notify>,
    /// Notified after a change that may move an SLA clock.
    pub wake_reminders: Arc<Notify>,
}

/// Socket Mode tuning.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    pub connections: u32,
    pub reconnect_secs: u64,
    pub initial_backoff_secs: u64,
    /// slack-morphism pings every `ping_secs` (whole seconds, at least 1) and drops the
    /// connection, then reconnects, at the first ping after more than
    /// `ping_secs × missed_pongs` seconds without a pong.
    pub ping_secs: u64,
    pub missed_pongs: u64,
}

impl Default for SocketOptions {
    fn default() -> Self {
        // Two connections so a refresh never leaves the app without one. A dead connection is
        // dropped 7–8 s after its last pong (slack-morphism's default is 80–90 s). Pongs are
        // read between envelopes, so the window must exceed the longest handler (bounded by
        // ACK_BUDGET): 6 s leaves room.
        SocketOptions {
            connections: 2,
            reconnect_secs: 2,
            initial_backoff_secs: 1,
            ping_secs: 2,
            missed_pongs: 3,
        }
    }
}

/// A running Socket Mode listener.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<Connector>,
    live: Arc<Liveness>,
}

/// Socket Mode liveness for `/readyz` and the envelopes being handled, registered as user state
/// beside the [`Handler`].
///
/// `connected` is set by Slack's `hello` (sent on every new connection) and cleared by
/// [`SocketMode::shutdown`]. slack-morphism has no disconnect callback, so this approximates
/// "connected since the last hello": a dropped connection stays "live" until the listener's
/// reconnect says hello again.
#[derive(Default)]
struct Liveness {
    connected: Arc<AtomicBool>,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Longest a callback may work before its ack goes out anyway, saying "try again": Slack's
/// deadline is 3 s from sending, and the envelope spends some of that on the wire. Only the
/// database can take this long (a held lock, an unreachable server); the unfinished work is
/// dropped, which rolls its transaction back, so nothing is half written.
const ACK_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// The answer when the database does not answer within [`ACK_BUDGET`] (or fails).
const TRY_AGAIN: &str = "⚠️ I cannot reach my database right now; nothing was changed. Please try again in a minute.";

/// How long [`SocketMode::shutdown`] waits for envelopes being handled (Slack's ack deadline).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl SocketMode {
    pub async fn start(handler: Arc<Handler>, app_token: &Secret, opts: &SocketOptions) -> anyhow::Result<SocketMode> {
        let client = handler.web.client();
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_hello_events(on_hello)
            .with_command_events(on_command)
            .with_interaction_events(on_interaction)
            .with_push_events(on_push);
        let live = Arc::new(Liveness::default());
        let env = Arc::new(
            SlackClientEventsListenerEnvironment::new(client)
                .with_error_handler(on_error)
                .with_user_state(handler)
                .with_user_state(live.clone()),
        );
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(opts.connections.max(1))
            .with_reconnect_timeout_in_seconds(opts.reconnect_secs)
            .with_initial_backoff_in_seconds(opts.initial_backoff_secs)
            .with_ping_interval_in_seconds(opts.ping_secs.max(1))
            .with_ping_failure_threshold_times(opts.missed_pongs.max(1));
        let listener = SlackClientSocketModeListener::new(&config, env, callbacks);
        listener
            .listen_for(&SlackApiToken::new(app_token.expose().into()))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot register the Socket Mode token: {}",
                    super::redact(&e.to_string())
                )
            })?;
        listener.start().await;
        Ok(SocketMode { listener, live })
    }

    /// True once a connection said hello, until [`SocketMode::shutdown`] (see [`Liveness`]).
    pub fn connected(&self) -> Arc<AtomicBool> {
        self.live.connected.clone()
    }

    /// Marks the bot unready, lets the envelopes being handled finish (up to Slack's 3 s ack
    /// deadline) so their acks go out, then closes the WebSocket connections: no new envelopes
    /// arrive after this. One arriving during the drain is handled too, or, if it is cut off,
    /// redelivered by Slack to another replica.
    pub async fn shutdown(&self) {
        self.live.connected.store(false, Ordering::Relaxed);
        if self.live.in_flight.load(Ordering::SeqCst) > 0 {
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
                loop {
                    // Registered before the check, so a wake-up in between is not missed.
                    let idle = self.live.idle.notified();
                    if self.live.in_flight.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    idle.await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!("envelopes still in flight after {DRAIN_TIMEOUT:?}; closing anyway");
            }
            // The ack is written right after the callback returns: give it a moment to leave.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.listener.shutdown().await;
    }
}

async fn handler_of(states: &SlackClientEventsUserState) -> Arc<Handler> {
    states
        .read()
        .await
        .get_user_state::<Arc<Handler>>()
        .expect("the handler is registered before the listener starts")
        .clone()
}

fn ephemeral(text: &str) -> SlackCommandEventResponse {
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
• `/incident pir` — post-incident review draft (Markdown file) · `/incident pir done [link]` — mark it done";

/// How long an owner check (`users.info`) may take inside an ack before we give up on it.
const PERSON_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_millis(1000);
/// Follow-ups read for one `/incident followups` list.
const FOLLOW_UPS_READ: i64 = 200;

/// Generic because slack-morphism does not export the hello event's type name.
async fn on_hello<E: Send + 'static>(
    _event: E,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) {
    if let Some(live) = states.read().await.get_user_state::<Arc<Liveness>>() {
        live.connected.store(true, Ordering::Relaxed);
    }
}

/// Counts an envelope as received (and in flight) when created and, with its handling time, as
/// acked when the callback finishes (slack-morphism sends the ack right after).
struct EnvelopeTimer {
    kind: &'static str,
    started: std::time::Instant,
    live: Option<Arc<Liveness>>,
}

impl EnvelopeTimer {
    async fn start(kind: &'static str, states: &SlackClientEventsUserState) -> Self {
        let started = std::time::Instant::now();
        METRICS.envelopes_received.inc(&[kind]);
        let live = states.read().await.get_user_state::<Arc<Liveness>>().cloned();
        if let Some(live) = &live {
            live.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        EnvelopeTimer { kind, started, live }
    }
}

impl Drop for EnvelopeTimer {
    fn drop(&mut self) {
        METRICS.envelopes_acked.inc(&[self.kind]);
        METRICS.ack_latency.observe(self.started.elapsed());
        if let Some(live) = &self.live {
            if live.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                live.idle.notify_waiters();
            }
        }
    }
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let _timer = EnvelopeTimer::start("command", &states).await;
    let h = handler_of(&states).await;
    let span = envelope_span("command");
    match tokio::time::timeout(ACK_BUDGET, h.command(event).instrument(span.clone()))
        .instrument(span)
        .await
    {
        Ok(response) => Ok(response),
        Err(_) => {
            tracing::error!(
                "a command was not handled within {ACK_BUDGET:?} (database unavailable?); answered \"try again\""
            );
            Ok(ephemeral(TRY_AGAIN))
        }
    }
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let _timer = EnvelopeTimer::start("interaction", &states).await;
    let h = handler_of(&states).await;
    let fallback = TooSlow::of(&event);
    let span = envelope_span("interaction");
    match tokio::time::timeout(ACK_BUDGET, h.interaction(event).instrument(span.clone()))
        .instrument(span)
        .await
    {
        Ok(response) => Ok(response),
        Err(_) => {
            tracing::error!(
                "an interaction was not handled within {ACK_BUDGET:?} (database unavailable?); answered \"try again\""
            );
            Ok(fallback.answer(&h))
        }
    }
}

/// The span every envelope is handled in; `incident` is recorded once the handler knows it
/// (see [`tag`]), and work spawned from the handler stays in it.
fn envelope_span(kind: &'static str) -> tracing::Span {
    tracing::info_span!("envelope", kind, incident = tracing::field::Empty)
}

/// Spawns work off the ack path, in the envelope's span.
fn spawn_here(work: impl std::future::Future<Output = ()> + Send + 'static) {
    tokio::spawn(work.in_current_span());
}

/// Records the incident an envelope is about on its span (`incident = "INC-42"`).
fn tag(number: &crate::incident::model::IncidentNumber) {
    tracing::Span::current().record("incident", tracing::field::display(number));
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
                    UPDATE_CALLBACK => TooSlow::Field("known"),
                    IMPACT_CALLBACK => TooSlow::Field("customers"),
                    RESOLVE_CALLBACK => TooSlow::Field("summary"),
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

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let _timer = EnvelopeTimer::start("push", &states).await;
    let h = handler_of(&states).await;
    let _span = envelope_span("push").entered();
    if h.foreign_app(event.team_id.as_ref(), event.api_app_id.as_ref()) {
        return Ok(());
    }
    if let SlackEventCallbackBody::ReactionAdded(reaction) = event.event {
        if reaction.reaction.0 == PIN_REACTION {
            if let SlackReactionsItem::Message(message) = reaction.item {
                let channel = message.origin.channel.map(|c| c.to_string()).unwrap_or_default();
                h.pin_to_timeline(reaction.user.to_string(), channel, message.origin.ts.to_string());
            }
        }
    }
    Ok(())
}

/// The reaction that copies a message onto the incident timeline.
pub const PIN_REACTION: &str = "pushpin";

/// Acks anyway: an envelope that failed here would fail again when Slack redelivers it.
fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector>>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    tracing::warn!(error = %super::redact(&err.to_string()), "Socket Mode error");
    HttpStatusCode::OK
}

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
        let text = event.text.as_deref().unwrap_or_default();
        // What people type is only logged at debug level.
        tracing::debug!(text, "slash command");
        let command = match commands::parse(text) {
            Ok(c) => c,
            Err(problem) => return ephemeral(&format!("{problem}\n{}", commands::USAGE)),
        };
        let Ok(user) = UserId::parse(event.user_id.as_ref()) else {
            return ephemeral("Slack sent an unexpected user id.");
        };
        match command {
            Command::Declare { title } => {
                let view = blocks::declare_modal(&self.policy, &title, user.as_str(), event.channel_id.as_ref());
                self.open_modal(&event, view);
                SlackCommandEventResponse::new(SlackMessageContent::new())
            }
            Command::Help => ephemeral(HELP),
            Command::List => self.list(&user).await,
            Command::FollowUps => self.follow_ups(event.channel_id.as_ref(), &user).await,
            Command::Report {
                period,
                service,
                public,
            } => self.report(&event, &user, period, service, public).await,
            other => {
                let incident = match self.db.incident_by_channel(event.channel_id.as_ref()).await {
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
                    Err(e) => return self.unavailable(e),
                };
                self.incident_command(&event, &user, incident, other).await
            }
        }
    }

    fn unavailable(&self, e: anyhow::Error) -> SlackCommandEventResponse {
        tracing::error!(error = %e, "database unavailable while answering a command");
        ephemeral(TRY_AGAIN)
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
                    Command::Impact => blocks::impact_modal(&incident, &self.policy),
                    _ => blocks::resolve_modal(&incident, chrono::Utc::now()),
                };
                self.open_modal(event, view);
                return SlackCommandEventResponse::new(SlackMessageContent::new());
            }
            Command::Status => {
                return SlackCommandEventResponse::new(blocks::content(
                    &blocks::summary_text(&incident),
                    blocks::status_blocks(&incident, &self.policy),
                ))
                .with_response_type(SlackMessageResponseType::Ephemeral)
            }
            Command::Timeline { page } => {
                return match self.db.timeline(incident.id).await {
                    Ok(events) => ephemeral(&blocks::timeline_text(&incident, &events, page)),
                    Err(e) => self.unavailable(e),
                }
            }
            Command::Role { role, .. } if !self.policy.roles.contains(&role) => {
                return ephemeral(&format!(
                    "`{}` is not a role here. Roles: spoc, {} (`/incident spoc @user` for the SPOC).",
                    blocks::truncate(&role, 40),
                    self.policy.roles.join(", ")
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
                if incident.status == crate::incident::model::Status::Canceled {
                    return ephemeral(&format!("{} was canceled: it takes no follow-ups.", incident.number));
                }
                self.open_modal(event, blocks::follow_up_modal(&incident));
                return SlackCommandEventResponse::new(SlackMessageContent::new());
            }
            Command::FollowUp(Some(request)) => match self.new_follow_up(request).await {
                Ok(item) => Change::AddFollowUps(vec![item]),
                Err(message) => return ephemeral(&format!("{message}\nUsage: {}", commands::FOLLOW_UP_USAGE)),
            },
            Command::CloseFollowUp { seq, state } => {
                return ephemeral(
                    &self
                        .close_follow_up_seq(&incident, seq, state, user, &event.trigger_id.0)
                        .await,
                )
            }
            Command::Pir => {
                self.spawn_review_draft(incident.id, event.channel_id.to_string(), user.clone());
                return ephemeral(&format!(
                    "📝 Drafting the post-incident review of {} from its timeline; it will be posted here as a file.",
                    incident.number
                ));
            }
            Command::PirDone { link } => Change::PirDone { link },
            Command::Declare { .. } | Command::Help | Command::List | Command::Report { .. } | Command::FollowUps => {
                unreachable!("handled by command()")
            }
        };
        let key = format!("trigger:{}", event.trigger_id);
        match self.change(incident.id, &change, user, &key).await {
            Ok(applied) => match confirmation(&change, &incident, applied.as_ref()) {
                Some(text) => ephemeral(&text),
                None => SlackCommandEventResponse::new(SlackMessageContent::new()),
            },
            Err(message) => ephemeral(&message),
        }
    }

    /// Applies a change; `Ok(None)` when it was applied before (a redelivery), `Err` is what to
    /// tell the user.
    async fn change(
        &self,
        id: IncidentId,
        change: &Change,
        user: &UserId,
        key: &str,
    ) -> Result<Option<Applied>, String> {
        match self
            .db
            .apply_change(id, change, user, chrono::Utc::now(), Some(key), &self.policy.rules())
            .await
        {
            Ok(Ok(applied)) => {
                tag(&applied.incident.number);
                tracing::info!(incident = %applied.incident.number, change = ?std::mem::discriminant(change), "incident changed");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                Ok(Some(applied))
            }
            Ok(Err(Refused::Rule(reason))) => Err(reason),
            Ok(Err(Refused::AlreadyHandled)) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "cannot apply a change");
                Err(TRY_AGAIN.into())
            }
        }
    }

    /// `/incident list`: private incidents are shown only to their channel's members.
    async fn list(&self, user: &UserId) -> SlackCommandEventResponse {
        let incidents = match self.db.active_incidents().await {
            Ok(i) => i,
            Err(e) => return self.unavailable(e),
        };
        let mut visible = Vec::new();
        let mut hidden = 0;
        for incident in incidents {
            if incident.is_private && !self.is_member(&incident, user).await {
                hidden += 1;
            } else {
                visible.push(incident);
            }
        }
        ephemeral(&blocks::list_text(&visible, hidden))
    }

    /// `/incident followups`: in an incident channel, that incident's follow-ups; elsewhere the
    /// open ones of every incident, the caller's first, then overdue first. Follow-ups of
    /// private incidents are shown only to their members (others see a count).
    async fn follow_ups(&self, channel: &str, user: &UserId) -> SlackCommandEventResponse {
        let now = chrono::Utc::now();
        let mut membership: HashMap<IncidentId, bool> = HashMap::new();
        let (heading, items) = match self.db.incident_by_channel(channel).await {
            Ok(Some(incident)) => {
                // Typed in the incident's channel: the caller is in it, no Slack lookup needed.
                membership.insert(incident.id, true);
                match self.db.follow_ups_of(incident.id).await {
                    Ok(items) => (format!("*Follow-ups of {}*", incident.number), items),
                    Err(e) => return self.unavailable(e),
                }
            }
            Ok(None) => match self.db.open_follow_ups(user, now, FOLLOW_UPS_READ).await {
                Ok(items) => ("*Open follow-ups* — yours first, then overdue first".to_string(), items),
                Err(e) => return self.unavailable(e),
            },
            Err(e) => return self.unavailable(e),
        };
        let mut visible = Vec::new();
        let mut hidden = 0;
        for item in items {
            if item.private {
                let member = match membership.get(&item.incident_id) {
                    Some(m) => *m,
                    None => {
                        let m = match self.db.incident(item.incident_id).await {
                            Ok(incident) => self.is_member(&incident, user).await,
                            Err(_) => false,
                        };
                        membership.insert(item.incident_id, m);
                        m
                    }
                };
                if !member {
                    hidden += 1;
                    continue;
                }
            }
            visible.push(item);
        }
        let (text, blocks) = blocks::follow_up_list(&heading, &visible, hidden, now);
        SlackCommandEventResponse::new(blocks::content(&text, blocks))
            .with_response_type(SlackMessageResponseType::Ephemeral)
    }

    /// Checks a typed follow-up against Slack (the owner exists and is a person) and the
    /// calendar (the due day is not past).
    async fn new_follow_up(&self, request: FollowUpRequest) -> Result<NewFollowUp, String> {
        if let Some(owner) = &request.owner {
            self.check_person(owner).await?;
        }
        NewFollowUp::parse(&request.text, request.owner, request.due, request.link, self.today()).map_err(|e| e.message)
    }

    /// `Err` says why `user` cannot own a follow-up (or that Slack could not tell in time).
    async fn check_person(&self, user: &UserId) -> Result<(), String> {
        match tokio::time::timeout(PERSON_CHECK_BUDGET, self.web.check_person(user.as_str())).await {
            Ok(Ok(Ok(_name))) => Ok(()),
            Ok(Ok(Err(why))) => Err(why),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot check a follow-up owner");
                Err("⚠️ Slack did not tell me who that is just now; nothing was saved. Please try again.".into())
            }
            Err(_) => Err("⚠️ Slack took too long to tell me who that is; nothing was saved. Please try again.".into()),
        }
    }

    /// Today in the configured time zone (due dates are local days).
    fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now().with_timezone(&self.policy.timezone).date_naive()
    }

    /// `/incident followup done|wontdo N`: what to tell the user.
    async fn close_follow_up_seq(
        &self,
        incident: &Incident,
        seq: i64,
        state: FollowUpState,
        user: &UserId,
        trigger: &str,
    ) -> String {
        match self.db.follow_up_by_seq(incident.id, seq).await {
            Ok(Some(f)) => {
                self.close_follow_up(&f, state, user, &format!("trigger:{trigger}"))
                    .await
            }
            Ok(None) => format!(
                "{} has no follow-up #{seq} (`/incident followups` lists them).",
                incident.number
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a follow-up");
                TRY_AGAIN.into()
            }
        }
    }

    async fn close_follow_up(&self, f: &FollowUp, state: FollowUpState, user: &UserId, key: &str) -> String {
        match self
            .db
            .close_follow_up(f.id, state, user, chrono::Utc::now(), key)
            .await
        {
            Ok(Ok(closed)) => {
                tracing::info!(incident = %closed.number, follow_up = closed.seq, state = closed.state.as_str(), "follow-up closed");
                self.wake_outbox.notify_one();
                format!("☑️ {} follow-up #{} is {}.", closed.number, closed.seq, closed.state)
            }
            Ok(Err(Refused::Rule(reason))) => reason,
            Ok(Err(Refused::AlreadyHandled)) => format!("{} follow-up #{} is {}.", f.number, f.seq, f.state),
            Err(e) => {
                tracing::error!(error = %e, "cannot close a follow-up");
                TRY_AGAIN.into()
            }
        }
    }

    /// Drafts the post-incident review and shares it in `channel` as a Markdown file. Spawned:
    /// it reads the whole record and makes several Slack calls; failures are told to `user`.
    fn spawn_review_draft(&self, id: IncidentId, channel: String, user: UserId) {
        let (db, web, policy) = (self.db.clone(), self.web.clone(), self.policy.clone());
        spawn_here(async move {
            let result = async {
                let incident = db.incident(id).await?;
                let (timeline, follow_ups) = (db.timeline(id).await?, db.follow_ups_of(id).await?);
                // Names make the draft readable; an id stays when a lookup fails.
                let mut people: Vec<String> = timeline.iter().map(|e| e.actor.clone()).collect();
                people.extend([incident.spoc.to_string(), incident.declared_by.to_string()]);
                people.extend(incident.roles.values().map(|u| u.to_string()));
                people.extend(follow_ups.iter().filter_map(|f| f.owner.as_ref().map(|o| o.to_string())));
                people.retain(|p| UserId::parse(p).is_ok());
                people.sort();
                people.dedup();
                let mut names = std::collections::BTreeMap::new();
                for person in people.into_iter().take(30) {
                    if let Ok(Ok(name)) = web.check_person(&person).await {
                        names.insert(person, name);
                    }
                }
                let input = crate::incident::pir::ReviewInput {
                    incident: &incident,
                    severity_description: &policy.severity(incident.severity).description,
                    timeline: &timeline,
                    follow_ups: &follow_ups,
                    names: &names,
                    timezone: policy.timezone,
                    now: chrono::Utc::now(),
                };
                let markdown = crate::incident::pir::markdown(&input);
                web.upload_file(
                    &channel,
                    &format!("{}-post-incident-review.md", incident.number),
                    &format!("Post-incident review draft: {}", incident.number),
                    &format!(
                        "📝 Draft post-incident review of {} (asked by <@{user}>). Complete it, file it, then `/incident pir done [link]`.",
                        incident.number
                    ),
                    markdown.into_bytes(),
                    "text/markdown",
                )
                .await?;
                anyhow::Ok(incident.number)
            }
            .await;
            match result {
                Ok(number) => tracing::info!(incident = %number, "review draft shared"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot share a review draft");
                    let text = format!("⚠️ I could not post the review draft ({e}). Please try `/incident pir` again.");
                    if let Err(e) = web.post_ephemeral(&channel, user.as_str(), blocks::text(&text)).await {
                        tracing::warn!(error = %e, "cannot tell the user the draft failed");
                    }
                }
            }
        });
    }

    /// Whether `user` is in a private incident's channel (unknown counts as no).
    async fn is_member(&self, incident: &Incident, user: &UserId) -> bool {
        if *user == incident.spoc || *user == incident.declared_by || incident.roles.values().any(|u| u == user) {
            return true;
        }
        let Some(channel) = incident.channel_id.as_deref() else {
            return false;
        };
        match self.web.members(channel).await {
            Ok(members) => members.iter().any(|m| m == user.as_str()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check channel membership; hiding the private incident");
                false
            }
        }
    }

    /// Spawned: the ack must not wait for `views.open`, and both must land within 3 s.
    fn open_modal(&self, event: &SlackCommandEvent, view: serde_json::Value) {
        self.spawn_open(
            event.trigger_id.to_string(),
            event.channel_id.to_string(),
            event.user_id.to_string(),
            view,
        );
    }

    fn spawn_open(&self, trigger: String, channel: String, user: String, view: serde_json::Value) {
        let web = self.web.clone();
        spawn_here(async move {
            let result = match blocks::modal(view) {
                Ok(view) => web.open_view(&trigger, view).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("bug: the modal does not fit Slack's model: {e}")),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot open a modal");
                let text = format!("⚠️ I could not open the form ({e}). Please try again.");
                if let Err(e) = web.post_ephemeral(&channel, &user, blocks::text(&text)).await {
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
                    UPDATE_CALLBACK | IMPACT_CALLBACK | RESOLVE_CALLBACK | FOLLOW_UP_CALLBACK => {
                        self.submit_change(user, &view).await
                    }
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
        let Some(id) = action
            .value
            .as_deref()
            .and_then(|v| v.parse::<i64>().ok())
            .map(IncidentId)
        else {
            return;
        };
        let incident = match self.db.incident(id).await {
            Ok(i) => {
                tag(&i.number);
                i
            }
            Err(e) => {
                tracing::warn!(error = %e, "button for an unknown incident");
                return;
            }
        };
        let trigger = ev.trigger_id.to_string();
        match action.action_id.as_ref() {
            blocks::ACTION_UPDATE if incident.status.is_open() => {
                self.spawn_open(trigger, channel, user.to_string(), blocks::update_modal(&incident))
            }
            blocks::ACTION_RESOLVE if incident.status.is_open() => self.spawn_open(
                trigger,
                channel,
                user.to_string(),
                blocks::resolve_modal(&incident, chrono::Utc::now()),
            ),
            blocks::ACTION_FOLLOW_UP if incident.status != crate::incident::model::Status::Canceled => {
                self.spawn_open(trigger, channel, user.to_string(), blocks::follow_up_modal(&incident))
            }
            blocks::ACTION_PIR_DRAFT => {
                let target = incident.channel_id.clone().unwrap_or(channel);
                self.spawn_review_draft(id, target, user)
            }
            blocks::ACTION_PIR_DONE => {
                let change = Change::PirDone { link: None };
                if let Err(message) = self.change(id, &change, &user, &format!("trigger:{trigger}")).await {
                    self.tell(&channel, &user, &message);
                }
            }
            blocks::ACTION_SNOOZE => match self
                .change(id, &Change::Snooze, &user, &format!("trigger:{trigger}"))
                .await
            {
                Ok(_) => self.tell(
                    &channel,
                    &user,
                    &format!(
                        "💤 Snoozed: I'll remind again in 15 minutes unless {} gets an update.",
                        incident.number
                    ),
                ),
                Err(message) => self.tell(&channel, &user, &message),
            },
            blocks::ACTION_ACK => {
                if let Err(message) = self
                    .change(id, &Change::Acknowledge, &user, &format!("trigger:{trigger}"))
                    .await
                {
                    self.tell(&channel, &user, &message);
                }
            }
            _ => self.tell(
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
        let answer = match self.db.follow_up(follow_up).await {
            Ok(Some(f)) => {
                self.close_follow_up(&f, FollowUpState::Done, user, &format!("trigger:{}", ev.trigger_id))
                    .await
            }
            Ok(None) => "That follow-up no longer exists.".to_string(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a follow-up");
                TRY_AGAIN.into()
            }
        };
        if channel.starts_with('D') || channel.is_empty() {
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
            let incident = match h.db.incident_by_channel(&channel).await {
                Ok(Some(i)) => i,
                Ok(None) => return, // not an incident channel
                Err(e) => return tracing::warn!(error = %e, "cannot look up a pinned message's incident"),
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
        let (web, channel, user, text) = (
            self.web.clone(),
            channel.to_string(),
            user.to_string(),
            text.to_string(),
        );
        spawn_here(async move {
            if let Err(e) = web.post_ephemeral(&channel, &user, blocks::text(&text)).await {
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
                forms::parse_impact(values, &self.policy)
                    .map(|(services, footprint)| Change::Impact { services, footprint }),
                "customers",
            ),
            FOLLOW_UP_CALLBACK => (
                forms::parse_follow_up(values, self.today()).map(|f| Change::AddFollowUps(vec![f])),
                "text",
            ),
            _ => (forms::parse_resolve(values, self.today()), "summary"),
        };
        let change = match change {
            Ok(c) => c,
            Err(field_errors) => return errors(field_errors),
        };
        // "Service restored at" is checked against the incident here, so its errors (and the
        // clamp to the declaration) concern that field; if the read fails, `apply` still checks.
        let change = match change {
            Change::Resolve { .. } => match self.db.incident(id).await {
                Ok(incident) => match forms::check_restored_at(change, &incident, chrono::Utc::now()) {
                    Ok(c) => c,
                    Err(field_errors) => return errors(field_errors),
                },
                Err(_) => change,
            },
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
            if let Err(why) = self.check_person(&owner).await {
                return errors([(block, why)]);
            }
        }
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self.change(id, &change, &actor, &key).await {
            Ok(_) => SlackInteractionResponse::Empty,
            Err(message) => errors([(field, message)]),
        }
    }

    async fn submit_declare(&self, user: &str, view: &serde_json::Value) -> SlackInteractionResponse {
        let Ok(declarer) = UserId::parse(user) else {
            return errors([("title", format!("Slack sent an unexpected user id `{user}`."))]);
        };
        let metadata = view["private_metadata"].as_str().unwrap_or_default();
        let new = match forms::parse_declare(&view["state"]["values"], metadata, &declarer, &self.policy) {
            Ok(new) => new,
            Err(field_errors) => return errors(field_errors),
        };
        let key = format!("view:{}", view["id"].as_str().unwrap_or_default());
        match self
            .db
            .declare(&new, &key, chrono::Utc::now(), &self.policy.slas())
            .await
        {
            Ok(DeclareOutcome::Created(incident)) => {
                tag(&incident.number);
                METRICS.incidents_declared.inc(&[incident.severity.as_str()]);
                tracing::info!(incident = %incident.number, severity = %incident.severity, private = incident.is_private, "incident declared");
                self.wake_outbox.notify_one();
                self.wake_reminders.notify_one();
                SlackInteractionResponse::Empty
            }
            Ok(DeclareOutcome::Duplicate(incident)) => {
                tracing::info!(incident = %incident.number, "duplicate declare submission ignored");
                SlackInteractionResponse::Empty
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a declaration");
                errors([(
                    "title",
                    "I could not save the incident: the database is unavailable. Press Declare again in a moment."
                        .to_string(),
                )])
            }
        }
    }
}

/// What the person who typed a command is told after it was applied (most changes show
/// themselves in the channel; these would otherwise pass silently).
fn confirmation(change: &Change, incident: &Incident, applied: Option<&Applied>) -> Option<String> {
    match change {
        Change::Note { .. } => Some(format!("📝 Noted on the {} timeline.", incident.number)),
        Change::AddFollowUps(_) => Some(match applied.and_then(|a| a.follow_ups.first()) {
            Some(f) => format!(
                "➕ Added follow-up #{} to {}. `/incident followups` lists them.",
                f.seq, incident.number
            ),
            None => format!("That follow-up was already added to {}.", incident.number),
        }),
        _ => None,
    }
}

fn errors<K: Into<String>>(fields: impl IntoIterator<Item = (K, String)>) -> SlackInteractionResponse {
    let map: HashMap<String, String> = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
    SlackInteractionResponse::ViewSubmission(SlackViewSubmissionResponse::Errors(
        SlackViewSubmissionErrorsResponse::new(map),
    ))
}
