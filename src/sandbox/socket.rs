//! Socket Mode: the WebSocket side of the sandbox.
//!
//! Why it behaves this way: an app's Socket Mode client has to cope with what Slack does on the
//! wire, so the hub reproduces it — `hello` first; each envelope to *one* live connection, spread
//! round-robin; acks matched by `envelope_id`; an envelope counts as failed when its ack misses the
//! deadline; when a connection dies holding unacknowledged envelopes, only Events API envelopes
//! are redelivered (same `envelope_id`, `retry_attempt + 1`, `retry_reason: "timeout"`) on
//! another connection, as Slack does: a slash command or an interaction is never resent, and one
//! not acked within the deadline (on any of the app's connections) is a failure the user saw
//! (`dispatch_failed`, "Operation timed out"), recorded in [`Hub::failures_seen`]; `disconnect` is
//! announced and the socket closed ~100 ms later; at most [`MAX_SOCKET_CONNECTIONS`] connections
//! (or a lower limit set by a test), beyond which a connection gets `too_many_websockets`.
//!
//! The effects Slack gives an ack's payload are applied too: a slash command's response becomes an
//! ephemeral (or in-channel) message, and a `view_submission`'s `response_action` updates, pushes or
//! clears views — all checked against the Block Kit rules.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;

use super::{blockkit, events, shutdown_requested, Ack, Message, Shared, BOT_USER_ID, MAX_SOCKET_CONNECTIONS};

/// How long after a `disconnect` message the socket is closed. Slack closes it shortly after the
/// message (a `warning` comes earlier ahead); 100 ms keeps tests fast.
const CLOSE_AFTER_DISCONNECT: Duration = Duration::from_millis(100);
/// How long a ticket from `apps.connections.open` stays valid.
pub(crate) const TICKET_TTL: Duration = Duration::from_secs(30);

/// What a connection task is told to do.
#[derive(Debug)]
enum Outbound {
    /// Send a text frame.
    Frame(String),
    /// Send a `disconnect` message, then close shortly after.
    Disconnect(String),
    /// Drop the TCP stream without any goodbye.
    Abort,
}

/// Why a new connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Slack's limit of [`MAX_SOCKET_CONNECTIONS`] per app.
    TooManyWebsockets,
    ShuttingDown,
}

#[derive(Debug)]
struct Connection {
    tx: mpsc::UnboundedSender<Outbound>,
    /// Told to disconnect: receives no new envelopes and no longer counts as live.
    draining: bool,
    /// Silenced (see [`Hub::silence_all`]): what the sandbox writes to it is lost.
    muted: Arc<AtomicBool>,
}

/// The server side of a connection's byte stream; while `muted`, every byte written is
/// dropped (reported as sent), so the app hears nothing — no pongs, no envelopes — while the
/// sandbox still reads what the app sends (its acks, pings and close frame).
struct Muteable<S> {
    inner: S,
    muted: Arc<AtomicBool>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Muteable<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Muteable<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.muted.load(Ordering::Relaxed) {
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An envelope waiting for its ack.
#[derive(Debug)]
struct Pending {
    key: u64,
    envelope_id: String,
    envelope: Value,
    /// The connection holding it, or `None` while no connection is live.
    connection: Option<u64>,
    /// Its connection closed before the ack and it is not an event: Slack does not resend it;
    /// an ack on another connection is still taken until the deadline.
    orphaned: bool,
    first_sent: Instant,
    reply: oneshot::Sender<Ack>,
}

/// When a connection was open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub id: u64,
    pub opened: Instant,
    pub closed: Option<Instant>,
}

#[derive(Debug, Default)]
struct HubState {
    connections: BTreeMap<u64, Connection>,
    next_connection: u64,
    /// The connection id that got the last envelope (round-robin cursor).
    last_target: u64,
    pending: Vec<Pending>,
    next_key: u64,
    acks: Vec<Ack>,
    late_acks: usize,
    /// Commands and interactions not acked within the deadline: `(type, envelope_id)`.
    failures_seen: Vec<(String, String)>,
    /// Connections ever registered.
    opened: usize,
    /// A lower limit than [`MAX_SOCKET_CONNECTIONS`], set by a test.
    limit: Option<usize>,
    /// Connections turned away with `too_many_websockets`, with when.
    refused: Vec<Instant>,
    /// Every registered connection: id, opened, closed.
    log: Vec<ConnectionRecord>,
    last_envelope: Option<Value>,
    closed: bool,
}

impl HubState {
    fn live_count(&self) -> usize {
        self.connections.values().filter(|c| !c.draining).count()
    }

