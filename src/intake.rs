//! Alert intake over HTTP (issue 15), served by the operations server ([`crate::http`]) on
//! `http_listen`: `POST /alerts/alertmanager`, `POST /alerts/grafana`, `POST /alerts/generic`.
//!
//! Each request carries its source's bearer token (`[[alert_sources]]`); the answers are
//! `401` (no or wrong token), `413` (body over 1 MiB), `400` (bad JSON or a missing field, with
//! a one-line reason), `503` (the database did not answer: the sender retries) and `202` once
//! every alert of the request is stored, so a crash after the answer loses nothing. Tokens are
//! never logged.

use crate::alerts::{payload, SourceKind, MAX_BODY};
use crate::service::Service;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string() + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"incident-bot alerts\""),
        );
    }
    response
}

fn refuse(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    answer(status, serde_json::json!({ "error": reason }))
}

/// Serves `/alerts/<kind>`; `service` is `None` when no source is configured. Counts each
/// answer in `incident_bot_alert_requests_total`.
pub async fn handle(service: Option<&Service>, path: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let kind = path.strip_prefix("/alerts/").and_then(SourceKind::parse);
    let response = serve(service, kind, request).await;
    if let Some(kind) = kind {
        crate::metrics::METRICS
            .alert_requests
            .inc(&[kind.as_str(), response.status().as_str()]);
    }
    response
}

async fn serve(
    service: Option<&Service>,
    kind: Option<SourceKind>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(kind) = kind else {
        return refuse(
            StatusCode::NOT_FOUND,
            "not found (POST /alerts/alertmanager, /alerts/grafana or /alerts/generic)",
        );
    };
    if request.method() != Method::POST {
        let mut r = refuse(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        r.headers_mut()
            .insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("POST"));
        return r;
    }
    let Some(service) = service else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no alert source is configured ([[alert_sources]])",
        );
    };
    let token = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default();
    let Some(source) = service.policy.alerts.authenticate(kind, token) else {
        tracing::warn!(
            kind = kind.as_str(),
            "alert intake: refused a request without a valid bearer token"
        );
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token for this source",
        );
    };
    let too_big = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body over {} KiB; send fewer alerts per request", MAX_BODY / 1024),
        )
    };
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_big();
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_big(),
        Err(e) => {
            tracing::debug!(error = %e, "alert intake: the body could not be read");
            return refuse(StatusCode::BAD_REQUEST, "the body could not be read");
        }
    };
    let alerts = match payload::parse(source, &body, &service.policy.services) {
        Ok(a) => a,
        Err(reason) => {
            tracing::info!(source = %source.name, %reason, "alert intake: refused a payload");
            return refuse(StatusCode::BAD_REQUEST, &reason);
        }
    };
    match service.ingest_alerts(&alerts).await {
        Ok(ingested) => {
            tracing::debug!(source = %source.name, alerts = ingested.len(), "alerts accepted");
            let groups: Vec<i64> = ingested.iter().map(|i| i.group).collect();
            answer(
                StatusCode::ACCEPTED,
                serde_json::json!({ "accepted": ingested.len(), "groups": groups }),
            )
        }
        Err(refusal) => refuse(StatusCode::SERVICE_UNAVAILABLE, &refusal.to_string()),
    }
}
