//! The public status page (issue 14), served on the [`crate::http`] server when
//! `[status_page]` is configured, from stored data only:
//!
//! - `GET /status`: the page as server-rendered HTML ([`html`], maud: escaped by default),
//!   readable without JavaScript and on a phone; its CSS at `GET /status/style.css` (the CSP
//!   allows no inline style);
//! - `GET /status/incidents/<public id>`: one public incident's whole published history;
//! - `GET /status.json`: the same content as JSON ([`json`], schema in the README);
//! - `GET /status/feed.atom`: the newest published updates as Atom 1.0 ([`atom`]).
//!
//! Only public fields ever reach these: public ids and titles, published messages and the
//! component statuses they give ([`crate::comms::PublicIncident`]). Private incidents, drafts,
//! internal titles, people and channels are not read at all (the SQL leaves them out).
//!
//! Every answer carries a strict Content-Security-Policy, `nosniff`, a short public cache
//! lifetime and a strong `ETag` (a hash of the body); `If-None-Match` gets a 304. Only GET and
//! HEAD are allowed. Without `[status_page]` every path here is a plain 404, as if unknown.
//!
//! A status page is read most when something is broken, often while the database is under
//! strain too: each server keeps the page, the JSON and the feed for [`FRESH_FOR`] ([`Cache`]),
//! and concurrent misses wait for one render, so the database sees about one read a second per
//! endpoint and replica however many people reload.

mod atom;
mod html;
mod json;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::comms::StatusPage;
use crate::db::Db;
use crate::service::Service;

/// No script at all, styles and images only from here (images also from https: logos), never
/// framed, no forms, no `<base>`: stored text cannot become active content even if escaping
/// were ever missed.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Short, so a new update reaches readers within half a minute while bursts of readers during
/// an outage are still absorbed by caches in front of the bot.
pub const CACHE_CONTROL: &str = "public, max-age=30";

/// How long a rendered page, JSON or feed is served from memory: short against the 30 s that
/// readers' caches may keep it anyway.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// How many published updates the Atom feed carries.
pub const FEED_ENTRIES: i64 = 50;

/// Longest public id accepted in a URL; ids are 10 characters ([`crate::comms::new_public_id`]),
/// anything longer or not alphanumeric is a 404 without a database query.
const MAX_PUBLIC_ID: usize = 64;

/// Whether `path` belongs to the status page (the HTTP server routes those here).
pub fn serves(path: &str) -> bool {
    path == "/status" || path == "/status.json" || path.starts_with("/status/")
}

/// The status page's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Page,
    Style,
    Json,
    Feed,
    Incident(&'a str),
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Route<'a>> {
        match path {
            "/status" => Some(Route::Page),
            "/status/style.css" => Some(Route::Style),
            "/status.json" => Some(Route::Json),
            "/status/feed.atom" => Some(Route::Feed),
            _ => path.strip_prefix("/status/incidents/").map(Route::Incident),
        }
    }
}

impl Route<'_> {
    /// The [`Cache`] slot of the routes read by everyone (one incident's page is not cached:
    /// it is read less and its ids are unbounded).
    fn slot(self) -> Option<usize> {
        match self {
            Route::Page => Some(0),
            Route::Json => Some(1),
            Route::Feed => Some(2),
            Route::Style | Route::Incident(_) => None,
        }
    }
}

/// A rendered answer before the conditional-request and header rules.
struct Rendered {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    etag: String,
}

impl Rendered {
    fn new(status: StatusCode, content_type: &'static str, body: String) -> Rendered {
        Rendered {
            status,
            content_type,
            etag: etag(body.as_bytes()),
            body: Bytes::from(body),
        }
    }
}

/// The page, the JSON and the feed as last rendered, one slot each. A slot's lock is held
/// while it is rendered again, so concurrent misses wait for that render instead of each
/// querying the database (a burst at expiry costs one read, not one per reader).
#[derive(Default)]
pub struct Cache {
    slots: [tokio::sync::Mutex<Option<Kept>>; 3],
}

/// A rendered body and when it was rendered.
type Kept = (Instant, Arc<Rendered>);