    /// The next live connection after the cursor, wrapping around.
    fn next_target(&mut self) -> Option<u64> {
        let live = |c: &&Connection| !c.draining;
        let after = self
            .connections
            .range(self.last_target + 1..)
            .find(|(_, c)| live(c))
            .map(|(id, _)| *id);
        let target = after.or_else(|| self.connections.iter().find(|(_, c)| live(c)).map(|(id, _)| *id))?;
        self.last_target = target;
        Some(target)
    }

    /// Hands a pending envelope to a live connection, if there is one.
    fn deliver(&mut self, index: usize) {
        let Some(target) = self.next_target() else {
            self.pending[index].connection = None;
            return;
        };
        let pending = &mut self.pending[index];
        pending.connection = Some(target);
        let frame = pending.envelope.to_string();
        self.last_envelope = Some(pending.envelope.clone());
        if let Some(connection) = self.connections.get(&target) {
            // A closed channel means the task is exiting; `unregister` will redeliver.
            let _ = connection.tx.send(Outbound::Frame(frame));
        }
    }
}

/// The registry of Socket Mode connections and envelopes in flight.
#[derive(Debug)]
pub(crate) struct Hub {
    state: Mutex<HubState>,
    live: watch::Sender<usize>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            state: Mutex::new(HubState::default()),
            live: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_live(&self, state: &HubState) {
        self.live.send_replace(state.live_count());
    }

    pub(crate) fn subscribe_live(&self) -> watch::Receiver<usize> {
        self.live.subscribe()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.lock().live_count()
    }

    pub(crate) fn acks(&self) -> Vec<Ack> {
        self.lock().acks.clone()
    }

    pub(crate) fn late_acks(&self) -> usize {
        self.lock().late_acks
    }

    pub(crate) fn failures_seen(&self) -> Vec<(String, String)> {
        self.lock().failures_seen.clone()
    }

    pub(crate) fn set_limit(&self, limit: Option<usize>) {
        self.lock().limit = limit;
    }

    pub(crate) fn refused(&self) -> Vec<Instant> {
        self.lock().refused.clone()
    }

    pub(crate) fn connection_log(&self) -> Vec<ConnectionRecord> {
        self.lock().log.clone()
    }

    pub(crate) fn last_envelope(&self) -> Option<Value> {
        self.lock().last_envelope.clone()
    }

    /// Connections ever opened (reconnects included).
    pub(crate) fn opened(&self) -> usize {
        self.lock().opened
    }

    /// Connections silenced by [`Hub::silence_all`] and not yet closed.
    pub(crate) fn silent_count(&self) -> usize {
        self.lock()
            .connections
            .values()
            .filter(|c| c.muted.load(Ordering::Relaxed))
            .count()
    }

    /// Silences every open connection: from now on nothing the sandbox sends on them arrives
    /// (no pongs, no envelopes), like a network path that died one way. They still count as
    /// live and still get envelopes, as Slack cannot tell; when the app gives up on one and
    /// closes it, what it held unacknowledged is redelivered on another connection.
    pub(crate) fn silence_all(&self) {
        for connection in self.lock().connections.values() {
            connection.muted.store(true, Ordering::Relaxed);
        }
    }

