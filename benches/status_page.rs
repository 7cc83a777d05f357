//! Issue 14 figures: the public status page under load. A page of 50 components over a history
//! of 1,000 public incidents (most resolved long ago, 25 resolved within the last 14 days, 5
//! active), served by the real operations HTTP server over loopback. Prints numbers, asserts
//! nothing about time.
//!
//! For `--secs` seconds each (default 10), `GET /status` and then `GET /status.json` are sent at
//! `--rate` requests a second (default 500) on a fixed schedule over 8 keep-alive connections.
//! Printed per endpoint: latency (request written → whole body read: p50, p99, max), the rate
//! achieved, non-200 answers, and this process's RSS growth over the run (`VmRSS` from
//! `/proc/self/status`; client and server share the process). Targets: p99 ≤ 5 ms, RSS growth
//! ≤ 5 MB.
//!
//! The server runs alone (no Slack side, no outbox runner), so the figures are the page's own.
//! It keeps each rendered answer for a second (`status_page::FRESH_FOR`): at 500 requests a
//! second one in 500 renders from the database, the others are served from memory, so p99 is
//! mostly that of the cached path. The render itself (two reads and the HTML or JSON) is
//! printed first: 200 sequential requests, each to a freshly started server (an empty cache)
//! over the same warm database pool.
//!
//! ```sh
//! cargo bench --bench status_page                  # SQLite
//! cargo bench --bench status_page -- --pg          # PostgreSQL at postgres://postgres@127.0.0.1:5432/test
//! cargo bench --bench status_page -- --secs 5 --rate 1000
//! ```

#[path = "common/http.rs"]
mod http;
#[path = "common/no_people.rs"]
mod no_people;
use chrono::Utc;
use incident_bot::comms::{Component, ComponentImpact, ComponentStatus, NewCustomerUpdate, StatusPage};
use incident_bot::db::{Db, FixtureIncident};
use incident_bot::demo::demo_policy;
use incident_bot::http::OpsServer;
use incident_bot::incident::model::{IncidentNumber, UserId};
use incident_bot::service::Service;
use no_people::NoPeople;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const COMPONENTS: usize = 50;
const INCIDENTS: i64 = 1_000;
const ACTIVE: i64 = 5;
const RECENT: i64 = 25;
const CONNECTIONS: u64 = 8;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn page() -> StatusPage {
    StatusPage {
        title: "Bench status".into(),
        logo_url: Some("https://example.com/logo.png".into()),
        timezone: chrono_tz::Europe::Amsterdam,
        components: (0..COMPONENTS)
            .map(|i| Component {
                id: format!("component-{i:02}"),
                name: format!("Component {i:02}"),
                services: vec![format!("service-{i:02}")],
            })
            .collect(),
        cadence: [None; 4],
        // Published at once: the fixture needs no approver.
        comms_approval: false,
        allow_self_approval: false,
        channel: None,
        templates: BTreeMap::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Loads the history: incident `n` of 1..=1,000 is active (the last 5), resolved within the
/// last 14 days (the 25 before), or resolved between 15 and 730 days ago; each has a first
/// update and, once resolved, a last one (active ones have three updates).
async fn load(db: &Db, page: &StatusPage) -> anyhow::Result<()> {
    let now = Utc::now();
    let day = 86_400_000i64;
    let declared_at = |n: i64| {
        if n > INCIDENTS - ACTIVE {
            now.timestamp_millis() - (INCIDENTS - n + 1) * 3_600_000
        } else if n > INCIDENTS - ACTIVE - RECENT {
            now.timestamp_millis() - (INCIDENTS - ACTIVE - n + 1) * day / 2
        } else {
            now.timestamp_millis() - (15 + (n * 7) % 715) * day
        }
    };
    let fixtures: Vec<FixtureIncident> = (1..=INCIDENTS)
        .map(|n| {
            let at = declared_at(n);
            let active = n > INCIDENTS - ACTIVE;
            FixtureIncident {
                number: n,
                title: format!("Internal {n}"),
                status: if active { "investigating" } else { "closed" }.into(),
                services: vec![format!("service-{:02}", n as usize % COMPONENTS)],
                declared_at: at,
                resolved_at: (!active).then_some(at + 2 * 3_600_000),
                closed_at: (!active).then_some(at + day),
                ..FixtureIncident::default()
            }
        })
        .collect();
    db.insert_fixtures(&fixtures, &[]).await?;
    let author = UserId::parse("U0BENCH").map_err(anyhow::Error::msg)?;
    for f in &fixtures {
        let incident = db
            .incident_by_number(IncidentNumber(f.number))
            .await?
            .ok_or_else(|| anyhow::anyhow!("fixture {} missing", f.number))?;
        let active = f.resolved_at.is_none();
        let components = |status| -> Vec<ComponentImpact> {
            (0..3)
                .map(|k| ComponentImpact {
                    component: format!("component-{:02}", (f.number as usize + k * 17) % COMPONENTS),
                    status,
                })
                .collect()
        };
        let mut updates = vec![(f.declared_at + 300_000, ComponentStatus::PartialOutage, false)];
        if active {
            updates.push((f.declared_at + 600_000, ComponentStatus::MajorOutage, false));
            updates.push((f.declared_at + 900_000, ComponentStatus::DegradedPerformance, false));
        } else {
            updates.push((f.declared_at + 2 * 3_600_000, ComponentStatus::Operational, true));
        }
        for (k, (at, status, last)) in updates.into_iter().enumerate() {
            let new = NewCustomerUpdate {
                public_title: format!("Public incident {} affecting three components", f.number),
                message: format!(
                    "Update {k} on incident {}: some requests are slower than usual or fail. Our engineers are on it and we will update you within the hour.",
                    f.number
                ),
                components: components(status),
                last,
            };
            let at = chrono::DateTime::from_timestamp_millis(at).unwrap_or(now);
            db.write_customer_update(incident.id, &new, &author, at, &format!("bench:{}:{k}", f.number), page)
                .await?
                .map_err(|e| anyhow::anyhow!("update refused: {e:?}"))?;
        }
    }
    Ok(())
}

/// One GET on a keep-alive connection; returns the status (the body is read whole).
async fn get(stream: &mut BufReader<tokio::net::TcpStream>, addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    http::exchange(stream, &req).await
}

/// Sends `rate` GETs of `path` a second for `secs` seconds; returns the latencies and the
/// non-200 count.
async fn run(addr: SocketAddr, path: &'static str, rate: u64, secs: u64) -> anyhow::Result<(Vec<Duration>, usize)> {
    let per_connection = rate * secs / CONNECTIONS;
    let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        tasks.spawn(async move {
            let mut stream = BufReader::new(tokio::net::TcpStream::connect(addr).await?);
            let mut times = Vec::with_capacity(per_connection as usize);
            let mut failed = 0usize;
            // Connections are staggered so requests arrive evenly, not in bursts of 8.
            let offset = interval.mul_f64(c as f64 / CONNECTIONS as f64);
            for i in 0..per_connection {
                tokio::time::sleep_until(start + offset + interval * i as u32).await;
                let sent = Instant::now();
                if get(&mut stream, addr, path).await? != 200 {
                    failed += 1;
                }
                times.push(sent.elapsed());
            }
            anyhow::Ok((times, failed))
        });
    }
    let (mut times, mut failed) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (t, f) = done??;
        times.extend(t);
        failed += f;
    }
    Ok((times, failed))
}