const HTML: &str = "text/html; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// Answers a request for one of the paths [`serves`] accepts. `service` is `None` when the
/// server runs without one (then, as without `[status_page]`, everything is a 404); `cache` is
/// the server's own.
pub async fn handle<B>(service: Option<&Service>, cache: &Cache, request: &Request<B>) -> Response<Full<Bytes>> {
    let Some(route) = Route::parse(request.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let Some((db, page)) = service.and_then(|s| s.policy.status_page.as_ref().map(|p| (&s.db, p))) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match cached(cache, route, db, page).await {
        Ok(rendered) => respond(&rendered, request.headers().get(header::IF_NONE_MATCH)),
        Err(e) => {
            tracing::warn!(error = %e, "status page: database unavailable");
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "status page temporarily unavailable\n");
            // An error must not be cached in place of the page.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    }
}

/// `route` from its cache slot while fresh, else rendered and kept; if rendering fails, the
/// slot's older answer.
async fn cached(cache: &Cache, route: Route<'_>, db: &Db, page: &StatusPage) -> anyhow::Result<Arc<Rendered>> {
    let Some(slot) = route.slot().and_then(|i| cache.slots.get(i)) else {
        return Ok(Arc::new(render(route, db, page, Utc::now()).await?));
    };
    let mut slot = slot.lock().await;
    if let Some((at, rendered)) = slot.as_ref() {
        if at.elapsed() < FRESH_FOR {
            return Ok(rendered.clone());
        }
    }
    match render(route, db, page, Utc::now()).await {
        Ok(rendered) => {
            let rendered = Arc::new(rendered);
            *slot = Some((Instant::now(), rendered.clone()));
            Ok(rendered)
        }
        // With the database away the last page rendered is still the best answer: readers
        // keep seeing the incident instead of an error. It is kept fresh for another
        // `FRESH_FOR`, so a database that hangs is tried once a second, not once per reader
        // queued behind the slot's lock.
        Err(e) => match slot.take() {
            Some((_, stale)) => {
                tracing::warn!(error = %e, "status page: database unavailable, serving the last page rendered");
                *slot = Some((Instant::now(), stale.clone()));
                Ok(stale)
            }
            None => Err(e),
        },
    }
}

async fn render(route: Route<'_>, db: &Db, page: &StatusPage, now: DateTime<Utc>) -> anyhow::Result<Rendered> {
    let ok = |content_type, body| Rendered::new(StatusCode::OK, content_type, body);
    Ok(match route {
        Route::Style => ok("text/css; charset=utf-8", html::STYLE.to_string()),
        Route::Page => {
            let view = view(db, page, now).await?;
            ok(HTML, html::page(page, &view))
        }
        Route::Json => {
            let view = view(db, page, now).await?;
            ok("application/json", json::page(&view)?)
        }
        Route::Feed => {
            let entries = db.public_feed(FEED_ENTRIES).await?;
            ok("application/atom+xml; charset=utf-8", atom::feed(page, &entries)?)
        }
        Route::Incident(id) => {
            let valid = !id.is_empty() && id.len() <= MAX_PUBLIC_ID && id.bytes().all(|b| b.is_ascii_alphanumeric());
            let incident = if valid { db.public_incident(id).await? } else { None };
            match incident {
                Some(incident) => ok(HTML, html::incident(page, &incident)),
                None => Rendered::new(StatusCode::NOT_FOUND, HTML, html::not_found(page)),
            }
        }
    })
}

/// The page's content at `now`: public incidents active or resolved within the recent window.
async fn view(db: &Db, page: &StatusPage, now: DateTime<Utc>) -> anyhow::Result<crate::comms::PageView> {
    let incidents = db.public_incidents_since(now - crate::comms::recent_window()).await?;
    Ok(crate::comms::page_view(page, incidents, now))
}

/// Adds the status page's headers; a matching `If-None-Match` gets a 304 with no body.
fn respond(rendered: &Rendered, if_none_match: Option<&HeaderValue>) -> Response<Full<Bytes>> {
    let tag = &rendered.etag;
    let not_modified = rendered.status == StatusCode::OK && if_none_match.is_some_and(|v| matches_etag(v, tag));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        // A clone of `Bytes` shares the cached body: no copy per request.
        (rendered.status, rendered.body.clone())
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if !not_modified {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(rendered.content_type));
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Ok(value) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PLAIN));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A strong entity tag: the body's 64-bit FNV-1a hash, quoted. Stable across restarts and
/// replicas (unlike `std`'s randomly keyed hasher), so every replica behind a balancer gives
/// the same tag for the same body.
pub fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `W/` is ignored, `*` matches
/// anything, and the header may list several tags.
fn matches_etag(header: &HeaderValue, tag: &str) -> bool {
    let Ok(header) = header.to_str() else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_exact() {
        assert_eq!(Route::parse("/status"), Some(Route::Page));
        assert_eq!(Route::parse("/status.json"), Some(Route::Json));
        assert_eq!(Route::parse("/status/feed.atom"), Some(Route::Feed));
        assert_eq!(Route::parse("/status/style.css"), Some(Route::Style));
        assert_eq!(
            Route::parse("/status/incidents/abc123"),
            Some(Route::Incident("abc123"))
        );
        assert_eq!(Route::parse("/status/other"), None);
        assert!(serves("/status/other") && !serves("/statusx") && !serves("/calendar.ics"));
    }

    #[test]
    fn etags_are_stable_quoted_hashes_and_if_none_match_compares_weakly() {
        let tag = etag(b"hello");
        assert_eq!(tag, etag(b"hello"));
        assert_ne!(tag, etag(b"hello!"));
        assert_eq!(tag.len(), 18);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(matches_etag(&header(&tag), &tag));
        assert!(matches_etag(&header(&format!("\"x\", W/{tag}")), &tag));
        assert!(matches_etag(&header("*"), &tag));
        assert!(!matches_etag(&header("\"0000000000000000\""), &tag));
    }

    #[test]
    fn a_matching_tag_is_a_304_with_the_headers_and_no_body() {
        let rendered = Rendered::new(StatusCode::OK, HTML, "<p>x</p>".into());
        let full = respond(&rendered, None);
        assert_eq!(full.status(), StatusCode::OK);
        let tag = full.headers()[header::ETAG].clone();
        let cached = respond(&rendered, Some(&tag));
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(cached.headers()[header::ETAG], tag);
        assert_eq!(cached.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(cached.headers()[header::CACHE_CONTROL], CACHE_CONTROL);
        assert_eq!(hyper::body::Body::size_hint(cached.body()).exact(), Some(0));
    }
}