    /// Adds a connection: queues `hello`, then any envelopes that were waiting for a connection.
    fn register(&self, muted: Arc<AtomicBool>) -> Result<(u64, mpsc::UnboundedReceiver<Outbound>), Refusal> {
        let mut state = self.lock();
        if state.closed {
            return Err(Refusal::ShuttingDown);
        }
        if state.live_count()
            >= state
                .limit
                .unwrap_or(MAX_SOCKET_CONNECTIONS)
                .min(MAX_SOCKET_CONNECTIONS)
        {
            state.refused.push(Instant::now());
            return Err(Refusal::TooManyWebsockets);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        state.next_connection += 1;
        state.opened += 1;
        let id = state.next_connection;
        state.log.push(ConnectionRecord {
            id,
            opened: Instant::now(),
            closed: None,
        });
        state.connections.insert(
            id,
            Connection {
                tx,
                draining: false,
                muted,
            },
        );
        let hello = events::hello(state.live_count()).to_string();
        if let Some(connection) = state.connections.get(&id) {
            let _ = connection.tx.send(Outbound::Frame(hello));
        }
        for index in 0..state.pending.len() {
            if state.pending[index].connection.is_none() && !state.pending[index].orphaned {
                state.deliver(index);
            }
        }
        self.publish_live(&state);
        Ok((id, rx))
    }

    /// Removes a closed connection and redelivers the events it held unacknowledged (only
    /// events: Slack never resends a command or an interaction).
    fn unregister(&self, id: u64) {
        let mut state = self.lock();
        state.connections.remove(&id);
        if let Some(record) = state.log.iter_mut().find(|r| r.id == id) {
            record.closed = Some(Instant::now());
        }
        for index in 0..state.pending.len() {
            if state.pending[index].connection == Some(id) {
                if state.pending[index].envelope["type"] != "events_api" {
                    state.pending[index].connection = None;
                    state.pending[index].orphaned = true;
                    continue;
                }
                let envelope = &mut state.pending[index].envelope;
                let attempt = envelope["retry_attempt"].as_u64().unwrap_or(0) + 1;
                envelope["retry_attempt"] = json!(attempt);
                envelope["retry_reason"] = json!("timeout");
                state.deliver(index);
            }
        }
        self.publish_live(&state);
    }

    /// Queues an envelope for delivery; the receiver resolves with its ack.
    fn dispatch(&self, envelope_id: String, envelope: Value) -> (u64, oneshot::Receiver<Ack>) {
        let (reply, rx) = oneshot::channel();
        let mut state = self.lock();
        state.next_key += 1;
        let key = state.next_key;
        state.last_envelope = Some(envelope.clone());
        state.pending.push(Pending {
            key,
            envelope_id,
            envelope,
            connection: None,
            orphaned: false,
            first_sent: Instant::now(),
            reply,
        });
        let index = state.pending.len() - 1;
        state.deliver(index);
        (key, rx)
    }

    /// Gives up on an envelope whose deadline passed; true if it was still unacknowledged.
    fn expire(&self, key: u64) -> bool {
        let mut state = self.lock();
        match state.pending.iter().position(|p| p.key == key) {
            Some(index) => {
                let pending = state.pending.remove(index);
                state.late_acks += 1;
                let kind = pending.envelope["type"].as_str().unwrap_or_default().to_owned();
                if kind == "slash_commands" || kind == "interactive" {
                    state.failures_seen.push((kind, pending.envelope_id));
                }
                true
            }
            None => false,
        }
    }

    /// Takes the pending envelope an ack on `connection` answers (preferring the copy that
    /// connection holds, since the same id may be in flight twice).
    fn take_pending(&self, connection: u64, envelope_id: &str) -> Option<Pending> {
        let mut state = self.lock();
        let index = state
            .pending
            .iter()
            .position(|p| p.envelope_id == envelope_id && p.connection == Some(connection))
            .or_else(|| state.pending.iter().position(|p| p.envelope_id == envelope_id))?;
        Some(state.pending.remove(index))
    }

    fn record_ack(&self, ack: Ack) {
        self.lock().acks.push(ack);
    }

    pub(crate) fn disconnect_all(&self, reason: &str) {
        let mut state = self.lock();
        for connection in state.connections.values_mut().filter(|c| !c.draining) {
            connection.draining = true;
            let _ = connection.tx.send(Outbound::Disconnect(reason.to_owned()));
        }
        self.publish_live(&state);
    }

    /// The connection holding a pending envelope.
    pub(crate) fn holder(&self, envelope_id: &str) -> Option<u64> {
        self.lock()
            .pending
            .iter()
            .find(|p| p.envelope_id == envelope_id)
            .and_then(|p| p.connection)
    }

    /// Sends `disconnect` on one connection (then closes it, as [`Hub::disconnect_all`]).
    pub(crate) fn disconnect_one(&self, id: u64, reason: &str) {
        let mut state = self.lock();
        if let Some(connection) = state.connections.get_mut(&id).filter(|c| !c.draining) {
            connection.draining = true;
            let _ = connection.tx.send(Outbound::Disconnect(reason.to_owned()));
        }
        self.publish_live(&state);
    }

    pub(crate) fn drop_all(&self) {
        let mut state = self.lock();
        for connection in state.connections.values_mut() {
            connection.draining = true;
            let _ = connection.tx.send(Outbound::Abort);
        }
        self.publish_live(&state);
    }

    /// Shutdown: close every connection and fail every waiting caller.
    pub(crate) fn close_all(&self) {
        let mut state = self.lock();
        state.closed = true;
        for connection in state.connections.values_mut() {
            connection.draining = true;
            let _ = connection.tx.send(Outbound::Abort);
        }
        state.pending.clear();
        self.publish_live(&state);
    }
}

/// Sends `envelope` and waits for its ack until the ack deadline.
pub(crate) async fn deliver_and_wait(shared: &Arc<Shared>, envelope: Value) -> anyhow::Result<Ack> {
    let envelope_id = envelope["envelope_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the envelope has no string `envelope_id`: {envelope}"))?
        .to_owned();
    let kind = envelope["type"].as_str().unwrap_or("?").to_owned();
    let deadline = shared.opts.ack_deadline;
    let (key, mut rx) = shared.hub.dispatch(envelope_id.clone(), envelope);
    match tokio::time::timeout(deadline, &mut rx).await {
        Ok(Ok(ack)) => Ok(ack),
        Ok(Err(_)) => bail!("the sandbox shut down before envelope {envelope_id} ({kind}) was acknowledged"),
        Err(_) => {
            if shared.hub.expire(key) {
                bail!("envelope {envelope_id} ({kind}) was not acknowledged within {deadline:?}");
            }
            // The ack arrived as the deadline passed and is being applied: take it.
            match tokio::time::timeout(Duration::from_secs(1), rx).await {
                Ok(Ok(ack)) => Ok(ack),
                _ => bail!("envelope {envelope_id} ({kind}) was not acknowledged within {deadline:?}"),
            }
        }
    }
}

fn plain_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Answers `GET /link/?ticket=...` with a WebSocket upgrade (RFC 6455 handshake), after checking
/// the ticket issued by `apps.connections.open` (single use, like Slack's).
pub(crate) fn handle_upgrade(shared: &Arc<Shared>, mut request: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let wants_websocket = header("upgrade").is_some_and(|v| v.contains("websocket"))
        && header("connection").is_some_and(|v| v.contains("upgrade"))
        && header("sec-websocket-version").as_deref() == Some("13");
    let Some(key) = request
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return plain_response(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    };
    if !wants_websocket {
        return plain_response(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    let ticket = request
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == "ticket")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_default();
    let ticket_ok = match shared.state().tickets.remove(&ticket) {
        Some(issued) => issued.elapsed() <= TICKET_TTL,
        None => false,
    };
    if !ticket_ok {
        return plain_response(StatusCode::UNAUTHORIZED, "invalid or used ticket\n");
    }

    let on_upgrade = hyper::upgrade::on(&mut request);
    let shared = shared.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let muted = Arc::new(AtomicBool::new(false));
                let stream = Muteable {
                    inner: TokioIo::new(upgraded),
                    muted: muted.clone(),
                };
                let socket = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
                run_connection(shared, socket, muted).await;
            }
            Err(error) => tracing::debug!(%error, "Socket Mode upgrade failed"),
        }
    });
    let mut response = plain_response(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) = hyper::header::HeaderValue::from_str(&derive_accept_key(&key)) {
        headers.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Serves one Socket Mode connection until it closes.
async fn run_connection<S>(shared: Arc<Shared>, mut socket: WebSocketStream<S>, muted: Arc<AtomicBool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (id, mut outbound) = match shared.hub.register(muted) {
        Ok(registered) => registered,
        Err(Refusal::TooManyWebsockets) => {
            let refusal = events::disconnect("too_many_websockets", shared.hub.live_count());
            let _ = socket.send(Frame::text(refusal.to_string())).await;
            let _ = socket.close(None).await;
            return;
        }
        Err(Refusal::ShuttingDown) => {
            let _ = socket.close(None).await;
            return;
        }
    };
    tracing::debug!(connection = id, "Socket Mode connection opened");
    let mut shutdown = shared.shutdown_signal();
    let mut close_at: Option<tokio::time::Instant> = None;
    loop {
        let close_deadline = close_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Frame::Text(text))) => on_client_frame(&shared, id, text.as_str()),
                // tungstenite queues the Pong when it reads a Ping; flushing sends it now.
                Some(Ok(Frame::Ping(_))) => {
                    if socket.flush().await.is_err() {
                        break;
                    }
                }
                Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            command = outbound.recv() => match command {
                Some(Outbound::Frame(text)) => {
                    if socket.send(Frame::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Disconnect(reason)) => {
                    let message = events::disconnect(&reason, shared.hub.live_count());
                    if socket.send(Frame::text(message.to_string())).await.is_err() {
                        break;
                    }
                    close_at = Some(tokio::time::Instant::now() + CLOSE_AFTER_DISCONNECT);
                }
                Some(Outbound::Abort) | None => break,
            },
            _ = tokio::time::sleep_until(close_deadline), if close_at.is_some() => {
                let _ = socket.close(None).await;
                break;
            }
            _ = shutdown_requested(&mut shutdown) => break,
        }
    }
    shared.hub.unregister(id);
    tracing::debug!(connection = id, "Socket Mode connection closed");
}

