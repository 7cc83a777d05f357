//! The public status page (issue 14) through a running bot's HTTP server, on the database the
//! environment selects: what it shows (published updates of public incidents only, escaped),
//! JSON and Atom that parse back, caching headers and 304s, and a real browser's rendering.

#[path = "common/browser.rs"]
mod browser;
mod common;

use chrono::{DateTime, Duration, Utc};
use common::{declared, stack_with};
use incident_bot::app::BotOptions;
use incident_bot::comms::{Component, ComponentImpact, ComponentStatus, NewCustomerUpdate, StatusPage};
use incident_bot::config::Policy;
use incident_bot::db::Db;
use incident_bot::demo::{demo_policy, fast_options, LocalStack};
use incident_bot::incident::model::{IncidentId, UserId};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const HOSTILE: &str =
    "Card payments are failing. <script>alert(1)</script> \"><img src=x onerror=alert(1)> Fees &amp; refunds are safe.";

fn page(approval: bool) -> StatusPage {
    let component = |id: &str, name: &str| Component {
        id: id.into(),
        name: name.into(),
        services: vec![id.into()],
    };
    StatusPage {
        title: "Acme Payments status".into(),
        logo_url: None,
        timezone: chrono_tz::Europe::Amsterdam,
        components: vec![
            component("card-payments", "Card payments"),
            component("payouts", "Payouts"),
            component("public-api", "Public API"),
        ],
        cadence: [None; 4],
        comms_approval: approval,
        allow_self_approval: false,
        channel: None,
        templates: BTreeMap::new(),
    }
}

fn policy(status_page: Option<StatusPage>) -> Policy {
    Policy {
        status_page,
        ..demo_policy()
    }
}

async fn started(status_page: Option<StatusPage>) -> LocalStack {
    let opts = BotOptions {
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..fast_options()
    };
    stack_with(policy(status_page), opts).await
}

fn addr(stack: &LocalStack) -> SocketAddr {
    stack.bot.as_ref().unwrap().http_addr().expect("http_listen set")
}

/// An update giving `component` the status `status`.
fn update(title: &str, message: &str, component: &str, status: ComponentStatus, last: bool) -> NewCustomerUpdate {
    NewCustomerUpdate {
        public_title: title.into(),
        message: message.into(),
        components: vec![ComponentImpact {
            component: component.into(),
            status,
        }],
        last,
    }
}

/// Writes a customer update as bob at `at`: published at once unless `page` needs approval.
async fn write(stack: &LocalStack, page: &StatusPage, incident: IncidentId, new: NewCustomerUpdate, at: DateTime<Utc>) {
    let key = uuid::Uuid::new_v4().to_string();
    stack
        .db
        .write_customer_update(incident, &new, &UserId::parse("U0BOB").unwrap(), at, &key, page)
        .await
        .unwrap()
        .expect("the customer update is stored");
}

/// Marks an incident private after the fact. The database refuses customer updates on private
/// incidents, so this is the only way a private incident can have published words: the reads
/// must still leave it out.
async fn make_private(db: &Db, id: IncidentId) {
    let sql = "UPDATE incidents SET is_private = TRUE WHERE id = $1";
    match db {
        Db::Sqlite(p) => sqlx::query(sql).bind(id.0).execute(p).await.map(drop),
        Db::Postgres(p) => sqlx::query(sql).bind(id.0).execute(p).await.map(drop),
    }
    .unwrap();
}

async fn public_id_of(db: &Db, id: IncidentId) -> String {
    let sql = "SELECT public_id FROM public_incidents WHERE incident_id = $1";
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).bind(id.0).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).bind(id.0).fetch_one(p).await,
    }
    .unwrap()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
async fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: status.test\r\nConnection: close\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[]).await
}

fn assert_status_headers(reply: &Reply, content_type: &str) {
    assert_eq!(reply.header("content-type"), Some(content_type));
    assert_eq!(reply.header("content-security-policy"), Some(CSP));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("cache-control"), Some("public, max-age=30"));
    let etag = reply.header("etag").expect("an ETag");
    assert!(
        etag.len() == 18 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
}

