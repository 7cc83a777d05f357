//! Vendor ticket chase benchmark (prints figures; asserts nothing).
//!
//! 10,000 open vendor tickets (10 on each of 1,000 incidents) whose first-response SLAs pass
//! over a 10-second window; the real reminder scheduler loop chases them. Prints the chase lag
//! (SLA deadline → chase recorded with its Slack job enqueued) p50/p99/max, CPU time per 1,000
//! chases, and the idle CPU of the sleeping scheduler with 10,000 tickets waiting for their
//! next deadline. SQLite always; PostgreSQL too with
//! `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test`.
//!
//! `cargo bench --bench vendors`

use incident_bot::config::Policy;
use incident_bot::db::{Db, DeclareOutcome};
use incident_bot::incident::model::*;
use incident_bot::reminder::{self, ReminderOptions};
use incident_bot::vendor::{parse_catalogue, NewTicket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const INCIDENTS: usize = 1_000;
const TICKETS_EACH: usize = 10;
const WINDOW: Duration = Duration::from_secs(10);

/// This process's user + system CPU time (Linux clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A policy with one vendor whose SEV2 SLAs are 30 s (each ticket is chased once inside the
/// window, then waits 30 s for the next deadline), and no update reminders.
fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.severities[1].update_every = Duration::ZERO;
    policy.severities[1].escalate_after = Duration::ZERO;
    let table: toml::Table =
        "[[vendors]]\nname = \"Adyen\"\n[vendors.sla.SEV2]\nfirst_response = \"30s\"\nupdate = \"30s\"\n"
            .parse()
            .unwrap();
    policy.vendors = parse_catalogue(&table["vendors"], &policy.services).unwrap();
    policy
}

async fn run(label: &str, db: Db) -> anyhow::Result<()> {
    let policy = policy();
    let rules = policy.rules();
    let alice = UserId::parse("U0ALICE").unwrap();
    let load = Instant::now();
    for i in 0..INCIDENTS {
        let new = NewIncident {
            title: Title::parse(&format!("bench vendors {i}")).unwrap(),
            severity: Severity::Sev2,
            services: vec![],
            description: String::new(),
            spoc: alice.clone(),
            declared_by: alice.clone(),
            is_private: false,
            origin_channel: None,
        };
        let (DeclareOutcome::Created(incident) | DeclareOutcome::Duplicate(incident)) = db
            .declare(&new, &format!("bench-v:{i}"), chrono::Utc::now(), &rules.slas)
            .await?;
        for j in 0..TICKETS_EACH {
            let ticket = NewTicket::parse(&policy.vendors, "Adyen", &format!("{i}-{j}"), None, "bench")
                .map_err(anyhow::Error::msg)?;
            db.open_vendor_ticket(
                incident.id,
                &ticket,
                &alice,
                chrono::Utc::now(),
                &format!("bench-v:{i}:{j}"),
                &policy.vendors,
            )
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
    }
    let total = INCIDENTS * TICKETS_EACH;
    println!(
        "[{label}] loaded {total} open vendor tickets on {INCIDENTS} incidents in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    // Their first-response deadlines spread evenly over WINDOW, starting 2 s from now.
    let start = chrono::Utc::now() + chrono::Duration::seconds(2);
    db.arm_vendor_chases_for_bench(start, chrono::Duration::from_std(WINDOW)?)
        .await?;

    let (wake, wake_outbox, stop) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let opts = ReminderOptions {
        max_sleep: Duration::from_secs(30),
        ..ReminderOptions::default()
    };
    let cpu_before = cpu_time();
    let scheduler = tokio::spawn(reminder::run(db.clone(), rules, wake, wake_outbox, stop.clone(), opts));
    let until_done = (start - chrono::Utc::now()).to_std().unwrap_or_default() + WINDOW + Duration::from_secs(2);
    tokio::time::sleep(until_done).await;
    let cpu_busy = cpu_time() - cpu_before;
    let idle_before = cpu_time();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_idle = cpu_time() - idle_before;
    stop.notify_one();
    scheduler.await?;

    let fired = db.fired_vendor_chases().await?;
    let mut lags: Vec<i64> = fired.iter().map(|(at, planned)| at - planned).collect();
    lags.sort_unstable();
    println!(
        "[{label}] chased {} tickets; chase lag (SLA deadline → recorded + Slack job enqueued): p50 {} ms  p99 {} ms  max {} ms",
        fired.len(),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(0)
    );
    println!(
        "[{label}] CPU while chasing: {:.0} ms total (bench process, 10 ms resolution) = {:.1} ms per 1,000",
        cpu_busy.as_secs_f64() * 1000.0,
        cpu_busy.as_secs_f64() * 1000.0 / (fired.len().max(1) as f64 / 1000.0)
    );
    println!(
        "[{label}] idle CPU over 5 s with {total} tickets waiting for their next deadline: {:.0} ms",
        cpu_idle.as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("incident-bot-bench-vendors-{}.db", uuid::Uuid::new_v4()));
    let db = Db::connect(&format!("sqlite://{}", file.display())).await?;
    run("SQLite", db).await?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    if let Ok(url) = std::env::var("BENCH_DATABASE_URL") {
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let db = Db::connect_with(&url, Some(&schema)).await?;
        run("PostgreSQL", db).await?;
    }
    println!("targets: chase lag p99 ≤ 1 s, idle CPU near zero");
    Ok(())
}