/// Handles a frame from the app: an ack `{"envelope_id": .., "payload": ..?}`.
fn on_client_frame(shared: &Arc<Shared>, connection: u64, text: &str) {
    // The ack's latency ends when its frame arrives, as Slack measures it: not after the
    // sandbox has parsed it and applied its payload under the state's lock.
    let received = Instant::now();
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(connection, frame = text, "Socket Mode frame is not JSON");
        return;
    };
    let Some(envelope_id) = frame["envelope_id"].as_str() else {
        tracing::warn!(connection, frame = text, "Socket Mode frame without envelope_id");
        return;
    };
    let Some(pending) = shared.hub.take_pending(connection, envelope_id) else {
        tracing::debug!(
            connection,
            envelope_id,
            "ack for no pending envelope (late or duplicate)"
        );
        return;
    };
    let payload = frame.get("payload").filter(|p| !p.is_null()).cloned();
    apply_ack_payload(shared, &pending.envelope, payload.as_ref());
    let ack = Ack {
        envelope_id: pending.envelope_id,
        payload,
        latency: received.saturating_duration_since(pending.first_sent),
        connection,
        delivered_on: pending.connection,
    };
    shared.hub.record_ack(ack.clone());
    // The caller may have given up at the deadline; the ack is still recorded.
    let _ = pending.reply.send(ack);
}