/// The fixture: an active incident (two updates, the newest hostile), one resolved two days
/// ago, one resolved three weeks ago, a private one with a published update, an unapproved
/// draft. Returns the incidents' ids in that order.
async fn fixture(stack: &LocalStack) -> [IncidentId; 4] {
    let now = Utc::now();
    let open = page(false);
    let (active, _) = declared(stack, "Internal: acquirer ABC timeouts on pod payments-7", "SEV1").await;
    write(
        stack,
        &open,
        active.id,
        update(
            "Card payments failing",
            "We are investigating failed card payments.",
            "card-payments",
            ComponentStatus::PartialOutage,
            false,
        ),
        now - Duration::minutes(30),
    )
    .await;
    write(
        stack,
        &open,
        active.id,
        update(
            "Card payments failing",
            HOSTILE,
            "card-payments",
            ComponentStatus::MajorOutage,
            false,
        ),
        now - Duration::minutes(10),
    )
    .await;
    let (recent, _) = declared(stack, "Internal: payout batch stuck", "SEV3").await;
    write(
        stack,
        &open,
        recent.id,
        update(
            "Delayed payouts",
            "Payouts are delayed.",
            "payouts",
            ComponentStatus::DegradedPerformance,
            false,
        ),
        now - Duration::days(3),
    )
    .await;
    write(
        stack,
        &open,
        recent.id,
        update(
            "Delayed payouts",
            "Payouts are back to normal.",
            "payouts",
            ComponentStatus::Operational,
            true,
        ),
        now - Duration::days(2),
    )
    .await;
    let (old, _) = declared(stack, "Internal: API gateway certificate", "SEV2").await;
    write(
        stack,
        &open,
        old.id,
        update(
            "API errors",
            "The public API returned errors for ten minutes; it is fixed.",
            "public-api",
            ComponentStatus::Operational,
            true,
        ),
        now - Duration::days(20),
    )
    .await;
    let (private, _) = declared(stack, "Internal: fraud rule leak", "SEV2").await;
    write(
        stack,
        &open,
        private.id,
        update(
            "Secret public title",
            "SECRET words of a now private incident",
            "public-api",
            ComponentStatus::MajorOutage,
            false,
        ),
        now - Duration::minutes(5),
    )
    .await;
    make_private(&stack.db, private.id).await;
    // A draft waiting for approval (the page needs approval for this write): never public.
    write(
        stack,
        &page(true),
        active.id,
        update(
            "Card payments DRAFT title",
            "DRAFT words nobody approved",
            "card-payments",
            ComponentStatus::MajorOutage,
            false,
        ),
        now - Duration::minutes(1),
    )
    .await;
    [active.id, recent.id, old.id, private.id]
}

const NEVER: [&str; 9] = [
    "SECRET",
    "Secret public title",
    "DRAFT",
    "Internal:",
    "acquirer",
    "U0BOB",
    "U0ALICE",
    "fraud",
    "inc-",
];