/// The ops server on a free loopback port, serving the status page from `service`.
async fn serve(db: &Db, service: Arc<Service>) -> anyhow::Result<OpsServer> {
    let connected = Arc::new(AtomicBool::new(true));
    OpsServer::start_with_services(
        "127.0.0.1:0".parse()?,
        db.clone(),
        connected,
        Default::default(),
        None,
        Some(service),
    )
    .await
}

/// Latencies of `n` requests of `path`, each the first one a new server answers (a cold cache).
async fn cold(service: &Arc<Service>, db: &Db, path: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let server = serve(db, service.clone()).await?;
        let mut stream = BufReader::new(tokio::net::TcpStream::connect(server.addr()).await?);
        let sent = Instant::now();
        let status = get(&mut stream, server.addr(), path).await?;
        times.push(sent.elapsed());
        anyhow::ensure!(status == 200, "{path}: {status}");
        server.stop().await;
    }
    times.sort();
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = arg("--secs").and_then(|s| s.parse().ok()).unwrap_or(10);
    let rate: u64 = arg("--rate").and_then(|s| s.parse().ok()).unwrap_or(500);
    let pg = std::env::args().any(|a| a == "--pg");
    let dir = tempfile::tempdir()?;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let (db, backend) = if pg {
        (Db::connect_with(DEFAULT_PG_URL, Some(&schema)).await?, "PostgreSQL")
    } else {
        let url = format!("sqlite://{}", dir.path().join("status.db").display());
        (Db::connect(&url).await?, "SQLite")
    };
    let page = page();
    let loading = Instant::now();
    load(&db, &page).await?;
    println!(
        "status page bench on {backend}: {COMPONENTS} components, {INCIDENTS} public incidents ({ACTIVE} active, {RECENT} resolved in the last 14 days), loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let policy = incident_bot::config::Policy {
        status_page: Some(page),
        ..demo_policy()
    };
    let service = Arc::new(Service::new(
        db.clone(),
        policy,
        Arc::new(NoPeople),
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    ));
    for path in ["/status", "/status.json"] {
        let times = cold(&service, &db, path, 200).await?;
        println!(
            "  render (cold cache) GET {path:<13} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(times.last().copied().unwrap_or_default()),
        );
    }
    let server = serve(&db, service).await?;
    let addr = server.addr();
    for path in ["/status", "/status.json"] {
        // A short warm-up (pool connections, allocator arenas) before RSS is taken.
        run(addr, path, 200, 1).await?;
        let rss_before = rss_kib();
        let started = Instant::now();
        let (mut times, failed) = run(addr, path, rate, secs).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let rss_after = rss_kib();
        times.sort();
        println!(
            "  GET {path:<13} {} requests at {:.0}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; non-200: {failed}; RSS {:.1} → {:.1} MiB ({:+.2} MiB)",
            times.len(),
            times.len() as f64 / elapsed,
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(times.last().copied().unwrap_or_default()),
            rss_before as f64 / 1024.0,
            rss_after as f64 / 1024.0,
            (rss_after as f64 - rss_before as f64) / 1024.0,
        );
    }
    server.stop().await;
    if let Db::Postgres(pool) = &db {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(pool)
            .await;
    }
    Ok(())
}
