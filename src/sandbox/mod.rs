//! A local stand-in for Slack, served on 127.0.0.1.
//!
//! Why: the bot's tests, benchmarks and `incident-bot demo` must exercise Slack's *wire protocol*
//! (the Web API over HTTP and Socket Mode over WebSocket) without a workspace, and must fail where
//! real Slack would refuse. Mocks of our own functions would only prove that the bot agrees with
//! itself; this module answers the way Slack answers, with payloads modelled on Slack's own SDK
//! fixtures and docs (`../shared/slack/payloads/`), not on what the bot happens to send.
//!
//! What it does:
//! - serves the Web API methods the bot calls (`POST`/`GET /api/<method>`, form or JSON bodies,
//!   bearer or `token` auth) and enforces what Slack enforces: token types, channel-name rules and
//!   `name_taken`, membership (`not_in_channel`), Block Kit limits, `trigger_id` expiry, and the
//!   bot scopes `manifest.yml` requests (`missing_scope`, public vs private variants);
//! - sends what people type encoded as Slack encodes it (entities, `<@U…|name>`, `<https://…>`);
//! - speaks Socket Mode: `hello` on connect, envelopes spread round-robin over the live
//!   connections, acks matched to the caller that sent the envelope, the ack deadline, redelivery of
//!   unacknowledged envelopes when a connection dies, `disconnect` messages;
//! - records every call, ack and rejected payload for assertions, and injects faults on request
//!   (429 with `Retry-After`, 5xx, slow answers, API errors).
//!
//! It never imports `slack_morphism`: it speaks raw JSON, so the client library is tested against
//! an independent implementation of the protocol.
//!
//! Layout: [`state`] holds the workspace (users, channels, messages, views, triggers), [`web_api`]
//! the Web API methods, [`blockkit`] the Block Kit checks, [`socket`] the Socket Mode hub,
//! [`events`] the payloads Slack sends to the app, [`server`] the HTTP listener and routing,
//! [`scopes`] the bot scopes per method, [`compose`] Slack's encoding of typed text.

mod blockkit;
mod compose;
mod events;
mod rate;
mod scopes;
mod server;
mod socket;
mod state;
mod web_api;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;
use tokio::sync::watch;

pub use self::socket::ConnectionRecord;
use self::socket::Hub;
use self::state::State;

/// The bot token the sandbox accepts for every Web API method except `apps.connections.open`.
pub const BOT_TOKEN: &str = "xoxb-sandbox-bot-token";
/// The app-level token the sandbox accepts for `apps.connections.open` only.
pub const APP_TOKEN: &str = "xapp-1-A0SANDBOX-1-sandboxappsecret";
/// The sandbox workspace id.
pub const TEAM_ID: &str = "T0SANDBOX";
/// The workspace subdomain (`team.domain` in payloads, `sandbox.slack.com` in links).
pub const TEAM_DOMAIN: &str = "sandbox";
/// The app id of the bot's Slack app.
pub const APP_ID: &str = "A0SANDBOX";
/// The bot user's id (`auth.test` → `user_id`).
pub const BOT_USER_ID: &str = "U0BOT";
/// The bot's bot id (`auth.test` → `bot_id`, `bot_id` on its messages).
pub const BOT_ID: &str = "B0BOT";
/// The bot user's name.
pub const BOT_USER_NAME: &str = "incident-bot";
/// Slack's limit on simultaneous Socket Mode connections per app.
pub const MAX_SOCKET_CONNECTIONS: usize = 10;

/// Timing rules the sandbox enforces.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// How long an envelope may wait for its ack before it counts as failed (Slack: 3 s).
    pub ack_deadline: Duration,
    /// How long a `trigger_id` stays usable for `views.open`/`views.push` (Slack: 3 s).
    pub trigger_ttl: Duration,
    /// The runtime that serves the Web API and the Socket Mode connections; `None`: the one
    /// that calls [`Sandbox::start`]. A benchmark gives it one of its own, so that the bot's
    /// tasks never wait behind Slack's in one run queue (Slack runs on machines of its own).
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            ack_deadline: Duration::from_secs(3),
            trigger_ttl: Duration::from_secs(3),
            runtime: None,
        }
    }
}