#[tokio::test]
async fn the_status_page_shows_published_public_updates_escaped_as_html_json_and_atom() {
    let stack = started(Some(page(false))).await;
    let [active, recent, old, private] = fixture(&stack).await;
    let addr = addr(&stack);
    let (active_id, recent_id, old_id, private_id) = (
        public_id_of(&stack.db, active).await,
        public_id_of(&stack.db, recent).await,
        public_id_of(&stack.db, old).await,
        public_id_of(&stack.db, private).await,
    );

    // The HTML page.
    let html = get(addr, "/status").await;
    assert_eq!(html.status, 200);
    assert_status_headers(&html, "text/html; charset=utf-8");
    let body = &html.body;
    assert!(body.contains("<meta name=\"viewport\""), "phone-readable");
    assert!(body.contains("href=\"/status/style.css\""));
    assert!(
        !body.contains("<script") && !body.contains("style="),
        "no script, no inline style"
    );
    assert!(body.contains("Major outage: Card payments"), "overall sentence: {body}");
    for name in ["Card payments", "Payouts", "Public API", "Operational"] {
        assert!(body.contains(name), "{name}: {body}");
    }
    assert!(
        body.contains(
            "&lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img src=x onerror=alert(1)&gt; Fees &amp;amp; refunds"
        ),
        "hostile text escaped: {body}"
    );
    assert!(!body.contains("<img src=x"));
    assert!(body.contains("We are investigating failed card payments."));
    let (newest, older) = (
        body.find("Card payments are failing.").expect("the newest update"),
        body.find("We are investigating failed").expect("the older update"),
    );
    assert!(newest < older, "newest update first");
    assert!(body.contains(&format!("href=\"/status/incidents/{active_id}\"")));
    assert!(body.contains(&format!("href=\"/status/incidents/{recent_id}\"")));
    assert!(body.contains("Payouts are back to normal."), "resolved within 14 days");
    assert!(
        !body.contains("API errors") && !body.contains(&old_id),
        "resolved 20 days ago: gone"
    );
    assert!(!body.contains(&private_id));
    for never in NEVER {
        assert!(!body.contains(never), "{never} leaked: {body}");
    }
    assert!(
        body.contains("CET (") || body.contains("CEST ("),
        "local time and UTC: {body}"
    );
    assert!(body.contains(" UTC)"));

    // JSON.
    let json = get(addr, "/status.json").await;
    assert_eq!(json.status, 200);
    assert_status_headers(&json, "application/json");
    for never in NEVER {
        assert!(!json.body.contains(never), "{never} leaked: {}", json.body);
    }
    let doc: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(doc["page"]["title"], "Acme Payments status");
    assert_eq!(doc["overall"], "major_outage");
    let components: Vec<(String, String)> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().into(), c["status"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        components,
        [
            ("card-payments".to_string(), "major_outage".to_string()),
            ("payouts".into(), "operational".into()),
            ("public-api".into(), "operational".into())
        ]
    );
    let incidents = doc["incidents"].as_array().unwrap();
    let ids: Vec<&str> = incidents.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [active_id.as_str(), recent_id.as_str()]);
    assert_eq!(incidents[0]["status"], "active");
    assert!(incidents[0]["resolved_at"].is_null());
    assert_eq!(incidents[1]["status"], "resolved");
    let updates = incidents[0]["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 2, "published only, no draft");
    assert_eq!(
        updates[0]["message"], HOSTILE,
        "JSON carries the text as it was written"
    );
    assert_eq!(updates[0]["components"][0]["id"], "card-payments");
    assert_eq!(updates[0]["components"][0]["status"], "major_outage");
    assert_eq!(updates[0]["last"], false);
    assert_eq!(incidents[1]["updates"][0]["last"], true);
    assert_eq!(doc["page"]["updated_at"], updates[0]["published_at"]);
    for at in [
        &incidents[0]["started_at"],
        &updates[0]["published_at"],
        &incidents[1]["resolved_at"],
    ] {
        DateTime::parse_from_rfc3339(at.as_str().unwrap()).expect("RFC 3339");
    }
    let uuids: Vec<String> = incidents
        .iter()
        .flat_map(|i| i["updates"].as_array().unwrap().iter())
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert!(uuids.iter().all(|u| uuid::Uuid::parse_str(u).is_ok()), "{uuids:?}");

    // One incident's page: the whole history, also of one resolved long ago.
    let one = get(addr, &format!("/status/incidents/{old_id}")).await;
    assert_eq!(one.status, 200);
    assert_status_headers(&one, "text/html; charset=utf-8");
    assert!(one.body.contains("API errors") && one.body.contains("it is fixed."));
    for path in [
        format!("/status/incidents/{private_id}"),
        "/status/incidents/nosuchincident".to_string(),
        "/status/incidents/..%2F..%2Fetc".to_string(),
        "/status/incidents/".to_string(),
    ] {
        let missing = get(addr, &path).await;
        assert_eq!(missing.status, 404, "{path}");
        assert!(!missing.body.contains("SECRET"));
    }

    // Atom, parsed back by a real feed parser.
    let atom = get(addr, "/status/feed.atom").await;
    assert_eq!(atom.status, 200);
    assert_status_headers(&atom, "application/atom+xml; charset=utf-8");
    assert!(
        !atom.body.contains("<script>") && !atom.body.contains("<img"),
        "escaped XML"
    );
    for never in NEVER {
        assert!(!atom.body.contains(never), "{never} leaked: {}", atom.body);
    }
    let feed = feed_rs::parser::parse(atom.body.as_bytes()).expect("valid Atom");
    assert_eq!(feed.feed_type, feed_rs::model::FeedType::Atom);
    assert!(feed.id.starts_with("urn:incident-bot:status:"), "{}", feed.id);
    assert_eq!(feed.title.as_ref().unwrap().content, "Acme Payments status");
    assert!(feed
        .links
        .iter()
        .any(|l| l.rel.as_deref() == Some("self") && l.href.ends_with("/status/feed.atom")));
    let titles: Vec<&str> = feed
        .entries
        .iter()
        .map(|e| e.title.as_ref().unwrap().content.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "Card payments failing",
            "Card payments failing",
            "Delayed payouts",
            "Delayed payouts",
            "API errors"
        ],
        "every published public update, newest first"
    );
    let first = &feed.entries[0];
    assert_eq!(
        first.id,
        format!("urn:uuid:{}", uuids[0]),
        "stable ids from the update's uuid"
    );
    assert_eq!(
        first.content.as_ref().unwrap().body.as_deref(),
        Some(HOSTILE),
        "the message as text"
    );
    assert!(first.links[0].href.ends_with(&format!("/status/incidents/{active_id}")));
    assert_eq!(
        first.updated.unwrap().timestamp(),
        DateTime::parse_from_rfc3339(updates[0]["published_at"].as_str().unwrap())
            .unwrap()
            .timestamp()
    );
    let again = get(addr, "/status/feed.atom").await;
    assert_eq!(again.body, atom.body, "the same feed for the same data");

    // The stylesheet.
    let css = get(addr, "/status/style.css").await;
    assert_eq!(css.status, 200);
    assert_status_headers(&css, "text/css; charset=utf-8");
    assert!(css.body.contains(".components"));
}

