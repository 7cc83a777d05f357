//! Socket Mode: receives slash commands and interactions, answers them fast, and hands slow
//! Slack work to spawned tasks or the outbox.
//!
//! slack-morphism sends the ack when a callback's future resolves, and one connection handles
//! its envelopes one at a time; so callbacks only parse, maybe write once to the database, and
//! return. `views.open` (which must happen within 3 s of the command) is spawned.

use super::blocks::{self, DECLARE_CALLBACK};
use super::commands::{self, Command};
use super::forms;
use super::web::{BotIdentity, Connector, SlackWeb};
use crate::config::{Policy, Secret};
use crate::db::{Db, DeclareOutcome};
use crate::incident::model::UserId;
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Everything a callback needs; registered as slack-morphism user state.
pub struct Handler {
    pub db: Db,
    pub web: SlackWeb,
    pub policy: Policy,
    pub identity: BotIdentity,
    /// Notified after a flow enqueues outbox jobs.
    pub wake_outbox: Arc<Notify>,
}

/// Socket Mode tuning.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    pub connections: u32,
    pub reconnect_secs: u64,
    pub initial_backoff_secs: u64,
}

impl Default for SocketOptions {
    fn default() -> Self {
        // Two connections so a refresh never leaves the app without one.
        SocketOptions {
            connections: 2,
            reconnect_secs: 2,
            initial_backoff_secs: 1,
        }
    }
}

/// A running Socket Mode listener.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<Connector>,
}

impl SocketMode {
    pub async fn start(handler: Arc<Handler>, app_token: &Secret, opts: &SocketOptions) -> anyhow::Result<SocketMode> {
        let client = handler.web.client();
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_interaction_events(on_interaction)
            .with_push_events(on_push);
        let env = Arc::new(
            SlackClientEventsListenerEnvironment::new(client)
                .with_error_handler(on_error)
                .with_user_state(handler),
        );
        let config = SlackClientSocketModeConfig::new()
            .with_max_connections_count(opts.connections.max(1))
            .with_reconnect_timeout_in_seconds(opts.reconnect_secs)
            .with_initial_backoff_in_seconds(opts.initial_backoff_secs);
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
        Ok(SocketMode { listener })
    }

    /// Closes the WebSocket connections: no new envelopes arrive after this.
    pub async fn shutdown(&self) {
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
• `/incident` or `/incident declare [title]` — declare an incident (opens a form)\n\
• `/incident help` — this message";

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let h = handler_of(&states).await;
    Ok(h.command(event).await)
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let h = handler_of(&states).await;
    Ok(h.interaction(event).await)
}

async fn on_push(
    _event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    _states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    Ok(())
}

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

    pub async fn command(&self, event: SlackCommandEvent) -> SlackCommandEventResponse {
        if self.foreign(event.team_id.as_ref()) {
            return ephemeral("This bot serves another workspace.");
        }
        let text = event.text.as_deref().unwrap_or_default();
        match commands::parse(text) {
            Ok(Command::Declare { title }) => {
                self.open_declare_modal(&event, &title);
                SlackCommandEventResponse::new(SlackMessageContent::new())
            }
            Ok(Command::Help) => ephemeral(HELP),
            Err(problem) => ephemeral(&format!("{problem}\n{}", commands::USAGE)),
        }
    }

    /// Spawned: the ack must not wait for `views.open`, and both must land within 3 s.
    fn open_declare_modal(&self, event: &SlackCommandEvent, title: &str) {
        let view = blocks::declare_modal(&self.policy, title, event.user_id.as_ref(), event.channel_id.as_ref());
        let (web, trigger) = (self.web.clone(), event.trigger_id.to_string());
        let (channel, user) = (event.channel_id.to_string(), event.user_id.to_string());
        tokio::spawn(async move {
            let result = match blocks::modal(view) {
                Ok(view) => web.open_view(&trigger, view).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("bug: declare modal does not fit Slack's model: {e}")),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot open the declare modal");
                let text = format!("⚠️ I could not open the declare form ({e}). Please run `/incident` again.");
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
                let callback = view["callback_id"].as_str().unwrap_or_default();
                if callback == DECLARE_CALLBACK {
                    self.submit_declare(ev.user.id.as_ref(), &view).await
                } else {
                    tracing::warn!(callback, "view submission for an unknown modal");
                    SlackInteractionResponse::Empty
                }
            }
            _ => SlackInteractionResponse::Empty,
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
        match self.db.declare(&new, &key, chrono::Utc::now()).await {
            Ok(DeclareOutcome::Created(incident)) => {
                tracing::info!(incident = %incident.number, severity = %incident.severity, private = incident.is_private, "incident declared");
                self.wake_outbox.notify_one();
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

fn errors<K: Into<String>>(fields: impl IntoIterator<Item = (K, String)>) -> SlackInteractionResponse {
    let map: HashMap<String, String> = fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
    SlackInteractionResponse::ViewSubmission(SlackViewSubmissionResponse::Errors(
        SlackViewSubmissionErrorsResponse::new(map),
    ))
}