/// Gives an ack payload the effect Slack gives it.
fn apply_ack_payload(shared: &Arc<Shared>, envelope: &Value, payload: Option<&Value>) {
    let kind = envelope["type"].as_str().unwrap_or_default();
    let inner = &envelope["payload"];
    match kind {
        "slash_commands" => {
            if let Some(payload) = payload {
                apply_command_response(shared, inner, payload);
            }
        }
        "interactive" if inner["type"] == "view_submission" => {
            apply_view_submission_response(shared, inner, payload);
        }
        _ => {}
    }
}

/// A slash command's ack payload is shown to the user (ephemeral) or posted in the channel.
fn apply_command_response(shared: &Arc<Shared>, command: &Value, payload: &Value) {
    let mut state = shared.state();
    let origin = "slash_commands ack";
    let mut blocks = payload.get("blocks").cloned().unwrap_or(Value::Null);
    if !blocks.is_null() {
        let errors = blockkit::check_message_blocks(&blocks);
        if !errors.is_empty() {
            state.violations.extend(errors.iter().map(|e| format!("{origin}: {e}")));
            return;
        }
        blockkit::fill_generated_ids(&mut blocks);
    }
    let text = payload["text"].as_str().unwrap_or_default().to_owned();
    if text.is_empty() && blocks.is_null() {
        return;
    }
    let user = command["user_id"].as_str().unwrap_or_default().to_owned();
    let channel = command["channel_id"].as_str().unwrap_or_default().to_owned();
    let message = Message {
        channel,
        ts: state.next_ts(),
        user: BOT_USER_ID.to_owned(),
        text,
        blocks,
        thread_ts: None,
        edited: false,
        reactions: Vec::new(),
    };
    if payload["response_type"] == "in_channel" {
        state.messages.push(message);
    } else {
        state.ephemerals.push((user, message));
    }
}

