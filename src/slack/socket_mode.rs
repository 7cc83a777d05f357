//! Our Socket Mode client, on tokio-tungstenite.
//!
//! Why our own (the README's "Why the transport is ours" has the figures): slack-morphism's
//! client connects with Nagle's algorithm on and awaits each callback before it reads the next
//! frame, so one slow handler delays every envelope queued behind it, and the pongs too. Here:
//! - every connection is opened with TCP_NODELAY (`connect_async_with_config(url, None, true)`);
//! - the reader only parses and spawns: each envelope is handled in its own task, and its ack
//!   is queued to the connection's writer task the moment the handler returns, so no handler
//!   can hold up another envelope's ack, a ping or the missed-pong watchdog;
//! - each `disconnect` reason gets its own answer: `refresh_requested` and `warning` open the
//!   fresh connection *before* the old one closes (its in-flight acks still go out on it);
//!   `too_many_websockets` and `link_disabled` back off exponentially instead of spinning;
//! - an ack whose own connection died on the way goes out on another live connection of the
//!   app (Slack matches acks by `envelope_id`; python-slack-sdk likewise acks on whatever its
//!   current session is after a reconnect), so a command handled during a reconnect is still
//!   answered. Slack redelivers only Events API envelopes; commands and clicks it never resends.
//! - shutdown stops reading, lets the envelopes in flight finish and ack (≤ 3 s), then closes;
//!   from its first moment nothing reconnects and `connected` stays false.
//!
//! The application sees an [`Envelope`] (id, type, retry attempt, raw payload) and answers with
//! the ack's `payload`, or `None` for an empty ack (`{"envelope_id": …}` alone).

use super::web::Connector;
use crate::config::Secret;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use slack_morphism::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as Frame;

/// One envelope as Slack sent it, handed to the application.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Slack's id for this delivery; a redelivered event keeps it.
    pub id: String,
    /// `slash_commands`, `interactive`, `events_api`, or a type we do not know.
    pub kind: String,
    pub payload: Value,
    /// 0 on the first delivery; Slack redelivers Events API envelopes only.
    pub retry_attempt: u64,
    pub retry_reason: Option<String>,
    pub accepts_response_payload: bool,
}

/// The application: answers an envelope with its ack payload (`None`: an empty ack).
pub type EnvelopeHandler = Arc<dyn Fn(Envelope) -> BoxFuture<'static, Option<Value>> + Send + Sync>;

