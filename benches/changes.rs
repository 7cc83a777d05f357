//! Change calendar benchmark (issue 12; prints figures, asserts nothing).
//!
//! 100,000 changes stored over two years on five service lines (a tenth of them vendor
//! maintenance), then: the correlation look-up an incident's declaration runs (candidates from
//! the per-service index + the pure choice), 2,000 times at random moments, p50/p99/max; the
//! `calendar.ics` feed over a window holding 10,000 changes (read and rendered afresh, then as
//! the endpoint serves it: its first request, right after a write, polled); the idle CPU of the change
//! calendar's loop (nothing due, a digest hours away). SQLite always; PostgreSQL too with
//! `BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test`.
//!
//! `cargo bench --bench changes`

#[path = "common/no_people.rs"]
mod no_people;
use chrono::{Duration, Utc};
use incident_bot::calendar::{self, ChangeKind, IncidentFacts, Move, NewChange, Risk};
use incident_bot::config::{Policy, Secret, SlackSettings};
use incident_bot::db::{ChangeToStore, Db};
use incident_bot::incident::model::UserId;
use incident_bot::service::Service;
use no_people::NoPeople;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

const CHANGES: usize = 100_000;
const SERVICES: [&str; 5] = ["payments", "checkout", "settlement", "portal", "app"];

fn cpu_time() -> std::time::Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    std::time::Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The feed as `GET /calendar.ics` serves it (the service keeps each change's event): the first
/// request of a run, a request after one change was written, and polls while nothing changed.
/// Its window is placed where it holds about 10,000 changes: the fixture ends 190 days ahead,
/// so a feed "as of" 147 days ahead covers its last 73 days.
async fn service_feed(label: &str, db: &Db, now: chrono::DateTime<Utc>) -> anyhow::Result<()> {
    let at = now + Duration::days(147);
    let service = || {
        Service::new(
            db.clone(),
            Policy::default(),
            Arc::new(NoPeople),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        )
    };
    let mut firsts = Vec::new();
    let mut events = 0;
    for _ in 0..5 {
        let fresh = service();
        let t = Instant::now();
        let body = String::from_utf8(fresh.calendar_feed(at).await?.to_vec())?;
        firsts.push(t.elapsed().as_secs_f64() * 1000.0);
        events = body.matches("BEGIN:VEVENT").count();
    }
    let kept = service();
    kept.calendar_feed(at).await?;
    // After a write: a planned change in the window is started (a new event, a new sequence).
    let (from, _) = calendar::ics::feed_window(at);
    let planned: Vec<_> = db
        .changes_between(from, from + Duration::days(60))
        .await?
        .into_iter()
        .filter(|c| c.state == calendar::ChangeState::Planned)
        .take(40)
        .collect();
    let mut after_write = Vec::new();
    for (i, c) in planned.iter().enumerate() {
        db.move_change(c.number, Move::Start, None, "bench", &format!("feed{i}"), now, false)
            .await?
            .ok();
        let t = Instant::now();
        let body = String::from_utf8(kept.calendar_feed(at).await?.to_vec())?;
        after_write.push(t.elapsed().as_secs_f64() * 1000.0);
        let uid = format!("UID:chg-{}@incident-bot", c.id);
        let event = body.split("BEGIN:VEVENT").find(|e| e.contains(&uid));
        assert!(
            event.is_some_and(|e| e.contains("STATUS:CONFIRMED")),
            "{uid} re-rendered as started"
        );
    }
    let mut polls = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let _body = kept.calendar_feed(at).await?;
        polls.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for v in [&mut firsts, &mut after_write, &mut polls] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "[{label}] GET /calendar.ics ({events} changes), the first request of a run: p50 {:.1} ms · max {:.1} ms",
        percentile(&firsts, 50.0),
        firsts.last().unwrap()
    );
    println!(
        "[{label}] GET /calendar.ics right after a change was written ({} writes): p50 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
        after_write.len(),
        percentile(&after_write, 50.0),
        percentile(&after_write, 99.0),
        after_write.last().unwrap()
    );
    println!(
        "[{label}] GET /calendar.ics while nothing changed: p50 {:.2} ms · p99 {:.2} ms",
        percentile(&polls, 50.0),
        percentile(&polls, 99.0)
    );
    Ok(())
}