#[tokio::test]
async fn etags_give_304s_and_only_get_and_head_are_allowed() {
    let stack = started(Some(page(false))).await;
    let (incident, _) = declared(&stack, "Internal: db failover", "SEV2").await;
    let addr = addr(&stack);
    let before = get(addr, "/status").await;
    write(
        &stack,
        &page(false),
        incident.id,
        update(
            "Slow payouts",
            "Payouts are slow.",
            "payouts",
            ComponentStatus::DegradedPerformance,
            false,
        ),
        Utc::now(),
    )
    .await;
    // The server keeps a rendered page for a second: the new update shows within that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let after = get(addr, "/status").await;
        if after.body.contains("Payouts are slow.") || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for path in ["/status", "/status.json", "/status/feed.atom"] {
        let full = get(addr, path).await;
        assert_eq!(full.status, 200, "{path}");
        let tag = full.header("etag").unwrap().to_string();
        let cached = request(addr, "GET", path, &[("If-None-Match", &tag)]).await;
        assert_eq!(cached.status, 304, "{path}");
        assert!(cached.body.is_empty(), "a 304 has no body");
        assert_eq!(cached.header("etag"), Some(tag.as_str()));
        assert_eq!(cached.header("cache-control"), Some("public, max-age=30"));
        assert_eq!(cached.header("content-security-policy"), Some(CSP));
        let weak = format!("\"0000000000000000\", W/{tag}");
        assert_eq!(
            request(addr, "GET", path, &[("If-None-Match", &weak)]).await.status,
            304
        );
        let other = request(addr, "GET", path, &[("If-None-Match", "\"0000000000000000\"")]).await;
        assert_eq!(other.status, 200, "{path}");
        assert_eq!(other.body, full.body);
        let head = request(addr, "HEAD", path, &[]).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "HEAD has no body");
        assert_eq!(head.header("etag"), Some(tag.as_str()));
        assert_eq!(
            head.header("content-length"),
            Some(full.body.len().to_string().as_str())
        );
        for method in ["POST", "PUT", "DELETE"] {
            let refused = request(addr, method, path, &[("Content-Length", "0")]).await;
            assert_eq!(refused.status, 405, "{method} {path}");
            assert_eq!(refused.header("allow"), Some("GET, HEAD"));
        }
    }
    assert!(after.body.contains("Payouts are slow."), "the new update shows");
    assert_ne!(
        before.header("etag"),
        after.header("etag"),
        "a new update changes the tag"
    );
    let stale = request(
        addr,
        "GET",
        "/status",
        &[("If-None-Match", before.header("etag").unwrap())],
    )
    .await;
    assert_eq!(stale.status, 200);
    assert!(stale.body.contains("Payouts are slow."));
}