/// Socket Mode tuning.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Connections this process keeps open (Slack allows 10 per app, across all replicas).
    pub connections: u32,
    /// A ping every `ping_interval`; a connection silent (no pong, no frame) for more than
    /// `ping_interval × missed_pongs` is dropped and replaced.
    pub ping_interval: Duration,
    pub missed_pongs: u32,
    /// First wait after a refused or failed connection (`too_many_websockets`,
    /// `link_disabled`, an error); doubled on each further failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        // Two connections so a refresh never leaves the app without one. Pings are sent and
        // pongs read by a task no handler can block, so the window need not cover a handler.
        SocketOptions {
            connections: 2,
            ping_interval: Duration::from_secs(2),
            missed_pongs: 3,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Slack's ack deadline; also how long shutdown waits for the envelopes in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after receipt an ack whose connection died may wait for another one.
const REROUTE_WITHIN: Duration = Duration::from_millis(2_800);
/// A connection that ends sooner than this after `hello` counts as a failure (backoff).
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// After `refresh_requested`/`warning`, Slack closes the old connection itself; if it has
/// not within this time, we close it.
const OLD_CONNECTION_GRACE: Duration = Duration::from_secs(10);

/// A running Socket Mode client: `options.connections` supervised connections.
pub struct SocketModeClient {
    shared: Arc<Shared>,
    slots: Vec<JoinHandle<()>>,
}

struct Shared {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
    opts: SocketOptions,
    handler: EnvelopeHandler,
    /// For `/readyz`: a connection said hello and is open, and we are not shutting down.
    connected: Arc<AtomicBool>,
    state: Mutex<LiveState>,
    /// Set once, at shutdown: stop reading and reconnecting.
    stop: watch::Sender<bool>,
    /// Set once the envelopes in flight are done: close the connections.
    close: watch::Sender<bool>,
    in_flight: AtomicUsize,
    idle: Notify,
    next_connection: AtomicU64,
}

#[derive(Default)]
struct LiveState {
    /// Writers of the connections that said hello and are still open.
    live: BTreeMap<u64, mpsc::UnboundedSender<Frame>>,
    stopping: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// A connection said hello: it can carry acks, and the app is ready (unless stopping).
    fn went_live(&self, id: u64, writer: mpsc::UnboundedSender<Frame>) {
        let mut state = self.lock();
        state.live.insert(id, writer);
        self.connected.store(!state.stopping, Ordering::SeqCst);
    }

    fn went_dead(&self, id: u64) {
        let mut state = self.lock();
        state.live.remove(&id);
        self.connected
            .store(!state.stopping && !state.live.is_empty(), Ordering::SeqCst);
    }

    /// Queues a frame on another live connection than `except`; false if there is none.
    fn reroute(&self, except: u64, frame: &Frame) -> bool {
        let state = self.lock();
        state
            .live
            .iter()
            .filter(|(id, _)| **id != except)
            .any(|(_, writer)| writer.send(frame.clone()).is_ok())
    }

    /// Sends an ack on its own connection or, if that one is gone, on another (waiting a
    /// little for a reconnect, within Slack's deadline).
    async fn send_ack(&self, conn: &ConnectionHandle, frame: Frame, received: Instant) {
        if !conn.dead.load(Ordering::SeqCst) && conn.writer.send(frame.clone()).is_ok() {
            return;
        }
        loop {
            if self.reroute(conn.id, &frame) {
                tracing::debug!(connection = conn.id, "ack sent on another connection (its own closed)");
                return;
            }
            if received.elapsed() >= REROUTE_WITHIN {
                tracing::warn!("an ack was lost: no Socket Mode connection open within Slack's deadline");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = self.opts.backoff_initial.max(Duration::from_millis(10));
        let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let capped = doubled.min(self.opts.backoff_max.max(base));
        // 80–100 %: replicas refused together do not come back in lockstep.
        capped.mul_f64(0.8 + 0.2 * rand::random::<f64>())
    }
}

/// What the envelope tasks of one connection need.
#[derive(Clone)]
struct ConnectionHandle {
    id: u64,
    writer: mpsc::UnboundedSender<Frame>,
    /// Set when the connection is known closed: acks then go elsewhere at once.
    dead: Arc<AtomicBool>,
}

/// How a connection ended, as far as reconnecting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Closed, dropped or silent after working normally: reconnect at once.
    Lost {
        stable: bool,
    },
    TooManyWebsockets,
    LinkDisabled,
    Stopped,
}

impl SocketModeClient {
    /// Starts `opts.connections` supervised connections; returns once they are being opened
    /// (the first `hello` sets [`SocketModeClient::connected`]).
    pub fn start(
        client: Arc<SlackClient<Connector>>,
        app_token: &Secret,
        opts: SocketOptions,
        handler: EnvelopeHandler,
    ) -> SocketModeClient {
        let shared = Arc::new(Shared {
            client,
            token: SlackApiToken::new(app_token.expose().into()),
            opts: opts.clone(),
            handler,
            connected: Arc::new(AtomicBool::new(false)),
            state: Mutex::new(LiveState::default()),
            stop: watch::channel(false).0,
            close: watch::channel(false).0,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            next_connection: AtomicU64::new(0),
        });
        let slots = (0..opts.connections.max(1))
            .map(|slot| tokio::spawn(run_slot(shared.clone(), slot)))
            .collect();
        SocketModeClient { shared, slots }
    }

    /// True while a connection is open and said hello, false from the start of shutdown on.
    pub fn connected(&self) -> Arc<AtomicBool> {
        self.shared.connected.clone()
    }

    /// Envelopes being handled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Stops reading envelopes and reconnecting, lets those in flight finish and ack (up to
    /// [`DRAIN_TIMEOUT`]), then closes every connection.
    pub async fn shutdown(self) {
        {
            let mut state = self.shared.lock();
            state.stopping = true;
            self.shared.connected.store(false, Ordering::SeqCst);
        }
        self.shared.stop.send_replace(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            loop {
                // Registered before the check, so a wake-up in between is not missed.
                let idle = self.shared.idle.notified();
                if self.shared.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = self.shared.in_flight.load(Ordering::SeqCst),
                "envelopes still in flight after {DRAIN_TIMEOUT:?}; closing anyway"
            );
        }
        self.shared.close.send_replace(true);
        for slot in self.slots {
            if tokio::time::timeout(Duration::from_secs(2), slot).await.is_err() {
                tracing::warn!("a Socket Mode connection did not close in time");
            }
        }
    }
}

/// Keeps one connection open: opens, runs, and reopens it until shutdown.
async fn run_slot(shared: Arc<Shared>, slot: u32) {
    let mut failures: u32 = 0;
    // Connections replaced on `refresh_requested`/`warning` finish on their own.
    let mut retiring: Vec<JoinHandle<Ended>> = Vec::new();
    let mut stop = shared.stop.subscribe();
    loop {
        retiring.retain(|t| !t.is_finished());
        if shared.stopping() {
            break;
        }
        let socket = match open(&shared).await {
            Ok(socket) => socket,
            Err(e) => {
                failures += 1;
                let wait = shared.backoff(failures);
                tracing::warn!(slot, error = %e, retry_in = ?wait, "cannot open a Socket Mode connection");
                if sleep_or_stop(wait, &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let (replace_tx, replace_rx) = oneshot::channel();
        let mut task = tokio::spawn(run_connection(shared.clone(), socket, replace_tx));
        let ended = tokio::select! {
            ended = &mut task => ended.unwrap_or(Ended::Lost { stable: false }),
            Ok(()) = replace_rx => {
                // Slack asked for a fresh connection: open it now; the old one keeps carrying
                // its acks until Slack closes it.
                retiring.push(task);
                failures = 0;
                continue;
            }
        };
        match ended {
            Ended::Stopped => break,
            Ended::Lost { stable: true } => failures = 0,
            Ended::Lost { stable: false } | Ended::TooManyWebsockets | Ended::LinkDisabled => {
                failures += 1;
                let wait = shared.backoff(failures);
                match ended {
                    Ended::LinkDisabled => tracing::error!(
                        slot,
                        retry_in = ?wait,
                        "Slack disabled Socket Mode for this app (link_disabled); check the app's settings"
                    ),
                    Ended::TooManyWebsockets => tracing::warn!(
                        slot,
                        retry_in = ?wait,
                        "Slack refused the connection: too_many_websockets (10 per app across all replicas)"
                    ),
                    _ => tracing::warn!(slot, retry_in = ?wait, "Socket Mode connection failed"),
                }
                if sleep_or_stop(wait, &mut stop).await {
                    break;
                }
            }
        }
    }
    for task in retiring {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), task).await;
    }
}

/// Sleeps `wait`; true if shutdown began meanwhile.
async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `apps.connections.open` with the app token, then the WebSocket with TCP_NODELAY.
async fn open(shared: &Shared) -> anyhow::Result<Socket> {
    let opened = shared
        .client
        .open_session(&shared.token)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .map_err(|e| anyhow::anyhow!("apps.connections.open: {}", super::redact(&e.to_string())))?;
    // The URL carries a one-time ticket: never logged.
    let (socket, _) = tokio_tungstenite::connect_async_with_config(opened.url.0.as_str(), None, true)
        .await
        .map_err(|e| anyhow::anyhow!("WebSocket connect: {}", super::redact(&e.to_string())))?;
    Ok(socket)
}

/// Reads one connection until it ends; envelopes are spawned, frames written by a writer task.
async fn run_connection(shared: Arc<Shared>, socket: Socket, replace: oneshot::Sender<()>) -> Ended {
    let id = shared.next_connection.fetch_add(1, Ordering::SeqCst) + 1;
    let (sink, mut stream) = socket.split();
    let (writer_tx, writer_rx) = mpsc::unbounded_channel::<Frame>();
    let conn = ConnectionHandle {
        id,
        writer: writer_tx.clone(),
        dead: Arc::new(AtomicBool::new(false)),
    };
    let writer = tokio::spawn(write_frames(shared.clone(), conn.clone(), sink, writer_rx));
    let mut replace = Some(replace);
    let mut stop = shared.stop.subscribe();
    let mut ping = tokio::time::interval(shared.opts.ping_interval.max(Duration::from_millis(10)));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silent_limit = shared.opts.ping_interval * shared.opts.missed_pongs.max(1);
    let mut last_heard = Instant::now();
    let mut hello_at: Option<Instant> = None;
    let mut refused: Option<Ended> = None;
    let mut retire_by: Option<tokio::time::Instant> = None;
    let ended = loop {
        let retire_deadline = retire_by.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break Ended::Stopped,
            _ = ping.tick() => {
                if last_heard.elapsed() > silent_limit {
                    tracing::warn!(connection = id, silent = ?last_heard.elapsed(), "no pong from Slack; dropping the connection");
                    break Ended::Lost { stable: hello_at.is_some() };
                }
                let _ = writer_tx.send(Frame::Ping(Default::default()));
            }
            _ = tokio::time::sleep_until(retire_deadline), if retire_by.is_some() => {
                break Ended::Lost { stable: true };
            }
            frame = stream.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Frame::Text(text))) => match on_text(&shared, &conn, text.as_str()) {
                        Control::Continue => {}
                        Control::Hello => {
                            hello_at = Some(Instant::now());
                            shared.went_live(id, writer_tx.clone());
                        }
                        Control::Replace => {
                            // Still open and still carrying acks until Slack closes it; the
                            // fresh connection says hello meanwhile, so readiness never dips.
                            if let Some(replace) = replace.take() {
                                let _ = replace.send(());
                            }
                            retire_by.get_or_insert(tokio::time::Instant::now() + OLD_CONNECTION_GRACE);
                        }
                        Control::Refused(why) => {
                            shared.went_dead(id);
                            refused = Some(why);
                        }
                    },
                    Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => {
                        let stable = hello_at.is_some_and(|at| at.elapsed() >= STABLE_AFTER);
                        break refused.unwrap_or(Ended::Lost { stable });
                    }
                    // Pings are answered by tungstenite; pongs only prove the link is alive.
                    Some(Ok(_)) => {}
                }
            }
        }
    };
    shared.went_dead(id);
    if ended == Ended::Stopped {
        // Read nothing more; let the envelopes in flight ack on this connection, then close.
        let mut close = shared.close.subscribe();
        let _ = close.wait_for(|c| *c).await;
        let _ = writer_tx.send(Frame::Close(None));
    } else {
        conn.dead.store(true, Ordering::SeqCst);
        let _ = writer_tx.send(Frame::Close(None));
    }
    drop(writer_tx);
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    tracing::debug!(connection = id, ?ended, "Socket Mode connection closed");
    ended
}