/// Who a workspace user is, for the rules Slack applies to them (`conversations.invite`,
/// `users.info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    /// A full member of the workspace.
    Member,
    /// A bot user (invitable; refused as an owner by the bot itself).
    Bot,
    /// A multi-channel guest: the app cannot add them to channels (`user_is_restricted`).
    MultiChannelGuest,
    /// A single-channel guest already in their one channel (`ura_max_channels`).
    SingleChannelGuest,
    /// Someone from another workspace of the org (`org_user_not_in_team`).
    OtherWorkspace,
    /// A deactivated account (`deleted: true`; `cant_invite`).
    Deactivated,
}

/// A failure to inject into the next call(s) of a Web API method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: <secs>` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// HTTP 500 with a non-JSON body, like an outage at Slack's edge.
    ServerError,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// HTTP 200 with `{"ok":false,"error":<code>}`.
    ApiError(String),
    /// Hold the call this long without processing it, then answer HTTP 504: the request never
    /// reached Slack's backend (a stuck edge or load balancer), so nothing happened and a
    /// client that gave up earlier may retry safely. ([`Fault::Slow`] is the other kind of
    /// timeout: processed, answered late.)
    Timeout(Duration),
    /// Apply the call at once, then answer only after this long: what Slack does under load.
    /// A client that gives up first has had its call done without hearing so; retrying it
    /// blindly doubles the post or the channel.
    AppliedThenLate(Duration),
}

/// A random fault on a share of all Web API calls: each call independently fails with
/// probability `rate`, as one of 429 (with `Retry-After`), 500, a [`Fault::Timeout`] (not
/// applied) or, with `applied_late`, a [`Fault::AppliedThenLate`] (applied, answered after
/// `timeout`), chosen with equal odds. The draws come from a generator seeded with `seed`, so a run's fault
/// sequence is reproducible (which call gets which draw still depends on arrival order).
/// Faults queued with [`Sandbox::inject_fault`] take precedence.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultMix {
    pub rate: f64,
    pub seed: u64,
    pub retry_after_secs: u64,
    /// How long a timed-out call is held (longer than the client's timeout).
    pub timeout: Duration,
    /// Methods never faulted (e.g. `apps.connections.open`).
    pub spare: Vec<String>,
    /// Also answer some calls late after applying them.
    pub applied_late: bool,
}

impl FaultMix {
    /// 20 % of calls: 429 with `Retry-After: 1`, 500, held `timeout` unprocessed, or applied
    /// and answered after `timeout`.
    pub fn twenty_percent(seed: u64, timeout: Duration) -> FaultMix {
        FaultMix {
            rate: 0.2,
            seed,
            retry_after_secs: 1,
            timeout,
            spare: vec!["apps.connections.open".into()],
            applied_late: true,
        }
    }
}

/// How many faults a [`FaultMix`] injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub rate_limited: usize,
    pub server_errors: usize,
    pub timeouts: usize,
    /// Calls applied and then answered too late ([`Fault::AppliedThenLate`]).
    pub late_answers: usize,
}

impl FaultCounts {
    pub fn total(&self) -> usize {
        self.rate_limited + self.server_errors + self.timeouts + self.late_answers
    }
}

/// One Web API call as the sandbox saw it.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// The method name, e.g. `chat.postMessage`.
    pub method: String,
    /// Query string and body merged into one object, `token` removed. Values are as sent: form
    /// fields are strings (`blocks` is then a JSON *string*), JSON bodies keep their types.
    pub params: Value,
    /// The JSON body answered (`Value::String` for a non-JSON body such as a 500 page).
    pub response: Value,
    /// The HTTP status answered.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

