//! The operations HTTP endpoint (off unless `http_listen` is set): `/healthz`, `/readyz` and
//! `/metrics` (Prometheus text format 0.0.4), and the change calendar's `/calendar.ics` feed
//! (issue 12) when `calendar_token` is set, and the public status page (issue 14,
//! [`crate::status_page`]) when `[status_page]` is.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::metrics::{Gauges, METRICS};
use crate::slack::web::AuthFailure;

/// A running operations server.
pub struct OpsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl OpsServer {
    /// Binds `addr` (port 0 picks a free port) and serves until [`OpsServer::stop`].
    /// `connected` is the Socket Mode liveness flag `/readyz` requires.
    pub async fn start(addr: SocketAddr, db: Db, connected: Arc<AtomicBool>) -> anyhow::Result<OpsServer> {
        Self::start_with_auth(addr, db, connected, AuthFailure::default()).await
    }

    /// [`OpsServer::start`], with `/readyz` also red once Slack refuses the bot token
    /// (`auth`: set by the Web API client on `invalid_auth`, `token_revoked`, …).
    pub async fn start_with_auth(
        addr: SocketAddr,
        db: Db,
        connected: Arc<AtomicBool>,
        auth: AuthFailure,
    ) -> anyhow::Result<OpsServer> {
        Self::start_with_services(addr, db, connected, auth, None, None).await
    }

    /// [`OpsServer::start_with_auth`], also taking alerts on `/alerts/…` through `alerts`
    /// (issue 15; see [`crate::intake`]) and serving `/calendar.ics` (issue 12) and the public
    /// status page (issue 14) from `feed`.
    pub async fn start_with_services(
        addr: SocketAddr,
        db: Db,
        connected: Arc<AtomicBool>,
        auth: AuthFailure,
        alerts: Option<Arc<crate::service::Service>>,
        feed: Option<Arc<crate::service::Service>>,
    ) -> anyhow::Result<OpsServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on http_listen {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "operations HTTP server listening (/healthz, /readyz, /metrics)");
        let task = tokio::spawn(accept_loop(listener, db, connected, auth, alerts, feed));
        Ok(OpsServer { addr, task })
    }

    /// The bound address (useful when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops open connections.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    db: Db,
    connected: Arc<AtomicBool>,
    auth: AuthFailure,
    alerts: Option<Arc<crate::service::Service>>,
    feed: Option<Arc<crate::service::Service>>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let status_cache = Arc::new(crate::status_page::Cache::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let db = db.clone();
                let connected = connected.clone();
                let auth = auth.clone();
                let alerts = alerts.clone();
                let feed = feed.clone();
                let status_cache = status_cache.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let db = db.clone();
                    let connected = connected.clone();
                    let auth = auth.clone();
                    let alerts = alerts.clone();
                    let feed = feed.clone();
                    let status_cache = status_cache.clone();
                    async move {
                        if request.uri().path() == "/calendar.ics" {
                            return Ok::<_, Infallible>(calendar_feed(feed.as_deref(), &request).await);
                        }
                        if crate::status_page::serves(request.uri().path()) {
                            return Ok(crate::status_page::handle(feed.as_deref(), &status_cache, &request).await);
                        }
                        Ok::<_, Infallible>(route(&db, &connected, &auth, alerts.as_deref(), request).await)
                    }
                });
                // Connections live in the JoinSet so aborting this task closes them too.
                connections.spawn(async move {
                    if let Err(error) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%error, "operations HTTP connection ended with an error");
                    }
                });
                while connections.try_join_next().is_some() {}
            }
            Err(error) => {
                tracing::warn!(%error, "operations HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

const PLAIN: &str = "text/plain; charset=utf-8";

async fn route(
    db: &Db,
    connected: &AtomicBool,
    auth: &AuthFailure,
    alerts: Option<&crate::service::Service>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match request.uri().path() {
        path if path.starts_with("/alerts/") => {
            let path = path.to_string();
            crate::intake::handle(alerts, &path, request).await
        }
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" => match readiness(db, connected, auth).await {
            Ok(()) => text(StatusCode::OK, PLAIN, "ready\n"),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{reason}\n")),
        },
        "/metrics" => {
            let gauges = gauges(db, connected).await;
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                METRICS.render(&gauges),
            )
        }
        _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
    }
}

/// `GET /calendar.ics?token=…`: the change calendar as iCalendar. A missing or wrong token (or
/// no `calendar_token` configured) is a 401 with no content.
async fn calendar_feed(
    service: Option<&crate::service::Service>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let given = request
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"))
        .map(|(_, v)| v.into_owned());
    let expected = service.and_then(|s| s.policy.changes.calendar_token.as_ref());
    let authorized = match (given, expected) {
        (Some(given), Some(expected)) => constant_time_eq(given.as_bytes(), expected.expose().as_bytes()),
        _ => false,
    };
    let Some(service) = service.filter(|_| authorized) else {
        return text(StatusCode::UNAUTHORIZED, PLAIN, String::new());
    };
    match service.calendar_feed(chrono::Utc::now()).await {
        Ok(body) => text(StatusCode::OK, "text/calendar; charset=utf-8", body),
        Err(e) => {
            tracing::warn!(error = %e, "calendar feed: database unavailable");
            text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "database unavailable\n")
        }
    }
}

/// Compares secrets without returning early at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Ready when the database answers, a Socket Mode connection is live and Slack accepts the
/// bot token.
async fn readiness(db: &Db, connected: &AtomicBool, auth: &AuthFailure) -> Result<(), String> {
    if let Some(code) = auth.lock().unwrap_or_else(|p| p.into_inner()).as_deref() {
        return Err(format!(
            "not ready: Slack refuses the bot token ({code}); reinstall the app"
        ));
    }
    if let Err(e) = db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return Err("not ready: database unreachable".into());
    }
    if !connected.load(Ordering::Relaxed) {
        return Err("not ready: no Socket Mode connection".into());
    }
    Ok(())
}

/// Gauges from stored state; a database error leaves them at zero (and is logged).
async fn gauges(db: &Db, connected: &AtomicBool) -> Gauges {
    let outbox_backlog = db.pending_jobs().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metrics: cannot count the outbox backlog");
        0
    });
    let mut open_incidents = BTreeMap::new();
    match db.active_incidents().await {
        Ok(incidents) => {
            for incident in incidents {
                *open_incidents.entry(incident.severity.to_string()).or_default() += 1;
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count open incidents"),
    }
    let (open_follow_ups, overdue_follow_ups) =
        db.count_open_follow_ups(chrono::Utc::now()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "metrics: cannot count open follow-ups");
            (0, 0)
        });
    Gauges {
        outbox_backlog,
        open_incidents,
        socket_connected: connected.load(Ordering::Relaxed),
        open_follow_ups,
        overdue_follow_ups,
    }
}