/// Writes the connection's frames in order; a frame it cannot write (and any queued after it)
/// is handed to another live connection, so an ack is not lost with its connection.
async fn write_frames(
    shared: Arc<Shared>,
    conn: ConnectionHandle,
    mut sink: futures_util::stream::SplitSink<Socket, Frame>,
    mut rx: mpsc::UnboundedReceiver<Frame>,
) {
    while let Some(frame) = rx.recv().await {
        let closing = matches!(frame, Frame::Close(_));
        // Feed what is queued, then flush once: one write for a burst of acks.
        let mut failed = sink.feed(frame.clone()).await.err().map(|_| frame);
        if failed.is_none() && !closing {
            while let Ok(next) = rx.try_recv() {
                let is_close = matches!(next, Frame::Close(_));
                if let Err(_e) = sink.feed(next.clone()).await {
                    failed = Some(next);
                    break;
                }
                if is_close {
                    break;
                }
            }
        }
        if failed.is_none() && sink.flush().await.is_err() {
            // What was fed may or may not have left; nothing more can be done for it.
            conn.dead.store(true, Ordering::SeqCst);
            break;
        }
        if let Some(frame) = failed {
            conn.dead.store(true, Ordering::SeqCst);
            rx.close();
            let mut left = vec![frame];
            while let Ok(next) = rx.try_recv() {
                left.push(next);
            }
            for frame in left.into_iter().filter(|f| matches!(f, Frame::Text(_))) {
                if !shared.reroute(conn.id, &frame) {
                    tracing::warn!("an ack was lost with its connection");
                }
            }
            return;
        }
        if closing {
            break;
        }
    }
    let _ = sink.close().await;
}