#[tokio::test]
async fn without_a_status_page_its_paths_are_not_found() {
    let stack = started(None).await;
    let addr = addr(&stack);
    for path in [
        "/status",
        "/status.json",
        "/status/feed.atom",
        "/status/style.css",
        "/status/incidents/abc",
    ] {
        assert_eq!(get(addr, path).await.status, 404, "{path}");
    }
    assert_eq!(
        get(addr, "/healthz").await.status,
        200,
        "the rest of the server still serves"
    );
}

#[tokio::test]
async fn a_real_browser_renders_the_status_page() {
    let chromium = browser::Chromium::launch();
    let stack = started(Some(page(false))).await;
    fixture(&stack).await;
    let url = format!("http://{}/status", addr(&stack));
    let mut tab = chromium.new_page().await;
    // A phone-sized viewport: the page must read there without zooming.
    tab.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": 420, "height": 900, "deviceScaleFactor": 2, "mobile": true }),
    )
    .await;
    tab.navigate(&url).await;
    let text = tab.eval("document.body.innerText").await;
    let text = text.as_str().expect("the page's text");
    for shown in [
        "Acme Payments status",
        "Major outage: Card payments",
        "Card payments failing",
        "We are investigating failed card payments.",
        "Payouts are back to normal.",
        // The hostile message is shown as the text it is, nothing of it ran or rendered.
        "<script>alert(1)</script> \"><img src=x onerror=alert(1)> Fees &amp; refunds are safe.",
    ] {
        assert!(text.contains(shown), "{shown:?} not rendered in:\n{text}");
    }
    for never in NEVER {
        assert!(!text.contains(never), "{never} shown:\n{text}");
    }
    let rows = tab
        .eval("Array.from(document.querySelectorAll('.components li')).map(li => li.innerText.replace(/\\s+/g, ' ').trim())")
        .await;
    assert_eq!(
        rows,
        serde_json::json!([
            "Card payments Major outage",
            "Payouts Operational",
            "Public API Operational"
        ]),
        "each component with its status"
    );
    let active = tab
        .eval("document.querySelectorAll('script, img, iframe, [onerror]').length")
        .await;
    assert_eq!(active, serde_json::json!(0), "no element came from stored text");
    // The linked stylesheet applied (the CSP allows 'self' styles): the list has its border.
    let border = tab
        .eval("getComputedStyle(document.querySelector('.components')).borderTopStyle")
        .await;
    assert_eq!(border, serde_json::json!("solid"), "style.css loaded under the CSP");
    let width = tab
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(width, serde_json::json!(true), "no horizontal scrolling on a phone");
    let png = tab.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("status-page.png"), &png).unwrap();
    drop(tab);
    drop(chromium);
}

#[tokio::test]
async fn with_the_database_gone_the_last_page_rendered_is_still_served() {
    let stack = started(Some(page(false))).await;
    let (incident, _) = declared(&stack, "Internal: primary down", "SEV1").await;
    write(
        &stack,
        &page(false),
        incident.id,
        update(
            "Card payments failing",
            "Card payments fail; we are on it.",
            "card-payments",
            ComponentStatus::MajorOutage,
            false,
        ),
        Utc::now(),
    )
    .await;
    let addr = addr(&stack);
    let page_before = get(addr, "/status").await;
    let json_before = get(addr, "/status.json").await;
    assert!(page_before.body.contains("Card payments fail; we are on it."));
    // Past the cache's freshness, with every connection of the (shared) pool closed.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    match &stack.db {
        Db::Sqlite(p) => p.close().await,
        Db::Postgres(p) => p.close().await,
    }
    let page_after = get(addr, "/status").await;
    assert_eq!(page_after.status, 200, "the last page, not an error");
    assert_eq!(page_after.body, page_before.body);
    assert_eq!(get(addr, "/status.json").await.body, json_before.body);
    // Never rendered before: nothing to fall back on, and the error is not cacheable.
    let feed = get(addr, "/status/feed.atom").await;
    assert_eq!(feed.status, 503);
    assert_eq!(feed.header("cache-control"), Some("no-store"));
}