/// An acknowledgement the app sent for an envelope.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    /// The ack's `payload` (slash command response, `response_action`, ...), if any.
    pub payload: Option<Value>,
    /// From the first delivery of the envelope to the ack's arrival.
    pub latency: Duration,
    /// The connection the ack arrived on (ids count from 1 in opening order).
    pub connection: u64,
    /// The connection that held the envelope (`None`: its connection had closed).
    pub delivered_on: Option<u64>,
}

/// A conversation in the sandbox workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    /// Empty for direct-message (IM) conversations, which have no name in Slack.
    pub name: String,
    pub is_private: bool,
    /// True for the bot's direct-message conversations (`D…` ids).
    pub is_im: bool,
    /// Member user ids, in the order they joined.
    pub members: Vec<String>,
    pub topic: String,
    pub purpose: String,
    /// `ts` of pinned messages, in pin order.
    pub pins: Vec<String>,
    pub archived: bool,
    pub creator: String,
}

/// A reaction on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub name: String,
    pub user: String,
}

/// A message (top-level or thread reply), or an ephemeral message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    /// The author (the bot for everything posted through the Web API).
    pub user: String,
    pub text: String,
    /// The blocks as stored by Slack (with generated `block_id`s filled in), or `Null`.
    pub blocks: Value,
    pub thread_ts: Option<String>,
    pub edited: bool,
    pub reactions: Vec<Reaction>,
}

/// A modal view opened through `views.open`/`views.push` (or a `response_action`).
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub id: String,
    pub hash: String,
    pub callback_id: String,
    pub private_metadata: String,
    /// The title's text.
    pub title: String,
    pub blocks: Value,
    /// The trigger it was opened with (`None` for `views.update`/`response_action` results).
    pub opened_by_trigger: Option<String>,
    /// The user the view is shown to.
    pub user: String,
    pub root_view_id: String,
    pub previous_view_id: Option<String>,
    /// Closed by a submission (without `response_action`) or `response_action: clear`.
    pub closed: bool,
    /// The full view object as the Web API returns it.
    pub raw: Value,
}

/// A link bookmarked in a channel through `bookmarks.add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    pub id: String,
    pub channel: String,
    pub title: String,
    pub link: String,
}

/// Everything the sandbox's tasks share.
pub(crate) struct Shared {
    pub(crate) opts: SandboxOptions,
    pub(crate) addr: SocketAddr,
    state: Mutex<State>,
    pub(crate) hub: Hub,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// The workspace state. A poisoned lock (a panic elsewhere) still yields the data: every
    /// mutation is a single step, so the state stays consistent.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.hub.close_all();
    }
}

/// Resolves once the sandbox shuts down.
pub(crate) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means shutdown.
    let _ = rx.wait_for(|stopped| *stopped).await;
}

/// Shuts the sandbox down when the last user-held handle is dropped (tasks hold only `Shared`).
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

