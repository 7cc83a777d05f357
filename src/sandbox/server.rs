//! The sandbox's single HTTP listener and its routes.
//!
//! Why one listener: the Web API, the Socket Mode WebSocket (an HTTP upgrade on `/link/`), file
//! uploads and `response_url`s all live on one port, so `api_url()` is the only address a test
//! needs to hand to the bot; everything else is discovered through Slack's own responses.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::{shutdown_requested, socket, web_api, Shared, TEAM_ID};

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Slack's edge does not hold small frames back (Nagle): without this an
                    // envelope queued behind a pong waited for the app's delayed TCP ACK (~40 ms).
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, shared.clone()));
                }
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "sandbox accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = shutdown_requested(&mut shutdown) => break,
        }
    }
    tracing::debug!("Slack sandbox stopped accepting connections");
}

/// Serves one HTTP/1.1 connection (keep-alive, upgrades allowed) until it ends or shutdown.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown_signal();
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(shared, request).await) }
    });
    let connection = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "sandbox HTTP connection ended with an error");
            }
        }
        _ = shutdown_requested(&mut shutdown) => {}
    }
}

async fn route(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if let Some(method) = path.strip_prefix("/api/") {
        return web_api::handle(shared, method.trim_end_matches('/').to_owned(), request).await;
    }
    if path == "/link" || path == "/link/" {
        return socket::handle_upgrade(&shared, request);
    }
    if let Some(file_id) = path.strip_prefix("/upload/") {
        return web_api::handle_upload(shared, file_id.to_owned(), request).await;
    }
    if let Some(id) = path
        .strip_prefix("/response_url/")
        .and_then(|rest| rest.strip_prefix(TEAM_ID))
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return web_api::handle_response_url(shared, id.to_owned(), request).await;
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