async fn run(label: &str, db: Db) -> anyhow::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let now = Utc::now();
    // Two years: 18 months back, 6 ahead; about 137 changes a day.
    let span_min = 2 * 365 * 24 * 60;
    let origin = now - Duration::days(18 * 30);
    let owner = UserId::parse("U0CAROL").unwrap();
    let started = Instant::now();
    let mut stored = 0;
    while stored < CHANGES {
        let mut batch = Vec::with_capacity(1_000);
        for i in 0..1_000 {
            let start = origin + Duration::minutes(rng.gen_range(0..span_min));
            let vendor = i % 10 == 0;
            let line = SERVICES[rng.gen_range(0..SERVICES.len())];
            batch.push(ChangeToStore {
                change: NewChange {
                    kind: if vendor {
                        ChangeKind::VendorMaintenance
                    } else {
                        ChangeKind::Deployment
                    },
                    title: format!("change {}", stored + i),
                    services: vec![line.to_string()],
                    starts_at: start,
                    ends_at: start + Duration::minutes(rng.gen_range(10..240)),
                    owner: owner.clone(),
                    risk: Risk::Low,
                    customer_facing: false,
                    vendor: vendor.then(|| format!("vendor{}", rng.gen_range(0..20))),
                    link: None,
                    override_reason: None,
                },
                key: format!("bench:{}", stored + i),
                freezes: vec![],
                conflicts: vec![],
            });
        }
        // Stored "as of" after every start: no reminders are planned (nothing due while idle).
        db.create_changes(&batch, "bench", now + Duration::days(365), false)
            .await?;
        stored += batch.len();
    }
    // A realistic mix of states: one change in 20 went through start and done (or, one in
    // ten of those, rollback) at its planned times; 20 are in progress now; the rest planned.
    let mut in_progress = 0;
    for n in (1..=CHANGES as i64).step_by(20) {
        let number = calendar::ChangeNumber(n);
        let Some(c) = db.change_by_number(number).await? else {
            continue;
        };
        if c.ends_at < now {
            let end = if n % 200 == 1 { Move::Rollback } else { Move::Done };
            db.move_change(number, Move::Start, None, "bench", &format!("s{n}"), c.starts_at, false)
                .await?
                .ok();
            db.move_change(number, end, None, "bench", &format!("e{n}"), c.ends_at, false)
                .await?
                .ok();
        } else if c.starts_at > now && in_progress < 20 {
            db.move_change(number, Move::Start, None, "bench", &format!("s{n}"), now, false)
                .await?
                .ok();
            in_progress += 1;
        }
    }
    println!(
        "[{label}] stored {CHANGES} changes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let lookback = Duration::hours(24);
    let mut times = Vec::new();
    let mut found_total = 0;
    for i in 0..2_000 {
        let reference = if i % 2 == 0 {
            now
        } else {
            origin + Duration::minutes(rng.gen_range(0..span_min))
        };
        let services = vec![SERVICES[i % 5].to_string(), SERVICES[(i + 1) % 5].to_string()];
        let facts = IncidentFacts {
            services: services.clone(),
            reference,
            text: format!("timeouts at vendor{}", i % 20),
        };
        let t = Instant::now();
        let candidates = db.suspect_candidates(&services, reference, lookback).await?;
        let found = calendar::suspects(candidates, &facts, lookback);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        found_total += found.len();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "[{label}] correlation look-up (2 service lines + vendors, 24 h look-back, {CHANGES} changes): \
         p50 {:.2} ms · p99 {:.2} ms · max {:.2} ms · {:.1} suspects on average",
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        times.last().unwrap(),
        found_total as f64 / times.len() as f64
    );

    // The feed's window is 210 days: about 137 × 210 ≈ 29,000 changes here. Measure a window
    // holding 10,000 (the size) the same way the endpoint builds it.
    let from = now - Duration::days(30);
    let to = from + Duration::days(73);
    let (mut times, mut reads, mut renders) = (Vec::new(), Vec::new(), Vec::new());
    let mut events = 0;
    let mut bytes = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let changes = db.changes_between(from, to).await?;
        let read = t.elapsed().as_secs_f64() * 1000.0;
        let body = calendar::ics::feed(&changes, &[], now);
        let all = t.elapsed().as_secs_f64() * 1000.0;
        times.push(all);
        reads.push(read);
        renders.push(all - read);
        events = changes.len();
        bytes = body.len();
    }
    for v in [&mut times, &mut reads, &mut renders] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "[{label}] calendar.ics with {events} changes ({:.1} MB): p50 {:.1} ms (read {:.1} ms + render {:.1} ms) · max {:.1} ms",
        bytes as f64 / 1e6,
        percentile(&times, 50.0),
        percentile(&reads, 50.0),
        percentile(&renders, 50.0),
        times.last().unwrap()
    );
    service_feed(label, &db, now).await?;
    // Idle: the calendar's loop with nothing due and the digest months away.
    let mut policy = Policy::default();
    policy.changes.channel = Some("C0CHANGES".into());
    policy.changes.digest_cron = "0 0 8 1 1 *".into(); // next on 1 January
    let web = incident_bot::slack::web::SlackWeb::new(&SlackSettings {
        bot_token: Secret::new("xoxb-bench"),
        app_token: Secret::new("xapp-bench"),
        api_url: "http://127.0.0.1:9".into(),
        socket_connections: None,
    })?;
    // Slack is unreachable here, so a job that fails waits a minute before its retry.
    let (wake, wake_outbox, stop) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let task = tokio::spawn(incident_bot::slack::calendar::run(
        db.clone(),
        web,
        "U0BENCH".into(),
        policy,
        wake,
        wake_outbox,
        stop.clone(),
        incident_bot::slack::calendar::CalendarOptions {
            base_backoff: std::time::Duration::from_secs(60),
            ..Default::default()
        },
    ));
    // The changes done in the past left their "is it done?" questions due: wait until the loop
    // has worked through them (each finds its change done) and nothing is due.
    let settling = Instant::now();
    while settling.elapsed() < std::time::Duration::from_secs(120) {
        match db.next_change_job_due().await? {
            Some(due) if due <= Utc::now() => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            _ => break,
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let before = cpu_time();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let idle = cpu_time() - before;
    stop.notify_one();
    let _ = task.await;
    println!(
        "[{label}] change calendar loop idle for 5 s: {} ms CPU",
        idle.as_millis()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::temp_dir().join(format!("incident-bot-bench-chg-{}.db", uuid::Uuid::new_v4()));
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
    println!("targets: correlation look-up p99 ≤ 5 ms; calendar.ics for 10,000 changes ≤ 100 ms; idle CPU near zero");
    Ok(())
}