/// A running local Slack. Cheap to clone; the server stops on [`Sandbox::shutdown`] or when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Binds 127.0.0.1 on a free port and starts serving the Web API and Socket Mode.
    pub async fn start(opts: SandboxOptions) -> anyhow::Result<Sandbox> {
        // Bound here, registered with the serving runtime's reactor in its accept loop.
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding the Slack sandbox on 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        let runtime = opts.runtime.clone().unwrap_or_else(tokio::runtime::Handle::current);
        let shared = Arc::new(Shared {
            opts,
            addr,
            state: Mutex::new(State::seeded()),
            hub: Hub::new(),
            shutdown,
        });
        // Each connection's task is spawned from the accept loop, so it runs there too.
        let serving = shared.clone();
        runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => server::accept_loop(listener, serving).await,
                Err(error) => tracing::error!(%error, "the Slack sandbox cannot listen"),
            }
        });
        tracing::debug!(%addr, "Slack sandbox listening");
        Ok(Sandbox {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        })
    }

    /// The Web API base URL, e.g. `http://127.0.0.1:PORT/api` (no trailing slash).
    pub fn api_url(&self) -> String {
        format!("{}/api", self.shared.base_url())
    }

    /// Stops accepting requests and closes every Socket Mode connection. Callers still waiting
    /// for an ack get an error.
    pub fn shutdown(&self) {
        self.shared.begin_shutdown();
    }

    // ----- Socket Mode driving -----

    /// Waits until at least `n` Socket Mode connections are live (not draining after a
    /// `disconnect`).
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let mut live = self.shared.hub.subscribe_live();
        let reached = tokio::time::timeout(timeout, live.wait_for(|count| *count >= n))
            .await
            .map(|waited| waited.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => bail!("the sandbox shut down while waiting for {n} connection(s)"),
            Err(_) => bail!(
                "only {} of {n} Socket Mode connection(s) after {timeout:?}",
                self.connection_count()
            ),
        }
    }

    /// Live Socket Mode connections (excluding ones told to disconnect).
    pub fn connection_count(&self) -> usize {
        self.shared.hub.live_count()
    }

    /// Sends a `/incident` slash command from `user` in `channel` and waits for its ack. `text` is
    /// what the person typed; it is sent encoded as Slack encodes it (see `compose`: `&` → `&amp;`,
    /// `@bob` → `<@U0BOB|bob>`, URLs as `<https://…>`).
    pub async fn slash_command(&self, user: &str, channel: &str, text: &str) -> anyhow::Result<Ack> {
        self.slash_command_named("/incident", user, channel, text).await
    }

    /// Sends slash command `command` (which `manifest.yml` must declare: Slack offers only the
    /// app's own commands), as [`Sandbox::slash_command`] does.
    pub async fn slash_command_named(
        &self,
        command: &str,
        user: &str,
        channel: &str,
        text: &str,
    ) -> anyhow::Result<Ack> {
        if !scopes::manifest_commands().iter().any(|c| c == command) {
            bail!("`{command}` is not a slash command of this app (manifest.yml declares none such)");
        }
        let envelope = {
            let mut state = self.shared.state();
            let user_name = state.user_name(user).ok_or_else(|| anyhow!("unknown user {user}"))?;
            let channel_name = state
                .channel_display_name(channel)
                .ok_or_else(|| anyhow!("unknown channel {channel}"))?;
            if !scopes::use_scope(&mut state, "commands") {
                bail!("the app lacks the `commands` scope: Slack offers none of its slash commands");
            }
            let trigger_id = state.new_trigger(user);
            let response_url = state.new_response_url(&self.shared.base_url(), user, channel, None);
            events::envelope(
                "slash_commands",
                events::slash_command(&events::SlashCommand {
                    user_id: user,
                    user_name: &user_name,
                    channel_id: channel,
                    channel_name: &channel_name,
                    command,
                    text: &compose::compose(&state, text, compose::Surface::Command),
                    response_url: &response_url,
                    trigger_id: &trigger_id,
                }),
                true,
            )
        };
        self.send_envelope(envelope).await
    }

    /// Issues a fresh `trigger_id` for `user`, as if they had just interacted with the app (valid
    /// for `trigger_ttl`, once). For testing `views.*` without a Socket Mode round trip.
    pub fn issue_trigger(&self, user: &str) -> String {
        self.shared.state().new_trigger(user)
    }

    /// Sends a raw envelope (e.g. the same `envelope_id` again, to test dedupe) and waits for its
    /// ack, up to the ack deadline.
    pub async fn send_envelope(&self, envelope: Value) -> anyhow::Result<Ack> {
        socket::deliver_and_wait(&self.shared, envelope).await
    }

    /// The last envelope handed to a connection (or queued for one).
    pub fn last_envelope(&self) -> Option<Value> {
        self.shared.hub.last_envelope()
    }

    /// Submits a modal previously opened via `views.open`/`views.push`/`views.update`.
    /// `values` is the `state.values` map as Slack sends it:
    /// `{block_id: {action_id: {"type": .., "value" | "selected_option" | ...}}}`, with the
    /// `value`s of `plain_text_input`s as typed: they are sent entity-encoded, as Slack does.
    pub async fn submit_view(&self, user: &str, view_id: &str, values: Value) -> anyhow::Result<Ack> {
        let envelope = {
            let mut state = self.shared.state();
            let user_name = state.user_name(user).ok_or_else(|| anyhow!("unknown user {user}"))?;
            let view = state
                .view(view_id)
                .ok_or_else(|| anyhow!("no view {view_id} was opened"))?;
            if view.closed {
                bail!("view {view_id} is closed; Slack cannot submit it");
            }
            if view.user != user {
                bail!("view {view_id} is shown to {}, not to {user}", view.user);
            }
            let mut raw = view.raw.clone();
            let mut values = values;
            compose::encode_plain_inputs(&mut values, &view.blocks);
            raw["state"] = serde_json::json!({ "values": values });
            let trigger_id = state.new_trigger(user);
            events::envelope(
                "interactive",
                events::view_submission(user, &user_name, &trigger_id, raw),
                true,
            )
        };
        self.send_envelope(envelope).await
    }

    /// Clicks the button `action_id` on the message `message_ts` in `channel` (a channel message,
    /// or an ephemeral message shown to `user`).
    pub async fn click_button(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        value: &str,
    ) -> anyhow::Result<Ack> {
        let envelope = {
            let mut state = self.shared.state();
            let user_name = state.user_name(user).ok_or_else(|| anyhow!("unknown user {user}"))?;
            let channel_name = state
                .channel_display_name(channel)
                .ok_or_else(|| anyhow!("unknown channel {channel}"))?;
            let (message, is_ephemeral) = state
                .find_message(channel, message_ts)
                .map(|m| (m.clone(), false))
                .or_else(|| {
                    state
                        .find_ephemeral(user, channel, message_ts)
                        .map(|m| (m.clone(), true))
                })
                .ok_or_else(|| anyhow!("no message {message_ts} in {channel} visible to {user}"))?;
            let button = blockkit::find_button(&message.blocks, action_id)
                .ok_or_else(|| anyhow!("message {message_ts} in {channel} has no button with action_id {action_id}"))?;
            let trigger_id = state.new_trigger(user);
            let response_url = state.new_response_url(&self.shared.base_url(), user, channel, Some(message_ts));
            let message_json = (!is_ephemeral).then(|| state::message_json(&message));
            events::envelope(
                "interactive",
                events::block_actions(&events::ButtonClick {
                    user_id: user,
                    user_name: &user_name,
                    channel_id: channel,
                    channel_name: &channel_name,
                    message_ts,
                    is_ephemeral,
                    message: message_json,
                    block_id: &button.block_id,
                    action_id,
                    text: button.text,
                    value,
                    trigger_id: &trigger_id,
                    response_url: &response_url,
                    action_ts: &state.next_ts(),
                }),
                false,
            )
        };
        self.send_envelope(envelope).await
    }

    /// `user` adds `reaction` to the message `ts` in `channel`: the reaction is stored on the
    /// message (when the sandbox knows it) and a `reaction_added` event is sent.
    pub async fn add_reaction(&self, user: &str, channel: &str, ts: &str, reaction: &str) -> anyhow::Result<Ack> {
        let envelope = {
            let mut state = self.shared.state();
            if state.user_name(user).is_none() {
                bail!("unknown user {user}");
            }
            if !scopes::use_scope(&mut state, "reactions:read") {
                bail!("the app lacks `reactions:read`: Slack sends it no reaction_added events");
            }
            let item_user = state.react(user, channel, ts, reaction);
            let event_ts = state.next_ts();
            let event_id = state::random_id("Ev", 10);
            events::envelope(
                "events_api",
                events::reaction_added(&events::ReactionAdded {
                    user,
                    reaction,
                    item_user: item_user.as_deref(),
                    channel,
                    ts,
                    event_ts: &event_ts,
                    event_id: &event_id,
                }),
                false,
            )
        };
        self.send_envelope(envelope).await
    }

    /// Sends `{"type":"disconnect","reason":..}` on every connection, then closes each socket
    /// about 100 ms later, as Slack does. The connections stop receiving envelopes at once.
    pub fn disconnect_all(&self, reason: &str) {
        self.shared.hub.disconnect_all(reason);
    }

    /// Silences every open connection: nothing more reaches the app on them (no pongs to its
    /// pings, no envelopes), while the sandbox still reads what the app sends. Envelopes keep
    /// being routed to them until the app closes them; then what they held is redelivered.
    /// New connections are not silenced.
    pub fn silence_connections(&self) {
        self.shared.hub.silence_all();
    }

    /// Silenced connections the app has not closed yet.
    pub fn silent_connections(&self) -> usize {
        self.shared.hub.silent_count()
    }

    /// Socket Mode connections opened since start (each reconnect counts).
    pub fn connections_opened(&self) -> usize {
        self.shared.hub.opened()
    }

    /// The connection an unacknowledged envelope was handed to, if any.
    pub fn connection_holding(&self, envelope_id: &str) -> Option<u64> {
        self.shared.hub.holder(envelope_id)
    }

    /// Sends `disconnect` with `reason` on one connection (ids as in [`Sandbox::connection_log`])
    /// and closes it ~100 ms later.
    pub fn disconnect_connection(&self, id: u64, reason: &str) {
        self.shared.hub.disconnect_one(id, reason);
    }

    /// Slack's verdicts the user saw: commands and interactions (`(type, envelope_id)`) not
    /// acknowledged within the deadline on any connection. Slack never resends these.
    pub fn failures_seen(&self) -> Vec<(String, String)> {
        self.shared.hub.failures_seen()
    }

    /// Turns away new connections beyond `limit` live ones with `too_many_websockets` (Slack's
    /// own limit, 10 per app, still applies); `None` restores it.
    pub fn set_connection_limit(&self, limit: Option<usize>) {
        self.shared.hub.set_limit(limit);
    }

    /// When each connection refused with `too_many_websockets` was attempted.
    pub fn connections_refused(&self) -> Vec<Instant> {
        self.shared.hub.refused()
    }

    /// Every connection registered so far, with when it opened and closed.
    pub fn connection_log(&self) -> Vec<ConnectionRecord> {
        self.shared.hub.connection_log()
    }

    /// Drops every connection's TCP stream without a close frame or a `disconnect` message.
    pub fn drop_all_connections(&self) {
        self.shared.hub.drop_all();
    }

    // ----- Inspection -----

    /// Every Web API call, in arrival order.
    pub fn calls(&self) -> Vec<ApiCall> {
        let mut calls = self.shared.state().calls.clone();
        calls.sort_by_key(|call| call.at);
        calls
    }

    /// The calls to one method, in arrival order.
    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.calls().into_iter().filter(|call| call.method == method).collect()
    }

    /// Acks received within the deadline, in arrival order.
    pub fn acks(&self) -> Vec<Ack> {
        self.shared.hub.acks()
    }

    /// Envelopes not acknowledged within the ack deadline (failures, as in Slack).
    pub fn late_acks(&self) -> usize {
        self.shared.hub.late_acks()
    }

    pub fn channel(&self, id: &str) -> Option<Channel> {
        self.shared.state().channel(id).map(|record| record.channel.clone())
    }

    pub fn channel_by_name(&self, name: &str) -> Option<Channel> {
        let state = self.shared.state();
        state
            .channels
            .iter()
            .find(|record| !record.channel.is_im && record.channel.name == name)
            .map(|record| record.channel.clone())
    }

    /// Every conversation, in creation order (seeded channels first).
    pub fn channels(&self) -> Vec<Channel> {
        self.shared
            .state()
            .channels
            .iter()
            .map(|record| record.channel.clone())
            .collect()
    }

    /// The arguments of the calls to `method` that were applied and answered too late
    /// ([`Fault::AppliedThenLate`]): the client never heard they succeeded.
    pub fn late_answered(&self, method: &str) -> Vec<Value> {
        self.shared
            .state()
            .late_answered
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, args)| args.clone())
            .collect()
    }

    /// The metadata (`event_type`, `event_payload`) a message was posted or updated with.
    pub fn message_metadata(&self, channel: &str, ts: &str) -> Option<Value> {
        self.shared
            .state()
            .message_metadata
            .get(&(channel.to_owned(), ts.to_owned()))
            .cloned()
    }

    /// Messages in a channel, top-level and thread replies, in posting order.
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        let state = self.shared.state();
        state
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    /// The id of the bot's direct-message conversation with `user`, once one exists.
    pub fn dm_channel(&self, user: &str) -> Option<String> {
        self.shared.state().im_with(user).map(str::to_owned)
    }

    /// Ephemeral messages shown to `user` (`chat.postEphemeral`, slash command ack responses,
    /// ephemeral `response_url` posts).
    pub fn ephemerals(&self, user: &str) -> Vec<Message> {
        let state = self.shared.state();
        state
            .ephemerals
            .iter()
            .filter(|(recipient, _)| recipient == user)
            .map(|(_, message)| message.clone())
            .collect()
    }

    pub fn view(&self, view_id: &str) -> Option<View> {
        self.shared.state().view(view_id).cloned()
    }

    /// The ids of the views opened for `user`, oldest first (cheaper than
    /// [`Sandbox::views_opened`] when there are many).
    pub fn view_ids_for(&self, user: &str) -> Vec<String> {
        let state = self.shared.state();
        state
            .views
            .iter()
            .filter(|v| v.user == user)
            .map(|v| v.id.clone())
            .collect()
    }

    /// Every view opened, most recent last.
    pub fn views_opened(&self) -> Vec<View> {
        self.shared.state().views.clone()
    }

    /// Every rejected payload, as `"<method>: <reason>"`.
    pub fn block_kit_violations(&self) -> Vec<String> {
        self.shared.state().violations.clone()
    }

    /// Files shared through `files.completeUploadExternal`: `(channel, title, bytes)`; the channel
    /// is empty when the upload was completed without `channel_id`.
    pub fn files(&self) -> Vec<(String, String, Vec<u8>)> {
        self.shared.state().file_shares.clone()
    }

    /// Bookmarks added to `channel`.
    pub fn bookmarks(&self, channel: &str) -> Vec<Bookmark> {
        let state = self.shared.state();
        state
            .bookmarks
            .iter()
            .filter(|b| b.channel == channel)
            .cloned()
            .collect()
    }

    /// Adds a workspace member (who, like every member, is in the `is_general` channel).
    pub fn add_user(&self, id: &str, name: &str) {
        self.shared.state().add_user(id, name);
    }

    /// Adds a user of a given kind (guest, other workspace, deactivated, ...).
    pub fn add_user_of_kind(&self, id: &str, name: &str, kind: UserKind) {
        self.shared.state().add_user_of_kind(id, name, kind);
    }

    /// Opens a direct-message conversation between two people (not the bot); returns its id.
    /// The bot cannot see it: commands typed there carry a `response_url`, and
    /// `chat.postEphemeral` into it answers `channel_not_found`.
    pub fn open_dm_between(&self, a: &str, b: &str) -> String {
        self.shared.state().open_dm_between(a, b)
    }

    /// A person deletes a message (e.g. the pinned card): it and its pin are gone.
    pub fn delete_message(&self, channel: &str, ts: &str) {
        let mut state = self.shared.state();
        state.messages.retain(|m| !(m.channel == channel && m.ts == ts));
        if let Some(record) = state.channel_mut(channel) {
            record.channel.pins.retain(|p| p != ts);
        }
    }

    /// Stores a reply written by a person in the thread of `thread_ts`; returns its `ts`.
    pub fn seed_user_reply(&self, user: &str, channel: &str, thread_ts: &str, text: &str) -> anyhow::Result<String> {
        let mut state = self.shared.state();
        let ts = state.seed_user_message(user, channel, text)?;
        if let Some(message) = state.find_message_mut(channel, &ts) {
            message.thread_ts = Some(thread_ts.to_owned());
        }
        Ok(ts)
    }

    /// Turns Slack's per-method rate-limit tiers on or off (off by default): over the limit, a
    /// call is answered 429 with the `Retry-After` Slack would send (see `sandbox::rate`).
    pub fn set_rate_tiers(&self, on: bool) {
        self.shared.state().rate = on.then(rate::Limiter::default);
    }

    /// Calls answered 429 by the rate tiers so far.
    pub fn rate_limited_calls(&self) -> usize {
        self.shared.state().rate.as_ref().map_or(0, |r| r.refused)
    }

    /// Adds (or replaces) a user group for `usergroups.users.list`.
    pub fn add_usergroup(&self, id: &str, handle: &str, users: &[&str]) {
        self.shared.state().add_usergroup(id, handle, users);
    }

    /// Stores a message written by a (human) user, e.g. to react to it or to check that the bot
    /// cannot `chat.update` it. No event is sent. Returns its `ts`. `text` is what they typed; it is
    /// stored (and returned by `conversations.history`) encoded as Slack stores it.
    pub fn seed_user_message(&self, user: &str, channel: &str, text: &str) -> anyhow::Result<String> {
        self.shared.state().seed_user_message(user, channel, text)
    }

    // ----- Scopes -----

    /// The bot scopes the app holds; at start, those `manifest.yml` requests.
    pub fn scopes(&self) -> Vec<String> {
        self.shared.state().scopes.iter().cloned().collect()
    }

    /// Adds bot scopes beyond the manifest's (a workspace that granted more).
    pub fn grant_scopes(&self, scopes: &[&str]) {
        self.shared
            .state()
            .scopes
            .extend(scopes.iter().map(|s| (*s).to_owned()));
    }

    /// Takes bot scopes away (a workspace installed from an older manifest).
    pub fn revoke_scopes(&self, scopes: &[&str]) {
        self.shared.state().scopes.retain(|s| !scopes.contains(&s.as_str()));
    }

    /// Removes `user` (e.g. the bot) from a channel's members.
    pub fn leave_channel(&self, channel: &str, user: &str) {
        if let Some(record) = self.shared.state().channel_mut(channel) {
            record.channel.members.retain(|m| m != user);
        }
    }

    /// The scopes that allowed the calls and events so far (see `sandbox::scopes`).
    pub fn scopes_used(&self) -> Vec<String> {
        self.shared.state().scopes_used.iter().cloned().collect()
    }

    // ----- Faults -----

    /// From now on, a random share of Web API calls fail (see [`FaultMix`]); `None` stops it.
    pub fn set_fault_mix(&self, mix: Option<FaultMix>) {
        let mut state = self.shared.state();
        state.fault_rng = mix
            .as_ref()
            .map(|m| <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(m.seed));
        state.fault_mix = mix;
    }

    /// The faults injected by the [`FaultMix`] so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.shared.state().fault_counts
    }

    /// The next `times` calls to `method` (`"*"`: any method) fail with `fault`, after the token
    /// is checked. Faults queue in the order injected.
    pub fn inject_fault(&self, method: &str, fault: Fault, times: usize) {
        if times > 0 {
            self.shared.state().faults.push_back(state::PendingFault {
                method: method.to_owned(),
                fault,
                remaining: times,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_handles_can_be_shared_across_tasks() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<Sandbox>();
    }
}