/// `response_action`: `errors` keeps the view open, `update` replaces it, `push` stacks a new
/// view, `clear` closes the stack; no response closes the submitted view.
fn apply_view_submission_response(shared: &Arc<Shared>, submission: &Value, payload: Option<&Value>) {
    let mut state = shared.state();
    let origin = "view_submission ack";
    let view_id = submission["view"]["id"].as_str().unwrap_or_default().to_owned();
    let user = submission["user"]["id"].as_str().unwrap_or_default().to_owned();
    // Keep the submitted values on the stored view, as Slack keeps the view's state.
    if let Some(view) = state.view_mut(&view_id) {
        view.raw["state"] = submission["view"]["state"].clone();
    }
    let action = payload.and_then(|p| p["response_action"].as_str());
    match action {
        Some("errors") => {
            let Some(view) = state.view(&view_id) else { return };
            let inputs = blockkit::input_block_ids(&view.blocks);
            let unknown: Vec<String> = payload
                .and_then(|p| p["errors"].as_object())
                .map(|errors| errors.keys().filter(|k| !inputs.contains(k)).cloned().collect())
                .unwrap_or_default();
            for block_id in unknown {
                state.violations.push(format!(
                    "{origin}: `errors` names block_id `{block_id}`, which is not an input block of view {view_id}"
                ));
            }
        }
        Some("update") | Some("push") => {
            let new_view = payload.map(|p| p["view"].clone()).unwrap_or(Value::Null);
            let errors = blockkit::check_view(&new_view, "/view");
            if !errors.is_empty() {
                state.violations.extend(errors.iter().map(|e| format!("{origin}: {e}")));
                return;
            }
            if action == Some("update") {
                state.replace_view(&view_id, new_view);
            } else if let Some(previous) = state.view(&view_id).cloned() {
                state.store_view(new_view, &user, None, Some(&previous));
            }
        }
        Some("clear") => {
            let root = state.view(&view_id).map(|v| v.root_view_id.clone());
            for view in state
                .views
                .iter_mut()
                .filter(|v| Some(&v.root_view_id) == root.as_ref())
            {
                view.closed = true;
            }
        }
        Some(other) => state
            .violations
            .push(format!("{origin}: unknown response_action `{other}`")),
        None => {
            if let Some(view) = state.view_mut(&view_id) {
                view.closed = true;
            }
        }
    }
}
