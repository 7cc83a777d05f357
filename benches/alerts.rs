//! Issue 15 figures: alert intake throughput and latency, through the real HTTP endpoint of a
//! bot connected to the in-crate Slack sandbox (Slack's rate tiers enforced). Prints numbers,
//! asserts nothing about time.
//!
//! For `--secs` seconds (default 30), 16 keep-alive connections send 1,000 generic alerts a
//! second in all (one alert per request, on a fixed schedule): a mix of new fingerprints
//! (`--groups`, default 50, introduced evenly over the run) and repeats of the ones already
//! seen. Printed: intake latency (request written → 202 read: p50, p99, max), the rate
//! achieved, whether every alert was stored (one `alert_events` row each: nothing lost), and
//! what Slack saw: `chat.postMessage` calls (one per new group, no more), `chat.update` calls
//! (coalesced repeats, paced inside Tier 3), 429s answered.
//!
//! ```sh
//! cargo bench --bench alerts                  # SQLite
//! cargo bench --bench alerts -- --pg          # PostgreSQL at postgres://postgres@127.0.0.1:5432/test
//! cargo bench --bench alerts -- --secs 10 --groups 50
//! ```

#[path = "common/http.rs"]
mod http;
use incident_bot::alerts::{AlertSource, SourceKind};
use incident_bot::config::Secret;
use incident_bot::db::Db;
use incident_bot::demo::{demo_policy, fast_options, wait_for, LocalStack};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;

const TOKEN: &str = "bench-token-0123456789abcdef";
const CHANNEL: &str = "C0GENERAL";
const RATE: u64 = 1_000;
const CONNECTIONS: u64 = 16;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One request on a keep-alive connection; returns the status.
async fn send(stream: &mut BufReader<tokio::net::TcpStream>, addr: SocketAddr, body: &str) -> anyhow::Result<u16> {
    let req = format!(
        "POST /alerts/generic HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http::exchange(stream, &req).await
}

async fn count(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap_or(-1),
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap_or(-1),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = arg("--secs").and_then(|s| s.parse().ok()).unwrap_or(30);
    let groups: u64 = arg("--groups").and_then(|s| s.parse().ok()).unwrap_or(50);
    let pg = std::env::args().any(|a| a == "--pg");
    let mut policy = demo_policy();
    policy.alerts.channel = Some(CHANNEL.into());
    policy.alerts.sources = vec![AlertSource {
        name: "bench".into(),
        kind: SourceKind::Generic,
        token: Secret::new(TOKEN),
        service: Some("payments".into()),
        severity_label: "severity".into(),
        severity_map: BTreeMap::new(),
        service_label: "service".into(),
        service_map: BTreeMap::new(),
    }];
    let mut opts = fast_options();
    opts.http_listen = Some("127.0.0.1:0".parse()?);
    // Production pacing and coalescing: one Slack call per 1.2 s, one update per group per 10 s.
    opts.alerts = incident_bot::slack::alerts::PosterOptions::default();
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let database = pg.then_some(("postgres://postgres@127.0.0.1:5432/test", Some(schema.as_str())));
    let stack = LocalStack::start(database, policy, opts).await?;
    stack.sandbox.set_rate_tiers(true);
    let addr = stack.bot.as_ref().and_then(|b| b.http_addr()).expect("http on");
    println!(
        "alert intake: {RATE}/s for {secs} s over {CONNECTIONS} connections, {groups} new groups, rest repeats ({})",
        if pg { "PostgreSQL" } else { "SQLite" }
    );

    let total = RATE * secs;
    let sent = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(200);
    let interval = Duration::from_nanos(1_000_000_000 * CONNECTIONS / RATE);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let (sent, refused) = (sent.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = BufReader::new(tokio::net::TcpStream::connect(addr).await.expect("connect"));
            stream.get_ref().set_nodelay(true).ok();
            let mut latencies = Vec::with_capacity((total / CONNECTIONS) as usize);
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ c;
            for k in 0..total / CONNECTIONS {
                let i = k * CONNECTIONS + c;
                tokio::time::sleep_until((start + interval * k as u32).into()).await;
                // New groups arrive evenly over the run; every other request repeats a seen one.
                let introduced = (i * groups / total).max(1);
                let fingerprint = if i % (total / groups).max(1) == 0 {
                    i * groups / total
                } else {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % introduced
                };
                let body = serde_json::json!({
                    "source": "bench", "fingerprint": format!("fp-{fingerprint}"), "status": "firing",
                    "title": format!("Bench alert {fingerprint}"), "severity": "warning",
                    "labels": { "instance": format!("host-{}", fingerprint % 17) },
                })
                .to_string();
                let t = Instant::now();
                match send(&mut stream, addr, &body).await {
                    Ok(202) => {
                        latencies.push(t.elapsed());
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) | Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let wall = start.elapsed();
    latencies.sort();
    let accepted = sent.load(Ordering::Relaxed);
    println!(
        "  intake latency: p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "  accepted {accepted}/{total} (refused or failed {}) in {:.1} s = {:.0} alerts/s",
        refused.load(Ordering::Relaxed),
        wall.as_secs_f64(),
        accepted as f64 / wall.as_secs_f64()
    );
    let stored = count(&stack.db, "SELECT COUNT(*) FROM alert_events").await;
    let stored_groups = count(&stack.db, "SELECT COUNT(*) FROM alert_groups").await;
    println!(
        "  stored: {stored} alert events for {accepted} accepted ({}), {stored_groups} groups",
        if stored == accepted as i64 {
            "nothing lost"
        } else {
            "MISMATCH"
        }
    );
    let posts_during = stack
        .sandbox
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.params["channel"] == CHANNEL)
        .count();
    let updates_during = stack.sandbox.calls_to("chat.update").len();
    println!(
        "  Slack during the run: {posts_during} chat.postMessage, {updates_during} chat.update ({:.1}/min), {} answered 429",
        updates_during as f64 * 60.0 / wall.as_secs_f64(),
        stack.sandbox.rate_limited_calls()
    );
    // Let the poster catch up on posts for every group (paced at Slack's ~1/s per channel).
    let drain = Instant::now();
    let caught_up = wait_for(Duration::from_secs(groups * 2 + 60), || async {
        let posted = count(
            &stack.db,
            "SELECT COUNT(*) FROM alert_groups WHERE message_ts IS NOT NULL",
        )
        .await;
        (posted >= stored_groups).then_some(())
    })
    .await
    .is_some();
    let posts = stack
        .sandbox
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.params["channel"] == CHANNEL)
        .count();
    println!(
        "  after {:.0} s more: every group posted: {caught_up}; chat.postMessage {posts} for {stored_groups} groups ({}), chat.update {}, 429s {}",
        drain.elapsed().as_secs_f64(),
        if posts as i64 == stored_groups { "one per new group" } else { "MISMATCH" },
        stack.sandbox.calls_to("chat.update").len(),
        stack.sandbox.rate_limited_calls()
    );
    Ok(())
}