enum Control {
    Continue,
    Hello,
    Replace,
    Refused(Ended),
}

/// Handles a text frame: `hello`, `disconnect`, or an envelope (spawned).
fn on_text(shared: &Arc<Shared>, conn: &ConnectionHandle, text: &str) -> Control {
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        // What people typed may be in it: its size only.
        tracing::warn!(
            connection = conn.id,
            bytes = text.len(),
            "Socket Mode frame is not JSON; ignored"
        );
        return Control::Continue;
    };
    let kind = frame["type"].as_str().unwrap_or_default();
    match kind {
        "hello" => return Control::Hello,
        "disconnect" => {
            let reason = frame["reason"].as_str().unwrap_or_default();
            tracing::info!(connection = conn.id, reason, "Slack asked to disconnect");
            return match reason {
                "too_many_websockets" => Control::Refused(Ended::TooManyWebsockets),
                "link_disabled" => Control::Refused(Ended::LinkDisabled),
                // refresh_requested, warning, and any reason Slack adds later.
                _ => Control::Replace,
            };
        }
        _ => {}
    }
    let Some(id) = frame["envelope_id"].as_str().map(str::to_owned) else {
        tracing::warn!(
            connection = conn.id,
            kind,
            "Socket Mode frame of unknown type without envelope_id; ignored"
        );
        return Control::Continue;
    };
    let received = Instant::now();
    let envelope = Envelope {
        id: id.clone(),
        kind: kind.to_owned(),
        retry_attempt: frame["retry_attempt"].as_u64().unwrap_or(0),
        retry_reason: frame["retry_reason"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        accepts_response_payload: frame["accepts_response_payload"].as_bool().unwrap_or(false),
        payload: match frame {
            Value::Object(mut map) => map.remove("payload").unwrap_or(Value::Null),
            _ => Value::Null,
        },
    };
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let (shared, conn) = (shared.clone(), conn.clone());
    tokio::spawn(async move {
        let answer = (shared.handler)(envelope).await;
        shared
            .send_ack(&conn, Frame::text(ack_frame(&id, answer)), received)
            .await;
        if shared.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            shared.idle.notify_waiters();
        }
    });
    Control::Continue
}

/// `{"envelope_id": …}` alone for an empty ack, with `"payload"` only when there is one.
pub fn ack_frame(envelope_id: &str, payload: Option<Value>) -> String {
    match payload {
        Some(payload) => json!({ "envelope_id": envelope_id, "payload": payload }),
        None => json!({ "envelope_id": envelope_id }),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_acks_carry_the_envelope_id_alone() {
        assert_eq!(ack_frame("e1", None), r#"{"envelope_id":"e1"}"#);
        let with = ack_frame("e2", Some(json!({"text": "hi"})));
        let parsed: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(parsed, json!({"envelope_id": "e2", "payload": {"text": "hi"}}));
    }
}
